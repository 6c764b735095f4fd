"""The explanation pass's one adapter over the method: kernels explained at their exemplar sites, in batches.

Each site is (layer, kernel, image, row, col): an image where the kernel fires most, at its peak cell. Sites of one
layer are explained together, across kernels and images, by ``explain``'s own steps: ``prepare`` (inputs,
references, onnxruntime activations), then the scope's optimize and measure steps (metrics from onnxruntime on the
original graph, parity of the torch copy on x'). Nothing is written here: a result carries its metrics and a JPEG
strip of the receptive field (the photo with the kept region outlined, and x'), so a Ray worker can return it and
the atlas stays small (no full-size pictures or .npy per explanation).

Two scopes (``config.scope``), the same steps as ``explain``. ``focus`` (the default): kernel k explained at the
exemplar cell (as ``--at`` that cell): the focus cells F around it, a box mask over F's rf_box, the bound on what any
input change could show (``oracle_gain``, with ``config.oracle``), the contract's ``focus`` block; the crop is F's
rf_box. ``map``: the whole-map objective on the exemplar image; the crop is the exemplar cell's receptive field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnx_kernelviz.atlas.rf import LayerField
from onnx_kernelviz.atlas.stream import model_input
from onnx_kernelviz.atlas.tiles import THUMB, crop_pair, jpeg, strip
from onnx_kernelviz.errors import ImageError
from onnx_kernelviz.frontend.layers import Layer
from onnx_kernelviz.io.modelinput import from_model_input
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.batch import locate_items, measure_batch, optimize_batch
from onnx_kernelviz.pipeline.explain import cuda_batch_size
from onnx_kernelviz.pipeline.focus import focus_block
from onnx_kernelviz.pipeline.prepare import Prepared, prepare
from onnx_kernelviz.results import FocusMetrics
from onnx_kernelviz.runtime import halve_on_oom, keep_freed_memory


@dataclass(frozen=True)
class Site:
    """Kernel ``kernel`` of layer ``layer`` at cell (row, col) of image ``image`` (its index in the atlas)."""

    layer: int
    kernel: int
    image: int
    row: int
    col: int
    value: float


@dataclass
class SiteExplanation:
    """One explanation: status (``ok``/``failed``), the contract's metrics, and crops of the receptive field
    ``rf_box`` ``[top, left, bottom, right)``: the photo with the kept region's contour and x' side by side, as
    JPEG bytes (``picture``; None when failed)."""

    site: Site
    status: str
    metrics: dict
    steps: int
    seconds: float
    rf_box: tuple[int, int, int, int]
    picture: bytes | None = None
    reason: str | None = None
    #: the contract's ``focus`` block (peak, cells, rf_box, metrics on F, oracle_gain, ...); None in map scope
    focus: FocusMetrics | None = None


def explain_sites(model: Model, layer: Layer, sites: list[Site], images: dict[int, str], rf: LayerField,
                  config: ExplainConfig, pp: Preprocess) -> list[SiteExplanation]:
    """Explain ``sites`` (all of ``layer``) in ``config.scope``; ``images`` maps each site's image index to its
    path."""
    keep_freed_memory()  # as explain: glibc's unmapping of freed buffers otherwise doubles a CPU step's time
    size = model.input_size(pp.size)
    readable, lost = [], []
    for i in sorted({s.image for s in sites}):
        try:
            model_input(images[i], pp, size, model.channels)
            readable.append(i)
        except ImageError:  # read in the statistics pass; gone or changed since
            lost.append(i)
    out = [SiteExplanation(s, "failed", {}, 0, 0.0, rf.box(s.row, s.col), reason="the image cannot be read any more")
           for s in sites if s.image in lost]
    todo = [s for s in sites if s.image not in lost]
    if not todo:
        return out
    prep = prepare(model, [Path(images[i]) for i in readable], layer, pp, config)
    row = {img: n for n, img in enumerate(readable)}
    rows = _batch(model, prep, config, len(todo))
    for start in range(0, len(todo), rows):
        chunk = todo[start:start + rows]
        out += _bounded(model, prep, chunk, [(row[s.image], s.kernel) for s in chunk], rf, config, pp)
    return out


def _batch(model: Model, prep: Prepared, config: ExplainConfig, n: int) -> int:
    """As ``explain``: ``config.batch_size``, else 16 rows on CPU, and on CUDA as many as fit half the free memory."""
    if config.batch_size:
        return config.batch_size
    if model.devices.torch.type != "cuda":
        return min(n, 16)
    return cuda_batch_size(model, prep.layer.tensor, prep.x[:1], n)[0]


def _bounded(model: Model, prep: Prepared, sites: list[Site], items: list[tuple[int, int]], rf: LayerField,
             config: ExplainConfig, pp: Preprocess) -> list[SiteExplanation]:
    """One batch, halved when the GPU runs out of memory (as ``explain`` does)."""
    return halve_on_oom(lambda lo, hi: _explain_batch(model, prep, sites[lo:hi], items[lo:hi], rf, config, pp),
                        len(sites))


def _picture(prep: Prepared, i: int, x_mod: np.ndarray, mask: np.ndarray | None, box: tuple[int, int, int, int],
             pp: Preprocess) -> bytes:
    """The report's pair: the photo's box with the kept region's contour (none for the pixel method), x''s box."""
    return jpeg(strip(list(crop_pair(prep.photos[i], from_model_input(x_mod, pp), mask, box, THUMB))))


def _explain_batch(model: Model, prep: Prepared, sites: list[Site], items: list[tuple[int, int]], rf: LayerField,
                   config: ExplainConfig, pp: Preprocess) -> list[SiteExplanation]:
    """``explain``'s steps (``optimize_batch``, ``measure_batch``: metrics from onnxruntime on the original graph,
    parity of the torch copy). Focus scope: F located at each site's cell, the focus block from the numbers on F
    (and the bound's), the crop F's rf_box; map scope: the crop is the cell's receptive field."""
    where = (locate_items(model, prep, items, [(s.row, s.col) for s in sites]) if config.scope == "focus"
             else None)
    opt = optimize_batch(model, prep, items, config, pp, sites=where)
    measured = measure_batch(model, prep, opt, config)
    results = []
    for n, (site, (i, k)) in enumerate(zip(sites, items)):
        box = rf.box(site.row, site.col) if where is None else where[n].rf_box
        metrics, par = measured.metrics[n], measured.parity[n]
        on_f = None if measured.focus is None else measured.focus[n]
        if opt.failed[n] or metrics is None or par is None or (where is not None and on_f is None):
            results.append(SiteExplanation(site, "failed", {}, opt.steps[n], opt.seconds[n], box,
                                           reason=opt.failed[n] or "not measured"))
            continue
        block = None
        if where is not None and on_f is not None:
            block = focus_block(where[n], on_f, None if measured.oracle is None else measured.oracle[n],
                                prep.t_ort[i], k, None if measured.reference is None else measured.reference[n],
                                None if opt.small_box is None else opt.small_box[n])
        mask = None if opt.masks is None else opt.masks[n]
        results.append(SiteExplanation(site, "ok", {**metrics.to_json(), **par.to_json()}, opt.steps[n],
                                       opt.seconds[n], box, _picture(prep, i, opt.x_mod[n], mask, box, pp),
                                       focus=block))
    return results
