"""Normalize: ``auto_pad`` SAME_UPPER / SAME_LOWER (TensorFlow and Keras exports) as explicit pads.

onnx2torch refuses ``auto_pad`` SAME ("not implemented"). The pads SAME asks for along an axis of input size ``n``,
kernel ``k``, stride ``s`` and dilation ``d`` total ``max((ceil(n / s) − 1)·s + (k − 1)·d + 1 − n, 0)``; SAME_UPPER
puts the odd one at the end, SAME_LOWER at the beginning. With stride 1 the total is ``(k − 1)·d`` whatever ``n``;
with a larger stride it depends on ``n``, known when the model fixes its input size (shape inference gives it). For
a free input size the pads are computed from the tensor's shape at run time: a ``Pad`` fed by ``Shape`` arithmetic,
then the op with no padding of its own.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnx_kernelviz.errors import ModelError

_OPS = frozenset({"Conv", "MaxPool", "AveragePool", "ConvInteger", "QLinearConv"})
_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}


def explicit_same_pads(proto: onnx.ModelProto, notes: list[str]) -> None:
    """Replace ``auto_pad`` SAME_UPPER/SAME_LOWER with pads, static where they can be (in place)."""
    g = proto.graph
    same = [n for n in g.node if n.op_type in _OPS and n.domain in ("", "ai.onnx") and _auto_pad(n).startswith("SAME")]
    if not same:
        return
    dims = _spatial_dims(proto)
    inits = {t.name: t for t in g.initializer}
    new_nodes: dict[int, list[onnx.NodeProto]] = {}
    fixed = dynamic = 0
    for node in same:
        kernel = _kernel(node, inits)
        rank = len(kernel)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        strides = list(attrs.get("strides", [1] * rank))
        dilations = list(attrs.get("dilations", [1] * rank))
        upper = _auto_pad(node) == "SAME_UPPER"
        sizes = dims.get(node.input[0], [None] * rank)
        totals = [_total(n, k, s, d) for n, k, s, d in zip(sizes, kernel, strides, dilations)]
        _set_attr(node, "auto_pad", None)
        static = [t for t in totals if t is not None]
        if len(static) == len(totals):
            begin = [t - t // 2 if not upper else t // 2 for t in static]
            _set_attr(node, "pads", begin + [t - b for t, b in zip(static, begin)])
            fixed += 1
            continue
        if node.op_type not in ("Conv", "MaxPool"):
            raise ModelError(f"{node.op_type} node {node.name!r} pads SAME with stride {strides} on an input whose "
                             "size the model leaves free; kernelviz cannot convert that. Re-export the model with a "
                             "fixed input size")
        new_nodes[id(node)] = _runtime_pads(g, node, kernel, strides, dilations, upper)
        dynamic += 1
    if new_nodes:
        nodes = [m for n in g.node for m in (*new_nodes.get(id(n), []), n)]
        del g.node[:]
        g.node.extend(nodes)
    notes.append(f"made auto_pad SAME explicit on {fixed + dynamic} ops"
                 + (f" ({dynamic} computed from the input size at run time)" if dynamic else ""))


def _auto_pad(node: onnx.NodeProto) -> str:
    for a in node.attribute:
        if a.name == "auto_pad":
            return a.s.decode() if isinstance(a.s, bytes) else str(a.s)
    return "NOTSET"


def _set_attr(node: onnx.NodeProto, name: str, value: list[int] | None) -> None:
    for a in list(node.attribute):
        if a.name == name:
            node.attribute.remove(a)
    if value is not None:
        node.attribute.append(helper.make_attribute(name, value))


def _kernel(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> list[int]:
    for a in node.attribute:
        if a.name == "kernel_shape":
            return list(a.ints)
    w = node.input[_WEIGHT.get(node.op_type, 1)] if len(node.input) > _WEIGHT.get(node.op_type, 1) else ""
    if w in inits:
        return list(inits[w].dims[2:])
    raise ModelError(f"{node.op_type} node {node.name!r} pads SAME but its kernel size is neither given nor a constant "
                     "weight; re-export the model with explicit pads")


def _total(n: int | None, k: int, s: int, d: int) -> int | None:
    if s == 1:
        return (k - 1) * d
    if n is None:
        return None
    return max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)


def _spatial_dims(proto: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Spatial sizes (from dim 2 on) of every tensor shape inference can size; unknown dims are None."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True).graph
    except Exception:  # noqa: BLE001 - without inference every stride > 1 is padded at run time
        return {}
    out = {}
    for vi in (*inferred.input, *inferred.value_info):
        t = vi.type.tensor_type
        if t.HasField("shape") and len(t.shape.dim) > 2:
            out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim[2:]]
    return out


def _runtime_pads(g: onnx.GraphProto, node: onnx.NodeProto, kernel: list[int], strides: list[int],
                  dilations: list[int], upper: bool) -> list[onnx.NodeProto]:
    """Nodes computing SAME pads from ``Shape(x)`` and padding x (zeros for Conv, −inf for MaxPool); ``node``
    then reads the padded tensor with no padding of its own."""
    x, base = node.input[0], f"{node.output[0]}_samepad"
    rank = len(kernel)

    def const(name: str, value: np.ndarray) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(value), f"{base}_{name}"))
        return f"{base}_{name}"

    def op(kind: str, inputs: list[str], name: str, **attrs: int | str) -> onnx.NodeProto:
        node = helper.make_node(kind, inputs, [f"{base}_{name}"], name=f"{base}_{name}_node")
        node.attribute.extend(helper.make_attribute(k, v) for k, v in attrs.items())
        return node

    s = const("s", np.array(strides, np.int64))
    nodes = [op("Shape", [x], "shape"),
             op("Gather", [f"{base}_shape", const("axes", np.arange(2, 2 + rank, dtype=np.int64))], "n", axis=0),
             # ceil(n / s) as (n + s − 1) / s: integer Div truncates, and sizes are positive
             op("Div", [f"{base}_n_plus", s], "out")]
    nodes.insert(2, op("Add", [f"{base}_n", const("s1", np.array(strides, np.int64) - 1)], "n_plus"))
    span = np.array([(k - 1) * d + 1 for k, d in zip(kernel, dilations)], np.int64)
    nodes += [op("Sub", [f"{base}_out", const("one", np.array(1, np.int64))], "out1"),
              op("Mul", [f"{base}_out1", s], "start"),
              op("Add", [f"{base}_start", const("span", span)], "end"),
              op("Sub", [f"{base}_end", f"{base}_n"], "need"),
              op("Max", [f"{base}_need", const("zero", np.zeros(rank, np.int64))], "total"),
              op("Div", [f"{base}_total", const("two", np.array(2, np.int64))], "half"),
              op("Sub", [f"{base}_total", f"{base}_half"], "rest")]
    begin, end = (f"{base}_half", f"{base}_rest") if upper else (f"{base}_rest", f"{base}_half")
    fill = -np.inf if node.op_type == "MaxPool" else 0.0
    nodes += [op("Concat", [const("nc", np.zeros(2, np.int64)), begin, const("nc2", np.zeros(2, np.int64)), end],
                 "pads", axis=0),
              op("Pad", [x, f"{base}_pads", const("fill", np.array(fill, np.float32))], "x", mode="constant")]
    node.input[0] = f"{base}_x"
    return nodes
