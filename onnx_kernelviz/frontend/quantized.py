"""The torch copy of an int8 graph: the float model it stands for, with fake quantization where it quantizes.

onnx2torch 1.5 has no converter for any quantization op (QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
QLinearConv, ConvInteger, nor onnxruntime's com.microsoft QLinear* ops), so a quantized model fails at its first
QuantizeLinear. We register them through onnx2torch's public ``add_converter``:

* a quantized tensor travels through torch as a float tensor holding its integer values (``q``), so the ops that
  act on it unchanged in the int8 graph (MaxPool, Reshape, Concat along channels) keep working;
* QuantizeLinear is fake quantization: ``q = clamp(round(x / s) + z, qmin, qmax)`` with a straight-through
  gradient for the rounding (the clamp's gradient is zero outside the range, like the ReLU6 the quantizer folds
  into that range), so x' is optimized against what the int8 model computes;
* DequantizeLinear is ``(q − z)·s``; QLinearConv is DequantizeLinear → float Conv → QuantizeLinear; ConvInteger is a
  float conv of the zero-point-shifted integers (exact while the int32 sums stay under 2^24).

DynamicQuantizeLinear takes its range from the whole tensor, batch included; onnxruntime runs such models one image
at a time (``Model``) and the torch copy takes the range per sample, so each image is quantized as it would be alone.

(Over 300 lines on purpose: the converters share the fake-quantization helpers and are registered together; each
one is short and reads against the ONNX operator it implements.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from onnx2torch.node_converters.registry import add_converter, get_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OnnxToTorchModule, OperationConverterResult, get_const_value
from torch import nn

from onnx_kernelviz.errors import ConversionError

MS = "com.microsoft"
#: onnxruntime's quantized ops converted here; the normalized copy moves them to :data:`TORCH_MS`, since onnx2torch
#: names modules after the node's domain and torch refuses a dot in a module name
MS_OPS = frozenset({"QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearGlobalAveragePool",
                    "QLinearConcat"})
TORCH_MS = "com_microsoft"
#: integer range of each zero-point dtype
_RANGES = {torch.uint8: (0, 255), torch.int8: (-128, 127), torch.uint16: (0, 65535), torch.int16: (-32768, 32767),
           torch.int32: (-2 ** 31, 2 ** 31 - 1)}


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, qmin: float, qmax: float) -> torch.Tensor:
    """``clamp(round(x / scale) + zero, qmin, qmax)`` (round half to even, as onnxruntime), straight-through gradient
    for the rounding; the result holds the integers as floats.

    The zero point is added after rounding, as onnxruntime does: ``round(x / scale + zero)`` loses low bits of
    ``x / scale`` in the float addition and rounded 0.4 % of a dynamic model's inputs differently.
    """
    v = x / scale
    return (v + (torch.round(v) - v).detach() + zero).clamp(qmin, qmax)


def _per_axis(v: torch.Tensor, axis: int, rank: int) -> torch.Tensor:
    """A scale or zero point (scalar or 1-D along ``axis``) shaped to broadcast against a tensor of ``rank``."""
    v = v.float()
    if v.ndim == 0 or v.numel() == 1:
        return v.reshape(())
    shape = [1] * rank
    shape[axis % rank] = v.numel()
    return v.reshape(shape)


class QuantizeLinear(nn.Module, OnnxToTorchModule):
    """ONNX QuantizeLinear as fake quantization: ``[*] float -> [*] float holding integers``."""

    scale: torch.Tensor
    zero: torch.Tensor

    def __init__(self, scale: torch.Tensor, zero: torch.Tensor, qrange: tuple[int, int], axis: int = 1) -> None:
        super().__init__()
        self.register_buffer("scale", scale.float())
        self.register_buffer("zero", zero.float())
        self.qmin, self.qmax = qrange
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_quantize(x, _per_axis(self.scale, self.axis, x.ndim), _per_axis(self.zero, self.axis, x.ndim),
                             self.qmin, self.qmax)


class DequantizeLinear(nn.Module, OnnxToTorchModule):
    """ONNX DequantizeLinear: ``(q − z)·s``."""

    scale: torch.Tensor
    zero: torch.Tensor

    def __init__(self, scale: torch.Tensor, zero: torch.Tensor, axis: int = 1) -> None:
        super().__init__()
        self.register_buffer("scale", scale.float())
        self.register_buffer("zero", zero.float())
        self.axis = axis

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return (q.float() - _per_axis(self.zero, self.axis, q.ndim)) * _per_axis(self.scale, self.axis, q.ndim)


class DynamicQuantizeLinear(nn.Module, OnnxToTorchModule):
    """ONNX DynamicQuantizeLinear to uint8, with the range taken per sample: ``[B, *] -> (q [B, *], scale [B, 1..],
    zero [B, 1..])`` (onnxruntime's formula: the range always includes 0; the scale is constant for gradients)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        flat = x.detach().flatten(1)
        lo = flat.amin(1).clamp(max=0)
        hi = flat.amax(1).clamp(min=0)
        scale = torch.where(hi > lo, (hi - lo) / 255.0, torch.ones_like(hi))
        zero = torch.round((0 - lo / scale).clamp(0, 255))
        shape = (-1,) + (1,) * (x.ndim - 1)
        scale, zero = scale.view(shape), zero.view(shape)
        return fake_quantize(x, scale, zero, 0, 255), scale, zero


class ConvInteger(nn.Module, OnnxToTorchModule):
    """ONNX ConvInteger with a constant weight: ``conv(x − x_zero, w − w_zero)`` in float (its int32 sums)."""

    weight: torch.Tensor

    def __init__(self, weight: torch.Tensor, w_zero: torch.Tensor, attrs: dict) -> None:
        super().__init__()
        w = weight.float() - _per_axis(w_zero, 0, weight.ndim)
        self.register_buffer("weight", w)
        self.conv = _conv_kwargs(attrs, w)

    def forward(self, x: torch.Tensor, x_zero: torch.Tensor | None = None) -> torch.Tensor:
        if x_zero is not None:
            x = x - x_zero.float()
        return _conv(x, self.weight, None, self.conv)


class QLinearConv(nn.Module, OnnxToTorchModule):
    """ONNX QLinearConv the way onnxruntime computes it: the exact integer sums of ``(x − x_zero)·(w − w_zero)``
    plus the int32 bias, times one float multiplier ``x_scale·w_scale / y_scale`` per output channel, rounded.

    The sums are computed by a float conv of the integer values, exact while they stay under 2^24 (|x−z| ≤ 255,
    |w−z| ≤ 255: fan-in up to 258 products at the extremes, far more in practice). Computing
    dequantize → float conv → quantize instead rounds differently near ties, and in a 49-layer network the flips
    compound layer after layer (measured on the default model: 5 % of layer 16's values one step off).
    """

    weight: torch.Tensor
    bias: torch.Tensor | None
    mult: torch.Tensor
    xz: torch.Tensor
    yz: torch.Tensor

    def __init__(self, x_q: tuple, w: torch.Tensor, w_q: tuple, y_q: tuple, bias: torch.Tensor | None,
                 attrs: dict) -> None:
        super().__init__()
        (xs, xz), (ws, wz), (ys, yz, self.qrange) = x_q, w_q, y_q
        self.register_buffer("weight", w.float() - _per_axis(wz, 0, w.ndim))
        self.register_buffer("bias", None if bias is None else bias.float())
        # onnxruntime: output_scale[c] = x_scale * w_scale[c] / y_scale, in float32, in this order
        mult = (xs.float().reshape(()) * ws.float().flatten()) / ys.float().reshape(())
        self.register_buffer("mult", mult.reshape(1, -1, *([1] * (w.ndim - 2))))
        self.register_buffer("xz", xz.float().reshape(()))
        self.register_buffer("yz", yz.float().reshape(()))
        self.conv = _conv_kwargs(attrs, self.weight)

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        acc = _conv(q - self.xz, self.weight, self.bias, self.conv)
        v = acc * self.mult
        return (v + (torch.round(v) - v).detach() + self.yz).clamp(*self.qrange)


def _conv_kwargs(attrs: dict, weight: torch.Tensor) -> dict:
    rank = weight.ndim - 2
    pads = list(attrs.get("pads", [0] * 2 * rank))
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        raise ConversionError(f"a quantized conv with auto_pad {attrs['auto_pad']} cannot be converted; re-export "
                              "the float model with explicit pads before quantizing it")
    return {"stride": attrs.get("strides", [1] * rank), "dilation": attrs.get("dilations", [1] * rank),
            "groups": attrs.get("group", 1), "pads": pads}


def _conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, kw: dict) -> torch.Tensor:
    pads = kw["pads"]
    half = len(pads) // 2
    # F.pad takes (left, right) pairs from the last dim backwards; ONNX pads are [begins..., ends...]
    x = F.pad(x, [p for i in reversed(range(half)) for p in (pads[i], pads[i + half])])
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[w.ndim - 2]
    return fn(x, w, b, stride=kw["stride"], dilation=kw["dilation"], groups=kw["groups"])


