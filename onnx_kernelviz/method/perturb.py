"""How the modified input x' is parameterized: a registry of small classes.

``--method mask`` uses one of the mask parameterizations (``ExplainConfig.mask``, default ``bands``);
``--method pixel`` uses ``pixel``.

``region``: x' = m ⊙ x + (1 − m) ⊙ b with m ∈ [0,1]^{H×W}. The mask is a sigmoid of multi-scale logits
(a coarse-to-fine pyramid: the sum of logit grids at resolution/2^i, each bilinearly upsampled), optionally
smoothed by a Gaussian after the sigmoid (TorchRay-style smooth masks). Coarse levels move whole regions at
once, so the mask finds the kernel's region in a few steps; finer levels only refine it (their learning rate is
scaled down), so the result reads as regions, not pixel noise. docs/TRADEOFF.md shows how the defaults were
measured.
``pixel``: x' itself is optimized, initialised at x (Zhuang et al., arXiv 2108.11054, first author's setup).

A parameterization takes its options as keywords (``Method.build`` passes them from ``ExplainConfig``, whose
defaults the keywords here repeat by reference, never by value), and may build x' for a subset of its rows
(``param(rows)``) so finished rows cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.registry import Registry


@dataclass
class Perturbed:
    """The modified input ``x_mod`` ``[B, C, H, W]`` and, for mask methods, the mask ``[B, 1, H, W]`` (what is
    kept, in [0, 1]) and ``grid``: the mask(s) at the parameterization's own finest grid ``[B, M, h, w]``, where
    the area and TV terms are computed (cheaper than at the input size; None: use ``mask``)."""

    x_mod: torch.Tensor
    mask: torch.Tensor | None
    grid: torch.Tensor | None = None


class Parameterization(Protocol):
    """Owns the optimized tensors of a batch of explanations and builds x' from them."""

    def parameters(self) -> list[torch.Tensor] | list[dict]:
        """Tensors, or torch optimizer parameter groups (dicts with ``params`` and an ``lr_scale``)."""
        ...

    def __call__(self, rows: torch.Tensor | None = None) -> Perturbed:
        """x' (and mask) of the given rows (all rows when None), differentiable."""
        ...

    def snapshot(self, rows: torch.Tensor) -> Perturbed:
        """x' (and mask) of the given batch rows, detached, for keeping the best result so far."""
        ...


PARAMETERIZATIONS: Registry[type] = Registry("mask parameterization")

_DEFAULTS = ExplainConfig()


