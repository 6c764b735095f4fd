"""Loss terms as small composable callables (TorchRay's ``reward_func`` habit, not a chain of flags).

Each term maps a :class:`Step` to a per-explanation loss ``[B]``; an :class:`Objective` is their weighted sum.
Activations are rectified (r = max(T, 0)), as in the contract's metrics, so a linear (pre-ReLU) tensor is judged
by the same quantity the report shows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

EPS = 1e-8


@dataclass
class Step:
    """What the terms see at one optimization step, for the B explanations still running.

    Attributes:
        act: rectified activations on x', ``[B, C, h, w]``.
        ref: rectified activations on x (fixed), ``[B, C, h, w]``.
        k: the kernel of each explanation, ``[B]`` (long).
        x_mod: the modified inputs ``[B, C, H, W]``.
        mask: the masks ``[B, 1, H, W]``, or None for the pixel method.
        grid: the mask(s) at the parameterization's finest grid ``[B, M, h, w]`` (area and TV are computed
            there), or None (use ``mask``).
        partner: per row, a kernel to single out for suppression (``compare``'s other kernel), or -1 for none,
            ``[B]`` (long); None when no row has one.
        focus: per row, the focus cells F on the activation map ``[B, h, w]`` (1 on F, else 0), for the local
            terms of ``method/focus.py``; None for whole-map explanations.
    """

    act: torch.Tensor
    ref: torch.Tensor
    k: torch.Tensor
    x_mod: torch.Tensor
    mask: torch.Tensor | None
    grid: torch.Tensor | None = None
    partner: torch.Tensor | None = None
    focus: torch.Tensor | None = None

    def channel(self, t: torch.Tensor) -> torch.Tensor:
        """Channel k of each row, flattened: ``[B, C, h, w] -> [B, h*w]``."""
        return t[torch.arange(len(self.k), device=t.device), self.k].flatten(1)

    def mask_and_grid(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mask [B, 1, H, W], grid)``: the mask terms' inputs (``grid`` is ``mask`` when there is none)."""
        if self.mask is None:
            raise ValueError("mask terms (MaskArea, MaskTV) need a mask parameterization; the pixel method has none")
        return self.mask, self.mask if self.grid is None else self.grid

    def others_sq(self, t: torch.Tensor) -> torch.Tensor:
        """Σ_{j≠k} ‖t_j‖² per row, ``[B]``."""
        return (t.flatten(2) ** 2).sum(dim=(1, 2)) - (self.channel(t) ** 2).sum(1)


Term = Callable[[Step], torch.Tensor]


@dataclass
class Preserve:
    """max(0, e − margin) with e = ‖r_k(x') − r_k(x)‖ / ‖r_k(x)‖: keep kernel k's activation map as it was.

    With a margin the term is a hinge: any x' whose relative error stays under ``margin`` is as good as x
    itself, so the other terms are free to act there (``margin`` = 0.2 still gives kept ≥ 0.8 and, for an
    error orthogonal to r_k, fidelity ≥ 0.98); weighted strongly, it is a soft constraint.
    """

    margin: float = 0.0

    def __call__(self, s: Step) -> torch.Tensor:
        a, r = s.channel(s.act), s.channel(s.ref)
        e = (a - r).norm(dim=1) / (r.norm(dim=1) + EPS)
        return torch.relu(e - self.margin) if self.margin > 0 else e


@dataclass
class Suppress:
    """‖r_¬k(x')‖ / ‖r_¬k(x)‖: the fraction of the other kernels' activation that survives (others_kept)."""

    def __call__(self, s: Step) -> torch.Tensor:
        return torch.sqrt(s.others_sq(s.act) + EPS) / (torch.sqrt(s.others_sq(s.ref)) + EPS)


@dataclass
class SuppressPartner:
    """kept_p / kept_k for the row's partner kernel p (0 for rows without one), kept_j = ‖r_j(x')‖ / ‖r_j(x)‖:
    how much of the one kernel the explanation must tell k apart from survives, relative to k itself.

    Suppress already counts p, but only as one of C−1 kernels; a kernel whose map nearly matches k's survives
    wherever k does unless it is singled out. The ratio (the quantity the similar-kernel bar judges) is not
    lowered by dropping k along with p, so the term cannot buy suppression by giving up k. With it, x' answers
    "what does k respond to that p does not".
    """

    floor: float = 0.05  # keeps the ratio finite while k is (briefly) near zero

    def __call__(self, s: Step) -> torch.Tensor:
        if s.partner is None:
            return torch.zeros(len(s.k), device=s.act.device)
        has = s.partner >= 0
        p = s.partner.clamp_min(0)
        rows = torch.arange(len(p), device=p.device)

        def kept(j: torch.Tensor) -> torch.Tensor:
            a, r = s.act[rows, j].flatten(1), s.ref[rows, j].flatten(1)
            return a.norm(dim=1) / (r.norm(dim=1) + EPS)

        ratio = kept(p) / (kept(s.k) + self.floor)
        return torch.where(has, ratio, torch.zeros_like(ratio))


@dataclass
class MaskArea:
    """Mean of the mask: prefer showing less of the image; with ``target``, only the area above it counts."""

    target: float = 0.0

    def __call__(self, s: Step) -> torch.Tensor:
        a = s.mask_and_grid()[1].flatten(1).mean(1)
        return torch.relu(a - self.target) if self.target > 0 else a


def _soft_abs(d: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """|d| smoothed below ``eps`` (sqrt(d² + eps²) − eps): |d|'s gradient jumps from −1 to 1 at 0, so float noise
    in a flat mask (e.g. a batch-size-dependent rounding) would flip whole Adam steps."""
    return torch.sqrt(d * d + eps * eps) - eps


@dataclass
class MaskTV:
    """Total variation of the mask (mean absolute neighbour difference): regions, not speckle.

    Computed on ``Step.grid`` when there is one, scaled by grid side / input side per direction, so that it
    approximates the TV of the upsampled ``[B, 1, H, W]`` mask (same weights for any grid size).
    """

    def __call__(self, s: Step) -> torch.Tensor:
        mask, m = s.mask_and_grid()
        H, W = mask.shape[-2:]
        fy, fx = (m.shape[-2] / H, m.shape[-1] / W)
        return fy * _soft_abs(m[..., 1:, :] - m[..., :-1, :]).flatten(1).mean(1) + \
            fx * _soft_abs(m[..., :, 1:] - m[..., :, :-1]).flatten(1).mean(1)


@dataclass
class PaperPreserve:
    """Zhuang et al.: ‖A_k(x') − A_k(x)‖₂ / s with s = ‖A_k(x)‖₂ / (h·w), both per h·w."""

    def __call__(self, s: Step) -> torch.Tensor:
        a, r = s.channel(s.act), s.channel(s.ref)
        hw = a.shape[1]
        return ((a - r).norm(dim=1) / hw) / (r.norm(dim=1) / hw + EPS)


@dataclass
class PaperSuppress:
    """Zhuang et al.: mean_{j≠k} ‖A_j(x')‖₁ / r with r = mean_{j≠k} ‖A_j(x)‖₁, both per h·w."""

    def __call__(self, s: Step) -> torch.Tensor:
        def others_l1(t: torch.Tensor) -> torch.Tensor:
            return t.flatten(1).abs().sum(1) - s.channel(t).abs().sum(1)

        return others_l1(s.act) / (others_l1(s.ref) + EPS)


@dataclass
class ImageL1:
    """mean |x'|: the paper's γ term, pulling unneeded pixels toward the dataset mean (0 after normalization)."""

    def __call__(self, s: Step) -> torch.Tensor:
        return s.x_mod.abs().flatten(1).mean(1)


@dataclass
class Objective:
    """A weighted sum of terms; ``parts`` keeps each term's last value for progress callbacks."""

    terms: Sequence[tuple[float, Term]]
    parts: dict[str, torch.Tensor] = field(default_factory=dict)

    def __call__(self, s: Step) -> torch.Tensor:
        total = torch.zeros(len(s.k), device=s.act.device)
        for w, term in self.terms:
            v = term(s)
            self.parts[type(term).__name__] = v.detach()
            total = total + w * v
        return total
