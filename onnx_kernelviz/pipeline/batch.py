"""Steps 2 and 3 of an explanation, for one batch of (image, kernel) items: optimize x' on the torch copy, then
measure it on onnxruntime (ours, and each baseline at the same area). No files are written here (files.py).

``explain``, ``compare``, the atlas and ``scripts/bench_explain.py`` call these steps; none copies them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
import torch

from onnx_kernelviz.baselines.base import BaselineOutcome, evaluate_baselines
from onnx_kernelviz.io.preprocess import Preprocess, valid_range
from onnx_kernelviz.measure.focus import FocusNumbers, Readability, focus_metrics, readability
from onnx_kernelviz.measure.metrics import kernel_metrics, parity
from onnx_kernelviz.measure.tolerance import layer_step, tolerance_rule
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.method.focus import shown_mask
from onnx_kernelviz.method.methods import METHODS, Method
from onnx_kernelviz.method.optimize import OptimizeResult, StepCallback, optimize
from onnx_kernelviz.method.perturb import PARAMETERIZATIONS
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.focus import (
    Site,
    baselines_on_focus,
    locate,
    optimize_on_focus,
    scores_on_sites,
    small_takes,
    smaller_takes,
)
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
    saved and measured); ``masks`` ``[B, H, W]`` (None: pixel method); ``grids`` per row the component masks
    ``[M, h, w]`` when there are several (else None); ``t_torch`` the torch copy's activations on x'
    ``[B, C', h, w]``; ``seconds`` each row's own share of the optimization time (the bound's included).
    In focus scope, ``sites`` says where each row looks and ``bound_x`` ``[B, C, H, W]`` is the bound's x'
    (None without the bound), ``bound_failed`` why a row's bound failed, ``small_box`` which rows show the small-box
    mask (MaskMethod.small_box)."""

    items: list[tuple[int, int]]
    x_mod: np.ndarray
    masks: np.ndarray | None
    grids: list[np.ndarray | None] | None
    component_names: tuple[str, ...]
    loss: np.ndarray
    steps: list[int]
    failed: list[str | None]
    seconds: list[float]
    t_torch: np.ndarray
    sites: list[Site] | None = None
    bound_x: np.ndarray | None = None
    bound_failed: list[str | None] | None = None
    small_box: list[bool] | None = None


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
    """Times every optimizer step of a batch's phases (the bound, the explanation's stages, then the small-box
    mask of the rows with a small rf_box) and reports progress: phase p weighs its share of the steps budget times
    its rows (``sizes``; all rows by default), a running row counts by the share of its steps done."""

    def __init__(self, rows: int, budgets: Sequence[int], on_step: StepFn | None,
                 sizes: Sequence[int] | None = None) -> None:
        self.rows, self.budgets, self.on_step = rows, list(budgets), on_step
        self.sizes = list(sizes) if sizes is not None else [rows] * len(self.budgets)
        work = [b * n for b, n in zip(self.budgets, self.sizes)]
        total = max(sum(work), 1)
        self.weights = [w / total for w in work]
        self.times: list[list[float]] = [[] for _ in self.budgets]
        self.last = time.perf_counter()

    def phase(self, p: int, size: int | None = None) -> StepCallback:
        """The step callback of phase p, run on ``size`` rows (default: as planned)."""
        n = max(self.sizes[p] if size is None else size, 1)

        def tick(step: int, loss: torch.Tensor, running: int) -> None:
            now = time.perf_counter()
            self.times[p].append(now - self.last)
            self.last = now
            if self.on_step is not None:
                done = (n - running) + running * min(step / max(self.budgets[p], 1), 1.0)
                share = sum(self.weights[:p]) + self.weights[p] * min(done / n, 1.0)
                self.on_step(self.rows * share, self.rows)

        return tick

    def seconds(self, steps: Sequence[Sequence[int]]) -> list[float]:
        """Each row's share of every phase (``steps[p]``: steps each row ran in phase p, 0 for a row not in it)."""
        shares = [row_seconds(t, s) for t, s in zip(self.times, steps) if t]
        return [float(sum(v)) for v in zip(*shares)] if shares else [0.0] * self.rows


