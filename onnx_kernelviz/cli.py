"""``kernelviz``: a thin Click layer over the API (CONTRACT.md, "CLI").

Each command parses options, calls the API and prints. Domain errors become one ``Error: ...`` line with exit
status 1 (2 for usage errors); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import click

from . import __version__
from .errors import KernelvizError, ModelError, UsageError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 110}


class _Fail(click.ClickException):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _debug_enabled() -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is not None and ctx.find_root().meta.get("kernelviz.debug"):
        return True
    return os.environ.get("KERNELVIZ_DEBUG", "") not in ("", "0")


def _set_debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    # Kept in the click context, not os.environ: an in-process caller (CliRunner, scripts) must not find
    # --debug still on in its next invocation.
    if value:
        ctx.find_root().meta["kernelviz.debug"] = True


debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_set_debug,
                            help="Show Python tracebacks instead of one-line errors.")


def _friendly(fn):
    """Turn exceptions into the contract's one-line errors (unless --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KeyboardInterrupt:
            if _debug_enabled():
                raise
            click.echo("\nInterrupted: finished results were kept (resume with --resume).", err=True)
            sys.exit(130)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            # `kernelviz inspect m.onnx | head`: the reader left; that is not an error worth a message
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(0)
        except KernelvizError as e:
            if _debug_enabled():
                raise
            raise _Fail(str(e), e.exit_code) from None
        except MemoryError:
            if _debug_enabled():
                raise
            raise _Fail("out of memory; use a smaller --batch-size or --size", 1) from None
        except Exception as e:  # noqa: BLE001 - the contract: never a traceback without --debug
            if _debug_enabled():
                raise
            raise _Fail(f"unexpected {type(e).__name__}: {str(e)[:300]}; rerun with --debug for the traceback "
                        "and please report it", 1) from None

    return wrapper


