"""Normalize, for quantized graphs: the rewrites that let onnx2torch convert an int8 graph into the computation
onnxruntime really runs (the torch modules are in ``quantized.py``).

* A QDQ conv (DequantizeLinear → Conv → QuantizeLinear with integer weights) becomes the QLinearConv that
  onnxruntime's graph optimizer fuses it into, so the torch copy sums integers exactly as the int8 kernel does
  instead of rounding a float conv differently near ties.
* The DequantizeLinear of other integer weights becomes the float initializer it computes (onnx2torch's Conv and
  Gemm converters want initializers; onnxscript's folder keeps DequantizeLinear on purpose, and onnx's reference
  implementation it would use has no DequantizeLinear-13).
* onnxruntime's com.microsoft QLinear* ops move to a domain without a dot: onnx2torch names each torch module
  ``domain/node``, and torch refuses a dot in a module name.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from onnx_kernelviz.frontend.quantized import MS, MS_OPS, TORCH_MS


def quantized_for_torch(proto: onnx.ModelProto, notes: list[str]) -> None:
    """Apply the three rewrites in place (a no-op for float graphs)."""
    _fuse_qdq_convs(proto, notes)
    _dequantize_weights(proto, notes)
    _private_quant_domain(proto)


def _consts(proto: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}


def _fuse_qdq_convs(proto: onnx.ModelProto, notes: list[str]) -> None:
    """DequantizeLinear(x) → Conv(·, DequantizeLinear(w), DequantizeLinear(b)) → QuantizeLinear -> QLinearConv
    writing the QuantizeLinear's output, when every scale and zero point is a per-tensor (weights: per-channel)
    initializer and the bias is int32 at scale x_scale·w_scale: the conditions of onnxruntime's own fusion."""
    g = proto.graph
    consts = _consts(proto)
    producer = {o: n for n in g.node for o in n.output}
    users: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in set(n.input):
            users.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}
    replace: dict[int, onnx.NodeProto] = {}
    drop: set[int] = set()
    for conv in g.node:
        if conv.op_type != "Conv" or conv.domain not in ("", "ai.onnx") or conv.output[0] in graph_outputs:
            continue
        dq = [producer.get(i) if i else None for i in conv.input]
        q = users.get(conv.output[0], [])
        if len(q) != 1 or q[0].op_type != "QuantizeLinear" or any(d is None or d.op_type != "DequantizeLinear"
                                                                 for d in dq):
            continue
        params = _qlinear_inputs([d for d in dq if d is not None], q[0], consts)
        if params is None:
            continue
        attrs = [a for a in conv.attribute]
        node = helper.make_node("QLinearConv", params, [q[0].output[0]], name=conv.name)
        node.attribute.extend(attrs)
        replace[id(conv)] = node
        drop.add(id(q[0]))
    if replace:
        nodes = [replace.get(id(n), n) for n in g.node if id(n) not in drop]
        del g.node[:]
        g.node.extend(nodes)
        notes.append(f"fused {len(replace)} QDQ convs into QLinearConv, as onnxruntime does")


def _qlinear_inputs(dq: list[onnx.NodeProto], q: onnx.NodeProto, consts: dict[str, np.ndarray]) -> list[str] | None:
    """QLinearConv's inputs from the conv's DequantizeLinear nodes and its QuantizeLinear, or None when onnxruntime
    would not fuse them."""
    x, w = dq[0], dq[1]

    def scalar(name: str | None) -> bool:
        return name is not None and name in consts and consts[name].size == 1

    x_in, w_in = list(x.input) + [""] * (3 - len(x.input)), list(w.input) + [""] * (3 - len(w.input))
    q_in = list(q.input) + [""] * (3 - len(q.input))
    if not (scalar(x_in[1]) and scalar(x_in[2]) and scalar(q_in[1]) and scalar(q_in[2])):
        return None
    if w_in[0] not in consts or w_in[1] not in consts or w_in[2] not in consts:
        return None
    if consts[w_in[0]].dtype not in (np.int8, np.uint8) or consts[x_in[2]].dtype not in (np.int8, np.uint8):
        return None
    inputs = [x_in[0], x_in[1], x_in[2], w_in[0], w_in[1], w_in[2], q_in[1], q_in[2]]
    if len(dq) > 2:
        b = dq[2]
        b_in = list(b.input) + [""] * (3 - len(b.input))
        bias = consts.get(b_in[0])
        if bias is None or bias.dtype != np.int32 or b_in[1] not in consts or \
                (b_in[2] and np.any(consts.get(b_in[2], 1) != 0)):
            return None
        expected = consts[x_in[1]].astype(np.float32).reshape(()) * consts[w_in[1]].astype(np.float32).flatten()
        got = np.broadcast_to(consts[b_in[1]].astype(np.float32).flatten(), expected.shape)
        if not np.allclose(got, expected, rtol=1e-6, atol=0):
            return None
        inputs.append(b_in[0])
    return inputs


def _dequantize_weights(proto: onnx.ModelProto, notes: list[str]) -> None:
    """DequantizeLinear of initializers -> the float initializer ``(q − zero_point)·scale`` (along ``axis``)."""
    g = proto.graph
    consts = _consts(proto)
    keep, added = [], []
    for node in g.node:
        names = [i for i in node.input if i]
        if node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx") or \
                not all(i in consts for i in names) or any(a.name == "block_size" and a.i for a in node.attribute):
            keep.append(node)
            continue
        q, scale = consts[node.input[0]], consts[node.input[1]].astype(np.float32)
        zero = consts[names[2]] if len(names) > 2 else np.zeros((), q.dtype)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
        if scale.size > 1:  # per-channel: scale and zero point run along `axis`
            shape = [1] * q.ndim
            shape[axis % q.ndim] = scale.size
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        real = (q.astype(np.int64) - zero.astype(np.int64)).astype(np.float32) * scale
        added.append(numpy_helper.from_array(real.astype(np.float32), node.output[0]))
    if added:
        del g.node[:]
        g.node.extend(keep)
        g.initializer.extend(added)
        notes.append(f"dequantized {len(added)} integer weights of the quantized graph")


def _private_quant_domain(proto: onnx.ModelProto) -> None:
    moved = False
    for node in proto.graph.node:
        if node.domain == MS and node.op_type in MS_OPS:
            node.domain, moved = TORCH_MS, True
    if moved and not any(o.domain == TORCH_MS for o in proto.opset_import):
        proto.opset_import.append(helper.make_opsetid(TORCH_MS, 1))
