"""Stage 5: the truncated graph as a frozen torch module (onnx2torch), with converters it lacks.

onnx2torch looks converters up by the op's schema version at the model's opset; any op whose schema was bumped
after onnx2torch's last release (most ops at opset 19-22 only gained types, e.g. Conv-22) has no converter
there. We add them through onnx2torch's public ``add_converter``: dedicated converters where the semantics
changed (Reduce*-18 and Split-18 moved attributes to inputs, Gelu-20 is new) and checked aliases to the previous
version where only types changed. Nothing in onnx2torch is patched.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import onnx
import torch
from onnx import defs
from onnx2torch import convert as o2t_convert
from onnx2torch.node_converters.reduce import OnnxReduceStaticAxes
from onnx2torch.node_converters.registry import add_converter, get_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OnnxToTorchModule, OperationConverterResult, get_const_value
from torch import nn

from onnx_kernelviz.errors import ConversionError
from onnx_kernelviz.frontend import quantized  # noqa: F401  (registers the quantization converters)
from onnx_kernelviz.frontend.graph import GraphView, opset_versions
from onnx_kernelviz.frontend.names import check_codegen_safe

_REDUCE_OPS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
               "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")


@dataclass(frozen=True)
class TorchGraph:
    """A converted (truncated) graph: ``module(x)`` maps ``[B, C, H, W]`` to the tensors named in ``outputs``.

    ``readouts`` maps the outputs that hold integers (quantized graphs, fake-quantized in torch) to their
    ``(scale, zero_point)``; those come back as real values ``(q − zero_point)·scale``, like onnxruntime's.
    """

    module: nn.Module
    outputs: tuple[str, ...]
    readouts: Mapping[str, tuple[float, int]] = field(default_factory=dict)

    def __call__(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = self.module(x)
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        return [(o - self.readouts[n][1]) * self.readouts[n][0] if n in self.readouts else o
                for n, o in zip(self.outputs, outs)]


def to_torch(proto: onnx.ModelProto, outputs: list[str],
             readouts: Mapping[str, tuple[float, int]] | None = None) -> TorchGraph:
    """Convert a (normalized, truncated) model whose outputs are ``outputs``; eval mode, no parameter grads.

    Raises:
        ConversionError: an op has no converter; the message names it, its opset and what to do.
    """
    check_codegen_safe(proto)  # the last gate: a name that is not an identifier would become Python source
    ensure_converters(proto)
    _batchnorm_ranks(proto)
    try:
        with warnings.catch_warnings():
            # onnx2torch warns about every nearest-mode Resize; parity is checked numerically instead.
            warnings.simplefilter("ignore")
            module = o2t_convert(proto)
    except ConversionError:
        raise
    except NotImplementedError as e:
        raise ConversionError(f"onnx2torch cannot convert this model: {e}; {_REMEDY}") from e
    except Exception as e:  # noqa: BLE001 - onnx2torch raises KeyError/ValueError/RuntimeError for bad graphs
        raise ConversionError(f"onnx2torch failed on this model ({type(e).__name__}: {str(e)[:200]}); "
                              f"{_REMEDY}") from e
    # convert() returns a module in training mode: BatchNorm would use batch statistics and Dropout would drop.
    module.eval().requires_grad_(False)
    return TorchGraph(module, tuple(outputs), dict(readouts or {}))


#: ops whose output has the rank of their first input
_SAME_RANK = frozenset({"Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu",
                        "Selu", "Mish", "Softplus", "Gelu", "Dropout", "Identity", "BatchNormalization", "Add", "Sub",
                        "Mul", "Div", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Pad",
                        "Resize", "Upsample", "Cast", "QuantizeLinear", "DequantizeLinear", "InstanceNormalization",
                        "LRN", "Concat", "Sum", "Max", "Min", "Transpose"})


def _batchnorm_ranks(proto: onnx.ModelProto) -> None:
    """Give each BatchNormalization input whose rank shape inference could not find (a Reshape to a computed shape,
    inference that gave up) the rank of the tensor it normalizes: onnx2torch picks BatchNorm1d/2d/3d from the
    rank in value_info and fails with "spatial rank == -2" without it. The rank comes from the producer: a conv's
    weight rank, or the rank of the input of an op that keeps it, back to a tensor whose rank is known."""
    g = proto.graph
    ranked = {vi.name: len(vi.type.tensor_type.shape.dim) for vi in (*g.input, *g.value_info, *g.output)
              if vi.type.tensor_type.HasField("shape")}
    dims = {t.name: len(t.dims) for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}

    def rank(name: str, depth: int = 0) -> int | None:
        if name in ranked or depth > 64:
            return ranked.get(name)
        node = producer.get(name)
        if node is None:
            return None
        if node.op_type in ("Conv", "ConvInteger", "QLinearConv") and len(node.input) > 1:
            w = node.input[3 if node.op_type == "QLinearConv" else 1]
            return dims.get(w) or rank(w, depth + 1)
        if node.op_type in _SAME_RANK:
            return rank(node.input[0], depth + 1)
        return None

    for node in g.node:
        if node.op_type == "BatchNormalization" and node.input[0] not in ranked:
            r = rank(node.input[0])
            if r is not None:
                vi = onnx.helper.make_tensor_value_info(node.input[0], onnx.TensorProto.FLOAT, [None] * r)
                g.value_info.append(vi)
                ranked[node.input[0]] = r


_REMEDY = CONVERSION_REMEDY = ("re-export the model at opset 13-17, or register a converter with "
                                "onnx2torch.node_converters.add_converter before running kernelviz")


def ensure_converters(proto: onnx.ModelProto) -> None:
    """Register, for every op in ``proto`` that onnx2torch lacks at the model's opset, a checked alias to the
    previous version of the op; raise :class:`ConversionError` naming the op when there is none."""
    opsets = opset_versions(proto)
    for node in GraphView(proto, infer_shapes=False).nodes:
        domain = "" if node.domain == "ai.onnx" else node.domain
        version = opsets.get(domain, opsets.get("", 1))
        try:
            get_converter(node.op_type, version, domain)
            continue
        except NotImplementedError:
            pass
        where = f"{node.op_type} (domain {domain or 'ai.onnx'!r}, opset {version}, node {node.name!r})"
        try:
            since = defs.get_schema(node.op_type, max_inclusive_version=version, domain=domain).since_version
        except (RuntimeError, defs.SchemaError):
            # Custom ops (com.example::Foo) and onnxruntime's contrib ops (com.microsoft::Gelu, left behind
            # when a model is saved after onnxruntime's graph optimizations) have no standard definition.
            raise ConversionError(f"op {where} is not a standard ONNX op and comes before a conv layer, so the "
                                  "model cannot be converted to torch; export the model without it (for "
                                  "com.microsoft ops: use the export from before onnxruntime's optimizations), "
                                  "or register a converter with onnx2torch.node_converters.add_converter("
                                  f"{node.op_type!r}, {version}, {domain!r}) before running kernelviz") from None
        previous = _previous_converter(node.op_type, since, domain)
        if previous is None:
            raise ConversionError(f"onnx2torch has no converter for {where} at any opset, and it comes before a "
                                  "conv layer; export the model with standard layers in its place, or register "
                                  f"a converter with onnx2torch.node_converters.add_converter({node.op_type!r}, "
                                  f"{since}) before running kernelviz")
        add_converter(node.op_type, since, domain)(_checked_alias(node.op_type, since, previous))


def _previous_converter(op: str, since: int, domain: str) -> Callable | None:
    for v in range(since - 1, 0, -1):
        try:
            return get_converter(op, v, domain)
        except NotImplementedError:
            continue
    return None


def _checked_alias(op: str, since: int, previous: Callable) -> Callable:
    """The previous version's converter, refusing nodes that use what the newer version added."""

    def converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        problem = _new_feature_used(op, node)
        if problem:
            raise ConversionError(f"{op}-{since} node {node.name!r} uses {problem}, which kernelviz cannot convert; "
                                  f"{_REMEDY}")
        return previous(node, graph)

    return converter