def _clip(t: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``t`` ``[B, C, H, W]`` within the range a real image can hold (``lo``, ``hi`` per channel), detached."""
    return torch.maximum(torch.minimum(t, hi), lo).detach()


def small_rows(sites: Sequence[Site], most: int) -> list[int]:
    """The rows whose rf_box holds at most ``most``² pixels (``focus_small_box``; 0: none). The area, not a side:
    a strip one kernel wide but the image tall (a kernel firing along a border) has many pixels, and its window
    is the whole image."""
    return [r for r, s in enumerate(sites)
            if most > 0 and (s.rf_box[2] - s.rf_box[0]) * (s.rf_box[3] - s.rf_box[1]) <= most * most]


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
    n = len(items)
    if config.scope != "focus":
        clock = _Clock(n, [loop.steps], on_step)
        param = method.build(x, b, config)
        with torch.no_grad():
            ref = torch.relu(forward(x))
        res = optimize(forward, param, method.objective(config), ref, k, loop, callbacks=(clock.phase(0),),
                       partner=partner)
        x_mod = _clip(res.x_mod, lo, hi)
        mask = None if res.mask is None else res.mask[:, 0].detach()
        return _optimized(items, x_mod, mask, _grids(res.grid), method.component_names(config), res.loss, res.steps,
                          res.failed, clock.seconds([res.steps]), forward)
    sites = sites if sites is not None else locate_items(model, prep, items, [config.at] * n)
    small = method.small_box(config)
    few = small_rows(sites, config.focus_small_box) if small is not None else []
    fine = method.fine_steps(config)  # the refine stage's share of the steps (0: one stage, no refine)
    soft_budgets = [loop.steps] + ([fine] if fine > 0 else [])
    budgets = ([config.oracle_steps] if config.oracle else []) + soft_budgets
    sizes = [n] * len(budgets)
    heavier = replace(config, focus_area=config.focus_small_soft_area) \
        if small is not None and few and config.focus_small_soft_area is not None else None
    if heavier is not None:  # the soft stages again on the small rows, with their own area weight
        budgets, sizes = budgets + soft_budgets, sizes + [len(few)] * len(soft_budgets)
    if small is not None and few:
        budgets, sizes = budgets + [small.loop.steps], sizes + [len(few)]
    clock = _Clock(n, budgets, on_step, sizes)
    phase_steps: list[list[int]] = []  # steps each row ran in each phase of the clock
    bound_x, bound_failed = None, None
    if config.oracle:
        free = PARAMETERIZATIONS.get("free")
        bres = optimize_on_focus(forward, lambda xx, bb, **_: free(xx, lo=lo, hi=hi),
                                 Method.bound_objective(config), Method.bound_loop(config), x, b, k, sites,
                                 crop=config.focus_crop, callbacks=(clock.phase(0),))
        bound_x = _clip(bres.x_mod, lo, hi).cpu().numpy()
        bound_failed = bres.failed
        phase_steps.append(bres.steps)
    places = hasattr(PARAMETERIZATIONS.get(method.parameterization(config)), "render")

    def soft_stages(cfg: ExplainConfig, rows: torch.Tensor | None, on: list[Site]) -> OptimizeResult:
        """The method's stages with ``cfg`` on ``rows`` (None: all), their clock phases next in line."""
        pick = (lambda t: t) if rows is None else (lambda t: t[rows])
        p = len(phase_steps)
        stage = method.refine(cfg)
        return optimize_on_focus(forward, lambda xx, bb, **where: method.build(xx, bb, cfg, **where),
                                 method.objective(cfg), loop, pick(x), pick(b), pick(k), on, crop=config.focus_crop,
                                 places_itself=places, partner=None if partner is None else pick(partner),
                                 callbacks=(clock.phase(p),), refine=stage,
                                 refine_callbacks=(clock.phase(p + 1),) if stage else ())

    res = soft_stages(config, None, sites)
    phase_steps += res.stages or [res.steps]
    out = _Rows(res, _grids(res.grid))
    if small is not None and few:
        ix = torch.tensor(few, device=x.device)
        on = [sites[r] for r in few]
        boxes = torch.tensor([s.rf_box for s in on])

        def reads(a: torch.Tensor, c: torch.Tensor) -> tuple[list[Readability], list[Readability]]:
            """The readability of what two candidates' x' ``[G, C, H, W]`` show, each row in its box."""
            r = [[readability(m, s.rf_box) for m, s in zip(shown_mask(t, x[ix], b[ix], boxes).cpu().numpy(), on)]
                 for t in (a, c)]
            return r[0], r[1]

        soft_x, soft_grid = _clip(res.x_mod[ix], lo, hi), None if res.grid is None else res.grid[ix]
        if heavier is not None:
            # small boxes: the soft stages again with a heavier area weight, shown where they cost at most
            # focus_small_soft_tolerance of the specificity and show less (docs/TRADEOFF.md, "Small boxes: a
            # heavier area weight where it costs little")
            hres = soft_stages(heavier, ix, on)
            phase_steps += [_spread(n, few, st) for st in (hres.stages or [hres.steps])]
            heavy_x = _clip(hres.x_mod, lo, hi)
            _, (heavy, soft) = scores_on_sites(forward, [heavy_x, soft_x], x[ix], k[ix], on)
            took = smaller_takes(heavy, soft, config.focus_small_soft_tolerance, reads(heavy_x, soft_x))
            out.put(few, hres, took.tolist(), binary=False, grids=_grids(hres.grid))
            soft_x = torch.where(took.view(-1, 1, 1, 1).to(x.device), heavy_x, soft_x)
            if soft_grid is not None and hres.grid is not None:
                soft_grid = torch.where(took.view(-1, 1, 1, 1).to(x.device), hres.grid, soft_grid)
        # small boxes: the binary mask too, shown where it holds k and most of the soft masks' gain and shows less
        build = (partial(small.build, start=soft_grid) if config.focus_small_start == "soft"
                 and soft_grid is not None else small.build)
        sres = optimize_on_focus(forward, build, small.objective, small.loop, x[ix], b[ix], k[ix], on,
                                 crop=config.focus_crop, places_itself=True,
                                 partner=None if partner is None else partner[ix],
                                 callbacks=(clock.phase(len(phase_steps)),))
        phase_steps.append(_spread(n, few, sres.steps))
        cands = [_clip(sres.x_mod, lo, hi), soft_x]
        before, (binary, soft) = scores_on_sites(forward, cands, x[ix], k[ix], on)
        take = small_takes(binary, soft, before, config.focus_small_share, reads(*cands))
        out.put(few, sres, take.tolist())
    x_mod = _clip(out.x_mod, lo, hi)
    # a focus mask reports what x' shows of x (band masks: not their mean); the pixel method has none
    mask = shown_mask(x_mod, x, b, torch.tensor([s.rf_box for s in sites])) if res.mask is not None else None
    opt = _optimized(items, x_mod, mask, out.grids, method.component_names(config), out.loss, out.steps, out.failed,
                     clock.seconds(phase_steps), forward)
    opt.sites, opt.bound_x, opt.bound_failed, opt.small_box = sites, bound_x, bound_failed, out.small
    return opt


def _spread(n: int, rows: Sequence[int], values: Sequence[int]) -> list[int]:
    """A group's per-row values at their ``rows`` of a batch of ``n`` (0 elsewhere)."""
    out = [0] * n
    for r, v in zip(rows, values):
        out[r] = int(v)
    return out


class _Rows:
    """A focus batch's results: the method's own (``res``), with the small-box mask's where a row takes it."""

    def __init__(self, res: OptimizeResult, grids: list[np.ndarray | None] | None) -> None:
        n = len(res.steps)
        self.x_mod, self.loss = res.x_mod.detach().clone(), res.loss.detach().cpu().clone()
        self.steps, self.failed = list(res.steps), list(res.failed)
        self.grids: list[np.ndarray | None] | None = grids
        self.small = [False] * n

    def put(self, rows: Sequence[int], res: OptimizeResult, take: Sequence[bool], *, binary: bool = True,
            grids: list[np.ndarray | None] | None = None) -> None:
        """Result ``res`` of a group of ``rows``: those it ``take``-s show its x' (and its steps); a ``binary``
        result (the small-box mask) has no component masks, another one its ``grids`` (one per row of the group)."""
        for j, r in enumerate(rows):
            if take[j]:  # a row's steps are those of the optimization it shows (its seconds count all)
                self.steps[r] = int(res.steps[j])
                self.x_mod[r] = res.x_mod[j].detach()
                self.loss[r] = float(res.loss[j])
                self.failed[r] = res.failed[j]
                self.small[r] = binary
                if self.grids is not None:  # one binary mask: no component masks to draw
                    self.grids[r] = None if binary or grids is None else grids[j]


def _grids(grid: torch.Tensor | None) -> list[np.ndarray | None] | None:
    """Per row the component masks ``[M, g, g]`` of a stage's grids, when there are several (else None)."""
    if grid is None or grid.shape[1] < 2:
        return None
    return list(grid.detach().cpu().numpy())


def _optimized(items: Sequence[tuple[int, int]], x_mod: torch.Tensor, mask: torch.Tensor | None,
               grids: list[np.ndarray | None] | None, names: tuple[str, ...], loss: torch.Tensor, steps: list[int],
               failed: list[str | None], seconds: list[float],
               forward: Callable[[torch.Tensor], torch.Tensor]) -> Optimized:
    with torch.no_grad():
        t_torch = forward(x_mod).float().cpu().numpy()
    if grids is not None and all(g is None for g in grids):
        grids = None
    return Optimized(list(items), x_mod.cpu().numpy(), None if mask is None else mask.detach().cpu().numpy(), grids,
                     names, loss.detach().cpu().numpy(), steps, failed, seconds, t_torch)


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
        x_np = _clip(x_b, lo, hi).cpu().numpy()
        t_mod = ort(x_np)
        for row, (i, kk) in enumerate(opt.items):
            whole = Metrics.of(kernel_metrics(prep.t_ort[i], t_mod[row], kk), float(masks[row].mean()))
            on_f = focus_metrics(prep.t_ort[i], t_mod[row], kk, opt.sites[row].focus.cells)
            out[row][name] = BaselineOutcome(whole, masks[row].cpu().numpy(), x_np[row],
                                             sal[row].cpu().numpy(), on_f)
    return out
