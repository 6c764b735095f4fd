"""The baseline template and the shared equal-area step (METHOD.md, "Against baselines at equal area").

A baseline turns "kernel k of this row" into a saliency map ``[B, H, W]``; everything after that is shared:
light smoothing, the top ``area`` fraction of pixels as a binary mask, x' = m ⊙ x + (1 − m) ⊙ b clipped to the
valid range, onnxruntime on the original model, and the contract's metrics. A new baseline is one short module
that subclasses :class:`Baseline` (or :class:`GradientBaseline`) and overrides one hook, in the style of
pytorch-grad-cam's ``BaseCAM``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from onnx_kernelviz.measure.focus import FocusNumbers
from onnx_kernelviz.measure.metrics import kernel_metrics
from onnx_kernelviz.method.references import gaussian_blur
from onnx_kernelviz.registry import Registry
from onnx_kernelviz.results import Metrics

#: The truncated network: ``x [B, C, H, W] -> activation [B, C', h, w]`` (not rectified).
Forward = Callable[[torch.Tensor], torch.Tensor]

BASELINES: Registry[type[Baseline]] = Registry("baseline")


class Baseline(ABC):
    """Saliency of kernel ``k[i]`` for each row ``x[i]``.

    Args:
        forward: the truncated network (torch copy of the model, on the run's device).
        b: the reference images ``[B, C, H, W]`` (what the mask puts where it removes the image); baselines that
            perturb the input (occlusion) use it so they remove things the same way the masks do.
        module: the ``nn.Module`` that ``forward`` runs, for baselines that hook its layers (guided backprop).
    """

    def __init__(self, forward: Forward, b: torch.Tensor | None = None, *, module: nn.Module | None = None) -> None:
        self.forward = forward
        self.b = b
        self.module = module

    @abstractmethod
    def saliency(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``x [B, C, H, W]``, ``k [B]`` -> non-negative saliency ``[B, H, W]`` (higher = more about kernel k)."""

    def __call__(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        s = self.saliency(x, k).detach().float()
        assert s.shape == (x.shape[0], *x.shape[-2:]), f"{type(self).__name__} returned {tuple(s.shape)}"
        return s


def squared_energy(act: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """‖r_k‖² per row for a (not rectified) activation ``[B, C', h, w]`` -> ``[B]``: the square of
    ``measure.metrics.kernel_energy`` (the one "energy"), differentiable, for the gradient baselines."""
    return torch.relu(act[torch.arange(len(k), device=act.device), k]).pow(2).flatten(1).sum(1)


class GradientBaseline(Baseline):
    """Template for methods built on d‖r_k(x)‖²/dx: subclasses override :meth:`context` (how the backward pass
    runs, e.g. guided ReLUs) and/or :meth:`combine` (gradient -> map)."""

    def context(self) -> AbstractContextManager[object]:
        return nullcontext()

    def combine(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``x``, ``grad`` ``[B, C, H, W]`` -> ``[B, H, W]``; default: max over channels of |grad|."""
        return grad.abs().amax(1)

    def saliency(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad(), self.context():
            (grad,) = torch.autograd.grad(squared_energy(self.forward(xg), k).sum(), xg)
        return self.combine(x.detach(), grad)


@dataclass
class BaselineOutcome:
    """One baseline on one row: contract metrics (kept, fidelity, others_kept, specificity_before/after,
    mask_area), the equal-area mask ``[H, W]`` in {0, 1}, x' ``[C, H, W]`` and the raw saliency ``[H, W]``; in focus
    scope also its numbers on the focus cells (``focus``)."""

    metrics: Metrics
    mask: np.ndarray
    x_mod: np.ndarray
    saliency: np.ndarray
    focus: FocusNumbers | None = None


def equal_area_masks(saliency: torch.Tensor, areas: Sequence[float], sigma: float | None = None) -> torch.Tensor:
    """Binary masks ``[B, H, W]`` holding the top ``areas[i]`` fraction of pixels of each smoothed saliency map.

    The count is ``round(area · H · W)`` exactly (ties broken by position), so the mask's mean is within one
    pixel of the requested area. Smoothing (Gaussian, sigma = 1/50 of the longer side by default) only stops
    pixel-level noise of gradient maps from becoming a salt-and-pepper mask; it moves no region.
    """
    B, H, W = saliency.shape
    sigma = max(H, W) / 50 if sigma is None else sigma
    s = gaussian_blur(saliency.unsqueeze(1).float(), sigma).flatten(1)
    masks = torch.zeros_like(s)
    for i, a in enumerate(areas):
        n = int(round(min(max(float(a), 0.0), 1.0) * H * W))
        if n:
            masks[i, torch.topk(s[i], n, sorted=False).indices] = 1.0
    return masks.view(B, H, W)


def resolve_names(names: Sequence[str]) -> list[str]:
    """``["all"]`` (or any list containing "all") -> every registered baseline; otherwise the names, checked."""
    names = [n.strip() for n in names if n and n.strip()]
    if any(n == "all" for n in names):
        return BASELINES.names()
    for n in names:
        BASELINES.get(n)  # UsageError listing the known names
    return list(dict.fromkeys(names))


def evaluate_baselines(names: Sequence[str], *, forward: Forward, module: nn.Module | None, x: torch.Tensor,
                       b: torch.Tensor,
                       k: torch.Tensor, areas: Sequence[float], ort_activations: Callable[[np.ndarray], np.ndarray],
                       t_x: np.ndarray, lo: torch.Tensor, hi: torch.Tensor) -> list[dict[str, BaselineOutcome]]:
    """Every baseline in ``names`` at the same mask area as ours, measured on onnxruntime like ours.

    Args:
        names: baseline names, or ``["all"]``.
        forward: truncated torch network, ``[B, C, H, W] -> [B, C', h, w]`` (not rectified).
        module: the ``nn.Module`` behind ``forward`` (guided backprop hooks its ReLUs).
        x: inputs ``[B, C, H, W]``; b: references, same shape (x' = m ⊙ x + (1 − m) ⊙ b).
        k: kernel per row ``[B]``; areas: the target mask area per row (our mask's mean).
        ort_activations: ``np [B, C, H, W] -> np [B, C', h, w]`` on the ORIGINAL model.
        t_x: onnxruntime activations on x ``[B, C', h, w]``; lo, hi: valid normalized range ``[1, C, 1, 1]``.

    Returns:
        One dict per row: baseline name -> :class:`BaselineOutcome`.
    """
    out: list[dict[str, BaselineOutcome]] = [{} for _ in range(len(k))]
    lo, hi = lo.to(x.device), hi.to(x.device)
    for name in resolve_names(names):
        sal = BASELINES.get(name)(forward, b, module=module)(x, k)
        m = equal_area_masks(sal, areas).to(x.dtype).unsqueeze(1)
        x_mod = torch.maximum(torch.minimum(m * x + (1 - m) * b, hi), lo).detach()
        x_np = x_mod.cpu().numpy()
        t_mod = ort_activations(x_np)
        for row in range(len(k)):
            kk = int(k[row])
            metrics = Metrics.of(kernel_metrics(t_x[row], t_mod[row], kk), float(m[row].mean()))
            out[row][name] = BaselineOutcome(metrics, m[row, 0].cpu().numpy(), x_np[row], sal[row].cpu().numpy())
    return out


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``[B, h, w]`` -> ``[B, H, W]`` bilinear."""
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False)[:, 0]