def _new_feature_used(op: str, node: OnnxNode) -> str | None:
    a = node.attributes
    if op == "Pad" and (len(node.input_values) > 3 and node.input_values[3] or a.get("mode") == "wrap"):
        return "the axes input or wrap mode (Pad-18/19)"
    if op == "Resize" and (a.get("antialias", 0) or a.get("axes") or
                           a.get("keep_aspect_ratio_policy", "stretch") != "stretch"):
        return "antialias, axes or keep_aspect_ratio_policy (Resize-18)"
    if op == "Resize" and a.get("coordinate_transformation_mode") == "half_pixel_symmetric":
        return "coordinate_transformation_mode half_pixel_symmetric (Resize-19)"
    if op == "AveragePool" and any(d != 1 for d in a.get("dilations", [1])):
        return "dilations (AveragePool-19)"
    return None


# Converters for ops whose semantics changed after onnx2torch's release. -------------------------------------

def _register(op: str, version: int) -> Callable:
    """add_converter that tolerates a newer onnx2torch already providing the converter."""

    def deco(fn: Callable) -> Callable:
        try:
            get_converter(op, version)
        except NotImplementedError:
            add_converter(op, version)(fn)
        return fn

    return deco


def _reduce18(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    # Reduce*-18 takes axes as an optional input instead of an attribute; kernelviz only needs constant axes.
    keepdims = node.attributes.get("keepdims", 1)
    axes = None
    if len(node.input_values) > 1 and node.input_values[1]:
        try:
            axes = [int(v) for v in get_const_value(node.input_values[1], graph).flatten().tolist()]
        except KeyError:
            raise ConversionError(f"{node.operation_type}-18 node {node.name!r} has computed axes; "
                                  f"{_REMEDY}") from None
    if not axes and node.attributes.get("noop_with_empty_axes", 0):
        module: nn.Module = nn.Identity()
    else:
        module = OnnxReduceStaticAxes(operation_type=node.operation_type, axes=axes, keepdims=keepdims)
    return OperationConverterResult(module, OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values))


for _op in _REDUCE_OPS:
    _register(_op, 18)(_reduce18)


class _Split18(nn.Module, OnnxToTorchModule):
    """ONNX Split-18: explicit sizes, or ``num_outputs`` chunks of ceil(n / num_outputs) (the last smaller)."""

    def __init__(self, axis: int, sizes: list[int] | None, num_outputs: int) -> None:
        super().__init__()
        self.axis, self.sizes, self.num_outputs = axis, sizes, num_outputs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.sizes is not None:
            return torch.split(x, self.sizes, dim=self.axis)
        return torch.split(x, math.ceil(x.shape[self.axis] / self.num_outputs), dim=self.axis)


@_register("Split", 18)
def _split18(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    sizes = None
    if len(node.input_values) > 1 and node.input_values[1]:
        try:
            sizes = [int(v) for v in get_const_value(node.input_values[1], graph).flatten().tolist()]
        except KeyError:
            raise ConversionError(f"Split-18 node {node.name!r} has computed split sizes; {_REMEDY}") from None
    num = node.attributes.get("num_outputs", len(node.output_values))
    module = _Split18(node.attributes.get("axis", 0), sizes, num)
    return OperationConverterResult(module, OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values))


@_register("Gelu", 20)
def _gelu20(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    del graph
    approximate = node.attributes.get("approximate", "none")
    return OperationConverterResult(nn.GELU(approximate=approximate),
                                    OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values))

