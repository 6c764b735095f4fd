"""The optimizer loop: a batch of explanations, each frozen when it converges or fails.

Rows are independent (the loss is a sum over rows, BatchNorm runs in eval mode, Adam/SGD update elementwise),
so a batch gives the same results as running the explanations one by one, up to float noise. A row stops when
it converges (early stopping) or when its loss becomes NaN/Inf (marked failed); only running rows are pushed
through the network, so a batch gets cheaper as rows finish.

Early-stopping rule: after ``min_steps``, a row has converged when its best loss improved by less than
``tol`` (relative) over the last ``patience`` steps. The row's result is its best (lowest-loss) x'.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import torch

from onnx_kernelviz.method.objectives import Objective, Step
from onnx_kernelviz.method.perturb import Parameterization


@dataclass(frozen=True)
class OptimizeConfig:
    """Loop settings. ``steps`` is the most steps per explanation; exactly that many with ``early_stop=False``.

    No defaults for what a method decides: ``Method.loop`` builds this from ``ExplainConfig`` (method/config.py,
    the one source of every default).
    """

    steps: int
    lr: float
    min_steps: int
    patience: int
    tol: float
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    early_stop: bool = True
    #: flush denormal floats to zero while optimizing (CPU): masked-out regions of deep activations are full of
    #: them, and they make convolutions (forward and backward) ~1.5x slower
    flush_denormal: bool = True


@dataclass
class OptimizeResult:
    """Per-row results: best x' ``[B, C, H, W]``, mask ``[B, 1, H, W]`` or None, loss ``[B]``, steps run,
    a failure reason (None when the row succeeded) and the best x's component masks."""

    x_mod: torch.Tensor
    mask: torch.Tensor | None
    loss: torch.Tensor
    steps: list[int]
    failed: list[str | None] = field(default_factory=list)
    #: the best x's component masks at the parameterization's grid ``[B, M, h, w]`` (M > 1: one per band), or None
    grid: torch.Tensor | None = None
    #: steps per row of each stage when the result came from several (a focus mask refined inside its largest
    #: regions: pipeline/focus.py); None for one stage (``steps`` then)
    stages: list[list[int]] | None = None


class StepCallback(Protocol):
    def __call__(self, step: int, loss: torch.Tensor, running: int) -> None: ...


def optimize(forward: Callable[[torch.Tensor], torch.Tensor], param: Parameterization, objective: Objective,
             ref: torch.Tensor, k: torch.Tensor, cfg: OptimizeConfig,
             callbacks: tuple[StepCallback, ...] = (), partner: torch.Tensor | None = None,
             focus: torch.Tensor | None = None) -> OptimizeResult:
    """Minimise ``objective`` over ``param`` for B explanations at once.

    Args:
        forward: the truncated network, ``x [b, C, H, W] -> activation [b, C', h, w]`` (rectified inside here).
        param: owns the optimized tensors; ``param()`` builds x' for all B rows.
        ref: rectified activations on the original inputs, ``[B, C', h, w]``.
        k: kernel index per row, ``[B]``.
        partner: per row, a kernel to single out for suppression or -1, ``[B]`` (see ``Step.partner``).
        focus: per row, the focus cells ``[B, h, w]`` (see ``Step.focus``), or None.
        callbacks: called after each step with (step, loss of the running rows, number running).
    """
    flush = cfg.flush_denormal and ref.device.type == "cpu"
    if flush:
        torch.set_flush_denormal(True)
    try:
        return _optimize(forward, param, objective, ref, k, cfg, callbacks, partner, focus)
    finally:
        if flush:
            torch.set_flush_denormal(False)


def _param_groups(param: Parameterization, lr: float) -> list[dict]:
    groups = []
    for g in param.parameters():
        if isinstance(g, dict):
            g = dict(g)
            g["lr"] = lr * float(g.pop("lr_scale", 1.0))
            groups.append(g)
        else:
            groups.append({"params": [g], "lr": lr})
    return groups


def _optimize(forward: Callable[[torch.Tensor], torch.Tensor], param: Parameterization, objective: Objective,
              ref: torch.Tensor, k: torch.Tensor, cfg: OptimizeConfig, callbacks: tuple[StepCallback, ...],
              partner: torch.Tensor | None, focus: torch.Tensor | None = None) -> OptimizeResult:
    B = len(k)
    dev = ref.device
    params = _param_groups(param, cfg.lr)
    opt = (torch.optim.Adam(params, lr=cfg.lr) if cfg.optimizer == "adam"
           else torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum))
    best_loss = torch.full((B,), float("inf"), device=dev)
    first = param.snapshot(torch.arange(B, device=dev))
    best_x, best_m = first.x_mod.clone(), None if first.mask is None else first.mask.clone()
    best_g = None if first.grid is None else first.grid.clone()
    history: list[torch.Tensor] = []  # best loss after each step, for the convergence test
    running = torch.ones(B, dtype=torch.bool, device=dev)
    # Bookkeeping stays on the device: one host sync per step (which rows still run), not one per decision —
    # on a GPU each sync stalls the queue of kernel launches.
    steps_t = torch.zeros(B, dtype=torch.long, device=dev)
    failed_at = torch.zeros(B, dtype=torch.long, device=dev)  # the step whose loss was NaN/Inf, 0 = never
    for step in range(1, cfg.steps + 1):
        rows = running.nonzero().flatten()
        if len(rows) == 0:
            break
        opt.zero_grad(set_to_none=True)
        every = len(rows) == B
        p = param(None if every else rows)
        act = torch.relu(forward(p.x_mod))
        s = Step(act, ref if every else ref[rows], k if every else k[rows], p.x_mod, p.mask, p.grid,
                 partner if every or partner is None else partner[rows],
                 focus if every or focus is None else focus[rows])
        loss = objective(s)
        finite = torch.isfinite(loss)
        # a NaN/Inf row gets no gradient from its loss; rows are independent, so the others are unaffected
        torch.where(finite, loss, torch.zeros_like(loss)).sum().backward()
        opt.step()
        with torch.no_grad():
            lv = torch.where(finite, loss.detach(), torch.full_like(loss, float("inf")))
            better = lv < best_loss[rows]
            # the loss was computed on x' before this update: keep that x' for the rows it improved
            best_loss[rows] = torch.where(better, lv, best_loss[rows])
            best_x[rows] = torch.where(better.view(-1, 1, 1, 1), p.x_mod.detach(), best_x[rows])
            if best_m is not None and p.mask is not None:
                best_m[rows] = torch.where(better.view(-1, 1, 1, 1), p.mask.detach(), best_m[rows])
            if best_g is not None and p.grid is not None:
                best_g[rows] = torch.where(better.view(-1, 1, 1, 1), p.grid.detach(), best_g[rows])
            steps_t[rows] = step
            failed_at[rows] = torch.where(finite, failed_at[rows], step)
            running[rows] = finite
            history.append(best_loss.clone())
            if cfg.early_stop and step >= max(cfg.min_steps, cfg.patience + 1):
                old = history[-cfg.patience - 1]
                converged = running & ((old - best_loss) <= cfg.tol * old.abs().clamp_min(1e-6))
                running &= ~converged
        for cb in callbacks:
            cb(step, loss.detach(), int(running.sum()))
    failed = [f"loss became NaN/Inf at step {f}" if f else None for f in failed_at.tolist()]
    return OptimizeResult(best_x, best_m, best_loss, steps_t.tolist(), failed, best_g)
