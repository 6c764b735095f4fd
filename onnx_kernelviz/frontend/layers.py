"""Stage 3: the conv layers of a graph and the activation tensor of each.

A layer's activation tensor is the end of the elementwise chain that directly follows its Conv along a single
consumer path (BatchNormalization, Relu, Clip, SiLU as Sigmoid·Mul, ...), or the Conv output itself
(CONTRACT.md, "Terms").

Quantized graphs have layers too: QLinearConv, ConvInteger and a Conv between DequantizeLinear and QuantizeLinear
(QDQ); their chains start and pass through quantization as ``quantlayers`` describes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from onnx_kernelviz.errors import ModelError, UsageError
from onnx_kernelviz.frontend.graph import GraphView, NodeView
from onnx_kernelviz.frontend.quantlayers import Quantization, next_link, start, through_qdq

#: Ops that act channel-wise/elementwise on one tensor and keep its shape: they extend an activation chain.
UNARY_CHAIN_OPS = frozenset({
    "BatchNormalization", "Relu", "Clip", "LeakyRelu", "PRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Elu",
    "Selu", "Celu", "Tanh", "Softplus", "Softsign", "Gelu", "Mish", "ThresholdedRelu", "Dropout", "Identity",
})
#: Binary ops that extend the chain when their other operand is a constant (TF/Paddle exports add the conv
#: bias or a BN-folded scale as a separate node).
CONST_BINARY_OPS = frozenset({"Add", "Mul", "Sub", "Div"})
#: Gates that read the tensor twice: x * sigmoid(x) (SiLU/Swish) and x * hardsigmoid(x) (legacy HardSwish).
GATE_OPS = frozenset({"Sigmoid", "HardSigmoid"})


@dataclass(frozen=True)
class Layer:
    """One Conv node and its activation tensor.

    ``shape`` is the activation shape ``[N, C, H, W]`` (ints, symbolic strings or None) when known.
    ``chain`` lists the op types between the Conv output and ``tensor``. ``quant`` says how a quantized graph
    stores ``tensor`` (None for float layers): a static ``quant`` means ``tensor`` holds integers, read as
    ``(q − zero_point)·scale``.
    """

    index: int
    name: str
    tensor: str
    conv_output: str
    channels: int
    shape: tuple[int | str | None, ...] | None
    group: int
    chain: tuple[str, ...]
    op: str = "Conv"
    quant: Quantization | None = None

    def to_dict(self) -> dict:
        """The contract's ``inspect --json`` layer entry (``quantization``: null for float layers)."""
        return {"index": self.index, "name": self.name, "op": self.op, "tensor": self.tensor,
                "conv_output": self.conv_output, "channels": self.channels,
                "shape": None if self.shape is None else list(self.shape), "group": self.group,
                "quantization": None if self.quant is None else self.quant.to_dict()}


#: conv ops (op, domain) and the input index of their weight
_WEIGHT_INPUT = {("Conv", ""): 1, ("QLinearConv", ""): 3, ("ConvInteger", ""): 1, ("FusedConv", "com.microsoft"): 1}


def _weight_input(node: NodeView) -> int | None:
    """The weight's input index for a conv node: a standard Conv, QLinearConv or ConvInteger, or onnxruntime's
    FusedConv (Conv + its activation in one node, left in models saved after onnxruntime's graph optimizations;
    its output is already activated); None for any other node."""
    return _WEIGHT_INPUT.get((node.op_type, "" if node.domain == "ai.onnx" else node.domain))