def preprocess_options(fn):
    """--size/--mean/--std/--scale/--bgr/--layout/--preset/--input, shared by every command that reads images."""
    opts = [
        click.option("--size", help="Model input size HxW (e.g. 224x224) for models with dynamic H/W."),
        click.option("--mean", help="Per-channel mean, e.g. 0.485,0.456,0.406 (after --scale)."),
        click.option("--std", help="Per-channel std, e.g. 0.229,0.224,0.225."),
        click.option("--scale/--no-scale", default=None, help="Divide pixels by 255 before mean/std (default on)."),
        click.option("--bgr/--rgb", "bgr", default=None, help="Channel order the model expects (default RGB)."),
        click.option("--layout", type=click.Choice(["nchw", "nhwc"]), default=None,
                     help="Model input layout (auto-detected)."),
        click.option("--preset", help="Preprocessing preset: imagenet, raw, unit, tf, caffe, ..."),
        click.option("--input", "input_name", help="The image input, for models with several inputs."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _open(model: str, device: str, kw: dict):
    """Resolve preprocessing (CLI > preset > sidecar > imagenet) and open the model."""
    from .model import Model
    from .preprocess import resolve_preprocess

    if not Path(model).exists():
        raise KernelvizError(f"model file {model} does not exist; check the path")
    pp = resolve_preprocess(model, preset=kw.pop("preset"),
                            overrides={k: kw.pop(k) for k in ("size", "mean", "std", "scale", "bgr", "layout")})
    return _with_convs(Model(model, device=device, input_name=kw.pop("input_name"), layout=pp.layout)), pp


def _with_convs(m):
    """A model without any Conv is a model problem (exit 1), not a bad --layer: say so before anything runs."""
    if not m.layers:
        if any(n.domain == "com.microsoft.nchwc" for n in m.graph.nodes):
            # onnxruntime's ORT_ENABLE_ALL layout ops: tied to the CPU that saved them, and not convertible
            raise ModelError(f"{m.path} was saved after onnxruntime's graph optimizations for one CPU "
                             "(com.microsoft.nchwc Conv ops); use the model from before those optimizations, or "
                             "save it at ORT_ENABLE_EXTENDED, whose FusedConv nodes kernelviz reads")
        raise ModelError(f"{m.path} has no Conv layers; kernelviz explains convolution kernels of CNNs")
    return m


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="kernelviz")
@debug_option
def cli() -> None:
    """Show what one convolution kernel of a CNN responds to, from its ONNX file.

    \b
    Start with:  kernelviz demo
    Then:        kernelviz inspect model.onnx
                 kernelviz explain model.onnx photo.jpg --layer 20 --kernel top3 --out out/
    """


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the contract's JSON instead of a table.")
@debug_option
@_friendly
def inspect(model: str, as_json: bool) -> None:
    """List the conv layers of MODEL and their activation tensors.

    \b
    Example:  kernelviz inspect models/efficientnet_lite0.onnx
    """
    from .model import Model

    m = _with_convs(Model(model, device="cpu"))
    info = m.loaded.input
    doc = {"model": str(m.path), "opset": m.loaded.opset, "producer": m.loaded.producer,
           "inputs": [{"name": info.name, "shape": [d if d is not None else "?" for d in info.shape],
                       "layout": info.layout}],
           "layers": [la.to_dict() for la in m.layers]}
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    shape = "x".join(str(d) for d in doc["inputs"][0]["shape"])
    click.echo(f"{m.path}  opset {m.loaded.opset}  producer {m.loaded.producer or '?'}")
    click.echo(f"input {info.name} [{shape}] {info.layout}  {len(m.layers)} conv layers\n")
    click.echo(f"{'idx':>4}  {'channels':>8}  {'group':>5}  {'shape':<16}  {'chain':<22}  tensor")
    for la in m.layers:
        sh = "?" if la.shape is None else "x".join(str(d) for d in la.shape[1:])
        chain = "+".join(la.chain) or "-"
        click.echo(f"{la.index:>4}  {la.channels:>8}  {la.group:>5}  {sh:<16}  {chain:<22}  {la.tensor}")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--layer", "layers", multiple=True, required=True, help="Layer index, Conv name or tensor name.")
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False), help="Where to write the model.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@debug_option
@_friendly
def expose(model: str, layers: tuple[str, ...], output: str, force: bool) -> None:
    """Write MODEL with the layers' activation tensors added as graph outputs (nothing else changes).

    \b
    Example:  kernelviz expose net.onnx --layer 3 --layer 7 --output net_exposed.onnx
    """
    import onnx

    from .expose import expose as expose_tensors
    from .model import Model

    m = _with_convs(Model(model, device="cpu"))
    out = Path(output)
    if out.exists() and not force:
        raise UsageError(f"{out} exists; use --force to overwrite it or choose another --output")
    if out.resolve() == Path(model).resolve():
        raise UsageError("--output is the input model; write the exposed model to another file")
    tensors = [m.layer(spec).tensor for spec in layers]
    proto = expose_tensors(m.loaded.proto, tensors)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        onnx.save(proto, str(tmp))
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    click.echo(f"wrote {out} with extra outputs: {', '.join(tensors)}")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, type=click.Path())
@click.option("--layer", "layers", multiple=True, help="Layers to check (default: all).")
@click.option("--tolerance", type=float, default=None,
              help="Largest allowed parity_rel (default 1e-3; 1e-2 for models that compute in fp16).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the contract's JSON.")
@preprocess_options
@debug_option
@_friendly
def verify(model: str, images: tuple[str, ...], layers: tuple[str, ...], tolerance: float, device: str,
           as_json: bool, **kw) -> None:
    """Check that the torch copy matches onnxruntime on every layer (batch 1 and 2).

    Without IMAGE a deterministic synthetic input is used. Exit status 1 names the first layer that disagrees.

    \b
    Example:  kernelviz verify net.onnx photo.jpg --json
    """
    import numpy as np

    from .images import list_images, read_image, to_model_input
    from .verify import require_parity, verify_model

    m, pp = _open(model, device, kw)
    chosen = [m.layer(s) for s in layers] if layers else None
    x = None
    if images:
        size = m.input_size(pp.size)
        x = np.stack([to_model_input(read_image(p), pp, size, m.channels) for p in list_images(images)])
    elif pp.size:
        x = m.synthetic_input(batch=2, size=pp.size)
    report = verify_model(m, x, chosen, tolerance)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        click.echo(f"{'idx':>4}  {'parity_max_abs':>14}  {'parity_rel':>10}  ok  tensor")
        for la in report.layers:
            click.echo(f"{la.index:>4}  {la.parity_max_abs:>14.3e}  {la.parity_rel:>10.3e}  "
                       f"{'ok' if la.ok else 'NO'}  {la.tensor}")
        click.echo(f"\n{'all layers agree' if report.ok else 'MISMATCH'} (tolerance {report.tolerance:g})")
    require_parity(report)


