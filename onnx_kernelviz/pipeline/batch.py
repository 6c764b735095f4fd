"""Steps 2 and 3 of an explanation, for one batch of (image, kernel) items: optimize x' on the torch copy, then
measure it on onnxruntime (ours, and each baseline at the same area). No files are written here (files.py).

``explain``, ``compare``, the atlas and ``scripts/bench_explain.py`` call these steps; none copies them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from onnx_kernelviz.baselines.base import BaselineOutcome, evaluate_baselines
from onnx_kernelviz.io.preprocess import Preprocess, valid_range
from onnx_kernelviz.measure.metrics import kernel_metrics, parity
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.method.methods import METHODS
from onnx_kernelviz.method.optimize import optimize
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.prepare import Prepared
from onnx_kernelviz.results import Metrics, Parity

__all__ = ["Optimized", "Measured", "optimize_batch", "measure_batch", "baselines_batch", "row_seconds",
           "unchanged_fraction", "StepFn"]

#: called after each optimizer step with (step, rows still running, rows in the batch)
StepFn = Callable[[int, int, int], None]


@dataclass
class Optimized:
    """One optimized batch. ``x_mod`` ``[B, C, H, W]`` is x' within the range a real image can hold (what is
    saved and measured); ``masks`` ``[B, H, W]`` (None: pixel method); ``grids`` the per-component masks
    ``[B, M, h, w]`` when there are several (else None); ``t_torch`` the torch copy's activations on x'
    ``[B, C', h, w]``; ``seconds`` each row's own share of the optimization time."""

    items: list[tuple[int, int]]
    x_mod: np.ndarray
    masks: np.ndarray | None
    grids: np.ndarray | None
    component_names: tuple[str, ...]
    loss: np.ndarray
    steps: list[int]
    failed: list[str | None]
    seconds: list[float]
    t_torch: np.ndarray


@dataclass
class Measured:
    """onnxruntime on x': activations ``[B, C', h, w]``, and per row the metrics and parity (None when the row
    failed)."""

    t_ort: np.ndarray
    metrics: list[Metrics | None]
    parity: list[Parity | None]


def _tensors(model: Model, prep: Prepared, items: Sequence[tuple[int, int]]
             ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    dev = model.devices.torch
    idx = np.array([i for i, _ in items])
    k = torch.tensor([kk for _, kk in items], device=dev)
    return idx, k, torch.from_numpy(prep.x[idx]).to(dev), torch.from_numpy(prep.b[idx]).to(dev)


def _bounds(model: Model, pp: Preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = (torch.from_numpy(v).to(model.devices.torch).view(1, -1, 1, 1) for v in valid_range(pp, model.channels))
    return lo, hi


def optimize_batch(model: Model, prep: Prepared, items: list[tuple[int, int]], config: ExplainConfig,
                   pp: Preprocess, *, on_step: StepFn | None = None) -> Optimized:
    """Optimize x' for every (image index, kernel) of ``items`` at once (method.optimize), on the torch copy."""
    method = METHODS.get(config.method)
    torch.manual_seed(config.seed)
    _, k, x, b = _tensors(model, prep, items)
    forward = model.layer_forward(prep.layer.tensor)
    with torch.no_grad():
        ref = torch.relu(forward(x))
    t0 = time.perf_counter()
    param = method.build(x, b, config)
    partners = dict(config.partners)
    partner = torch.tensor([partners.get(kk, -1) for _, kk in items], device=x.device) if partners else None
    step_times: list[float] = []
    last = [time.perf_counter()]
    setup = last[0] - t0

    def clock(step: int, loss: torch.Tensor, running: int) -> None:
        now = time.perf_counter()
        step_times.append(now - last[0])
        last[0] = now
        if on_step is not None:
            on_step(step, running, len(items))

    res = optimize(forward, param, method.objective(config), ref, k, method.loop(config), callbacks=(clock,),
                   partner=partner)
    lo, hi = _bounds(model, pp)
    x_mod = torch.maximum(torch.minimum(res.x_mod, hi), lo).detach()
    with torch.no_grad():
        t_torch = forward(x_mod).float().cpu().numpy()
    grids = None if res.grid is None or res.grid.shape[1] < 2 else res.grid.detach().cpu().numpy()
    return Optimized(list(items), x_mod.cpu().numpy(),
                     None if res.mask is None else res.mask[:, 0].detach().cpu().numpy(), grids,
                     method.component_names(config), res.loss.detach().cpu().numpy(), res.steps, res.failed,
                     row_seconds(step_times, res.steps, setup), t_torch)


