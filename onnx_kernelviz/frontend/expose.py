"""Stage 4: make chosen tensors visible.

``expose`` adds tensors as extra graph outputs and changes nothing else: onnxruntime runs that graph to measure
what the deployed model does. ``truncate`` cuts a graph at the chosen tensors so nothing past the layer is
computed during optimization.
"""

from __future__ import annotations

import io
from pathlib import Path

import onnx
from onnx import helper

from onnx_kernelviz.errors import ModelError, UsageError
from onnx_kernelviz.frontend.graph import GraphView
from onnx_kernelviz.frontend.load import LoadedModel
from onnx_kernelviz.frontend.quantlayers import integer_dtype
from onnx_kernelviz.io.files import write_bytes


def expose(proto: onnx.ModelProto, tensors: list[str]) -> onnx.ModelProto:
    """A copy of ``proto`` whose outputs are its own outputs followed by ``tensors`` (skipping ones already there).

    The element type of each new output comes from shape inference (fp16 models expose fp16 tensors), or for the
    integer outputs of com.microsoft QLinear* ops, which inference does not know, from their zero point; the shape
    is left open so onnxruntime does not check it.
    """
    graph = GraphView(proto)
    missing = [t for t in tensors if not graph.has_tensor(t)]
    if missing:
        raise UsageError(f"the model has no tensor named {missing[0]!r}; run `kernelviz inspect MODEL` "
                         "to list layer tensors")
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    present = set(graph.output_names)
    for t in dict.fromkeys(tensors):
        if t in present:
            continue
        dtype = graph.tensor_type(t).dtype
        if dtype is None:
            dtype = integer_dtype(graph, t)
        elem = helper.np_dtype_to_tensor_dtype(dtype) if dtype is not None else onnx.TensorProto.FLOAT
        out.graph.output.append(helper.make_tensor_value_info(t, elem, None))
    return out


def save_exposed(model: LoadedModel, tensors: list[str], out: Path) -> Path:
    """Write the user's model with ``tensors`` exposed (:func:`expose`) to ``out``, atomically."""
    buffer = io.BytesIO()
    onnx.save_model(expose(model.proto, tensors), buffer)
    try:
        return write_bytes(out, buffer.getvalue())
    except OSError as e:
        # a file where a folder of the path goes: the OS says only "File exists" or "Not a directory"
        blocker = next((q for q in out.parents if q.exists() and not q.is_dir()), None)
        reason = f"{blocker} is a file" if blocker is not None else e.strerror or e
        raise ModelError(f"cannot write {out}: {reason}; choose another --output") from None


def truncate(proto: onnx.ModelProto, input_name: str, tensors: list[str]) -> onnx.ModelProto:
    """The subgraph from ``input_name`` to ``tensors`` (graph outputs in that order), nothing else.

    Uses onnx's own Extractor so initializers and value infos come along exactly as needed.
    """
    graph = GraphView(proto, infer_shapes=False)
    missing = [t for t in tensors if not graph.has_tensor(t)]
    if missing:
        raise UsageError(f"the model has no tensor named {missing[0]!r}")
    names = list(dict.fromkeys(tensors))
    try:
        sub = onnx.utils.Extractor(proto).extract_model([input_name], names)
    except Exception:  # noqa: BLE001 - Extractor runs strict shape inference; fall back to a plain cut
        sub = _plain_cut(proto, input_name, names)
    # Extractor keeps the original opset imports and IR version; keep the producer for the record too.
    sub.producer_name = proto.producer_name
    return sub


def _plain_cut(proto: onnx.ModelProto, input_name: str, outputs: list[str]) -> onnx.ModelProto:
    """Backward reachability from ``outputs`` without shape inference (for graphs inference rejects)."""
    graph = GraphView(proto, infer_shapes=False)
    needed, stack, keep = set(), list(outputs), set()
    while stack:
        t = stack.pop()
        if t in needed or t == input_name:
            continue
        needed.add(t)
        node = graph.producer.get(t)
        if node is not None:
            keep.add(id(node))
            stack.extend(i for i in node.inputs if i)
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    kept_nodes = [n for n, v in zip(proto.graph.node, graph.nodes) if id(v) in keep]
    del g.node[:]
    g.node.extend(kept_nodes)
    used = {i for n in kept_nodes for i in n.input}
    inits = [t for t in proto.graph.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(inits)
    inputs = [i for i in proto.graph.input if i.name == input_name]
    del g.input[:]
    g.input.extend(inputs)
    types = {vi.name: vi for vi in (*proto.graph.value_info, *proto.graph.output)}
    del g.output[:]
    for t in outputs:
        g.output.append(types[t] if t in types else helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    return out
