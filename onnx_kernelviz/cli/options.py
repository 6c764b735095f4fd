"""The options of the commands that explain (``explain``, ``compare``), how they become one ``ExplainConfig``, and
the progress bar.

Every option defaults to "not given" (None), so a setting is taken only from where it was given. Precedence,
highest first, the same for every setting: a named option (``--steps 10``) > ``--set KEY=VALUE`` (of several for
one key, the last) > ``ExplainConfig``'s default. Preprocessing has its own chain (io/preprocess.py): command line >
``--preset`` > the model's sidecar > ``imagenet``. Bad values are usage errors (exit 2) before the model is opened.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

import click

from onnx_kernelviz.cli.app import device_option
from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.options import SCOPES

if TYPE_CHECKING:
    from onnx_kernelviz.method.config import ExplainConfig
    from onnx_kernelviz.pipeline.explain import ProgressFn, StepProgressFn

F = TypeVar("F", bound=Callable[..., Any])

#: the named options that set an ExplainConfig field (same name)
CONFIG_OPTIONS = ("method", "scope", "at", "steps", "early_stop", "batch_size", "seed", "reference", "baselines",
                  "tolerance", "top_images")
#: ``--method``'s choices: METHODS' names (a test keeps them equal; importing METHODS here would make every
#: ``kernelviz --help`` wait for torch)
METHOD_NAMES = ("mask", "pixel")
#: ``--steps``' help: the methods' own loop lengths (method/methods.py; a test keeps them equal, for the same reason)
STEPS_HELP = "Most optimizer steps per explanation [default: 160 for the mask method in focus scope, else 200]."


def _cell(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """``--at ROW,COL``: two whole numbers from 0 (checked against the map's size once the model is open)."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise click.BadParameter(f"{value!r}: give ROW,COL, two whole numbers from 0 (a cell of the layer's "
                                 "activation map, e.g. --at 6,8)")
    return int(parts[0]), int(parts[1])