def explain_options(fn):
    opts = [
        click.option("--method", type=click.Choice(["mask", "pixel"]), default="mask", show_default=True,
                     help="mask: a readable mask over the photo; pixel: the paper's direct pixel optimization."),
        click.option("--steps", type=int, default=None, help="Most optimizer steps per explanation."),
        click.option("--early-stop/--no-early-stop", default=True, show_default=True,
                     help="Stop each explanation when it converges; --no-early-stop runs exactly --steps."),
        click.option("--batch-size", type=int, default=None, help="Explanations optimized together (default: auto)."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--reference", default=None, help="Mask method's reference image: blur, mean, zeros, noise."),
        click.option("--baselines", default=None,
                     help="Compare with baselines at equal area: 'all' or a comma list (activation,gradient,...)."),
        click.option("--tolerance", type=float, default=1e-3, show_default=True, help="parity_ok threshold."),
        click.option("--force", is_flag=True, help="Write into a non-empty --out folder."),
        click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
                     help="Any other ExplainConfig setting, e.g. --set resolution=224 --set tv=0.05 "
                          "(see docs/TRADEOFF.md)."),
    ]
    for o in reversed(opts):
        fn = o(fn)
    return fn


def _config(method, steps, early_stop, batch_size, seed, reference, baselines, tolerance, settings=(),
            top_images=None):
    from dataclasses import replace

    from .explainer import ExplainConfig

    c = ExplainConfig()
    changes = {**_parse_settings(settings, c),"method": method, "early_stop": early_stop, "batch_size": batch_size, "seed": seed,
               "tolerance": tolerance, "top_images": top_images}
    if steps is not None:
        changes["steps"] = steps
    if reference:
        changes["reference"] = reference
    if baselines:
        changes["baselines"] = _baseline_names(baselines)
    return replace(c, **changes)


def _parse_settings(settings: tuple[str, ...], config) -> dict:
    """``--set KEY=VALUE`` pairs as typed ExplainConfig changes (the type of each field's default)."""
    from dataclasses import fields

    known = {f.name: f for f in fields(config)}
    out = {}
    for item in settings:
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            raise UsageError(f"--set {item!r}: use KEY=VALUE with KEY one of: {', '.join(sorted(known))}")
        current = getattr(config, key)
        try:
            if isinstance(current, bool):
                if value.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                out[key] = value.strip().lower() in ("true", "1", "yes")
            elif isinstance(current, (int, float)):
                out[key] = type(current)(value)
            elif current is None:  # optional numbers (lr, batch_size, top_images)
                out[key] = float(value) if key == "lr" else int(value)
            else:
                out[key] = value
        except ValueError:
            raise UsageError(f"--set {item!r}: {value!r} is not a valid {type(current).__name__}") from None
    return out


def _baseline_names(spec: str) -> tuple[str, ...]:
    from .baselines import BASELINES

    names = BASELINES.names() if spec.strip() == "all" else [s.strip() for s in spec.split(",") if s.strip()]
    for n in names:
        BASELINES.get(n)
    return tuple(names)


def _progress_bar(total_hint: str):
    from tqdm import tqdm

    bar = {"t": None}

    def progress(done: int, total: int, result) -> None:
        if bar["t"] is None:
            bar["t"] = tqdm(total=total, initial=done, desc=total_hint, unit="expl", file=sys.stderr,
                            disable=None, leave=True)
        else:
            bar["t"].update(done - bar["t"].n)
        if done >= total:
            bar["t"].close()

    return progress


def _summary(run) -> None:
    ok = [r for r in run.results if r.get("status") == "ok"]
    import statistics as st

    counts = {s: sum(1 for r in run.results if r.get("status") == s) for s in ("ok", "inactive", "failed")}
    click.echo(f"{counts['ok']} explained, {counts['inactive']} inactive, {counts['failed']} failed")
    if ok:
        med = lambda key: st.median(r[key] for r in ok if r.get(key) is not None)  # noqa: E731
        click.echo(f"median kept {med('kept'):.3f}  fidelity {med('fidelity'):.3f}  others_kept "
                   f"{med('others_kept'):.3f}  specificity {med('specificity_before'):.3f} -> "
                   f"{med('specificity_after'):.3f}")
    click.echo(f"report: {run.out_dir / 'report.html'}")


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--layer", required=True, help="Layer index, Conv name or tensor name (see `kernelviz inspect`).")
@click.option("--kernel", "kernel", default="top5", show_default=True, help="7 | 3,7,12 | top5 | all")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--top-images", type=int, default=None, help="With a folder: the N images where each kernel fires most.")
@click.option("--resume", is_flag=True, help="Continue a run in --out, skipping finished explanations.")
@explain_options
@preprocess_options
@debug_option
@_friendly
def explain(model, images, layer, kernel, out, top_images, resume, method, steps, early_stop, batch_size, device,
            seed, reference, baselines, tolerance, force, settings, **kw) -> None:
    """Explain kernels of one layer on images (files or folders).

    \b
    Examples:
      kernelviz explain net.onnx cat.jpg --layer 20 --kernel top3 --out out/
      kernelviz explain net.onnx photos/ --layer 20 --kernel 7 --top-images 5 --out out7/ --baselines all
    """
    from .explainer import explain as run_explain

    m, pp = _open(model, device, kw)
    cfg = _config(method, steps, early_stop, batch_size, seed, reference, baselines, tolerance, settings, top_images)
    run = run_explain(m, images, layer, kernel, out, preprocess=pp, config=cfg, force=force, resume=resume,
                      progress=_progress_bar("explaining"))
    _summary(run)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path())
