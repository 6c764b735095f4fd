"""``explain``, ``compare``, ``report`` and ``demo``: explanations and their report."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from onnx_kernelviz.cli.app import (
    GivenPath,
    _friendly,
    _open,
    cli,
    count,
    debug_option,
    device_option,
    preprocess_options,
    shown,
    size_hint,
)
from onnx_kernelviz.cli.options import (
    config_from,
    explain_options,
    parse_settings,
    progress_bar,
    refuse_resume_with_force,
)
from onnx_kernelviz.errors import UsageError

if TYPE_CHECKING:
    from onnx_kernelviz.pipeline.explain import ExplainRun


def _summary(run: ExplainRun, fit_option: bool = True) -> None:
    """The run's summary lines; ``fit_option``: the command has --fit (``demo`` has not)."""
    from onnx_kernelviz.io.modelinput import fit_summary

    fitted = fit_summary(run.fits, hints=fit_option)
    if fitted:
        click.echo(shown(fitted + (size_hint() if fit_option else "")))
    counts = {s: sum(1 for r in run.results if r.status == s) for s in ("ok", "inactive", "failed")}
    click.echo(f"{counts['ok']} explained, {counts['inactive']} inactive, {counts['failed']} failed")
    ok = [r for r in run.results if r.status == "ok"]

    def med(values: Iterable[float | None]) -> float:
        v = [x for x in values if x is not None]
        return statistics.median(v) if v else float("nan")

    focus = [r.focus for r in ok if r.focus is not None]
    from onnx_kernelviz.pipeline.focus import SEPARABLE_GAIN
    from onnx_kernelviz.report.sentence import REFERENCE_KEEPS, needs_no_photo
    if focus:  # focus scope: the numbers the explanation is about (the whole map's are in results.json)
        gains = [f.specificity_after / f.specificity_before for f in focus
                 if f.specificity_after is not None and f.specificity_before]
        bound = med(f.oracle_gain for f in focus)
        apart = sum(1 for f in focus if f.extra.get("separable") is False)
        flat = sum(1 for f in focus if needs_no_photo(f.extra))
        click.echo(f"on the focus cells, median kept {med(f.kept for f in focus):.3f}  others_kept "
                   f"{med(f.others_kept for f in focus):.3f}  specificity x{med(gains):.1f}"
                   + (f" (best possible x{bound:.1f})" if bound == bound else ""))
        # one line per kind of kernel the pictures cannot explain, so each reads on its own
        if apart:
            click.echo(f"  {apart} cannot be told apart from the other kernels on their focus cells (best possible "
                       f"gain under x{SEPARABLE_GAIN:g}): see the report")
        if flat:
            click.echo(f"  {flat} fire{'s' if flat == 1 else ''} as much on the reference alone as on the photo "
                       f"(keep >= {REFERENCE_KEEPS:g} with nothing of the photo): see the report")
    elif ok:
        m = [r.metrics for r in ok]
        click.echo(f"median kept {med(x.kept for x in m):.3f}  fidelity {med(x.fidelity for x in m):.3f}  "
                   f"others_kept {med(x.others_kept for x in m):.3f}  specificity "
                   f"{med(x.specificity_before for x in m):.3f} -> {med(x.specificity_after for x in m):.3f}")
    click.echo(f"report: {shown(str(run.out_dir / 'report.html'))}")