def smooth_mask(m: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur (sigma in pixels, reflect padding) of a small mask ``[B, M, h, w]`` as a weighted
    sum of shifted copies: exactly the same per row whatever the batch (a convolution's algorithm, and so its
    rounding, can depend on the batch size, and Adam amplifies such noise), and cheap for the few taps needed."""
    if sigma <= 0:
        return m
    h, w = m.shape[-2:]
    radius = min(max(1, int(3 * sigma)), h - 1, w - 1)
    if radius <= 0:
        return m
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    taps: list[float] = (g / g.sum()).tolist()
    y = F.pad(m, (radius, radius, 0, 0), mode="reflect")
    m = taps[0] * y[..., :, 0:w]
    for i in range(1, 2 * radius + 1):
        m = m + taps[i] * y[..., :, i:i + w]
    y = F.pad(m, (0, 0, radius, radius), mode="reflect")
    out = taps[0] * y[..., 0:h, :]
    for i in range(1, 2 * radius + 1):
        out = out + taps[i] * y[..., i:i + h, :]
    return out


def grid_size(resolution: int, H: int, W: int) -> tuple[int, int]:
    """The logits grid for a side of ``resolution``, scaled to the input's aspect ratio."""
    return max(1, round(resolution * H / max(H, W))), max(1, round(resolution * W / max(H, W)))


@PARAMETERIZATIONS.register("region")
class MaskParameterization:
    """x' = m ⊙ x + (1 − m) ⊙ b; m = smooth(sigmoid(Σ_i upsample(logits_i))).

    Args:
        x: the inputs ``[B, C, H, W]``; b: the references, same shape.
        resolution: the finest logits grid side (scaled to the input's aspect ratio).
        levels: how many grids, each half the side of the previous (1 = a single grid at ``resolution``).
            The coarsest grid never goes below 2.
        fine_lr: learning-rate factor of each finer level relative to the one above it (1 = all equal).
        smooth: sigma of a Gaussian blur of the mask after the sigmoid, as a fraction of the input side
            (0 = none); it rounds the grid's corners off and keeps the mask in [0, 1].
        init: initial logit of the coarsest level (the default 1 ≈ a mask of 0.73: x' starts near x, where k's
            activation is right, with room to move both ways); the finer levels start at 0.

    The defaults are ``ExplainConfig``'s.
    """

    def __init__(self, x: torch.Tensor, b: torch.Tensor, *, resolution: int = _DEFAULTS.resolution,
                 levels: int = _DEFAULTS.levels, fine_lr: float = _DEFAULTS.fine_lr,
                 smooth: float = _DEFAULTS.smooth, init: float = _DEFAULTS.init) -> None:
        self.x, self.b = x, b
        self.d = x - b
        self.configure(resolution=resolution, levels=levels, fine_lr=fine_lr, smooth=smooth, init=init)

    def configure(self, *, resolution: int | None = None, levels: int | None = None, fine_lr: float | None = None,
                  smooth: float | None = None, init: float | None = None) -> None:
        """(Re)build the logits with these options (None keeps the current value)."""
        old = getattr(self, "options", {})
        new = {"resolution": resolution, "levels": levels, "fine_lr": fine_lr, "smooth": smooth, "init": init}
        self.options = {k: (v if v is not None else old[k]) for k, v in new.items()}
        o = self.options
        if o["resolution"] < 1 or o["levels"] < 1:
            raise ValueError("mask resolution and levels must be at least 1")
        x = self.x
        H, W = x.shape[-2:]
        sides = []
        r = int(o["resolution"])
        for _ in range(int(o["levels"])):
            sides.append(r)
            if r // 2 < 2:
                break
            r //= 2
        sides.reverse()  # coarsest first
        self.logits = []
        for i, side in enumerate(sides):
            h, w = grid_size(side, H, W)
            value = float(o["init"]) if i == 0 else 0.0
            self.logits.append(torch.full((x.shape[0], 1, h, w), value, device=x.device, dtype=x.dtype,
                                          requires_grad=True))
        self.sigma = float(o["smooth"]) * max(H, W)

    def parameters(self) -> list[dict]:
        return [{"params": [t], "lr_scale": float(self.options["fine_lr"]) ** i} for i, t in enumerate(self.logits)]

    def _grid(self, rows: torch.Tensor | None) -> torch.Tensor:
        """sigmoid(Σ_i upsample(logits_i)), smoothed, at the finest logits grid ``[b, M, h, w]``."""
        size = self.logits[-1].shape[-2:]
        ups = []
        for t in self.logits:
            t = t if rows is None else t[rows]
            ups.append(t if tuple(t.shape[-2:]) == tuple(size) else F.interpolate(t, size=size, mode="bilinear",
                                                                                  align_corners=False))
        total = ups[0]
        for up in ups[1:]:
            total = total + up
        m = torch.sigmoid(total)
        # sigma in pixels of the finest grid (the option is a fraction of the input side)
        sigma = self.sigma * size[-1] / self.x.shape[-1]
        return smooth_mask(m, sigma)

    def _upsample(self, g: torch.Tensor) -> torch.Tensor:
        size = self.x.shape[-2:]
        return g if tuple(g.shape[-2:]) == tuple(size) else F.interpolate(g, size=size, mode="bilinear",
                                                                            align_corners=False)

    def _mask(self, rows: torch.Tensor | None) -> torch.Tensor:
        return self._upsample(self._grid(rows))

    def __call__(self, rows: torch.Tensor | None = None) -> Perturbed:
        g = self._grid(rows)
        m = self._upsample(g)  # one bilinear upsampling, for the blend only
        d, b = (self.d, self.b) if rows is None else (self.d[rows], self.b[rows])
        return Perturbed(torch.addcmul(b, m, d), m, g)

    def snapshot(self, rows: torch.Tensor) -> Perturbed:
        with torch.no_grad():
            return self(rows)


class ComponentMask(MaskParameterization):
    """x' = b + Σ_c m_c ⊙ comp_c with x − b = Σ_c comp_c split into M components, each with its own smooth
    region mask m_c (one pyramid of M-channel logit grids). All masks 1 gives x, all 0 gives b. A component mask
    can drop *what* is in a region (e.g. its fine texture, or its colour) while keeping the rest — which a single
    region mask cannot. ``Perturbed.mask`` is the mean of the M masks (the one "what is kept" picture, for
    mask.png, mask_area and the baselines at equal area); ``Perturbed.grid`` holds all M masks (area, TV).
    """

    #: one short name per component, in order (captions of the per-component mask picture)
    NAMES: tuple[str, ...] = ()

    def components(self, x: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        raise NotImplementedError

    def __init__(self, x: torch.Tensor, b: torch.Tensor, **options: Any) -> None:
        with torch.no_grad():
            self.comps = torch.stack(self.components(x, b), 1)  # [B, M, C, H, W]
        super().__init__(x, b, **options)

    def configure(self, **options: Any) -> None:
        super().configure(**options)
        M = self.comps.shape[1]
        self.logits = [t.detach().expand(-1, M, -1, -1).clone().requires_grad_(True) for t in self.logits]

    def __call__(self, rows: torch.Tensor | None = None) -> Perturbed:
        g = self._grid(rows)  # [b, M, h, w]
        m = self._upsample(g)
        comps, b = (self.comps, self.b) if rows is None else (self.comps[rows], self.b[rows])
        x_mod = b + (m.unsqueeze(2) * comps).sum(1)
        return Perturbed(x_mod, m.mean(1, keepdim=True), g)


@PARAMETERIZATIONS.register("bands")
class BandMask(ComponentMask):
    """Laplacian-pyramid bands: a coarse low-pass of x (Gaussian, sigma = side/``DIVISORS[0]``) minus b, then the
    band between each low-pass and the next finer one (edges, shapes), then the fine texture above the finest;
    one region mask per band."""

    DIVISORS: tuple[float, ...] = (16, 56)
    NAMES: tuple[str, ...] = ("coarse: colour, layout", "mid: shapes, edges", "fine: texture")

    def components(self, x: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        from onnx_kernelviz.method.references import gaussian_blur
        side = max(x.shape[-2:])
        lows = [gaussian_blur(x, side / d) for d in self.DIVISORS] + [x]
        return [lows[0] - b] + [hi - lo for lo, hi in zip(lows, lows[1:])]


@PARAMETERIZATIONS.register("bands4")
class Band4Mask(BandMask):
    """Four bands: sigma side/8, side/24, side/72 and the rest."""

    DIVISORS = (8, 24, 72)
    NAMES = ("coarse", "mid-coarse", "mid-fine", "fine")


@PARAMETERIZATIONS.register("lumchroma")
class LumChromaMask(ComponentMask):
    """Luminance (the mean over channels of x − b, in every channel) and colour (the rest), one mask each."""

    NAMES = ("luminance", "colour")

    def components(self, x: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        d = x - b
        lum = d.mean(1, keepdim=True).expand_as(d)
        return [lum, d - lum]


@PARAMETERIZATIONS.register("bands_lc")
class BandLumChromaMask(ComponentMask):
    """Luminance and colour of the coarse low-pass, then luminance and colour of the detail above it (4 masks)."""

    COARSE = 16
    NAMES = ("coarse luminance", "coarse colour", "detail luminance", "detail colour")

    def components(self, x: torch.Tensor, b: torch.Tensor) -> list[torch.Tensor]:
        from onnx_kernelviz.method.references import gaussian_blur
        lo = gaussian_blur(x, max(x.shape[-2:]) / self.COARSE)
        out = []
        for d in (lo - b, x - lo):
            lum = d.mean(1, keepdim=True).expand_as(d)
            out += [lum, d - lum]
        return out


@PARAMETERIZATIONS.register("pixel")
class PixelParameterization:
    """x' optimized directly, initialised at x, unclipped while optimizing (clipped when saved)."""

    def __init__(self, x: torch.Tensor, b: torch.Tensor | None = None, **_: object) -> None:
        self.x_mod = x.detach().clone().requires_grad_(True)

    def configure(self, **_: object) -> None:
        """The pixel method has no options."""

    def parameters(self) -> list[torch.Tensor]:
        return [self.x_mod]

    def __call__(self, rows: torch.Tensor | None = None) -> Perturbed:
        return Perturbed(self.x_mod if rows is None else self.x_mod[rows], None)

    def snapshot(self, rows: torch.Tensor) -> Perturbed:
        return Perturbed(self.x_mod[rows].detach().clone(), None)
