"""Upsampled activation map r_k (Network Dissection, Bau et al. 2017): where kernel k fires, nothing more."""

from __future__ import annotations

import torch

from onnx_kernelviz.baselines.base import BASELINES, Baseline, upsample


@BASELINES.register("activation")
class Activation(Baseline):
    def saliency(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            act = torch.relu(self.forward(x))
        return upsample(act[torch.arange(len(k), device=act.device), k], (x.shape[-2], x.shape[-1]))
