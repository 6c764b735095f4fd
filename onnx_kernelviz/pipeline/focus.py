"""The local explanation's steps (``--scope focus``), callable one by one (explain, compare and atlas use them):

    locate  -> the peak, the focus cells F and their rf_box, per (image, kernel)
    explain -> a batch of box masks optimized together (keep k on F, suppress the others on F, small compact mask)
    bound   -> the same batch with free pixels and strong suppression: the best gain any input reaches
    measure -> the contract's ``focus`` block from onnxruntime on the original model

Each step takes and returns arrays, so a caller can batch any (image, kernel) pairs it likes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from onnx_kernelviz.frontend.receptive import receptive_field, tensor_shapes
from onnx_kernelviz.measure.focus import FocusNumbers, focus_metrics
from onnx_kernelviz.method.focus import (AreaProfile, BoxArea, BoxMask, FocusCells, FocusKeep, FocusSuppress,
                                        FreePixels, GridTV, focus_cells)
from onnx_kernelviz.method.objectives import Objective
from onnx_kernelviz.method.optimize import OptimizeConfig, optimize
from onnx_kernelviz.model import Model


@dataclass(frozen=True)
class FocusConfig:
    """Settings of a local explanation (defaults measured in docs/TRADEOFF.md).

    Loss = ``keep``·max(0, 1 − ``keep_margin`` − kept_F) + ``suppress``·others_kept_F + ``area``·A(m)
    + ``tv``·TV(m), A = the mask's mean over the box (``area_kind="mean"``, hinged at ``area_target`` when > 0)
    or TorchRay's sorted profile at ``area_target`` (``"profile"``). The mask: a ``grid``×``grid`` logit grid over
    the rf_box, Gaussian-smoothed by ``smooth`` cells; ``bands`` > 1 gives one mask per Laplacian band.
    The bound (``oracle``): free pixels, ``oracle_steps`` Adam steps at ``oracle_lr`` (on the pixels' logits),
    loss ``oracle_keep``·(kept hinge) + ``oracle_suppress``·others_kept_F.
    """

    grid: int = 24
    smooth: float = 0.7
    init: float = 0.0
    bands: int = 1
    keep: float = 20.0
    keep_margin: float = 0.05
    suppress: float = 6.0
    area: float = 1.0
    area_kind: str = "mean"
    area_target: float = 0.0
    tv: float = 0.3
    steps: int = 100
    lr: float = 0.1
    min_steps: int = 30
    patience: int = 15
    tol: float = 2e-3
    oracle: bool = True
    oracle_steps: int = 80
    oracle_lr: float = 0.1
    oracle_keep: float = 20.0
    oracle_suppress: float = 10.0
    #: run the network on a window around the rf_boxes when that computes F exactly (much cheaper early on)
    crop: bool = True

    def objective(self) -> Objective:
        area = AreaProfile(self.area_target) if self.area_kind == "profile" else BoxArea(self.area_target)
        return Objective([(self.keep, FocusKeep(self.keep_margin)), (self.suppress, FocusSuppress()),
                          (self.area, area), (self.tv, GridTV())])

    def oracle_objective(self) -> Objective:
        return Objective([(self.oracle_keep, FocusKeep(self.keep_margin)), (self.oracle_suppress, FocusSuppress())])


@dataclass(frozen=True)
class Site:
    """Where one explanation looks: F on the activation map and its rf_box ``(top, left, bottom, right)``."""

    focus: FocusCells
    rf_box: tuple[int, int, int, int]


@lru_cache(maxsize=16)
def _shapes(model: Model, size: tuple[int, int]) -> dict:
    info = model.loaded.input
    shape = (1, model.channels, *size) if info.layout == "nchw" else (1, *size, model.channels)
    return tensor_shapes(model.loaded.proto, info.name, shape)


def locate(model: Model, tensor: str, t: np.ndarray, k: int, size: tuple[int, int],
           at: tuple[int, int] | None = None) -> Site:
    """F for kernel ``k`` on activations ``t`` ``[C, h, w]`` (onnxruntime, original input) and its rf_box for an
    input of ``size`` (H, W)."""
    cells = focus_cells(t[k], at)
    rf = receptive_field(model.graph, _shapes(model, tuple(size)), tensor, cells.bbox, model.loaded.input.name,
                         model.loaded.input.layout, tuple(size))
    return Site(cells, rf.box)


@dataclass
class Batch:
    """A batch's optimized inputs, clipped to the valid range: ``x_mod`` ``[B, C, H, W]``, ``mask`` ``[B, H, W]``
    (None for the bound), ``steps`` per row, ``seconds`` per row (its share of the batch), ``failed`` reasons."""

    x_mod: np.ndarray
    mask: np.ndarray | None
    steps: list[int]
    seconds: float
    failed: list[str | None]


def plan_crops(boxes: list[tuple[int, int, int, int]], size: tuple[int, int], grid: tuple[int, int],
               most: float = 0.8) -> tuple[list[tuple[int, int]], tuple[int, int]] | None:
    """One window size (h, w) and a top-left corner per row such that each window holds its rf_box and starts on
    the activation grid (a multiple of the stride), so the network computes F's cells on the window exactly as
    on the whole image. None when the stride is not whole or a window would be most of the image anyway."""
    (H, W), (h, w) = size, grid
    if H % h or W % w:
        return None
    sy, sx = H // h, W // w
    need_h = max(b - (t // sy) * sy for t, _, b, _ in boxes)
    need_w = max(r - (l // sx) * sx for _, l, _, r in boxes)
    ch, cw = min(-(-need_h // sy) * sy, H), min(-(-need_w // sx) * sx, W)
    if ch * cw > most * H * W:
        return None
    corners = [(min((t // sy) * sy, H - ch), min((l // sx) * sx, W - cw)) for t, l, _, _ in boxes]
    return corners, (ch, cw)


def _run(model: Model, tensor: str, param, objective: Objective, x: torch.Tensor, k: np.ndarray,
         sites: list[Site], cfg: OptimizeConfig, lo: torch.Tensor, hi: torch.Tensor,
         crops: tuple[list[tuple[int, int]], tuple[int, int]] | None = None, window: bool = False) -> Batch:
    dev = model.devices.torch
    tg = model.torch_graph((tensor,))
    forward = lambda inp: tg(inp)[0]  # noqa: E731
    focus = torch.from_numpy(np.stack([s.focus.cells for s in sites])).to(dev, x.dtype)
    with torch.no_grad():
        if crops is None:
            ref = torch.relu(forward(x))
        else:
            (corners, (ch, cw)) = crops
            sy, sx = x.shape[-2] // focus.shape[-2], x.shape[-1] // focus.shape[-1]
            xc = torch.stack([x[i, :, y:y + ch, x0:x0 + cw] for i, (y, x0) in enumerate(corners)])
            ref = torch.relu(forward(xc))
            focus = torch.stack([focus[i, y // sy:y // sy + ch // sy, x0 // sx:x0 // sx + cw // sx]
                                 for i, (y, x0) in enumerate(corners)])
    kt = torch.as_tensor(k, device=dev)
    t0 = time.perf_counter()
    res = optimize(forward, param, objective, ref, kt, cfg, focus=focus)
    seconds = (time.perf_counter() - t0) / len(k)
    x_mod, mask = res.x_mod, res.mask
    if crops is not None and not window:  # a window's x' (window=True) stays a window: the caller pastes it
        x_mod, mask = param.render(res.grid)
    x_mod = torch.maximum(torch.minimum(x_mod, hi.view(1, -1, 1, 1)), lo.view(1, -1, 1, 1)).detach()
    mask = None if mask is None else mask[:, 0].detach().cpu().numpy()
    return Batch(x_mod.cpu().numpy(), mask, res.steps, seconds, res.failed)


def _exact_crops(model: Model, tensor: str, x: torch.Tensor, sites: list[Site], crops, tol: float = 1e-4) -> bool:
    """True when the network on the windows gives F's cells as on the whole inputs (TF-style SAME pads or ops
    that see the image size would not)."""
    tg = model.torch_graph((tensor,))
    corners, (ch, cw) = crops
    with torch.no_grad():
        full = tg(x)[0]
        part = tg(torch.stack([x[i, :, y:y + ch, x0:x0 + cw] for i, (y, x0) in enumerate(corners)]))[0]
    sy, sx = x.shape[-2] // full.shape[-2], x.shape[-1] // full.shape[-1]
    worst = 0.0
    for i, ((y, x0), s) in enumerate(zip(corners, sites)):
        rows, cols = np.nonzero(s.focus.cells)
        a = full[i][:, rows, cols]
        b = part[i][:, rows - y // sy, cols - x0 // sx]
        worst = max(worst, float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)))
    return worst <= tol


def explain_batch(model: Model, tensor: str, x: np.ndarray, b: np.ndarray, k: np.ndarray, sites: list[Site],
                  cfg: FocusConfig, lo: np.ndarray, hi: np.ndarray, seed: int = 0) -> Batch:
    """Box masks for rows (x ``[B, C, H, W]``, references ``b``, kernels ``k`` ``[B]``, one site each)."""
    dev = model.devices.torch
    torch.manual_seed(seed)
    xt, bt = torch.from_numpy(x).to(dev), torch.from_numpy(b).to(dev)
    boxes = torch.tensor([s.rf_box for s in sites])
    crops = plan_crops([s.rf_box for s in sites], tuple(x.shape[-2:]), sites[0].focus.cells.shape) \
        if cfg.crop else None
    if crops is not None and not _exact_crops(model, tensor, xt, sites, crops):
        crops = None
    param = BoxMask(xt, bt, boxes=boxes, grid=cfg.grid, smooth=cfg.smooth, init=cfg.init, bands=cfg.bands,
                    crops=None if crops is None else crops[0], crop_size=None if crops is None else crops[1])
    oc = OptimizeConfig(steps=cfg.steps, lr=cfg.lr, min_steps=cfg.min_steps, patience=cfg.patience, tol=cfg.tol)
    return _run(model, tensor, param, cfg.objective(), xt, k, sites, oc, torch.from_numpy(lo).to(dev),
                torch.from_numpy(hi).to(dev), crops)


def bound_batch(model: Model, tensor: str, x: np.ndarray, k: np.ndarray, sites: list[Site], cfg: FocusConfig,
                lo: np.ndarray, hi: np.ndarray) -> Batch:
    """Free-pixel x' per row, pushed to suppress every other kernel on F while k keeps its activation there.
    Only pixels inside the rf_box can change F; with ``cfg.crop`` only a window around it is optimized."""
    dev = model.devices.torch
    xt = torch.from_numpy(x).to(dev)
    lot, hit = torch.from_numpy(lo).to(dev), torch.from_numpy(hi).to(dev)
    crops = plan_crops([s.rf_box for s in sites], tuple(x.shape[-2:]), sites[0].focus.cells.shape) \
        if cfg.crop else None
    if crops is not None and not _exact_crops(model, tensor, xt, sites, crops):
        crops = None
    oc = OptimizeConfig(steps=cfg.oracle_steps, lr=cfg.oracle_lr, early_stop=True, min_steps=cfg.min_steps,
                        patience=cfg.patience, tol=cfg.tol)
    if crops is None:
        return _run(model, tensor, FreePixels(xt, lo=lot, hi=hit), cfg.oracle_objective(), xt, k, sites, oc, lot,
                    hit)
    corners, (ch, cw) = crops
    xc = torch.stack([xt[i, :, y:y + ch, x0:x0 + cw] for i, (y, x0) in enumerate(corners)])
    param = FreePixels(xc, lo=lot, hi=hit)
    out = _run(model, tensor, param, cfg.oracle_objective(), xt, k, sites, oc, lot, hit, crops, window=True)
    full = x.copy()
    for i, (y, x0) in enumerate(corners):
        full[i, :, y:y + ch, x0:x0 + cw] = out.x_mod[i]
    out.x_mod = full
    return out


def measure(model: Model, tensor: str, t_x: np.ndarray, x_mod: np.ndarray, k: np.ndarray,
            sites: list[Site]) -> tuple[list[FocusNumbers], np.ndarray]:
    """Focus metrics per row from onnxruntime on the original model: ``t_x`` ``[B, C, h, w]`` on the inputs,
    x' ``[B, C, H, W]``; also returns onnxruntime's activations on x'."""
    t_mod = model.run_ort(x_mod, (tensor,))[0]
    return [focus_metrics(t_x[i], t_mod[i], int(k[i]), s.focus.cells) for i, s in enumerate(sites)], t_mod


