"""Vanilla gradient (Simonyan et al. 2014) of ‖r_k(x)‖²: max over channels of |d‖r_k‖²/dx|."""

from __future__ import annotations

from onnx_kernelviz.baselines.base import BASELINES, GradientBaseline


@BASELINES.register("gradient")
class Gradient(GradientBaseline):
    pass  # the template's defaults are exactly this method
