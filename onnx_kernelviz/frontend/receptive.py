"""Receptive fields from the graph: which input pixels can influence a set of cells of an activation tensor.

``rf_box`` walks the graph backwards from the tensor, carrying per tensor the box of its cells that matter
(one interval per axis; None = the whole axis), through each node to its inputs: Conv / ConvTranspose / pools
(kernel, stride, dilation, pads, auto_pad), Pad and Slice (shifts), Resize / Upsample (scales), elementwise ops
with broadcasting, Concat / Split along channels. Where branches meet, boxes are unioned. Global ops (global
pools, reductions over space) and any op not known here need the whole of their input, so the answer is the
whole image whenever such an op lies between the input and the tensor: a bound, never an underestimate.
Ops whose output does not depend on pixel values (Shape, Size) pass nothing back.

The contract's ``rf_box`` (CONTRACT.md, "Local explanations") is ``[top, left, bottom, right)`` in input pixels.

(Over 300 lines on purpose: the walk and its one-function-per-op rules read best together, like normalize.py.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import onnx

from onnx_kernelviz.frontend.graph import GraphView, NodeView, tensor_type

Interval = tuple[int, int] | None  # [lo, hi) along one axis; None: the whole axis
Box = tuple[Interval, ...]         # one interval per axis of a tensor

#: elementwise (per position) ops: an output cell needs the same cell of every input (with broadcasting)
ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "Where", "Relu", "LeakyRelu", "PRelu", "Elu",
    "Selu", "Celu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus", "Softsign", "Gelu", "Mish",
    "Erf", "Exp", "Log", "Sqrt", "Abs", "Neg", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Not", "And", "Or",
    "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Cast", "Identity", "Dropout",
    "BatchNormalization", "InstanceNormalization_none", "QuantizeLinear", "DequantizeLinear", "ThresholdedRelu",
    "Relu6", "Swish", "QuickGelu", "BiasGelu",
})
#: ops that do not depend on the values of their inputs
SHAPE_ONLY = frozenset({"Shape", "Size", "Constant", "ConstantOfShape", "EyeLike", "RandomNormalLike",
                        "RandomUniformLike"})
#: convolution-like ops: (index of the data input, index of the weight input or None)
WINDOWED = {"Conv": (0, 1), "FusedConv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3),
            "MaxPool": (0, None), "AveragePool": (0, None), "LpPool": (0, None)}


@dataclass(frozen=True)
class ReceptiveField:
    """``box`` ``(top, left, bottom, right)`` in input pixels (bottom/right exclusive), clipped to the image;
    ``whole``: the box is the whole image (a global pool or an unknown op on the way, or a large field)."""

    box: tuple[int, int, int, int]
    whole: bool


def _union(a: Interval, b: Interval) -> Interval:
    if a is None or b is None:
        return None
    return (min(a[0], b[0]), max(a[1], b[1]))


def _union_box(a: Box | None, b: Box) -> Box:
    if a is None:
        return b
    n = max(len(a), len(b))
    a = (None,) * (n - len(a)) + tuple(a)
    b = (None,) * (n - len(b)) + tuple(b)
    return tuple(_union(x, y) for x, y in zip(a, b))


def _clip(iv: Interval, size: int | None) -> Interval:
    if iv is None:
        return None
    lo, hi = iv
    if size is not None:
        lo, hi = max(lo, 0), min(hi, size)
        if lo <= 0 and hi >= size:
            return None
    return (lo, max(hi, lo))


class _Walk:
    """One backward walk; ``shapes`` maps tensor names to shapes (ints where known)."""

    def __init__(self, graph: GraphView, shapes: dict[str, tuple]) -> None:
        self.g, self.shapes = graph, shapes
        self.boxes: dict[str, Box] = {}

    def dim(self, tensor: str, axis: int) -> int | None:
        s = self.shapes.get(tensor)
        if s is None or axis >= len(s):
            return None
        d = s[axis]
        return d if isinstance(d, int) and d > 0 else None

    def rank(self, tensor: str, default: int) -> int:
        s = self.shapes.get(tensor)
        return len(s) if s is not None else default

    def need(self, tensor: str, box: Box) -> None:
        """Add ``box`` (clipped to the tensor's shape) to what ``tensor`` must provide."""
        if not tensor or self.g.is_constant(tensor):
            return
        box = tuple(_clip(iv, self.dim(tensor, i)) for i, iv in enumerate(box))
        self.boxes[tensor] = _union_box(self.boxes.get(tensor), box)

    def whole(self, tensor: str) -> None:
        self.need(tensor, (None,) * self.rank(tensor, 4))

    def node(self, n: NodeView) -> None:
        out = [b for b in (self.boxes.get(o) for o in n.outputs if o) if b is not None]
        if not out:
            return
        box = out[0]
        for b in out[1:]:
            box = _union_box(box, b)
        handler = HANDLERS.get(n.op_type)
        if n.op_type in SHAPE_ONLY:
            return
        if handler is not None:
            handler(self, n, box)
        elif n.op_type in ELEMENTWISE:
            _elementwise(self, n, box)
        else:  # unknown op: assume every input value matters everywhere
            for i in n.inputs:
                self.whole(i)


def _elementwise(w: _Walk, n: NodeView, box: Box) -> None:
    """Same cells of every input; a broadcast axis (size 1) needs its one cell, i.e. the whole axis."""
    for i in n.inputs:
        if not i or w.g.is_constant(i):
            continue
        r = w.rank(i, len(box))
        sub = tuple(box[len(box) - r:]) if r <= len(box) else (None,) * (r - len(box)) + tuple(box)
        sub = tuple(None if w.dim(i, a) == 1 else iv for a, iv in enumerate(sub))
        w.need(i, sub)


def _pads(n: NodeView, w: _Walk, data: str, out: str, k: Sequence[int], s: Sequence[int],
          d: Sequence[int]) -> list[int] | None:
    """Begin pads per spatial axis, from ``pads`` or ``auto_pad`` (None when SAME needs an unknown size)."""
    nsp = len(k)
    auto = n.attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(n.attrs.get("pads", [0] * 2 * nsp))
        return pads[:nsp]
    if auto == "VALID":
        return [0] * nsp
    begins = []
    for a in range(nsp):
        size, osize = w.dim(data, 2 + a), w.dim(out, 2 + a)
        if size is None:
            return None
        osize = osize or math.ceil(size / s[a])
        total = max((osize - 1) * s[a] + (k[a] - 1) * d[a] + 1 - size, 0)
        begins.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
    return begins


def _spatial(box: Box, nsp: int, rule: Callable[[int, int, int], tuple[int, int]]) -> Box:
    """The input box a window op needs: every leading (batch, channel) axis whole, and each of the last ``nsp``
    (spatial) intervals ``[lo, hi)`` of ``box`` mapped by ``rule(axis, lo, hi)``; a whole axis stays whole."""
    spatial = tuple(None if iv is None else rule(a, *iv) for a, iv in enumerate(box[len(box) - nsp:]))
    return (None,) * (len(box) - nsp) + spatial


def _windowed(w: _Walk, n: NodeView, box: Box) -> None:
    """Output cell o of a window op reads input cells [o·s − p, o·s − p + (k − 1)·d + 1)."""
    di, wi = WINDOWED[n.op_type]
    data = n.inputs[di]
    if "kernel_shape" in n.attrs:
        k = list(n.attrs["kernel_shape"])
    else:
        wshape = w.g.constant_shape(n.inputs[wi]) if wi is not None and wi < len(n.inputs) else None
        wshape = wshape or (w.shapes.get(n.inputs[wi]) if wi is not None else None)
        if not wshape or not all(isinstance(v, int) for v in wshape[2:]):
            return w.whole(data)
        k = list(wshape[2:])
    nsp = len(k)
    s = list(n.attrs.get("strides", [1] * nsp))
    d = list(n.attrs.get("dilations", [1] * nsp))
    p = _pads(n, w, data, n.outputs[0], k, s, d)
    if p is None:
        return w.whole(data)
    # every input channel feeds every output channel (grouped convs: a subset, but the box is spatial)
    w.need(data, _spatial(box, nsp, lambda a, lo, hi: (lo * s[a] - p[a],
                                                       (hi - 1) * s[a] - p[a] + (k[a] - 1) * d[a] + 1)))


def _conv_transpose(w: _Walk, n: NodeView, box: Box) -> None:
    """Input cell i writes output cells i·s − p + j·d, j < k: output [lo, hi) reads inputs
    [ceil((lo + p − (k − 1)·d) / s), floor((hi − 1 + p) / s) + 1)."""
    data = n.inputs[0]
    wshape = w.g.constant_shape(n.inputs[1]) or w.shapes.get(n.inputs[1])
    k = list(n.attrs.get("kernel_shape", wshape[2:] if wshape else []))
    if not k or not all(isinstance(v, int) for v in k) or n.attrs.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
        return w.whole(data)
    nsp = len(k)
    s = list(n.attrs.get("strides", [1] * nsp))
    d = list(n.attrs.get("dilations", [1] * nsp))
    p = list(n.attrs.get("pads", [0] * 2 * nsp))[:nsp]
    w.need(data, _spatial(box, nsp, lambda a, lo, hi: (-(-(lo + p[a] - (k[a] - 1) * d[a]) // s[a]),
                                                       (hi - 1 + p[a]) // s[a] + 1)))


def _global(w: _Walk, n: NodeView, box: Box) -> None:
    w.whole(n.inputs[0])


def _reduce(w: _Walk, n: NodeView, box: Box) -> None:
    """A reduction over channels only keeps the spatial box; over any spatial axis, the whole input."""
    data = n.inputs[0]
    axes = n.attrs.get("axes")
    if axes is None and len(n.inputs) > 1 and n.inputs[1]:
        c = w.g.constant(n.inputs[1])
        axes = None if c is None else [int(v) for v in c.ravel()]
    r = w.rank(data, 4)
    if axes is None or any(a % r >= 2 for a in axes) or not n.attrs.get("keepdims", 1):
        return w.whole(data)
    w.need(data, tuple(None if a in [x % r for x in axes] else iv for a, iv in enumerate(box)))


def _pad(w: _Walk, n: NodeView, box: Box) -> None:
    """Output cell o is input cell o − pad_begin (cells outside the input are padding; reflect/edge pads read
    border cells, which the clip keeps inside the box's union)."""
    data = n.inputs[0]
    pads = n.attrs.get("pads")
    if pads is None and len(n.inputs) > 1:
        c = w.g.constant(n.inputs[1])
        pads = None if c is None else [int(v) for v in c.ravel()]
    axes_in = n.inputs[3] if len(n.inputs) > 3 and n.inputs[3] else None
    mode = n.attrs.get("mode", "constant")
    if pads is None or axes_in is not None:
        return w.whole(data)
    r = len(pads) // 2
    out: list[Interval] = []
    for a, iv in enumerate(box[-r:] if len(box) >= r else box):
        if iv is None:
            out.append(None)
        elif mode == "constant" or pads[a] == 0 and pads[a + r] == 0:
            out.append((iv[0] - pads[a], iv[1] - pads[a]))
        else:  # reflect / edge read mirrored or border cells: the whole axis is a safe bound
            out.append(None)
    w.need(data, tuple(out))


def _resize(w: _Walk, n: NodeView, box: Box) -> None:
    """Output cell o samples input coordinate ≈ (o + ½)/f − ½; nearest/linear read within one cell of it,
    cubic within two."""
    data = n.inputs[0]
    r = w.rank(data, len(box))
    scales = None
    if n.op_type == "Upsample":
        scales = n.attrs.get("scales")
        if scales is None and len(n.inputs) > 1:
            c = w.g.constant(n.inputs[1])
            scales = None if c is None else [float(v) for v in c.ravel()]
    factors = []
    for a in range(r):
        ins, outs = w.dim(data, a), w.dim(n.outputs[0], a)
        if ins and outs:
            factors.append(outs / ins)
        elif scales is not None and a < len(scales):
            factors.append(float(scales[a]))
        else:
            sc = w.g.constant(n.inputs[2]) if len(n.inputs) > 2 and n.inputs[2] else None
            if sc is not None and sc.size == r:
                factors.append(float(sc.ravel()[a]))
            else:
                return w.whole(data)
    margin = 2 if n.attrs.get("mode", "nearest") == "cubic" else 1
    out = []
    for a, iv in enumerate(box[-r:]):
        f = factors[a]
        if iv is None or f == 1.0:
            out.append(iv)
            continue
        lo, hi = iv
        out.append((math.floor((lo + 0.5) / f - 0.5) - margin, math.ceil((hi - 0.5) / f - 0.5) + margin + 1))
    w.need(data, tuple(out))


def _slice(w: _Walk, n: NodeView, box: Box) -> None:
    """Step-1 slices shift the box by their start; other slices need the whole input."""
    data = n.inputs[0]
    consts = [w.g.constant(i) if i else None for i in n.inputs[1:5]]
    if n.attrs.get("starts") is not None:
        starts, axes, steps = n.attrs["starts"], n.attrs.get("axes"), None
    elif consts and consts[0] is not None:
        starts = [int(v) for v in consts[0].ravel()]
        axes = None if len(consts) < 3 or consts[2] is None else [int(v) for v in consts[2].ravel()]
        steps = None if len(consts) < 4 or consts[3] is None else [int(v) for v in consts[3].ravel()]
    else:
        return w.whole(data)
    r = w.rank(data, len(box))
    axes = list(range(len(starts))) if axes is None else [a % r for a in axes]
    if steps is not None and any(s != 1 for s in steps):
        return w.whole(data)
    out = list(box[-r:]) if len(box) >= r else [None] * r
    for a, st in zip(axes, starts):
        size = w.dim(data, a)
        if st < 0:
            if size is None:
                return w.whole(data)
            st += size
        if out[a] is not None:
            out[a] = (out[a][0] + st, out[a][1] + st)
        elif st != 0 or w.dim(n.outputs[0], a) != size:
            end = w.dim(n.outputs[0], a)
            out[a] = None if end is None else (st, st + end)
    w.need(data, tuple(out))


def _concat(w: _Walk, n: NodeView, box: Box) -> None:
    """Along channels: the same box from every input; along a spatial axis: each input's share of it."""
    axis = n.attrs.get("axis", 1) % len(box)
    if axis < 2:
        for i in n.inputs:
            w.need(i, box)
        return
    off = 0
    for i in n.inputs:
        size = w.dim(i, axis)
        if size is None:
            for j in n.inputs:
                w.whole(j)
            return
        iv = box[axis]
        sub = list(box)
        sub[axis] = None if iv is None else (iv[0] - off, iv[1] - off)
        if sub[axis] is None or sub[axis][1] > 0 and sub[axis][0] < size:
            w.need(i, tuple(sub))
        off += size


def _split(w: _Walk, n: NodeView, box: Box) -> None:
    axis = n.attrs.get("axis", 0) % len(box)
    if axis < 2:
        w.need(n.inputs[0], box)
    else:
        w.whole(n.inputs[0])


def _transpose(w: _Walk, n: NodeView, box: Box) -> None:
    """Output axis i is input axis perm[i]: the box's intervals move with their axes."""
    perm = n.attrs.get("perm")
    if perm is None:
        perm = list(reversed(range(len(box))))
    out: list[Interval] = [None] * len(perm)
    for i, p in enumerate(perm):
        out[p] = box[i] if i < len(box) else None
    w.need(n.inputs[0], tuple(out))


def _space_depth(w: _Walk, n: NodeView, box: Box) -> None:
    """DepthToSpace: output cell o reads input cell o // b; SpaceToDepth: input cells [o·b, o·b + b)."""
    b = int(n.attrs.get("blocksize", 1))
    out = []
    for a, iv in enumerate(box):
        if a < 2 or iv is None:
            out.append(None if a < 2 else iv)
        elif n.op_type == "DepthToSpace":
            out.append((iv[0] // b, (iv[1] - 1) // b + 1))
        else:
            out.append((iv[0] * b, iv[1] * b))
    w.need(n.inputs[0], tuple(out))


HANDLERS: dict[str, Callable[[_Walk, NodeView, Box], None]] = {
    **{op: _windowed for op in WINDOWED},
    "ConvTranspose": _conv_transpose,
    "GlobalAveragePool": _global, "GlobalMaxPool": _global, "GlobalLpPool": _global,
    **{op: _reduce for op in ("ReduceMean", "ReduceMax", "ReduceSum", "ReduceMin", "ReduceL2", "ReduceL1",
                              "ReduceProd", "ReduceLogSumExp", "ReduceSumSquare")},
    "Pad": _pad, "Resize": _resize, "Upsample": _resize, "Slice": _slice, "Concat": _concat, "Split": _split,
    "Transpose": _transpose, "DepthToSpace": _space_depth, "SpaceToDepth": _space_depth,
}


def tensor_shapes(proto: onnx.ModelProto, input_name: str, input_shape: Sequence[int]) -> dict[str, tuple]:
    """Shapes of every tensor when ``input_name`` has ``input_shape`` (model layout): ONNX shape inference on a
    copy with the input's symbolic dims fixed (SAME pads, Resize factors and clipping need sizes)."""
    m = onnx.ModelProto()
    m.CopyFrom(proto)
    for vi in m.graph.input:
        if vi.name == input_name:
            dims = vi.type.tensor_type.shape.dim
            for d, v in zip(dims, input_shape):
                d.Clear()
                d.dim_value = int(v)
    try:
        m = onnx.shape_inference.infer_shapes(m, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - shapes only tighten the box; without them it stays a valid bound
        pass
    g = GraphView(m, infer_shapes=False)
    out: dict[str, tuple] = {}
    for vi in (*m.graph.input, *m.graph.value_info, *m.graph.output):
        tt = tensor_type(vi)
        if tt.shape is not None:
            out[vi.name] = tt.shape
    for name in g.initializer_names:
        s = g.constant_shape(name)
        if s is not None:
            out[name] = s
    return out


def receptive_field(graph: GraphView, shapes: dict[str, tuple], tensor: str, cells: tuple[int, int, int, int],
                    input_name: str, layout: str, size: tuple[int, int]) -> ReceptiveField:
    """The input pixels that can influence the cells ``[top, left, bottom, right)`` of ``tensor`` (NCHW).

    Args:
        graph: the model's graph; shapes: from :func:`tensor_shapes` for this input size.
        layout: the input's layout (``nchw``/``nhwc``), to read its H and W axes.
        size: the input's (H, W), for clipping.
    """
    w = _Walk(graph, shapes)
    top, left, bottom, right = cells
    rank = len(shapes.get(tensor, ())) or 4
    w.boxes[tensor] = (None,) * (rank - 2) + ((top, bottom), (left, right))
    for n in reversed(graph.nodes):
        w.node(n)
    H, W = size
    box = w.boxes.get(input_name)
    if box is None:  # the tensor does not depend on the input at all
        return ReceptiveField((0, 0, 0, 0), False)
    ha, wa = (2, 3) if layout == "nchw" else (1, 2)
    rows = box[ha] if ha < len(box) else None
    cols = box[wa] if wa < len(box) else None
    r0, r1 = (0, H) if rows is None else (max(rows[0], 0), min(rows[1], H))
    c0, c1 = (0, W) if cols is None else (max(cols[0], 0), min(cols[1], W))
    return ReceptiveField((r0, c0, r1, c1), (r0, c0, r1, c1) == (0, 0, H, W))
