"""Guided backpropagation (Springenberg et al. 2015) of ‖r_k(x)‖²: at every ReLU-like gate the backward pass
also drops negative gradients, which gives sharper, more edge-like maps than the vanilla gradient.

The torch copy is an onnx2torch ``fx.GraphModule`` whose gates are modules (``nn.ReLU``, ``nn.ReLU6`` for
Clip(0, 6), ``OnnxClip``); :func:`guided_relus` hooks them for the duration of a ``with`` block only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import torch
from torch import nn

from onnx_kernelviz.baselines.base import BASELINES, GradientBaseline
from onnx_kernelviz.errors import KernelvizError


class _PositiveGrad(torch.autograd.Function):
    """Identity forward; backward keeps only the positive part of the incoming gradient."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        return t.view_as(t)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        return g.clamp_min(0)


def _is_gate(m: nn.Module) -> bool:
    return isinstance(m, (nn.ReLU, nn.Hardtanh)) or type(m).__name__ in ("OnnxClip", "OnnxRelu")


@contextmanager
def guided_relus(module: nn.Module) -> Iterator[int]:
    """Within the block, every ReLU-like submodule of ``module`` passes back only positive gradients (its own
    backward then applies the usual gate mask: together, guided backprop). Yields the number of gates hooked;
    the hooks are removed on exit, also when the block raises."""

    def hook(_m: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        return _PositiveGrad.apply(output) if torch.is_grad_enabled() else output

    handles = [m.register_forward_hook(hook) for m in module.modules() if _is_gate(m)]
    try:
        yield len(handles)
    finally:
        for h in handles:
            h.remove()


@BASELINES.register("guided")
class GuidedBackprop(GradientBaseline):
    def context(self) -> AbstractContextManager[int]:
        if self.module is None:
            raise KernelvizError("guided backpropagation hooks the ReLUs of the torch module behind `forward`; "
                                 "pass it as `module=`")
        return guided_relus(self.module)