@cli.command()
@click.argument("model", type=GivenPath(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=GivenPath())
@click.option("--layer", required=True, help="Layer index, Conv name or tensor name (see `kernelviz inspect`).")
@click.option("--kernel", "kernel", default="top5", show_default=True, help="7 | 3,7,12 | top5 | all")
@click.option("--out", required=True, type=GivenPath(file_okay=False), help="Output folder.")
@click.option("--top-images", type=int, default=None, help="With a folder: the N images where each kernel fires most.")
@click.option("--resume", is_flag=True, help="Continue a run in --out: earlier results stay, finished ones are "
                                             "not redone (the settings must be the same).")
@explain_options
@preprocess_options
@debug_option
@_friendly
def explain(model: str, images: tuple[str, ...], layer: str, kernel: str, out: str, resume: bool, force: bool,
            device: str, settings: tuple[str, ...], **opts: Any) -> None:
    """Explain kernels of one layer on images (files or folders).

    \b
    Examples:
      kernelviz explain net.onnx cat.jpg --layer 20 --kernel top3 --out out/
      kernelviz explain net.onnx photos/ --layer 20 --kernel 7 --top-images 5 --out out7/ --baselines
    """
    from onnx_kernelviz.pipeline.explain import explain as run_explain

    refuse_resume_with_force(resume, force)
    cfg = config_from(opts, settings, "explain")
    m, pp = _open(model, device, opts)
    progress, on_step = progress_bar("explaining")
    run = run_explain(m, images, layer, kernel, out, preprocess=pp, config=cfg, force=force, resume=resume,
                      progress=progress, on_step=on_step)
    _summary(run)


@cli.command()
@click.argument("model", type=GivenPath(dir_okay=False))
@click.argument("image", type=GivenPath())
@click.option("--layer", required=True, help="Layer index, Conv name or tensor name.")
@click.option("--kernel", "kernels", multiple=True, type=int,
              help="A kernel of the pair; give it twice (--kernel 3 --kernel 7) [default: a pair that both fire "
                   "strongly and alike].")
@click.option("--out", required=True, type=GivenPath(file_okay=False), help="Output folder.")
@click.option("--contrast", type=click.FloatRange(min=0), default=None,
              help="Weight of suppressing the other kernel of the pair in particular, so that x'_a shows what a "
                   "responds to and b does not [default: 12]; 0 explains each kernel as `explain` does.")
@explain_options
@preprocess_options
@debug_option
@_friendly
def compare(model: str, image: str, layer: str, kernels: tuple[int, ...], out: str, contrast: float | None,
            force: bool, device: str, settings: tuple[str, ...], **opts: Any) -> None:
    """Explain two kernels of a layer on one image and measure how well each explanation separates them.

    \b
    Example:  kernelviz compare net.onnx cat.jpg --layer 20 --out cmp/
    """
    from onnx_kernelviz.pipeline.compare import CONTRAST, SEPARATION
    from onnx_kernelviz.pipeline.compare import compare as run_compare

    if kernels and len(kernels) != 2:
        raise UsageError("give exactly two --kernel values, or none to let compare pick a pair")
    cfg = config_from(opts, settings, "compare")
    if contrast is None:  # the precedence of every setting: --contrast > --set contrast=W > compare's default
        contrast = parse_settings(settings).get("contrast", CONTRAST)
    m, pp = _open(model, device, opts)
    progress, on_step = progress_bar("comparing")
    doc = run_compare(m, image, layer, (kernels[0], kernels[1]) if kernels else None, out, preprocess=pp, config=cfg,
                      force=force, contrast=contrast, progress=progress,
                      on_step=on_step)
    a, b = doc.kernels
    o = doc.verdict
    where = "" if doc.focus is None else (f", on the {count(doc.focus.cells, 'cell')} around row "
                                          f"{doc.focus.peak[0]}, col {doc.focus.peak[1]} where both fire")
    if doc.image_notes:
        click.echo(shown(f"image: {'; '.join(doc.image_notes)}"))
    if doc.scope_note:
        click.echo(doc.scope_note)
    why = doc.picked
    because = (f"; picked: both fire strongly (shares {why['share_a']:.2f}, {why['share_b']:.2f} of the strongest "
               "kernel) and alike" if why.get("by") == "score" else "")
    click.echo(f"kernels {a} and {b} (correlation {doc.correlation:.2f}{because})")
    click.echo(f"ours (contrast {doc.contrast:g}{where}): under x'_a kept_a {o.aa:.2f} kept_b {o.ab:.2f}; "
               f"under x'_b kept_a {o.ba:.2f} kept_b {o.bb:.2f}")
    if not o.told_apart:
        click.echo(f"not told apart: the smaller self/other ratio is {o.separation:.2f} (< {SEPARATION}). "
                   f"{doc.advice}")
    click.echo(f"report: {shown(str(Path(out) / 'report.html'))}")


@cli.command()
@click.argument("directory", type=GivenPath(file_okay=False))
@debug_option
@_friendly
def report(directory: str) -> None:
    """Rebuild DIR/report.html from DIR/results.json (and compare.json)."""
    from onnx_kernelviz.report.html import write_report

    click.echo(f"wrote {shown(str(write_report(Path(directory))))}")


@cli.command()
@click.option("--out", default="kernelviz-demo", show_default=True, type=GivenPath(file_okay=False),
              help="Output folder.")
@click.option("--steps", type=int, default=None, help="Most optimizer steps per explanation.")
@device_option
@debug_option
@_friendly
def demo(out: str, steps: int | None, device: str) -> None:
    """Explain the top kernels of a mid layer of the bundled EfficientNet-Lite0 on a bundled photo.

    Writes OUT/report.html. Re-running replaces an earlier demo in OUT, but never a folder with other files.
    """
    from onnx_kernelviz.pipeline.demo import run_demo

    progress, on_step = progress_bar("demo")
    run = run_demo(Path(out), steps=steps, device=device, progress=progress, on_step=on_step)
    _summary(run, fit_option=False)
