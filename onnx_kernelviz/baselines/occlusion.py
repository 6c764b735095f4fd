"""Occlusion (Zeiler & Fergus 2014): replace one square patch at a time by the reference b and record how much
‖r_k‖² drops; each pixel gets the mean drop of the patches that cover it."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import BASELINES, Baseline, kernel_energy


@BASELINES.register("occlusion")
class Occlusion(Baseline):
    #: patch side and stride as fractions of the longer image side (32 and 16 pixels at 224)
    patch: float = 1 / 7
    stride: float = 1 / 14

    def saliency(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        ref = torch.zeros_like(x) if self.b is None else self.b.to(x.device, x.dtype)
        p = max(1, round(max(H, W) * self.patch))
        s = max(1, round(max(H, W) * self.stride))
        ys = sorted({*range(0, max(H - p, 0) + 1, s), max(H - p, 0)})
        xs = sorted({*range(0, max(W - p, 0) + 1, s), max(W - p, 0)})
        drop = torch.zeros(B, H, W, device=x.device)
        cover = torch.zeros(1, H, W, device=x.device)
        with torch.no_grad():
            e0 = kernel_energy(self.forward(x), k)
            for y0 in ys:
                # one forward per row of patch positions: B x len(xs) occluded images at once
                batch, boxes = [], []
                for x0 in xs:
                    xo = x.clone()
                    xo[..., y0:y0 + p, x0:x0 + p] = ref[..., y0:y0 + p, x0:x0 + p]
                    batch.append(xo)
                    boxes.append((slice(y0, y0 + p), slice(x0, x0 + p)))
                e = kernel_energy(self.forward(torch.cat(batch)), k.repeat(len(xs))).view(len(xs), B)
                for j, (sy, sx) in enumerate(boxes):
                    drop[:, sy, sx] += (e0 - e[j]).clamp_min(0).view(B, 1, 1)
                    cover[:, sy, sx] += 1
        return drop / cover.clamp_min(1)
