"""Layers of quantized graphs: where the chain of a QLinearConv, ConvInteger or QDQ Conv starts, and its quantized
links (CONTRACT.md, "Terms": the activation tensor is the one the int8 graph really carries, read as real values).

* QOperator (``QLinearConv``): the conv writes an integer tensor with a constant scale and zero point; onnxruntime's
  ``com.microsoft`` QLinearSigmoid / QLinearLeakyRelu (and the QLinearSigmoid·QLinearMul gate of SiLU) extend it.
* QDQ (``DequantizeLinear`` → ``Conv`` → ``QuantizeLinear``): onnxruntime fuses the three into a QLinearConv, so the
  conv's float output never exists at run time, and the quantizer folds a ReLU/ReLU6 into the QuantizeLinear's
  range. The chain passes through QuantizeLinear (the tensor is then the integer one) and through a
  DequantizeLinear only when an elementwise op follows it.
* dynamic (``ConvInteger``): the int32 sums are scaled back to float by Cast → Mul (scale) → Add (bias); that
  float tensor is what the graph carries, and the next layer quantizes it with a range of its own.

Nothing here exposes a DequantizeLinear output: that output is the next QLinearConv's input once onnxruntime fuses
the QDQ groups, and exposing it would make onnxruntime keep the float path (and change what it computes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from onnx_kernelviz.frontend.graph import GraphView, NodeView

MS = "com.microsoft"
#: onnxruntime's quantized unary ops: (X, X_scale, X_zero_point, Y_scale, Y_zero_point)
QUANT_UNARY_OPS = frozenset({"QLinearSigmoid", "QLinearLeakyRelu"})


@dataclass(frozen=True)
class Quantization:
    """How the deployed graph stores a layer's activation tensor.

    ``static`` kinds (``qdq``, ``qoperator``): the tensor holds integers of ``dtype``; its real value is
    ``(q − zero_point)·scale``. ``dynamic`` (ConvInteger): the tensor is float; the next layer quantizes it with a
    range computed per input, so ``scale`` and ``zero_point`` are None.
    """

    kind: str
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    @property
    def static(self) -> bool:
        return self.scale is not None

    def to_dict(self) -> dict:
        return {"kind": self.kind, "dtype": self.dtype, "scale": self.scale, "zero_point": self.zero_point}


@dataclass(frozen=True)
class Start:
    """Where a conv's chain starts: the tensor, the labels already walked, the storage, and the layer's kind."""

    tensor: str
    chain: tuple[str, ...]
    quant: Quantization | None
    kind: str | None


#: the next link: (label, tensor, storage of that tensor), or None where the chain ends
Link = tuple[str, str, "Quantization | None"]
FloatStep = Callable[[GraphView, str], "tuple[str, str] | None"]


def start(graph: GraphView, node: NodeView) -> Start:
    """The beginning of the activation chain of conv ``node``."""
    out = node.outputs[0]
    if node.op_type == "QLinearConv":
        return Start(out, (), _static(graph, "qoperator", node.inputs[6], _opt(node, 7)), "qoperator")
    if node.op_type == "ConvInteger":
        tensor, chain = _dequantize_prelude(graph, out)
        return Start(tensor, chain, Quantization("dynamic", "float32"), "dynamic")
    data = graph.producer.get(node.inputs[0])
    if node.op_type == "Conv" and data is not None and data.op_type == "DequantizeLinear":
        return Start(out, (), None, "qdq")
    return Start(out, (), None, None)


def next_link(graph: GraphView, tensor: str, quant: Quantization | None, kind: str | None,
              float_step: FloatStep) -> Link | None:
    """One step along the chain from ``tensor`` (stored as ``quant``); ``float_step`` is the float-graph rule."""
    if quant is not None and quant.static:
        return _next_quantized(graph, tensor, quant, float_step)
    users = graph.consumers.get(tensor, [])
    if kind in ("qdq", "qoperator") and len(users) == 1 and users[0].op_type == "QuantizeLinear" \
            and users[0].inputs[0] == tensor:
        q = _static(graph, kind, users[0].inputs[1], _opt(users[0], 2))
        if q is not None:
            return "QuantizeLinear", users[0].outputs[0], q
    step = float_step(graph, tensor)
    return None if step is None else (*step, quant)


def _next_quantized(graph: GraphView, tensor: str, quant: Quantization, float_step: FloatStep) -> Link | None:
    users = graph.consumers.get(tensor, [])
    if len(users) == 1 and users[0].op_type == "DequantizeLinear":
        # Pass a DequantizeLinear only when an elementwise op follows: otherwise the integer tensor is the end.
        real = users[0].outputs[0]
        if float_step(graph, real) is not None:
            return "DequantizeLinear", real, None
        return None
    if len(users) == 1 and users[0].domain == MS and users[0].op_type in QUANT_UNARY_OPS \
            and users[0].inputs[0] == tensor:
        q = _static(graph, quant.kind, users[0].inputs[3], _opt(users[0], 4))
        return None if q is None else (users[0].op_type, users[0].outputs[0], q)
    if len(users) == 2:
        # SiLU in QOperator form: QLinearMul(x, QLinearSigmoid(x))
        gate = next((u for u in users if u.op_type == "QLinearSigmoid" and u.inputs[0] == tensor), None)
        mul = next((u for u in users if u.op_type == "QLinearMul"), None)
        if gate is not None and mul is not None and {mul.inputs[0], mul.inputs[3]} == {tensor, gate.outputs[0]} \
                and len(graph.consumers.get(gate.outputs[0], [])) == 1:
            q = _static(graph, quant.kind, mul.inputs[6], _opt(mul, 7))
            return None if q is None else ("QLinearSigmoid*QLinearMul", mul.outputs[0], q)
    return None


def through_qdq(graph: GraphView, tensor: str) -> str:
    """``tensor`` itself, or the DequantizeLinear output it reaches through one QuantizeLinear → DequantizeLinear
    pair (QDQ graphs quantize the Sigmoid of a SiLU before the Mul reads it)."""
    users = graph.consumers.get(tensor, [])
    if len(users) == 1 and users[0].op_type == "QuantizeLinear":
        dq = graph.consumers.get(users[0].outputs[0], [])
        if len(dq) == 1 and dq[0].op_type == "DequantizeLinear":
            return dq[0].outputs[0]
    return tensor


def _dequantize_prelude(graph: GraphView, tensor: str) -> tuple[str, tuple[str, ...]]:
    """ConvInteger's int32 output -> Cast -> Mul (by input scale × weight scale) -> Add (bias): the float conv
    output, as onnxruntime's dynamic quantizer writes it."""
    walked = []
    for op in ("Cast", "Mul", "Add"):
        users = graph.consumers.get(tensor, [])
        if len(users) != 1 or users[0].op_type != op or tensor not in users[0].inputs:
            break
        tensor = users[0].outputs[0]
        walked.append(op)
    return tensor, (("dequantize",) if walked[:2] == ["Cast", "Mul"] else tuple(walked))