def find_layers(graph: GraphView) -> list[Layer]:
    """Every conv (Conv, FusedConv, QLinearConv, ConvInteger) of the graph in topological (file) order, with its
    activation tensor."""
    layers: list[Layer] = []
    for node in graph.nodes:
        wi = _weight_input(node)
        if wi is None:
            continue
        w_shape = _weight_shape(graph, node.inputs[wi]) if len(node.inputs) > wi else None
        channels = w_shape[0] if w_shape and isinstance(w_shape[0], int) else None
        tensor, chain, quant = _activation(graph, node)
        computed = graph.computed_type(tensor).shape or graph.computed_type(node.outputs[0]).shape
        if channels is None and computed and len(computed) > 1 and isinstance(computed[1], int):
            channels = computed[1]
        shape = graph.tensor_type(tensor).shape or graph.tensor_type(node.outputs[0]).shape
        if shape and len(shape) > 1:
            # the kernel count is what the weights or inference say, never a declared shape (0: unknown; a weight
            # computed from the input, declared with 10^12 kernels, made inspect list and diff allocate them)
            shape = (shape[0], channels, *shape[2:])
        if node.op_type == "FusedConv":
            act = node.attrs.get("activation", "")
            chain = ((act.decode() if isinstance(act, bytes) else str(act)) + " (fused)",) * bool(act) + chain
        layers.append(Layer(len(layers), node.name, tensor, node.outputs[0], int(channels or 0),
                            shape, int(node.attrs.get("group", 1)), chain, node.op_type, quant))
    return layers


def _weight_shape(graph: GraphView, name: str) -> tuple[int | str | None, ...] | None:
    """The weight's shape; a QDQ conv reads its integer weight through a DequantizeLinear. A computed weight's
    shape is what inference derives (through an Identity, a Reshape, ...), never what the file declares."""
    shape = graph.constant_shape(name)
    p = graph.producer.get(name)
    if shape is None and p is not None and p.op_type == "DequantizeLinear":
        shape = graph.constant_shape(p.inputs[0])
    return shape if shape is not None else graph.computed_type(name).shape


