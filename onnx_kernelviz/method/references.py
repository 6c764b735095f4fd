"""Reference images b for the mask method: x' = m ⊙ x + (1 − m) ⊙ b.

What the mask removes is replaced by b, so b should carry as little of the image's structure as possible
while staying a plausible input: a strong blur (default) keeps colours and drops edges and texture.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from onnx_kernelviz.registry import Registry

#: ``fn(x [B, C, H, W], lo [C], hi [C], generator) -> b [B, C, H, W]``; lo/hi are the valid normalized range.
ReferenceFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor]
REFERENCES: Registry[ReferenceFn] = Registry("reference")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, C, H, W]`` with reflect padding (sigma in pixels)."""
    if sigma <= 0:
        return x
    radius = max(1, int(3 * sigma))
    radius = min(radius, x.shape[-1] - 1, x.shape[-2] - 1) if min(x.shape[-2:]) > 1 else 0
    if radius == 0:
        return x
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-(t ** 2) / (2 * sigma ** 2))
    k = k / k.sum()
    c = x.shape[1]
    y = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1),
                    groups=c)


@REFERENCES.register("blur")
def blur(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gaussian blur with sigma = 1/20 of the image side (11 px at 224): edges and texture gone."""
    return gaussian_blur(x, max(x.shape[-2:]) / 20)


@REFERENCES.register("mean")
def mean_colour(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Each image's mean colour everywhere."""
    return x.mean(dim=(2, 3), keepdim=True).expand_as(x).contiguous()


@REFERENCES.register("zeros")
def zeros(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Zero in normalized space (the dataset mean colour for mean/std-normalized models)."""
    return torch.zeros_like(x)


@REFERENCES.register("noise")
def noise(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Uniform noise over the valid range, blurred a little so it is not pure high frequency."""
    u = torch.rand(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    return gaussian_blur(lo.view(1, -1, 1, 1) + u * (hi - lo).view(1, -1, 1, 1), 1.0)
