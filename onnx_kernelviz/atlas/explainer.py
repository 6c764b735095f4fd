"""The explanation pass's one adapter over the method: kernels explained at their exemplar sites, in batches.

Each site is (layer, kernel, image, row, col): the image where the kernel fires most, at its peak cell. Sites of
one layer are optimized together, across kernels and images, by the same loop as ``explain`` (``optimize`` with
``ExplainConfig``'s parameterization, objective and loop settings; rows are independent) and measured the same
way: metrics from onnxruntime on the original graph, parity of the torch copy on x'. Nothing is written here:
a result carries its metrics and JPEG crops of the receptive field (photo with the mask's contour, x'), so a Ray
worker can return it and the atlas stays small (no full-size pictures or .npy per explanation).

To be switched to the ``focus`` scope (kernel k at its peak, ``--at`` the exemplar cell) and ``core``'s
optimize/measure steps when they land; until then the objective is ``explain``'s own (the whole map of k on the
exemplar image), and the crop shows the exemplar cell's receptive field.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from onnx_kernelviz.atlas.rf import ReceptiveField
from onnx_kernelviz.atlas.tiles import THUMB, crop_pair, jpeg, strip
from onnx_kernelviz.errors import KernelvizError
from onnx_kernelviz.frontend.layers import Layer
from onnx_kernelviz.io.modelinput import from_model_input
from onnx_kernelviz.io.preprocess import Preprocess, valid_range
from onnx_kernelviz.measure.metrics import kernel_metrics, parity
from onnx_kernelviz.method.optimize import optimize
from onnx_kernelviz.method.perturb import PARAMETERIZATIONS
from onnx_kernelviz.method.references import REFERENCES
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.explain import ExplainConfig, cuda_batch_size
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


def explain_sites(model: Model, layer: Layer, sites: list[Site], x: np.ndarray, rf: ReceptiveField,
                  config: ExplainConfig, pp: Preprocess) -> list[SiteExplanation]:
    """Explain ``sites`` (all of ``layer``) whose model inputs are ``x`` ``[n, C, H, W]`` (row i for site i)."""
    keep_freed_memory()  # as explain: glibc's unmapping of freed buffers otherwise doubles a CPU step's time
    size = _batch(model, layer, x, config, len(sites))
    out: list[SiteExplanation] = []
    for s in range(0, len(sites), size):
        out += _bounded(model, layer, sites[s:s + size], x[s:s + size], rf, config, pp)
    return out


def _batch(model: Model, layer: Layer, x: np.ndarray, config: ExplainConfig, n: int) -> int:
    if config.batch_size:
        return config.batch_size
    if model.devices.torch.type != "cuda":
        return min(n, 16)  # as explain: past ~16 rows a CPU step's time grows linearly
    return cuda_batch_size(model, layer.tensor, x[:1], n)[0]


def _bounded(model, layer, sites, x, rf, config, pp) -> list[SiteExplanation]:
    """``_explain``, halving the batch when the GPU runs out of memory (as ``explain`` does)."""
    try:
        return _explain(model, layer, sites, x, rf, config, pp)
    except torch.cuda.OutOfMemoryError:
        if len(sites) == 1:
            raise KernelvizError("out of GPU memory with a single explanation; use --device cpu or a smaller "
                                 "--size") from None
        torch.cuda.empty_cache()
        h = len(sites) // 2
        return (_bounded(model, layer, sites[:h], x[:h], rf, config, pp)
                + _bounded(model, layer, sites[h:], x[h:], rf, config, pp))


def _explain(model: Model, layer: Layer, sites: list[Site], x_np: np.ndarray, rf: ReceptiveField,
             config: ExplainConfig, pp: Preprocess) -> list[SiteExplanation]:
    dev = model.devices.torch
    torch.manual_seed(config.seed)
    tg = model.torch_graph((layer.tensor,))
    forward = lambda inp: tg(inp)[0]  # noqa: E731
    x = torch.from_numpy(x_np).to(dev)
    lo, hi = (torch.from_numpy(v) for v in valid_range(pp, model.channels))
    b = REFERENCES.get(config.reference)(x.cpu(), lo, hi, torch.Generator().manual_seed(config.seed)).to(dev)
    k = torch.tensor([s.kernel for s in sites], device=dev)
    with torch.no_grad():
        ref = torch.relu(forward(x))
    param = PARAMETERIZATIONS.get(config.parameterization)(x, b, resolution=config.resolution)
    t0 = time.perf_counter()
    res = optimize(forward, param, config.objective(), ref, k, config.optimize_config())
    seconds = (time.perf_counter() - t0) / len(sites)
    lo_d, hi_d = lo.to(dev).view(1, -1, 1, 1), hi.to(dev).view(1, -1, 1, 1)
    x_mod = torch.maximum(torch.minimum(res.x_mod, hi_d), lo_d).detach()
    xm = x_mod.cpu().numpy()
    t_x, t_mod = (model.run_ort(a, (layer.tensor,))[0] for a in (x_np, xm))
    with torch.no_grad():
        t_torch = forward(x_mod).float().cpu().numpy()
    masks = None if res.mask is None else res.mask[:, 0].detach().cpu().numpy()
    results = []
    for i, site in enumerate(sites):
        box = rf.box(site.row, site.col)
        if res.failed[i]:
            results.append(SiteExplanation(site, "failed", {}, res.steps[i], seconds, box, reason=res.failed[i]))
            continue
        m = kernel_metrics(t_x[i], t_mod[i], site.kernel).to_dict()
        p_abs, p_rel = parity(t_torch[i], t_mod[i])
        mask = None if masks is None else masks[i]
        photo = from_model_input(x_np[i], pp)
        m.update(mask_area=None if mask is None else float(mask.mean()), parity_max_abs=p_abs, parity_rel=p_rel,
                 parity_ok=bool(p_rel <= config.tolerance))
        # the report's pair: the photo's box with the kept region's contour (none for the pixel method), x's box
        pic = jpeg(strip(list(crop_pair(photo, from_model_input(xm[i], pp), mask, box, THUMB))))
        results.append(SiteExplanation(site, "ok", m, res.steps[i], seconds, box, pic))
    return results
