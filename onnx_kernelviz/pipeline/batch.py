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
from onnx_kernelviz.measure.focus import FocusNumbers, focus_metrics
from onnx_kernelviz.measure.metrics import kernel_metrics, parity
from onnx_kernelviz.measure.tolerance import layer_step, tolerance_rule
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.method.focus import shown_mask
from onnx_kernelviz.method.methods import METHODS, Method
from onnx_kernelviz.method.optimize import StepCallback, optimize
from onnx_kernelviz.method.perturb import PARAMETERIZATIONS
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.focus import Site, baselines_on_focus, locate, optimize_on_focus
from onnx_kernelviz.pipeline.prepare import Prepared
from onnx_kernelviz.results import Metrics, Parity

__all__ = ["Optimized", "Measured", "locate_items", "optimize_batch", "measure_batch", "baselines_batch",
           "row_seconds", "unchanged_fraction", "StepFn"]

#: called after each optimizer step with (this batch's explanations done, counting a running one by the share of
#: its steps done (the bound's and the explanation's), rows in the batch)
StepFn = Callable[[float, int], None]


@dataclass
class Optimized:
    """One optimized batch. ``x_mod`` ``[B, C, H, W]`` is x' within the range a real image can hold (what is
    saved and measured); ``masks`` ``[B, H, W]`` (None: pixel method); ``grids`` the per-component masks
    ``[B, M, h, w]`` when there are several (else None); ``t_torch`` the torch copy's activations on x'
    ``[B, C', h, w]``; ``seconds`` each row's own share of the optimization time (the bound's included).
    In focus scope, ``sites`` says where each row looks and ``bound_x`` ``[B, C, H, W]`` is the bound's x'
    (None without the bound), ``bound_failed`` why a row's bound failed."""

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
    sites: list[Site] | None = None
    bound_x: np.ndarray | None = None
    bound_failed: list[str | None] | None = None


@dataclass
class Measured:
    """onnxruntime on x': activations ``[B, C', h, w]``, and per row the metrics and parity (None when the row
    failed); in focus scope the numbers on F of x' (``focus``), of the bound's x' (``oracle``) and of the reference
    alone (``reference``: x' = b, nothing of the photo kept; its ``kept`` says whether k needs the photo at all)."""

    t_ort: np.ndarray
    metrics: list[Metrics | None]
    parity: list[Parity | None]
    focus: list[FocusNumbers | None] | None = None
    oracle: list[FocusNumbers | None] | None = None
    reference: list[FocusNumbers | None] | None = None


def _tensors(model: Model, prep: Prepared, items: Sequence[tuple[int, int]]
             ) -> tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]:
    dev = model.devices.torch
    idx = np.array([i for i, _ in items])
    k = torch.tensor([kk for _, kk in items], device=dev)
    return idx, k, torch.from_numpy(prep.x[idx]).to(dev), torch.from_numpy(prep.b[idx]).to(dev)


