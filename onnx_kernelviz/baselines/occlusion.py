"""Occlusion (Zeiler & Fergus 2014): replace one square patch at a time by the reference b and record how much
‖r_k‖² drops; each pixel gets the mean drop of the patches that cover it."""

from __future__ import annotations

import torch

from onnx_kernelviz.baselines.base import BASELINES, Baseline


@BASELINES.register("occlusion")
class Occlusion(Baseline):
    #: patch side and stride as fractions of the longer image side (32 and 16 pixels at 224)
    patch: float = 1 / 7
    stride: float = 1 / 14
    #: occluded images per forward pass
    chunk: int = 32

    def saliency(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        ref = torch.zeros_like(x) if self.b is None else self.b.to(x.device, x.dtype)
        p = max(1, round(max(H, W) * self.patch))
        s = max(1, round(max(H, W) * self.stride))
        boxes = [(slice(y0, y0 + p), slice(x0, x0 + p))
                 for y0 in sorted({*range(0, max(H - p, 0) + 1, s), max(H - p, 0)})
                 for x0 in sorted({*range(0, max(W - p, 0) + 1, s), max(W - p, 0)})]
        # Occluded images do not depend on k: rows that explain several kernels of one image share the passes.
        uniq, inv = torch.unique(torch.cat([x, ref], 1).flatten(1), dim=0, return_inverse=True)
        first = [int((inv == u).nonzero()[0]) for u in range(len(uniq))]
        xu, ru = x[first], ref[first]
        with torch.no_grad():
            e0 = self._energy(xu)  # [U, C']
            drops = []
            jobs = [(u, box) for u in range(len(first)) for box in boxes]
            for i in range(0, len(jobs), self.chunk):
                part = jobs[i:i + self.chunk]
                xo = xu[[u for u, _ in part]].clone()
                for j, (u, (sy, sx)) in enumerate(part):
                    xo[j, :, sy, sx] = ru[u, :, sy, sx]
                drops.append(e0[[u for u, _ in part]] - self._energy(xo))
            drop_all = torch.cat(drops).view(len(first), len(boxes), -1).clamp_min(0)  # [U, P, C']
        per_row = drop_all[inv, :, k]  # [B, P]
        sal = torch.zeros(B, H, W, device=x.device)
        cover = torch.zeros(1, H, W, device=x.device)
        for j, (sy, sx) in enumerate(boxes):
            sal[:, sy, sx] += per_row[:, j].view(B, 1, 1)
            cover[:, sy, sx] += 1
        return sal / cover.clamp_min(1)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        """‖r_j‖² of every kernel j: ``[N, C, H, W] -> [N, C']``."""
        return torch.relu(self.forward(x)).pow(2).flatten(2).sum(2)
