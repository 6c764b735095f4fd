"""One rule for how closely the torch copy must agree with onnxruntime, from the model's precision.

``verify`` and ``explain`` both judge parity with :func:`tolerance_rule`; ``--tolerance`` replaces the number, in the
rule's unit:

* **fp32**: ``parity_rel`` ≤ 1e-3 (CONTRACT.md). Both runtimes compute in float32; what is left is summation order.
* **fp16** (the graph computes in fp16 on onnxruntime; the torch copy runs in fp32): ``parity_rel`` ≤ 1e-2.
  Rounding the exposed tensor to fp16 alone is up to 2^-11 ≈ 4.9e-4 relative, measured 3.3e-4 on the default model's
  fp16 build; 1e-2 leaves room for the layers where onnxruntime keeps fp16 intermediates.
* **int8** (QLinearConv, ConvInteger or QDQ layers): ``parity_max_abs`` ≤ 32 quantization steps of the layer
  (``parity_steps``). The torch copy computes what the ONNX operators define — integer sums exactly, then one
  rounding per quantizing op — but onnxruntime's int8 kernels round a few values differently near ties (its x86
  QLinearAdd works in fixed point, rounding ties away from zero). One value one step off in one layer moves the next
  layer's sums by a weight × step, so such flips compound with depth: on the default model's QDQ and QOperator builds
  the first 9 layers agree exactly, and the worst difference grows to 19–20 steps at the last of its 49 layers (its
  99.9th percentile: 9–11 steps; a tenth of the tensor's range is ~25 steps). A wrong scale, zero point or folded
  activation shows up as differences of a large part of the range on most values, far past 32 steps. A layer's step
  is its output scale; for dynamically quantized layers (float tensors, quantized by the next layer with a range of
  their own) it is the step of that range, (max(T, 0) − min(T, 0)) / 255.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from onnx_kernelviz.frontend.layers import Layer

if TYPE_CHECKING:  # model.py imports verify, which imports this module
    from onnx_kernelviz.model import Model

Precision = Literal["fp32", "fp16", "int8"]

#: the default tolerance of each precision, in the rule's unit (relative for floats, quantization steps for int8)
DEFAULTS: dict[str, float] = {"fp32": 1e-3, "fp16": 1e-2, "int8": 32.0}
DEFAULT_TOLERANCE = DEFAULTS["fp32"]
FP16_TOLERANCE = DEFAULTS["fp16"]
INT8_STEPS = DEFAULTS["int8"]


@dataclass(frozen=True)
class ToleranceRule:
    """How parity is judged: ``parity_rel`` ≤ ``value`` (fp32, fp16), or ``parity_steps`` ≤ ``value`` (int8)."""

    precision: Precision
    value: float

    @property
    def unit(self) -> str:
        return "quantization steps" if self.precision == "int8" else "relative"

    def describe(self) -> str:
        """E.g. ``1e-03 relative (fp32 model)`` or ``32 quantization steps (int8 model)``."""
        number = f"{self.value:g}" if self.precision == "int8" else f"{self.value:.0e}"
        return f"{number} {self.unit} ({self.precision} model)"

    def judge(self, parity_max_abs: float, parity_rel: float, step: float | None) -> tuple[bool, float | None]:
        """(parity_ok, parity_steps); parity_steps is None outside int8 models."""
        if self.precision != "int8":
            return bool(parity_rel <= self.value), None
        steps = parity_max_abs / step if step and step > 0 else (0.0 if parity_max_abs == 0 else float("inf"))
        return bool(steps <= self.value), float(steps)


def model_precision(model: Model) -> Precision:
    """int8 when any layer is quantized (its tensor stored as integers, or its conv's output quantized and then
    dequantized into a float activation, as onnxruntime's quantizer leaves MTCNN's PRelu), fp16 when the graph
    computes in fp16, else fp32."""
    if any(la.quant is not None or "QuantizeLinear" in la.chain for la in model.layers):
        return "int8"
    return "fp16" if model.normalized.fp16_compute else "fp32"


def tolerance_rule(model: Model, value: float | None = None) -> ToleranceRule:
    """The model's rule, with ``value`` (``--tolerance``) in place of the default when given."""
    precision = model_precision(model)
    return ToleranceRule(precision, DEFAULTS[precision] if value is None else float(value))


def layer_step(layer: Layer, t_ort: np.ndarray) -> float:
    """The quantization step of ``layer``'s activation tensor: its scale when the graph stores it as integers,
    else the step of its own range, (max(T, 0) − min(T, 0)) / 255, from ``t_ort`` (its onnxruntime value)."""
    if layer.quant is not None and layer.quant.scale is not None:
        return float(layer.quant.scale)
    return float(max(float(t_ort.max()), 0.0) - min(float(t_ort.min()), 0.0)) / 255.0