@click.option("--layer", required=True, help="Layer index, Conv name or tensor name.")
@click.option("--kernel", "kernels", multiple=True, type=int, help="Two kernels (default: the most correlated pair).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--contrast", type=click.FloatRange(min=0), default=None,
              help="Weight of suppressing the other kernel of the pair in particular, so that x'_a shows what a "
                   "responds to and b does not [default: 12]; 0 explains each kernel as `explain` does.")
@explain_options
@preprocess_options
@debug_option
@_friendly
def compare(model, image, layer, kernels, out, contrast, method, steps, early_stop, batch_size, device, seed,
            reference, baselines, tolerance, force, settings, **kw) -> None:
    """Explain two kernels of a layer on one image and measure how well each explanation separates them.

    \b
    Example:  kernelviz compare net.onnx cat.jpg --layer 20 --out cmp/
    """
    from .compare import CONTRAST, SEPARATION, separation
    from .compare import compare as run_compare

    if kernels and len(kernels) != 2:
        raise UsageError("give exactly two --kernel values, or none to pick the most correlated pair")
    m, pp = _open(model, device, kw)
    cfg = _config(method, steps, early_stop, batch_size, seed, reference, baselines or "all", tolerance, settings)
    doc = run_compare(m, image, layer, tuple(kernels) if kernels else None, out, preprocess=pp, config=cfg,
                      force=force, contrast=CONTRAST if contrast is None else contrast,
                      progress=_progress_bar("comparing"))
    a, b = doc["kernels"]
    click.echo(f"kernels {a} and {b} (correlation {doc['correlation']:.2f})")
    o = doc["ours"]
    click.echo(f"ours (contrast {doc['contrast']:g}): under x'_a kept_a {o['a']['kept_a']:.2f} "
               f"kept_b {o['a']['kept_b']:.2f}; "
               f"under x'_b kept_a {o['b']['kept_a']:.2f} kept_b {o['b']['kept_b']:.2f}")
    sep, cos = separation(o), doc.get("filter_cosine")
    if sep < SEPARATION:
        hint = ""
        if cos is not None and cos >= 0.9 and doc["method"] == "mask":
            hint = (f" Their filters are near-copies (cosine {cos:.2f}): a mask over the photo cannot keep one "
                    "without the other; --method pixel can reach inputs that do, at the cost of a lower kept.")
        elif doc["contrast"] == 0:
            hint = f" Try --contrast {CONTRAST:g} to explain each kernel against the other in particular."
        click.echo(f"not told apart: the smaller self/other ratio is {sep:.2f} (< {SEPARATION}).{hint}")
    click.echo(f"report: {Path(out) / 'report.html'}")


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@debug_option
@_friendly
def report(directory: str) -> None:
    """Rebuild DIR/report.html from DIR/results.json (and compare.json)."""
    from .report import write_report

    click.echo(f"wrote {write_report(Path(directory))}")


@cli.command()
@click.option("--out", default="kernelviz-demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--steps", type=int, default=None, help="Most optimizer steps per explanation.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@debug_option
@_friendly
def demo(out: str, steps: int | None, device: str) -> None:
    """Explain the top kernels of a mid layer of the bundled EfficientNet-Lite0 on a bundled photo.

    Writes OUT/report.html. Re-running replaces an earlier demo in OUT, but never a folder with other files.
    """
    from .demo import run_demo

    run = run_demo(Path(out), steps=steps, device=device, progress=_progress_bar("demo"))
    _summary(run)


def main() -> None:
    cli(prog_name="kernelviz")