class QLinearBinary(nn.Module, OnnxToTorchModule):
    """onnxruntime's QLinearAdd / QLinearMul: dequantize both, add or multiply, fake-quantize."""

    as_: torch.Tensor
    az: torch.Tensor
    bs: torch.Tensor
    bz: torch.Tensor
    cs: torch.Tensor
    cz: torch.Tensor

    def __init__(self, op: str, a: tuple, b: tuple, c: tuple) -> None:
        super().__init__()
        self.op = op
        for name, v in zip(("as_", "az", "bs", "bz", "cs", "cz"), (*a, *b, *c[:2])):
            self.register_buffer(name, v.float().reshape(()))
        self.qrange = c[2]

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a, b = (a - self.az) * self.as_, (b - self.bz) * self.bs
        return fake_quantize(a + b if self.op == "QLinearAdd" else a * b, self.cs, self.cz, *self.qrange)


class QLinearUnary(nn.Module, OnnxToTorchModule):
    """onnxruntime's QLinearSigmoid / QLinearLeakyRelu / QLinearGlobalAveragePool: dequantize, op, fake-quantize."""

    xs: torch.Tensor
    xz: torch.Tensor
    ys: torch.Tensor
    yz: torch.Tensor

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], x: tuple, y: tuple) -> None:
        super().__init__()
        self.fn = fn
        for name, v in zip(("xs", "xz", "ys", "yz"), (*x, *y[:2])):
            self.register_buffer(name, v.float().reshape(()))
        self.qrange = y[2]

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return fake_quantize(self.fn((q - self.xz) * self.xs), self.ys, self.yz, *self.qrange)