def baselines_batch(model: Model, tensor: str, names: list[str], x: np.ndarray, b: np.ndarray, k: np.ndarray,
                    sites: list[Site], areas: list[float], t_x: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray) -> list[dict[str, dict]]:
    """The baselines in focus scope at our area (METHOD.md, "Against baselines at equal area"): each saliency of
    ‖r_k on F‖² (the network's map zeroed outside F), kept inside the rf_box, its top pixels with exactly our
    mask's area (fraction of the image), x' = m ⊙ x + (1 − m) ⊙ b, measured on F with onnxruntime.

    Returns, per row, ``{name: {"kept", "others_kept", "specificity_after", "mask_area"}}``."""
    from onnx_kernelviz.baselines.base import BASELINES, equal_area_masks, resolve_names
    from onnx_kernelviz.method.focus import box_placement
    from onnx_kernelviz.method.references import gaussian_blur
    dev = model.devices.torch
    tg = model.torch_graph((tensor,))
    f = torch.from_numpy(np.stack([s.focus.cells for s in sites])).to(dev).unsqueeze(1).float()
    forward = lambda inp: tg(inp)[0] * f[:len(inp)]  # noqa: E731 - k's energy on F only
    xt, bt = torch.from_numpy(x).to(dev), torch.from_numpy(b).to(dev)
    _, inside = box_placement(torch.tensor([s.rf_box for s in sites]), tuple(x.shape[-2:]))
    inside = inside[:, 0].to(dev)
    lot, hit = torch.from_numpy(lo).to(dev).view(1, -1, 1, 1), torch.from_numpy(hi).to(dev).view(1, -1, 1, 1)
    out: list[dict[str, dict]] = [{} for _ in range(len(k))]
    for name in resolve_names(names):
        sal = BASELINES.get(name)(forward, bt)(xt, torch.as_tensor(k, device=dev))
        # smoothed as for the whole-map baselines (side / 50), then ranked inside the box only (a tiny floor keeps
        # a flat saliency inside the box ahead of everything outside)
        sal = gaussian_blur(sal.unsqueeze(1).float(), max(x.shape[-2:]) / 50)[:, 0]
        sal = (sal / sal.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1) + 1e-6) * inside
        m = equal_area_masks(sal, areas, sigma=0.0).to(xt.dtype).unsqueeze(1) * inside.unsqueeze(1)
        x_mod = torch.maximum(torch.minimum(m * xt + (1 - m) * bt, hit), lot).detach().cpu().numpy()
        nums, _ = measure(model, tensor, t_x, x_mod, k, sites)
        for row, n in enumerate(nums):
            out[row][name] = {"kept": n.kept, "others_kept": n.others_kept,
                              "specificity_after": n.specificity_after, "mask_area": float(m[row].mean())}
    return out