def _bounds(model: Model, pp: Preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = (torch.from_numpy(v).to(model.devices.torch).view(1, -1, 1, 1) for v in valid_range(pp, model.channels))
    return lo, hi


def locate_items(model: Model, prep: Prepared, items: Sequence[tuple[int, int]],
                 ats: Sequence[tuple[int, int] | None] | None = None) -> list[Site]:
    """Where each (image index, kernel) item is explained in focus scope: at kernel k's peak on the image, or at
    the item's cell in ``ats`` (row, col of the activation map: ``--at``, or the atlas's exemplar sites)."""
    size = (prep.x.shape[-2], prep.x.shape[-1])
    cells = list(ats) if ats is not None else [None] * len(items)
    return [locate(model, prep.layer.tensor, prep.t_ort[i], k, size, a) for (i, k), a in zip(items, cells)]


class _Clock:
    """Times every optimizer step of a batch's phases (the bound, then the explanation) and reports progress:
    phase p weighs its share of the steps budget, a running row counts by the share of its steps done."""

    def __init__(self, rows: int, budgets: Sequence[int], on_step: StepFn | None) -> None:
        self.rows, self.budgets, self.on_step = rows, list(budgets), on_step
        total = max(sum(self.budgets), 1)
        self.weights = [b / total for b in self.budgets]
        self.times: list[list[float]] = [[] for _ in self.budgets]
        self.last = time.perf_counter()

    def phase(self, p: int) -> StepCallback:
        def tick(step: int, loss: torch.Tensor, running: int) -> None:
            now = time.perf_counter()
            self.times[p].append(now - self.last)
            self.last = now
            if self.on_step is not None:
                done = (self.rows - running) + running * min(step / max(self.budgets[p], 1), 1.0)
                self.on_step(self.rows * sum(self.weights[:p]) + self.weights[p] * done, self.rows)

        return tick

    def seconds(self, steps: Sequence[Sequence[int]]) -> list[float]:
        """Each row's share of every phase (``steps[p]``: steps each row ran in phase p)."""
        shares = [row_seconds(t, s) for t, s in zip(self.times, steps) if t]
        return [float(sum(v)) for v in zip(*shares)] if shares else [0.0] * self.rows


def optimize_batch(model: Model, prep: Prepared, items: list[tuple[int, int]], config: ExplainConfig,
                   pp: Preprocess, *, sites: list[Site] | None = None, on_step: StepFn | None = None) -> Optimized:
    """Optimize x' for every (image index, kernel) of ``items`` at once (method.optimize), on the torch copy.

    In focus scope (``config.scope``) each row is explained on its focus cells (``sites``, by default
    :func:`locate_items` at each kernel's peak or ``config.at``), and with ``config.oracle`` the bound is searched
    first, batched the same way."""
    method = METHODS.get(config.method)
    torch.manual_seed(config.seed)
    _, k, x, b = _tensors(model, prep, items)
    forward = model.layer_forward(prep.layer.tensor)
    lo, hi = _bounds(model, pp)
    partners = dict(config.partners)
    partner = torch.tensor([partners.get(kk, -1) for _, kk in items], device=x.device) if partners else None
    loop = method.loop(config)
    focus = config.scope == "focus"
    bound = focus and config.oracle
    refine = method.refine(config) if focus else None
    fine_steps = [method.fine_steps(config)] if refine is not None else []
    clock = _Clock(len(items), ([config.oracle_steps] if bound else []) + [loop.steps] + fine_steps, on_step)
    bound_x, bound_failed, bound_steps = None, None, []
    if focus:
        sites = sites if sites is not None else locate_items(model, prep, items, [config.at] * len(items))
        if bound:
            free = PARAMETERIZATIONS.get("free")
            bres = optimize_on_focus(forward, lambda xx, bb, **_: free(xx, lo=lo, hi=hi),
                                     Method.bound_objective(config), Method.bound_loop(config), x, b, k, sites,
                                     crop=config.focus_crop, callbacks=(clock.phase(0),))
            bound_x = torch.maximum(torch.minimum(bres.x_mod, hi), lo).detach().cpu().numpy()
            bound_failed, bound_steps = bres.failed, bres.steps
        places = hasattr(PARAMETERIZATIONS.get(method.parameterization(config)), "render")
        res = optimize_on_focus(forward, lambda xx, bb, **where: method.build(xx, bb, config, **where),
                                method.objective(config), loop, x, b, k, sites, crop=config.focus_crop,
                                places_itself=places, partner=partner, callbacks=(clock.phase(int(bound)),),
                                refine=refine, refine_callbacks=(clock.phase(int(bound) + 1),) if refine else ())
    else:
        param = method.build(x, b, config)
        with torch.no_grad():
            ref = torch.relu(forward(x))
        res = optimize(forward, param, method.objective(config), ref, k, loop, callbacks=(clock.phase(0),),
                       partner=partner)
    x_mod = torch.maximum(torch.minimum(res.x_mod, hi), lo).detach()
    with torch.no_grad():
        t_torch = forward(x_mod).float().cpu().numpy()
    grids = None if res.grid is None or res.grid.shape[1] < 2 else res.grid.detach().cpu().numpy()
    mask = None if res.mask is None else res.mask[:, 0].detach()
    if focus and mask is not None:  # a focus mask reports what x' shows of x (band masks: not their mean)
        mask = shown_mask(x_mod, x, b, torch.tensor([s.rf_box for s in sites or []]))
    return Optimized(list(items), x_mod.cpu().numpy(), None if mask is None else mask.cpu().numpy(), grids,
                     method.component_names(config), res.loss.detach().cpu().numpy(), res.steps, res.failed,
                     clock.seconds(([bound_steps] if bound else []) + (res.stages or [res.steps])), t_torch, sites,
                     bound_x,
                     bound_failed)


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
    """The contract's metrics and parity of each row's x', from onnxruntime on the original model; in focus scope
    also the numbers on F of x', of the bound's x' and of each image's reference alone (one onnxruntime run for
    all)."""
    tensor = prep.layer.tensor
    images = sorted({i for i, _ in opt.items}) if opt.sites is not None else []  # each image's reference, once
    bound = opt.x_mod[:0] if opt.bound_x is None else opt.bound_x
    t_ort, t_bound, t_b = np.split(model.run_ort(np.concatenate([opt.x_mod, bound, prep.b[images]]), (tensor,))[0],
                                   [len(opt.x_mod), len(opt.x_mod) + len(bound)])
    t_ref = dict(zip(images, t_b))
    rule = tolerance_rule(model, config.tolerance)
    metrics: list[Metrics | None] = []
    parities: list[Parity | None] = []
    focus: list[FocusNumbers | None] = []
    oracle: list[FocusNumbers | None] = []
    reference: list[FocusNumbers | None] = []
    for row, (i, k) in enumerate(opt.items):
        site = None if opt.sites is None else opt.sites[row]
        reference.append(None if site is None else focus_metrics(prep.t_ort[i], t_ref[i], k, site.focus.cells))
        bound_ok = opt.bound_x is not None and not (opt.bound_failed or [None] * len(opt.items))[row]
        oracle.append(focus_metrics(prep.t_ort[i], t_bound[row], k, site.focus.cells)
                      if site is not None and bound_ok else None)
        if opt.failed[row]:
            metrics.append(None)
            parities.append(None)
            focus.append(None)
            continue
        area = None if opt.masks is None else float(opt.masks[row].mean())
        metrics.append(Metrics.of(kernel_metrics(prep.t_ort[i], t_ort[row], k), area))
        p_abs, p_rel = parity(opt.t_torch[row], t_ort[row])
        ok, steps = rule.judge(p_abs, p_rel, layer_step(prep.layer, prep.t_ort[i]))
        parities.append(Parity(p_abs, p_rel, ok, steps))
        focus.append(None if site is None else focus_metrics(prep.t_ort[i], t_ort[row], k, site.focus.cells))
    scoped = opt.sites is not None
    return Measured(t_ort, metrics, parities, focus if scoped else None, oracle if scoped else None,
                    reference if scoped else None)


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
    pixels'), measured on onnxruntime like ours (docs/METHOD.md); None without baselines. In focus scope each
    baseline explains k on the same F (its saliency of k on F, kept inside the rf_box) and is measured on F too."""
    if not config.baselines:
        return None
    idx, k, x, b = _tensors(model, prep, opt.items)
    lo, hi = _bounds(model, pp)
    if opt.masks is not None:
        areas = [float(m.mean()) for m in opt.masks]
    else:  # the pixel method has no mask: its "kept area" is where x' left the photo (nearly) as it was
        areas = unchanged_fraction(torch.from_numpy(opt.x_mod).to(x.device), x, lo, hi).tolist()
    forward = model.layer_forward(prep.layer.tensor)
    ort = lambda xb: model.run_ort(xb, (prep.layer.tensor,))[0]  # noqa: E731
    if opt.sites is None:
        return evaluate_baselines(list(config.baselines), forward=forward, module=forward.module, x=x, b=b, k=k,
                                  areas=areas, ort_activations=ort, t_x=prep.t_ort[idx], lo=lo, hi=hi)
    made = baselines_on_focus(list(config.baselines), forward, forward.module, x, b, k, opt.sites, areas)
    out: list[dict[str, BaselineOutcome]] = [{} for _ in opt.items]
    for name, (masks, x_b, sal) in made.items():
        x_np = torch.maximum(torch.minimum(x_b, hi), lo).detach().cpu().numpy()
        t_mod = ort(x_np)
        for row, (i, kk) in enumerate(opt.items):
            whole = Metrics.of(kernel_metrics(prep.t_ort[i], t_mod[row], kk), float(masks[row].mean()))
            on_f = focus_metrics(prep.t_ort[i], t_mod[row], kk, opt.sites[row].focus.cells)
            out[row][name] = BaselineOutcome(whole, masks[row].cpu().numpy(), x_np[row],
                                             sal[row].cpu().numpy(), on_f)
    return out
