"""Input × gradient (Shrikumar et al. 2016) of ‖r_k(x)‖², relative to the reference b (the image the masks
fade to), summed over channels: how much each pixel's departure from b adds to k's energy, to first order."""

from __future__ import annotations

import torch

from onnx_kernelviz.baselines.base import BASELINES, GradientBaseline


@BASELINES.register("input_x_gradient")
class InputXGradient(GradientBaseline):
    def combine(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        ref = torch.zeros_like(x) if self.b is None else self.b.to(x.device, x.dtype)
        # positive part: pixels whose removal (x -> b) would lower k's energy
        return ((x - ref) * grad).sum(1).clamp_min(0)
