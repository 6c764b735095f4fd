"""``atlas``: every kernel of a model over a set of images (statistics, duplicates, dead kernels, explanations)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
)
from onnx_kernelviz.cli.options import METHOD_NAMES, STEPS_HELP, config_from, refuse_resume_with_force


def _bars() -> tuple[Callable[[str, int, int], None], dict[str, Any]]:
    """One progress bar per pass, with its rate: images/s for the statistics, kernels/s for the explanations."""
    from tqdm import tqdm

    bars: dict[str, Any] = {}
    units = {"statistics": "img", "explanations": "kernel"}

    def progress(name: str, advance: int, total: int) -> None:
        bar = bars.get(name)
        if bar is None:
            for other in bars.values():
                other.close()
            bars[name] = tqdm(total=total, initial=advance, desc=name, unit=units.get(name, "it"), file=sys.stderr,
                              disable=None, leave=True, smoothing=0.1)
            return
        bar.update(advance)
        if bar.n >= bar.total:
            bar.close()

    return progress, bars


@cli.command()
@click.argument("model", type=GivenPath(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=GivenPath())
@click.option("--out", required=True, type=GivenPath(file_okay=False), help="Output folder.")
@click.option("--layers", default="all", show_default=True, help="all, or layers such as 0,5,10-12 (or names).")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True,
              help="Exemplar sites kept per kernel (the images where it fires most, at their peak).")
@click.option("--explain", "n_explain", type=click.IntRange(min=0), default=1, show_default=True,
              help="Exemplar sites explained per kernel (0: statistics only).")
@click.option("--dup-corr", type=click.FloatRange(0, 1, min_open=True), default=0.98, show_default=True,
              help="Kernels whose activations correlate at least this much are duplicates.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: in this process; ray: on a Ray cluster (pip install 'onnx-kernelviz[ray]').")
@click.option("--address", default=None, help="Ray cluster to join (auto, ray://HOST:10001); default: a local one.")
@click.option("--stats-batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images per onnxruntime run in the statistics pass.")
@click.option("--resume", is_flag=True, help="Continue an interrupted atlas in --out from its checkpoints.")
@click.option("--force", is_flag=True, help="Start over in a non-empty --out (removes an earlier atlas there).")
@click.option("--scope", type=click.Choice(["focus", "map"]), default=None,
              help="focus (default): each kernel explained at its exemplar cell (the local explanation); map: its "
                   "whole map on the exemplar image.")
@click.option("--bound/--no-bound", default=None,
              help="focus scope: also measure the most any input change can show (oracle_gain; about doubles the "
                   "cost) [default: bound].")
@click.option("--method", type=click.Choice(METHOD_NAMES), default=None,
              help="mask (default): a readable mask over the photo; pixel: the paper's direct pixel optimization.")
@click.option("--steps", type=int, default=None, help=STEPS_HELP)
@click.option("--early-stop/--no-early-stop", default=None, help="Stop each explanation when it converges (default).")
@click.option("--batch-size", type=int, default=None, help="Explanations optimized together (default: auto).")
@device_option
@click.option("--seed", type=int, default=None, help="Random seed [default: 0].")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Any other explanation setting.")
@preprocess_options
@debug_option
@_friendly
def atlas(model: str, images: tuple[str, ...], out: str, layers: str, top: int, n_explain: int, dup_corr: float,
          engine: str, address: str | None, stats_batch: int, resume: bool, force: bool, scope: str | None,
          bound: bool | None,
          device: str, settings: tuple[str, ...], **opts: Any) -> None:
    """Audit every kernel of a model over your images: statistics, dead kernels, duplicate pairs, and each
    kernel explained where it fires most. Writes DIR/atlas.html, DIR/kernels.parquet and DIR/atlas.json.

    \b
    Examples:
      kernelviz atlas net.onnx photos/ --out atlas/
      kernelviz atlas net.onnx photos/ --layers 10-20 --explain 0 --out stats/
      kernelviz atlas net.onnx /shared/images/ --engine ray --address auto --out atlas/
    """
    from dataclasses import replace

    from onnx_kernelviz.atlas import AtlasSettings, run_atlas

    refuse_resume_with_force(resume, force)
    cfg = config_from(opts, settings, "atlas")  # --scope and --bound, where given, win over --set scope / oracle
    cfg = replace(cfg, scope=scope or cfg.scope, oracle=cfg.oracle if bound is None else bound).validate()
    m, pp = _open(model, device, opts)
    progress, bars = _bars()
    try:
        result = run_atlas(m, images, out, preprocess=pp, config=cfg, engine=engine, address=address,
                           device=device, settings=AtlasSettings(layers=layers, top=top, explain=n_explain,
                                                                 dup_corr=dup_corr, batch_size=stats_batch,
                                                                 scope=cfg.scope),
                           resume=resume, force=force, progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    h = result.header
    click.echo(f"{count(sum(la['channels'] for la in h['layers']), 'kernel')} in {count(len(h['layers']), 'layer')} "
               f"over {count(h['images'], 'image')} ({h['images_skipped']} skipped): {len(h['dead'])} dead, "
               f"{count(len(h['duplicates']), 'duplicate pair')}")
    click.echo(f"atlas: {Path(out) / 'atlas.html'}")