def row_seconds(step_times: Sequence[float], steps: Sequence[int], setup: float = 0.0) -> list[float]:
    """Each row's own share of a batch's time: step s's time split among the rows still running at s (row i runs
    steps 1..``steps[i]``), the setup split evenly. A row that stops early costs less; the shares add up to the
    batch's time."""
    n = np.asarray(steps)
    share = np.full(len(n), setup / max(len(n), 1))
    for s, dt in enumerate(step_times, start=1):
        running = n >= s
        if running.any():
            share[running] += dt / running.sum()
    return [float(v) for v in share]


def measure_batch(model: Model, prep: Prepared, opt: Optimized, config: ExplainConfig) -> Measured:
    """The contract's metrics and parity of each row's x', from onnxruntime on the original model."""
    t_ort = model.run_ort(opt.x_mod, (prep.layer.tensor,))[0]
    metrics: list[Metrics | None] = []
    parities: list[Parity | None] = []
    for row, (i, k) in enumerate(opt.items):
        if opt.failed[row]:
            metrics.append(None)
            parities.append(None)
            continue
        area = None if opt.masks is None else float(opt.masks[row].mean())
        metrics.append(Metrics.of(kernel_metrics(prep.t_ort[i], t_ort[row], k), area))
        p_abs, p_rel = parity(opt.t_torch[row], t_ort[row])
        parities.append(Parity(p_abs, p_rel, bool(p_rel <= config.tolerance)))
    return Measured(t_ort, metrics, parities)


#: the pixel method's "kept area": pixels whose largest channel change is under this fraction of the value range
UNCHANGED_TOL = 0.1


def unchanged_fraction(x_mod: torch.Tensor, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Per row, the fraction of pixels x' left (nearly) as in x: max over channels of |x' − x| / (hi − lo) under
    ``UNCHANGED_TOL``. The pixel method's counterpart of a mask's area, for baselines at equal area. ``[B]``."""
    change = ((x_mod - x).abs() / (hi - lo).clamp_min(1e-12)).amax(1)
    return (change < UNCHANGED_TOL).float().flatten(1).mean(1).cpu()


def baselines_batch(model: Model, prep: Prepared, opt: Optimized, config: ExplainConfig,
                    pp: Preprocess) -> list[dict[str, BaselineOutcome]] | None:
    """Each of ``config.baselines`` at the same area as ours (the mask's, or for the pixel method the unchanged
    pixels'), measured on onnxruntime like ours (docs/METHOD.md); None without baselines."""
    if not config.baselines:
        return None
    idx, k, x, b = _tensors(model, prep, opt.items)
    lo, hi = _bounds(model, pp)
    if opt.masks is not None:
        areas = [float(m.mean()) for m in opt.masks]
    else:  # the pixel method has no mask: its "kept area" is where x' left the photo (nearly) as it was
        areas = unchanged_fraction(torch.from_numpy(opt.x_mod).to(x.device), x, lo, hi).tolist()
    forward = model.layer_forward(prep.layer.tensor)
    return evaluate_baselines(
        list(config.baselines), forward=forward, module=forward.module, x=x, b=b, k=k, areas=areas,
        ort_activations=lambda xb: model.run_ort(xb, (prep.layer.tensor,))[0], t_x=prep.t_ort[idx], lo=lo, hi=hi)
