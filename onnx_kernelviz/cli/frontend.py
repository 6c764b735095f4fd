"""``inspect``, ``expose`` and ``verify``: the model itself, before any explanation."""

from __future__ import annotations

import json
import os
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
    shown,
)
from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.frontend.layers import Layer


@cli.command()
@click.argument("model", type=GivenPath(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the contract's JSON instead of a table.")
@debug_option
@_friendly
def inspect(model: str, as_json: bool) -> None:
    """List the conv layers of MODEL and their activation tensors.

    \b
    Example:  kernelviz inspect models/efficientnet_lite0.onnx
    """
    from onnx_kernelviz.model import Model

    m = _with_convs(Model(model, device="cpu"))
    info = m.loaded.input
    dims = [d if d is not None else "?" for d in info.shape]
    doc = {"model": str(m.path), "opset": m.loaded.opset, "producer": m.loaded.producer,
           "inputs": [{"name": info.name, "shape": dims, "layout": info.layout}],
           "layers": [la.to_dict() for la in m.layers]}
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    # names come from the file: shown() keeps them on their line and away from the terminal's escape sequences
    shape = shown("x".join(str(d) for d in dims))
    click.echo(f"{shown(str(m.path))}  opset {m.loaded.opset}  producer {shown(m.loaded.producer or '?')}")
    click.echo(f"input {shown(info.name)} [{shape}] {info.layout}  {len(m.layers)} conv layers\n")
    quantized = any(la.quant is not None for la in m.layers)
    click.echo(f"{'idx':>4}  {'channels':>8}  {'group':>5}  {'shape':<16}  {'chain':<22}  "
               + (f"{'op':<11}  {'stored as':<17}  " if quantized else "") + "tensor")
    for la in m.layers:
        sh = shown("?" if la.shape is None else "x".join(_dim(d) for d in la.shape[1:]))
        chain = shown("+".join(_SHORT.get(c, c) for c in la.chain) or "-")
        op = f"{la.op} QDQ" if la.quant is not None and la.quant.kind == "qdq" else la.op
        quant = f"{op:<11}  {_stored(la):<17}  " if quantized else ""
        click.echo(f"{la.index:>4}  {la.channels:>8}  {la.group:>5}  {sh:<16}  {chain:<22}  {quant}{shown(la.tensor)}")
    if quantized:
        click.echo("\nquantized model: each layer's tensor is read as real values ((q - zero point) x scale); "
                   "verify judges parity in quantization steps")


_SHORT = {"QuantizeLinear": "Q", "DequantizeLinear": "DQ"}


def _dim(d: int | str | None) -> str:
    """A layer's dimension for the table: ``?`` where it depends on a free input side and onnx's shape inference
    could only name it ``unk__N`` (its own placeholder, meaningless to a reader); a named one (``H``) as it is."""
    return "?" if d is None or (isinstance(d, str) and d.startswith("unk__")) else str(d)


def _stored(la: Layer) -> str:
    """How a quantized graph stores a layer's tensor: e.g. ``uint8 x0.0235 z0`` or ``float (dynamic)``."""
    q = la.quant
    if q is None:
        return "float"
    if not q.static:
        return "float (dynamic)"
    return f"{q.dtype} x{q.scale:.3g} z{q.zero_point}"


@cli.command()
@click.argument("model", type=GivenPath(dir_okay=False))
@click.option("--layer", "layers", multiple=True, required=True, help="Layer index, Conv name or tensor name.")
@click.option("--output", "-o", required=True, type=GivenPath(dir_okay=False), help="Where to write the model.")
@click.option("--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@debug_option
@_friendly
def expose(model: str, layers: tuple[str, ...], output: str, force: bool) -> None:
    """Write MODEL with the layers' activation tensors added as graph outputs (nothing else changes).

    \b
    Example:  kernelviz expose net.onnx --layer 3 --layer 7 --output net_exposed.onnx
    """
    from onnx_kernelviz.frontend.expose import save_exposed
    from onnx_kernelviz.model import Model

    if output.endswith(("/", os.sep)):  # Path() drops the slash: a file named like the folder would be written
        raise UsageError(f"--output {output} names a folder; give the file to write, e.g. {output}exposed.onnx")
    m = _with_convs(Model(model, device="cpu"))
    out = Path(output)
    if out.exists() and not force:
        raise UsageError(f"{out} exists; use --force to overwrite it or choose another --output")
    if out.resolve() == Path(model).resolve():
        raise UsageError("--output is the input model; write the exposed model to another file")
    tensors = list(dict.fromkeys(m.layer(spec).tensor for spec in layers))  # 0, conv1 and r1 name one tensor
    save_exposed(m.loaded, tensors, out)
    present = set(m.graph.output_names)
    added = [t for t in tensors if t not in present]
    already = [t for t in tensors if t in present]
    note = f" ({', '.join(already)} {'is already an output' if len(already) == 1 else 'are already outputs'})"
    click.echo(shown(f"wrote {out} with extra outputs: {', '.join(added) or 'none'}" + (note if already else "")))


@cli.command()
@click.argument("model", type=GivenPath(dir_okay=False))
@click.argument("images", nargs=-1, type=GivenPath())
@click.option("--layer", "layers", multiple=True, help="Layers to check (default: all).")
@click.option("--tolerance", type=float, default=None,
              help="Largest allowed difference, in the unit of the model's rule: parity_rel for fp32 (default 1e-3) "
                   "and fp16 models (1e-2), quantization steps for int8 models (32).")
@device_option_for("the torch copy and onnxruntime")
@click.option("--json", "as_json", is_flag=True, help="Print the contract's JSON.")
@preprocess_options
@debug_option
@_friendly
def verify(model: str, images: tuple[str, ...], layers: tuple[str, ...], tolerance: float | None, device: str,
           as_json: bool, **kw: Any) -> None:
    """Check that the torch copy matches onnxruntime on every layer (batch 1 and 2).

    Without IMAGES a deterministic synthetic input is used. Exit status 1 names the first layer that disagrees.

    \b
    Example:  kernelviz verify net.onnx photo.jpg --json
    """
    import numpy as np

    from onnx_kernelviz.io.decode import median_aspect, read_image
    from onnx_kernelviz.io.images import list_images
    from onnx_kernelviz.io.modelinput import mean_colour, to_model_input
    from onnx_kernelviz.measure.verify import require_parity, verify_model

    if tolerance is not None:  # explain's rule and words: -1 or nan made every layer a "MISMATCH" (exit 1)
        from onnx_kernelviz.method.config import ExplainConfig

        ExplainConfig(tolerance=tolerance).validate()
    m, pp = _open(model, device, kw)
    chosen = [m.layer(s) for s in layers] if layers else None
    if images:
        paths = list_images(images)
        # a free side next to a fixed one (text recognizers) follows the images' aspect ratio
        size = m.input_size(pp.size, median_aspect(paths) if m.aspect_matters(pp.size) else None)
        x = np.stack([to_model_input(read_image(p, size=size, fit=pp.fit, fill=mean_colour(pp)), pp, size,
                                     m.channels) for p in paths])
    else:  # smooth synthetic pictures through the model's preprocessing (not noise)
        x = m.synthetic_input(batch=2, size=pp.size, preprocess=pp)
    report = verify_model(m, x, chosen, tolerance)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        steps = report.rule.precision == "int8"
        click.echo(f"{'idx':>4}  {'parity_max_abs':>14}  {'parity_rel':>10}  {'steps' if steps else '':>6}  ok  tensor")
        for la in report.layers:
            st = f"{la.parity_steps:6.1f}" if la.parity_steps is not None else " " * 6
            click.echo(f"{la.index:>4}  {la.parity_max_abs:>14.3e}  {la.parity_rel:>10.3e}  {st}  "
                       f"{'ok' if la.ok else 'NO'}  {shown(la.tensor)}")
        click.echo(f"\n{'all layers agree' if report.ok else 'MISMATCH'} (tolerance {report.rule.describe()})")
    require_parity(report)
