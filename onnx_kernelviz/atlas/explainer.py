"""The explanation pass's one adapter over the method: kernels explained at their exemplar sites, in batches.

Each site is (layer, kernel, image, row, col): an image where the kernel fires most, at its peak cell. Sites of one
layer are explained together, across kernels and images, by ``explain``'s own steps: ``prepare`` (inputs,
references, onnxruntime activations), ``optimize_batch`` and ``measure_batch`` (metrics from onnxruntime on the
original graph, parity of the torch copy on x'). Nothing is written here: a result carries its metrics and a JPEG
strip of the receptive field (the photo with the kept region outlined, and x'), so a Ray worker can return it and
the atlas stays small (no full-size pictures or .npy per explanation).

To be switched to the ``focus`` scope (kernel k at its peak, ``--at`` the exemplar cell) when it lands; until then
the objective is ``explain``'s own (the whole map of k on the exemplar image), and the crop shows the exemplar
cell's receptive field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from onnx_kernelviz.atlas.rf import ReceptiveField
from onnx_kernelviz.atlas.stream import model_input
from onnx_kernelviz.atlas.tiles import THUMB, crop_pair, jpeg, strip
from onnx_kernelviz.errors import ImageError, KernelvizError
from onnx_kernelviz.frontend.layers import Layer
from onnx_kernelviz.io.modelinput import from_model_input
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.batch import measure_batch, optimize_batch
from onnx_kernelviz.pipeline.explain import cuda_batch_size
from onnx_kernelviz.pipeline.prepare import Prepared, prepare
from onnx_kernelviz.runtime import keep_freed_memory


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


def explain_sites(model: Model, layer: Layer, sites: list[Site], images: dict[int, str], rf: ReceptiveField,
                  config: ExplainConfig, pp: Preprocess) -> list[SiteExplanation]:
    """Explain ``sites`` (all of ``layer``); ``images`` maps each site's image index to its path."""
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


def _bounded(model: Model, prep: Prepared, sites: list[Site], items: list[tuple[int, int]], rf: ReceptiveField,
             config: ExplainConfig, pp: Preprocess) -> list[SiteExplanation]:
    """One batch, halved when the GPU runs out of memory (as ``explain`` does)."""
    try:
        opt = optimize_batch(model, prep, items, config, pp)
        measured = measure_batch(model, prep, opt, config)
    except torch.cuda.OutOfMemoryError:
        if len(sites) == 1:
            raise KernelvizError("out of GPU memory with a single explanation; use --device cpu or a smaller "
                                 "--size") from None
        torch.cuda.empty_cache()
        h = len(sites) // 2
        return (_bounded(model, prep, sites[:h], items[:h], rf, config, pp)
                + _bounded(model, prep, sites[h:], items[h:], rf, config, pp))
    results = []
    for n, (site, (i, _)) in enumerate(zip(sites, items)):
        box = rf.box(site.row, site.col)
        metrics, par = measured.metrics[n], measured.parity[n]
        if opt.failed[n] or metrics is None or par is None:
            results.append(SiteExplanation(site, "failed", {}, opt.steps[n], opt.seconds[n], box,
                                           reason=opt.failed[n] or "not measured"))
            continue
        mask = None if opt.masks is None else opt.masks[n]
        # the report's pair: the photo's box with the kept region's contour (none for the pixel method), x''s box
        pair = crop_pair(prep.photos[i], from_model_input(opt.x_mod[n], pp), mask, box, THUMB)
        results.append(SiteExplanation(site, "ok", {**metrics.to_json(), **par.to_json()}, opt.steps[n],
                                       opt.seconds[n], box, jpeg(strip(list(pair)))))
    return results