class QLinearConcat(nn.Module, OnnxToTorchModule):
    """onnxruntime's QLinearConcat: each input dequantized with its own scale, concatenated, fake-quantized."""

    scales: torch.Tensor
    zeros: torch.Tensor
    ys: torch.Tensor
    yz: torch.Tensor

    def __init__(self, axis: int, inputs: list[tuple], y: tuple) -> None:
        super().__init__()
        self.axis, self.qrange = axis, y[2]
        self.register_buffer("scales", torch.stack([s.float().reshape(()) for s, _ in inputs]))
        self.register_buffer("zeros", torch.stack([z.float().reshape(()) for _, z in inputs]))
        self.register_buffer("ys", y[0].float().reshape(()))
        self.register_buffer("yz", y[1].float().reshape(()))

    def forward(self, *qs: torch.Tensor) -> torch.Tensor:
        parts = [(q - self.zeros[i]) * self.scales[i] for i, q in enumerate(qs)]
        return fake_quantize(torch.cat(parts, self.axis), self.ys, self.yz, *self.qrange)


# Converters -------------------------------------------------------------------------------------------------

def _const(node: OnnxNode, graph: OnnxGraph, i: int, default_dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """Input ``i`` of ``node`` as a constant tensor (absent optional zero points are 0 of ``default_dtype``)."""
    names = node.input_values
    if i >= len(names) or not names[i]:
        return torch.zeros((), dtype=default_dtype)
    try:
        v = get_const_value(names[i], graph)
    except KeyError:
        raise ConversionError(f"{node.operation_type} node {node.name!r} takes its input {i} from a computed tensor; "
                              "kernelviz converts quantization with constant scales and zero points only") from None
    return v if isinstance(v, torch.Tensor) else torch.tensor(v)


def _qrange(zero: torch.Tensor) -> tuple[int, int]:
    if zero.dtype not in _RANGES:
        raise ConversionError(f"quantization to {zero.dtype} is not supported; kernelviz reads 8- and 16-bit "
                              "integer quantization")
    return _RANGES[zero.dtype]


def _result(module: nn.Module, node: OnnxNode, inputs: tuple[str, ...]) -> OperationConverterResult:
    return OperationConverterResult(module, OnnxMapping(inputs=inputs, outputs=node.output_values))


Converter = Callable[[OnnxNode, OnnxGraph], OperationConverterResult]


def _register(op: str, versions: tuple[int, ...], domain: str = "") -> Callable[[Converter], Converter]:
    """add_converter for each version, tolerating an onnx2torch that already has one."""

    def deco(fn: Converter) -> Converter:
        for v in versions:
            try:
                get_converter(op, v, domain)
            except NotImplementedError:
                add_converter(op, v, domain)(fn)
        return fn

    return deco


def _check_blocked(node: OnnxNode) -> None:
    if node.attributes.get("block_size", 0):
        raise ConversionError(f"{node.operation_type} node {node.name!r} uses blocked quantization (block_size), "
                              "which kernelviz cannot convert")


@_register("QuantizeLinear", (10, 13, 19, 21))
def _quantize_linear(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    _check_blocked(node)
    zero = _const(node, graph, 2)
    module = QuantizeLinear(_const(node, graph, 1), zero, _qrange(zero), node.attributes.get("axis", 1))
    return _result(module, node, (node.input_values[0],))


@_register("DequantizeLinear", (10, 13, 19, 21))
def _dequantize_linear(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    _check_blocked(node)
    module = DequantizeLinear(_const(node, graph, 1), _const(node, graph, 2), node.attributes.get("axis", 1))
    return _result(module, node, (node.input_values[0],))


@_register("DynamicQuantizeLinear", (11,))
def _dynamic_quantize_linear(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    del graph
    return _result(DynamicQuantizeLinear(), node, (node.input_values[0],))


@_register("ConvInteger", (10,))
def _conv_integer(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    names = node.input_values
    weight = _const(node, graph, 1)
    module = ConvInteger(weight, _const(node, graph, 3), dict(node.attributes))
    # the activation's zero point is computed (DynamicQuantizeLinear) or constant: either way an input
    inputs = (names[0], names[2]) if len(names) > 2 and names[2] else (names[0],)
    return _result(module, node, inputs)


@_register("QLinearConv", (10,))
def _qlinear_conv(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    c = lambda i: _const(node, graph, i)  # noqa: E731
    y_zero = c(7)
    bias = c(8) if len(node.input_values) > 8 and node.input_values[8] else None
    module = QLinearConv((c(1), c(2)), c(3), (c(4), c(5)), (c(6), y_zero, _qrange(y_zero)), bias,
                         dict(node.attributes))
    return _result(module, node, (node.input_values[0],))


@_register("QLinearAdd", (1,), TORCH_MS)
@_register("QLinearMul", (1,), TORCH_MS)
def _qlinear_binary(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    c = lambda i: _const(node, graph, i)  # noqa: E731
    module = QLinearBinary(node.operation_type, (c(1), c(2)), (c(4), c(5)), (c(6), c(7), _qrange(c(7))))
    return _result(module, node, (node.input_values[0], node.input_values[3]))


_UNARY = {"QLinearSigmoid": lambda attrs: torch.sigmoid,
          "QLinearLeakyRelu": lambda attrs: (lambda v: F.leaky_relu(v, attrs.get("alpha", 0.01))),
          "QLinearGlobalAveragePool": lambda attrs: (lambda v: v.mean(dim=tuple(range(2, v.ndim)), keepdim=True))}


@_register("QLinearSigmoid", (1,), TORCH_MS)
@_register("QLinearLeakyRelu", (1,), TORCH_MS)
@_register("QLinearGlobalAveragePool", (1,), TORCH_MS)
def _qlinear_unary(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    if node.attributes.get("channels_last", 0):
        raise ConversionError(f"{node.operation_type} node {node.name!r} is channels-last, which kernelviz cannot "
                              "convert; quantize the NCHW model")
    c = lambda i: _const(node, graph, i)  # noqa: E731
    fn = _UNARY[node.operation_type](node.attributes)
    module = QLinearUnary(fn, (c(1), c(2)), (c(3), c(4), _qrange(c(4))))
    return _result(module, node, (node.input_values[0],))


@_register("QLinearConcat", (1,), TORCH_MS)
def _qlinear_concat(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    c = lambda i: _const(node, graph, i)  # noqa: E731
    names = node.input_values
    starts = range(2, len(names), 3)
    module = QLinearConcat(node.attributes.get("axis", 1), [(c(i + 1), c(i + 2)) for i in starts],
                           (c(0), c(1), _qrange(c(1))))
    return _result(module, node, tuple(names[i] for i in starts))