def conv_weights(graph: GraphView, layer: Layer) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The layer's conv weights ``[C', C/group, kh, kw]`` and bias ``[C']``, each None when it is absent or computed
    rather than a constant. Integer weights come back as their real values (``(q − zero point)·scale``; for
    QLinearConv and ConvInteger, whose weight scale is separate, the zero-point-shifted integers times the scale)."""
    node = graph.producer.get(layer.conv_output)
    wi = None if node is None else _weight_input(node)
    if node is None or wi is None:
        return None, None
    if node.op_type == "QLinearConv":
        w = _dequantized(graph, node.inputs[3], node.inputs[4], node.inputs[5])
        return w, None
    if node.op_type == "ConvInteger":
        zero = node.inputs[3] if len(node.inputs) > 3 else ""
        return _dequantized(graph, node.inputs[1], "", zero), None
    w = _constant_or_dequantized(graph, node.inputs[1]) if len(node.inputs) > 1 and node.inputs[1] else None
    b = _constant_or_dequantized(graph, node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] else None
    return w, b


def _constant_or_dequantized(graph: GraphView, name: str) -> np.ndarray | None:
    value = graph.constant(name)
    p = graph.producer.get(name)
    if value is None and p is not None and p.op_type == "DequantizeLinear":
        value = _dequantized(graph, p.inputs[0], p.inputs[1], p.inputs[2] if len(p.inputs) > 2 else "")
    return value


def _dequantized(graph: GraphView, q_name: str, scale_name: str, zero_name: str) -> np.ndarray | None:
    """``(q − zero)·scale`` of constant integer weights, per output channel (axis 0) where scale or zero are 1-D."""
    q = graph.constant(q_name)
    if q is None:
        return None
    scale = graph.constant(scale_name) if scale_name else np.ones((), np.float32)
    zero = graph.constant(zero_name) if zero_name else np.zeros((), np.int64)
    if scale is None or zero is None:
        return None
    shape = (-1,) + (1,) * (q.ndim - 1)
    scale = scale.astype(np.float32).reshape(shape) if scale.size > 1 else scale.astype(np.float32).reshape(())
    zero = zero.astype(np.int64).reshape(shape) if zero.size > 1 else zero.astype(np.int64).reshape(())
    return ((q.astype(np.int64) - zero).astype(np.float32) * scale).astype(np.float32)


def _activation(graph: GraphView, node: NodeView) -> tuple[str, tuple[str, ...], Quantization | None]:
    """The end of the chain after conv ``node``, the op labels on the way, and how the graph stores that end."""
    first = start(graph, node)
    tensor, chain, quant = first.tensor, list(first.chain), first.quant
    outputs = set(graph.output_names)
    while tensor not in outputs:
        nxt = next_link(graph, tensor, quant, first.kind, _next_link)
        if nxt is None:
            break
        label, tensor, quant = nxt
        chain.append(label)
    return tensor, tuple(chain), quant


def _next_link(graph: GraphView, tensor: str) -> tuple[str, str] | None:
    """The next (op label, output tensor) of the chain, or None where the chain ends."""
    users = graph.consumers.get(tensor, [])
    if any(u.domain not in ("", "ai.onnx") for u in users):
        # Same op names exist in other domains (com.microsoft::Gelu from onnxruntime's optimizer); a chain
        # through them would make the activation tensor one the torch copy cannot compute.
        return None
    if len(users) == 1:
        node = users[0]
        if len(node.outputs) < 1 or not node.outputs[0]:
            return None
        if node.op_type in UNARY_CHAIN_OPS and node.inputs[0] == tensor:
            if node.op_type == "Dropout" and len([o for o in node.outputs if o]) > 1:
                return None
            return node.op_type, node.outputs[0]
        if node.op_type in CONST_BINARY_OPS and len(node.inputs) == 2:
            other = node.inputs[1] if node.inputs[0] == tensor else node.inputs[0]
            if graph.is_constant(other) and _broadcasts_per_channel(graph, other):
                return node.op_type, node.outputs[0]
        return None
    if len(users) == 2:
        gate = next((u for u in users if u.op_type in GATE_OPS and u.inputs[0] == tensor), None)
        mul = next((u for u in users if u.op_type == "Mul"), None)
        # QDQ graphs quantize the gate before the Mul reads it
        gated = through_qdq(graph, gate.outputs[0]) if gate is not None else ""
        if gate is not None and mul is not None and set(mul.inputs) == {tensor, gated} \
                and len(graph.consumers.get(gated, [])) == 1:
            return f"{gate.op_type}*Mul", mul.outputs[0]
    return None


def _broadcasts_per_channel(graph: GraphView, name: str) -> bool:
    """A constant operand of at most C elements (scalar, [C], [C,1,1], [1,C,1,1]) keeps the chain elementwise."""
    shape = graph.constant_shape(name)
    if shape is None:
        return False
    return len(shape) <= 4 and sum(1 for d in shape if d != 1) <= 1


def require_kernel_counts(layers: list[Layer], path: str) -> None:
    """Refuse layers whose kernel count is unknown (``channels`` 0) before a command sizes anything by it.

    A count comes from the conv's weight or from shape inference, never from a shape the file declares: a weight
    computed from the input at run time, declared with 10^12 kernels, made ``diff`` allocate statistics for them.
    Such a conv cannot be explained either (onnx2torch needs constant weights).

    Raises:
        ModelError: naming the first such layer and what to do.
    """
    for la in layers:
        if la.channels <= 0:
            raise ModelError(f"the kernel count of conv layer {la.index} ({la.name!r}) of {path} is not known before "
                             "running: its weight is computed at run time, and kernelviz explains convs whose "
                             "weights are constants; re-export the model with constant weights")


def resolve_layer(layers: list[Layer], spec: str | int) -> Layer:
    """Find a layer by index (as ``inspect`` shows it), Conv node name, activation tensor or conv output name.

    Raises:
        UsageError: nothing matches; the message says how to list the layers.
    """
    if not layers:
        raise UsageError("the model has no Conv layers; kernelviz explains convolution kernels")
    s = str(spec).strip()
    if s.lstrip("-").isdigit():
        i = int(s)
        if -len(layers) <= i < len(layers):
            return layers[i]
        raise UsageError(f"layer index {i} is out of range: the model has {len(layers)} conv layers "
                         f"(0..{len(layers) - 1}); run `kernelviz inspect MODEL` to list them")
    for attr in ("name", "tensor", "conv_output"):
        hits = [la for la in layers if getattr(la, attr) == s]
        if hits:
            return hits[0]
    raise UsageError(f"no conv layer matches {s!r}; give an index, Conv node name or tensor name "
                     "as listed by `kernelviz inspect MODEL`")