def explain_options(fn: F) -> F:
    opts = [
        click.option("--scope", type=click.Choice(SCOPES), default=None,
                     help="focus (default): kernel k where it fires most (its peak, or --at), the mask confined "
                          "to what can reach those cells; map: k's whole activation map."),
        click.option("--at", callback=_cell, default=None, metavar="ROW,COL",
                     help="With --scope focus: explain at this cell of the activation map instead of the peak."),
        click.option("--method", type=click.Choice(METHOD_NAMES), default=None,
                     help="mask (default): a readable mask over the photo; pixel: the paper's direct pixel "
                          "optimization."),
        click.option("--steps", type=int, default=None, help=STEPS_HELP),
        click.option("--early-stop/--no-early-stop", default=None,
                     help="Stop each explanation when it converges (default); --no-early-stop runs exactly --steps."),
        click.option("--batch-size", type=int, default=None, help="Explanations optimized together (default: auto)."),
        device_option,
        click.option("--seed", type=int, default=None, help="Random seed [default: 0]."),
        click.option("--reference", default=None,
                     help="Mask method's reference image: blur, mean (default), zeros, noise."),
        click.option("--baselines", is_flag=False, flag_value="all", default=None,
                     help="Compare with baselines at equal area: alone (or 'all') every baseline, or a comma list "
                          "(activation,gradient,...)."),
        click.option("--tolerance", type=float, default=None,
                     help="parity_ok threshold in the unit of the model's rule: relative error for fp32 (default "
                          "1e-3) and fp16 models (1e-2), quantization steps for int8 models (32)."),
        click.option("--force", is_flag=True, help="Write into a non-empty --out folder."),
        click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                     help="Any ExplainConfig setting, e.g. --set resolution=224 --set tv=0.05 (see "
                          "docs/TRADEOFF.md); a named option given too wins."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


_PAIR = "to explain one kernel against another, use `kernelviz compare MODEL IMAGE --kernel A --kernel B --contrast W`"
#: ``--set`` keys a command has no use for, and why: refused (exit 2) rather than silently ignored
UNUSABLE: dict[str, dict[str, str]] = {
    "atlas": {"at": "the atlas explains each kernel at its own exemplar sites (--top, --explain); to explain one "
                    "cell, use `kernelviz explain ... --at ROW,COL`",
              "top_images": "the atlas picks each kernel's exemplar images itself (--top, --explain)",
              "partners": f"the atlas explains each kernel on its own; {_PAIR}",
              "contrast": f"the atlas explains each kernel on its own; {_PAIR}"},
    "compare": {"partners": "compare sets it from its pair; choose the pair with --kernel A --kernel B",
                "top_images": "compare explains one image"},
}


def parse_settings(settings: tuple[str, ...]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs as typed ExplainConfig changes (by each field's annotation); the last wins."""
    from onnx_kernelviz.method.config import parse_setting

    out: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise UsageError(f"--set {item!r}: use KEY=VALUE")
        out[key] = parse_setting(key, value)
    return out


def refuse_resume_with_force(resume: bool, force: bool) -> None:
    """--resume and --force together are a usage error: with both, --force was silently ignored, and a refused
    resume then told the user to add the --force they had already given."""
    if resume and force:
        raise UsageError("--resume continues the run in --out and --force starts over; give one of them, not both")

def config_from(opts: dict[str, Any], settings: tuple[str, ...], command: str) -> ExplainConfig:
    """The ExplainConfig of ``command``: pops :data:`CONFIG_OPTIONS` from ``opts``, applies the precedence above,
    expands ``baselines`` and validates every value; refuses the ``--set`` keys the command cannot use
    (:data:`UNUSABLE`) and, in ``explain``, a contrast without partners or partners without a contrast (each alone
    changes nothing)."""
    from onnx_kernelviz.baselines import resolve_names
    from onnx_kernelviz.method.config import ExplainConfig

    changes = parse_settings(settings)
    for key in changes:
        if key in UNUSABLE.get(command, {}):
            raise UsageError(f"--set {key}: not used by {command}: {UNUSABLE[command][key]}")
    named = {k: opts.pop(k, None) for k in CONFIG_OPTIONS}
    changes.update({k: v for k, v in named.items() if v is not None})
    if isinstance(changes.get("baselines"), str):
        changes["baselines"] = (changes["baselines"],)
    if "baselines" in changes:
        names = [n for item in changes["baselines"] for n in str(item).split(",")]
        changes["baselines"] = tuple(resolve_names(names))
    cfg = replace(ExplainConfig(), **changes).validate()
    if command == "explain" and cfg.contrast > 0 and not cfg.partners:
        raise UsageError(f"--set contrast={cfg.contrast:g} weighs suppressing a partner kernel, and none is given; "
                         f"{_PAIR}, or name partners here with --set partners=K:P (kernel K against kernel P)")
    if command == "explain" and cfg.partners and cfg.contrast == 0:
        raise UsageError("--set partners changes nothing without --set contrast=W (W > 0: the weight of "
                         "suppressing each kernel's partner)")
    return cfg


def progress_bar(desc: str) -> tuple[ProgressFn, StepProgressFn]:
    """A bar on stderr counting explanations, moved after every optimizer step (running explanations count by
    the share of their steps done), so a long batch does not look stuck. Hidden when stderr is not a terminal."""
    from tqdm import tqdm

    bar: list[Any] = []

    def at(done: float, total: int) -> None:
        if not bar:
            bar.append(tqdm(total=total, initial=done, desc=desc, unit="expl", file=sys.stderr, disable=None,
                            leave=True, bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} [{elapsed}<{remaining}]"))
        elif done > bar[0].n:
            bar[0].update(done - bar[0].n)

    def progress(done: int, total: int, result: object) -> None:
        at(done, total)
        if done >= total:
            bar[0].close()

    return progress, at
