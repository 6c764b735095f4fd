"""How the modified input x' is parameterized (``--method``): a registry of small classes.

``mask`` (default): x' = m ⊙ x + (1 − m) ⊙ b with m = sigmoid(upsample(logits)) ∈ [0,1]^{H×W}; the logits live
on a coarse grid so the mask comes out as regions, not pixel noise (METHOD.md shows the trade-off).
``pixel``: x' itself is optimized, initialised at x (Zhuang et al., arXiv 2108.11054, first author's setup).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from .registry import Registry


@dataclass
class Perturbed:
    """The modified input ``x_mod`` ``[B, C, H, W]`` and, for mask methods, the mask ``[B, 1, H, W]``."""

    x_mod: torch.Tensor
    mask: torch.Tensor | None


class Parameterization(Protocol):
    """Owns the optimized tensors of a batch of explanations and builds x' from them."""

    def parameters(self) -> list[torch.Tensor]: ...

    def __call__(self) -> Perturbed: ...

    def snapshot(self, rows: torch.Tensor) -> Perturbed:
        """x' (and mask) of the given batch rows, detached, for keeping the best result so far."""
        ...


PARAMETERIZATIONS: Registry[type] = Registry("method")


@PARAMETERIZATIONS.register("mask")
class MaskParameterization:
    """x' = m ⊙ x + (1 − m) ⊙ b; m = sigmoid(bilinear_upsample(logits)), logits ``[B, 1, h, w]``.

    Args:
        x: the inputs ``[B, C, H, W]``; b: the references, same shape.
        resolution: the logits grid side (``h = w = resolution`` scaled to the input's aspect ratio).
        init: initial logit (3 ≈ mask of 0.95: x' starts close to x, where k's activation is right).
    """

    def __init__(self, x: torch.Tensor, b: torch.Tensor, *, resolution: int = 28, init: float = 3.0) -> None:
        self.x, self.b = x, b
        H, W = x.shape[-2:]
        h = max(1, round(resolution * H / max(H, W)))
        w = max(1, round(resolution * W / max(H, W)))
        self.logits = torch.full((x.shape[0], 1, h, w), init, device=x.device, dtype=x.dtype, requires_grad=True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.logits]

    def _mask(self, logits: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(logits, size=self.x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.sigmoid(up)

    def __call__(self) -> Perturbed:
        m = self._mask(self.logits)
        return Perturbed(m * self.x + (1 - m) * self.b, m)

    def snapshot(self, rows: torch.Tensor) -> Perturbed:
        with torch.no_grad():
            m = self._mask(self.logits[rows])
            return Perturbed(m * self.x[rows] + (1 - m) * self.b[rows], m)


@PARAMETERIZATIONS.register("pixel")
class PixelParameterization:
    """x' optimized directly, initialised at x, unclipped while optimizing (clipped when saved)."""

    def __init__(self, x: torch.Tensor, b: torch.Tensor | None = None, **_: object) -> None:
        self.x_mod = x.detach().clone().requires_grad_(True)

    def parameters(self) -> list[torch.Tensor]:
        return [self.x_mod]

    def __call__(self) -> Perturbed:
        return Perturbed(self.x_mod, None)

    def snapshot(self, rows: torch.Tensor) -> Perturbed:
        return Perturbed(self.x_mod[rows].detach().clone(), None)
