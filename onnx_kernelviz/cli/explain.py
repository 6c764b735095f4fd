"""``explain``, ``compare``, ``report`` and ``demo``: explanations and their report."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from onnx_kernelviz.cli.app import _friendly, _open, cli, debug_option, preprocess_options
from onnx_kernelviz.errors import UsageError

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

    from onnx_kernelviz.pipeline.explain import ExplainConfig

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
    from onnx_kernelviz.baselines import BASELINES

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

    from onnx_kernelviz.io.modelinput import fit_summary

    fitted = fit_summary(run.fits)
    if fitted:
        click.echo(fitted)
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
    from onnx_kernelviz.pipeline.explain import explain as run_explain

    m, pp = _open(model, device, kw)
    cfg = _config(method, steps, early_stop, batch_size, seed, reference, baselines, tolerance, settings, top_images)
    run = run_explain(m, images, layer, kernel, out, preprocess=pp, config=cfg, force=force, resume=resume,
                      progress=_progress_bar("explaining"))
    _summary(run)


@cli.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path())
@click.option("--layer", required=True, help="Layer index, Conv name or tensor name.")
@click.option("--kernel", "kernels", multiple=True, type=int, help="Two kernels (default: a pair that both fire strongly and alike).")
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
    from onnx_kernelviz.pipeline.compare import CONTRAST, SEPARATION
    from onnx_kernelviz.pipeline.compare import compare as run_compare

    if kernels and len(kernels) != 2:
        raise UsageError("give exactly two --kernel values, or none to let compare pick a pair")
    m, pp = _open(model, device, kw)
    cfg = _config(method, steps, early_stop, batch_size, seed, reference, baselines or "all", tolerance, settings)
    doc = run_compare(m, image, layer, tuple(kernels) if kernels else None, out, preprocess=pp, config=cfg,
                      force=force, contrast=CONTRAST if contrast is None else contrast,
                      progress=_progress_bar("comparing"))
    a, b = doc["kernels"]
    if doc.get("image_notes"):
        click.echo(f"image: {'; '.join(doc['image_notes'])}")
    why = doc["picked"]
    because = (f"; picked: both fire strongly (shares {why['share_a']:.2f}, {why['share_b']:.2f} of the strongest "
               "kernel) and alike" if why.get("by") == "score" else "")
    click.echo(f"kernels {a} and {b} (correlation {doc['correlation']:.2f}{because})")
    o = doc["ours"]
    click.echo(f"ours (contrast {doc['contrast']:g}): under x'_a kept_a {o['a']['kept_a']:.2f} "
               f"kept_b {o['a']['kept_b']:.2f}; "
               f"under x'_b kept_a {o['b']['kept_a']:.2f} kept_b {o['b']['kept_b']:.2f}")
    if not doc["told_apart"]:
        click.echo(f"not told apart: the smaller self/other ratio is {doc['separation']:.2f} (< {SEPARATION}). "
                   f"{doc['advice']}")
    click.echo(f"report: {Path(out) / 'report.html'}")


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False))
@debug_option
@_friendly
def report(directory: str) -> None:
    """Rebuild DIR/report.html from DIR/results.json (and compare.json)."""
    from onnx_kernelviz.report.html import write_report

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
    from onnx_kernelviz.pipeline.demo import run_demo

    run = run_demo(Path(out), steps=steps, device=device, progress=_progress_bar("demo"))
    _summary(run)