#: ops that write an integer tensor, and the input index of that tensor's zero point
OUTPUT_ZERO_POINT = {"QuantizeLinear": 2, "QLinearConv": 7, "QLinearMatMul": 7, "QLinearAdd": 7, "QLinearMul": 7,
                     "QLinearSigmoid": 4, "QLinearLeakyRelu": 4, "QLinearGlobalAveragePool": 4,
                     "QLinearAveragePool": 4, "QLinearConcat": 1}


def integer_dtype(graph: GraphView, tensor: str) -> np.dtype | None:
    """The integer type of a tensor written by a quantizing op (from its zero point; uint8 when absent), for
    tensors whose type shape inference does not know (com.microsoft ops)."""
    p = graph.producer.get(tensor)
    if p is None or p.op_type not in OUTPUT_ZERO_POINT or p.outputs[0] != tensor:
        return None
    zero = _opt(p, OUTPUT_ZERO_POINT[p.op_type])
    value = None if zero is None else graph.constant(zero)
    return np.dtype(np.uint8) if value is None else value.dtype


def _opt(node: NodeView, i: int) -> str | None:
    return node.inputs[i] if len(node.inputs) > i and node.inputs[i] else None


def _static(graph: GraphView, kind: str, scale_name: str, zero_name: str | None) -> Quantization | None:
    """A per-tensor quantization with constant scale and zero point (None when either is computed)."""
    scale = graph.constant(scale_name)
    zero = np.zeros((), np.uint8) if zero_name is None else graph.constant(zero_name)
    if scale is None or zero is None or scale.size != 1 or zero.size != 1:
        return None
    return Quantization(kind, str(zero.dtype), float(scale.reshape(())), int(zero.reshape(())))
