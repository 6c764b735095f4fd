"""``diff``: two versions of a model compared kernel by kernel."""

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
    _with_convs,
    cli,
    debug_option,
    device_option_for,
    preprocess_options,
)
from onnx_kernelviz.errors import KernelvizError


@cli.command()
@click.argument("model_a", type=GivenPath(dir_okay=False))
@click.argument("model_b", type=GivenPath(dir_okay=False))
@click.argument("images", nargs=-1, required=True, type=GivenPath())
@click.option("--out", required=True, type=GivenPath(file_okay=False), help="Output folder.")
@click.option("--layers", default="all", show_default=True, help="all, or indices and ranges: 3,7,10-12.")
@click.option("--force", is_flag=True, help="Write into a non-empty --out folder.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Images per onnxruntime run.")
@click.option("--top", type=int, default=16, show_default=True, help="Exemplar sites per kernel and model.")
@click.option("--explain", "explain_n", type=int, default=6, show_default=True,
              help="How many of the most changed kernels get A's explanation measured on B (0: none).")
@click.option("--steps", type=int, default=200, show_default=True, help="Most optimizer steps per explanation.")
@device_option_for("the models and the explanations")
@preprocess_options
@debug_option
@_friendly
def diff(model_a: str, model_b: str, images: tuple[str, ...], out: str, layers: str, force: bool, batch_size: int,
         top: int, explain_n: int, steps: int, device: str, **kw: Any) -> None:
    """Compare MODEL_A and MODEL_B (e.g. fp32 and its int8 build) kernel by kernel over images.

    Per kernel: the correlation of its activation in A and B, the overlap of their top exemplar sites, and a
    drift score; diff.html shows the kernels that changed most, and whether A's explanation of each still
    isolates it in B. Preprocessing comes from the options, else MODEL_A's sidecar file.

    \b
    Example:  kernelviz diff net.onnx net.int8.onnx photos/ --out diff/
    """
    from onnx_kernelviz.diff import DiffConfig, diff_models
    from onnx_kernelviz.model import Model

    if not Path(model_b).exists():
        raise KernelvizError(f"model file {model_b} does not exist; check the path")
    input_name = kw.get("input_name")
    a, pp = _open(model_a, device, kw)
    b = _with_convs(Model(model_b, device=device, input_name=input_name, layout=pp.layout))
    config = DiffConfig(layers=layers, batch_size=batch_size, top=top, explain=explain_n, steps=steps)
    run = diff_models(a, b, images, out, preprocess=pp, config=config, force=force, progress=_bar())
    top_changed = run.doc["most_changed"][:5]
    click.echo(f"{run.doc['images']} images, {len(run.doc['layers'])} layers; most changed (layer, kernel, drift): "
               + ", ".join(f"({i}, {k}, {d:.2f})" for i, k, d in top_changed))
    click.echo(f"report: {run.out_dir / 'diff.html'}")


def _bar() -> Callable[[int, int], None]:
    from tqdm import tqdm

    bars: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not bars:
            bars.append(tqdm(total=total, desc="diff", unit="img", file=sys.stderr, disable=None, leave=True))
        bars[0].update(done - bars[0].n)
        if done >= total:
            bars[0].close()

    return progress