#: below this oracle_gain the kernel cannot be told apart from its neighbours on F (the report says so)
SEPARABLE_GAIN = 1.5


def companions(t_x: np.ndarray, k: int, cells: np.ndarray, at_least: float = 0.5, most: int = 8) -> list[int]:
    """The kernels that fire with k on F: ‖r_j on F‖ ≥ ``at_least``·‖r_k on F‖, strongest first (``t_x``
    ``[C, h, w]``, onnxruntime on x)."""
    e = np.sqrt((np.maximum(t_x[:, np.asarray(cells, bool)], 0).astype(np.float64) ** 2).sum(1))
    order = [int(j) for j in np.argsort(-e) if j != k and e[j] >= at_least * e[k] and e[j] > 0]
    return order[:most]


def focus_block(site: Site, n: FocusNumbers, oracle: FocusNumbers | None, t_x: np.ndarray, k: int) -> dict:
    """The contract's ``focus`` block of one result (CONTRACT.md, "Local explanations: focus"), plus
    ``separable`` (oracle_gain ≥ SEPARABLE_GAIN; null without a bound) and ``companions`` (kernels firing
    with k on F, listed when it is not separable)."""
    gain = None if oracle is None else oracle.gain
    separable = None if gain is None else bool(gain >= SEPARABLE_GAIN)
    return {"peak": list(site.focus.peak), "cells": site.focus.count, "rf_box": list(site.rf_box),
            "kept": n.kept, "others_kept": n.others_kept, "specificity_before": n.specificity_before,
            "specificity_after": n.specificity_after, "oracle_gain": gain, "separable": separable,
            "companions": companions(t_x, k, site.focus.cells) if separable is False else []}
