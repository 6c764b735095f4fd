"""Stage 2: a private copy of the graph that onnx2torch can convert and that runs at any batch size.

The user's model is never modified; every rewrite here works on a copy. The copy's names are generated
identifiers (``names.py``: no string from the file may reach the Python source torch.fx writes); ``names`` maps
the tensors that matter (conv outputs and their activations) back and forth, so results can be checked against
the original graph and users only see the file's names.

(A little over 300 lines: one short rewrite per function, each naming the exporter that needs it, read in the
order :func:`normalize` runs them; spread over modules they would lose that order.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes
from onnx import numpy_helper, version_converter

from onnx_kernelviz.errors import ModelError
from onnx_kernelviz.frontend.graph import opset_version
from onnx_kernelviz.frontend.load import LoadedModel
from onnx_kernelviz.frontend.names import NameMap, rename_nodes, rename_tensors
from onnx_kernelviz.frontend.normalize_pads import explicit_same_pads
from onnx_kernelviz.frontend.normalize_quant import quantized_for_torch

#: onnx2torch's converters cover opset 9..17 best; older graphs are upgraded (version_converter knows the
#: BatchNormalization-7 / Dropout-7 / Gemm-7 adapters that onnx2torch lacks).
MIN_OPSET = 13
#: The IR version that opset 13 came with.
MIN_IR_VERSION = 7
BATCH_DIM = "batch"


@dataclass(frozen=True)
class NormalizedModel:
    """The conversion-ready copy: NCHW float32 input named ``input_name``, symbolic batch, weights as initializers.

    Every name in ``proto`` is generated; ``names.safe([...])`` gives the copy's names of original tensors and
    ``names.restore(message)`` puts the file's names back into a message about the copy.
    ``notes`` lists each rewrite that was applied, in plain words, for ``inspect`` and results.json.
    """

    proto: onnx.ModelProto
    input_name: str
    opset: int
    notes: tuple[str, ...]
    #: the original graph computes in fp16 (fp16 input or a Cast to fp16), so onnxruntime's numbers carry fp16
    #: rounding that the fp32 torch copy does not have.
    fp16_compute: bool = False
    names: NameMap = field(default_factory=NameMap)


def normalize(model: LoadedModel, keep: Sequence[str] = ()) -> NormalizedModel:
    """Return a conversion-ready copy of ``model.proto`` (see :class:`NormalizedModel`).

    Args:
        keep: tensor names that must survive every rewrite (layer tensors); they are graph outputs while the
            passes run, since passes never rename or remove graph outputs.
    """
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    # First, before any library reads the copy: the file's names never reach the rewrites below either.
    names = rename_tensors(proto)
    keep = names.safe(list(keep))
    notes: list[str] = []
    try:
        proto, input_name, fp16_compute = _rewrite(proto, names.tensors[model.input.name], model.input.layout,
                                                   keep, notes)
    except ModelError as e:
        raise type(e)(names.restore(str(e))) from e
    rename_nodes(proto, names)
    return NormalizedModel(proto, input_name, opset_version(proto), tuple(names.restore(n) for n in notes),
                           fp16_compute, names)


def _rewrite(proto: onnx.ModelProto, input_name: str, layout: str, keep: list[str],
             notes: list[str]) -> tuple[onnx.ModelProto, str, bool]:
    """Every rewrite, in order; returns the new proto, its input name and whether the graph computes in fp16."""
    proto = _upgrade_opset(proto, notes)
    _unfuse_ort_convs(proto, notes)
    quantized_for_torch(proto, notes)
    # Before folding: with a fixed batch of 1 on the input (and in the exporter's value_info), the folder
    # would turn Shape(x) into the constant [1, C, H, W] and bake batch 1 into every shape computed from it.
    _symbolic_input_batch(proto, input_name, notes)
    del proto.graph.value_info[:]  # stale shapes (batch 1, fp16) would contradict the rewrites below
    n_outputs = len(proto.graph.output)
    present = {o.name for o in proto.graph.output}
    for name in dict.fromkeys(keep):
        if name not in present:
            proto.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    proto = _fold_constants(proto, notes)
    del proto.graph.output[n_outputs:]
    fp16_compute = _fp16_to_fp32(proto, notes)
    del proto.graph.value_info[:]  # the folder's inferred types (fp16) contradict the conversion to fp32
    if layout == "nhwc":
        input_name = _wrap_nhwc(proto, input_name, notes)
    _free_reshape_batch(proto, notes)
    _free_resize_batch(proto, notes)
    explicit_same_pads(proto, notes)
    try:
        proto = onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except Exception as e:  # noqa: BLE001 - conversion can still work without inferred shapes
        notes.append(f"shape inference failed ({str(e)[:120]})")
    return proto, input_name, fp16_compute


def _upgrade_opset(proto: onnx.ModelProto, notes: list[str]) -> onnx.ModelProto:
    old = opset_version(proto)
    if old >= MIN_OPSET:
        return proto
    try:
        up = version_converter.convert_version(proto, MIN_OPSET)
    except Exception as e:  # noqa: BLE001 - onnx raises bare RuntimeErrors from C++
        raise ModelError(f"cannot upgrade the model from opset {old} to {MIN_OPSET} ({str(e).splitlines()[0][:200]}); "
                         f"re-export it at opset {MIN_OPSET} or newer") from e
    # version_converter leaves ir_version alone. An IR 3 graph (opset 7-8 era) must list its initializers as
    # inputs; once the folding passes below drop them from the inputs, shape inference no longer types the
    # weights and every conv output loses its shape (onnx2torch's BatchNormalization converter then fails).
    up.ir_version = max(up.ir_version, MIN_IR_VERSION)
    notes.append(f"upgraded opset {old} -> {MIN_OPSET}")
    return up


#: FusedConv activations and how many activation_params each takes (onnxruntime's contrib op schema)
_FUSED_ACTIVATIONS = {"Relu": 0, "Sigmoid": 0, "Tanh": 0, "Clip": 2, "LeakyRelu": 1, "HardSigmoid": 2}


def _unfuse_ort_convs(proto: onnx.ModelProto, notes: list[str]) -> None:
    """onnxruntime's com.microsoft::FusedConv (Conv + activation, left in models saved after its graph
    optimizations) -> a standard Conv and the activation node, which writes the FusedConv's output name, so the
    layer's tensor is the same in both graphs. onnx2torch has no converter for contrib ops."""
    nodes, split = [], 0
    for node in proto.graph.node:
        if node.op_type != "FusedConv" or node.domain != "com.microsoft":
            nodes.append(node)
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        kind = attrs.pop("activation", b"")
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        params = [float(v) for v in attrs.pop("activation_params", [])]
        if kind and kind not in _FUSED_ACTIVATIONS or len([i for i in node.input if i]) > 3:
            raise ModelError(f"node {node.name!r}: onnxruntime's FusedConv with activation {kind!r} and "
                             f"{len(node.input)} inputs has no standard equivalent here; use the model from before "
                             "onnxruntime's graph optimizations")
        out = node.output[0]
        mid = f"{out}__conv" if kind else out
        nodes.append(onnx.helper.make_node("Conv", list(node.input[:3]), [mid], name=node.name, **attrs))
        if kind == "Clip":
            lo, hi = (params + [float("-inf"), float("inf")][len(params):])[:2]
            bounds = [f"{out}__clip_min", f"{out}__clip_max"]
            proto.graph.initializer.extend(numpy_helper.from_array(np.array(v, np.float32), n)
                                           for v, n in zip((lo, hi), bounds))
            nodes.append(onnx.helper.make_node("Clip", [mid, *bounds], [out], name=f"{node.name}/Clip"))
        elif kind:
            extra: dict[str, Any] = dict(zip(("alpha", "beta"), params[:_FUSED_ACTIVATIONS[kind]]))
            nodes.append(onnx.helper.make_node(kind, [mid], [out], name=f"{node.name}/{kind}", **extra))
        split += 1
    if split:
        del proto.graph.node[:]
        proto.graph.node.extend(nodes)
        notes.append(f"split {split} onnxruntime FusedConv nodes into Conv + activation")


def _fold_constants(proto: onnx.ModelProto, notes: list[str]) -> onnx.ModelProto:
    """Turn weights computed by ``Constant`` / ``Identity`` / ``ConstantOfShape`` nodes into initializers.

    PaddlePaddle and old model-zoo graphs keep weights in ``Constant`` nodes, torch's deduplication shares a
    weight through ``Identity``, and some exporters build zero biases with ``ConstantOfShape``; onnx2torch
    looks weights up among initializers only and fails with a KeyError on all three.
    """
    import onnxscript.optimizer  # local: heavy import, only needed here

    # Graph outputs are never renamed by the passes; intermediate names survive too (only constants change).
    model = ir.from_proto(proto)
    n_before = len(model.graph)
    # IR 3 graphs list every initializer among the inputs too (a default a caller could override); kernelviz feeds
    # only the image, so they are constants, and the folder must see them so (Caffe2-era exports compute weights
    # with ConstantOfShape of such an initializer, which onnx2torch then could not find).
    ir_passes.RemoveInitializersFromInputsPass()(model)
    # onnxscript keeps ConstantOfShape by default (to keep files small); a zero bias built that way must be
    # an initializer for onnx2torch's Conv converter. Shape inference lets Shape(x) fold where H/W are fixed.
    onnxscript.optimizer.fold_constants(model, onnx_shape_inference=True, input_size_limit=1 << 26,
                                        output_size_limit=1 << 26, should_fold=_fold_constant_of_shape)
    for p in (ir_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
              ir_passes.RemoveInitializersFromInputsPass(), ir_passes.RemoveUnusedNodesPass()):
        p(model)
    out = ir.to_proto(model)
    if len(out.graph.node) != n_before:
        notes.append(f"folded constants into initializers ({n_before} -> {len(out.graph.node)} nodes)")
    return out


def _fold_constant_of_shape(node: ir.Node) -> bool | None:
    return True if node.op_type == "ConstantOfShape" and node.domain in ("", "ai.onnx") else None


def _fp16_to_fp32(proto: onnx.ModelProto, notes: list[str]) -> bool:
    """Run fp16 models as fp32: gradients in fp16 underflow, and CPU kernels for fp16 are slow or missing.

    Returns whether the graph computed in fp16 (fp16 input or output, or a Cast to fp16), rather than only
    storing weights in fp16.
    """
    F16, F32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    g = proto.graph
    changed = compute = 0
    for i, t in enumerate(g.initializer):
        if t.data_type == F16:
            g.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
            changed += 1
    for node in g.node:
        for a in node.attribute:
            if node.op_type == "Cast" and a.name == "to" and a.i == F16:
                a.i = F32
                changed, compute = changed + 1, compute + 1
    for vi in (*g.input, *g.output):
        if vi.type.tensor_type.elem_type == F16:
            vi.type.tensor_type.elem_type = F32
            changed, compute = changed + 1, compute + 1
    if changed:
        notes.append("converted fp16 weights and casts to fp32")
    return bool(compute)


def _wrap_nhwc(proto: onnx.ModelProto, name: str, notes: list[str]) -> str:
    """Give an NHWC (TensorFlow) model an NCHW input, so the rest of the pipeline sees one layout."""
    g = proto.graph
    vi = next(i for i in g.input if i.name == name)
    dims = vi.type.tensor_type.shape.dim
    n, h, w, c = list(dims)
    new_name = f"{name}__nchw"
    new_vi = onnx.helper.make_tensor_value_info(new_name, vi.type.tensor_type.elem_type, None)
    new_dims = new_vi.type.tensor_type.shape.dim
    for d in (n, c, h, w):
        new_dims.add().CopyFrom(d)
    idx = list(g.input).index(vi)
    g.input.remove(vi)
    g.input.insert(idx, new_vi)
    g.node.insert(0, onnx.helper.make_node("Transpose", [new_name], [name], perm=[0, 2, 3, 1],
                                           name="kernelviz_nchw_to_nhwc"))
    notes.append("wrapped the NHWC input with a transpose so the pipeline sees NCHW")
    return new_name


def _symbolic_input_batch(proto: onnx.ModelProto, input_name: str, notes: list[str]) -> None:
    """Let batch > 1 run: a symbolic batch dim on the image input."""
    vi = next(i for i in proto.graph.input if i.name == input_name)
    d0 = vi.type.tensor_type.shape.dim[0]
    if d0.HasField("dim_value"):
        d0.Clear()
        d0.dim_param = BATCH_DIM
        notes.append("made the batch dimension symbolic")


def _free_reshape_batch(proto: onnx.ModelProto, notes: list[str]) -> None:
    """No Reshape may hard-code batch 1.

    The legacy torch exporter folds ``x.view(x.size(0), ...)`` into a constant shape ``[1, ...]`` when no
    dynamic axes were asked for (ShuffleNet's channel shuffle, every classifier's flatten). Reshape's 0 means
    "copy this dim from the input", which is the batch for every such Reshape in a CNN.
    """
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    fixed = 0
    for node in g.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        if node.input[0] in inits:
            continue
        shape = numpy_helper.to_array(inits[node.input[1]])
        allowzero = next((a for a in node.attribute if a.name == "allowzero"), None)
        if allowzero is not None and allowzero.i == 1:
            if (shape == 0).any():
                continue
            # The dynamo exporter sets allowzero=1 everywhere; without zeros in the shape it changes nothing,
            # and onnx2torch refuses it.
            node.attribute.remove(allowzero)
        if shape.ndim != 1 or shape.size < 2 or shape[0] != 1:
            continue
        new = shape.copy()
        new[0] = 0
        new_name = f"{node.input[1]}__batch"
        if new_name not in inits:
            t = numpy_helper.from_array(new.astype(np.int64), new_name)
            g.initializer.append(t)
            inits[new_name] = t
        node.input[1] = new_name
        fixed += 1
    if fixed:
        notes.append(f"freed {fixed} Reshape(s) that hard-coded batch 1")


def _free_resize_batch(proto: onnx.ModelProto, notes: list[str]) -> None:
    """No Resize may hard-code batch 1 in its ``sizes``.

    Exports with a fixed input shape (TensorFlow/Keras with batch 1, legacy torch ``F.interpolate(size=...)``
    once folded) give Resize a constant ``sizes = [1, C, h, w]``. onnxruntime only runs batch 1 then, and
    onnx2torch refuses it at batch 2 ("cannot resize channel or batch dimensions"). The batch now comes from
    the Resize input: ``Concat(Gather(Shape(x), [0]), [C, h, w])``.
    """
    g = proto.graph
    inits = {t.name: t for t in g.initializer}
    nodes: list[onnx.NodeProto] = []
    for node in g.node:
        sizes = None
        if node.op_type == "Resize" and len(node.input) >= 4 and node.input[3] in inits:
            sizes = numpy_helper.to_array(inits[node.input[3]])
        if sizes is None or sizes.ndim != 1 or sizes.size < 3 or sizes[0] != 1:
            nodes.append(node)
            continue
        base = f"{node.output[0]}__kv"
        rest = numpy_helper.from_array(sizes[1:].astype(np.int64), f"{base}_sizes_rest")
        zero = numpy_helper.from_array(np.array([0], np.int64), f"{base}_zero")
        g.initializer.extend([rest, zero])
        nodes += [onnx.helper.make_node("Shape", [node.input[0]], [f"{base}_shape"], name=f"{base}_shape"),
                  onnx.helper.make_node("Gather", [f"{base}_shape", zero.name], [f"{base}_batch"], axis=0,
                                        name=f"{base}_batch"),
                  onnx.helper.make_node("Concat", [f"{base}_batch", rest.name], [f"{base}_sizes"], axis=0,
                                        name=f"{base}_sizes")]
        node.input[3] = f"{base}_sizes"
        nodes.append(node)
    fixed = len(nodes) - len(g.node)
    if fixed:
        g.ClearField("node")
        g.node.extend(nodes)
        fixed //= 3
    if fixed:
        notes.append(f"freed {fixed} Resize(s) whose sizes hard-coded batch 1")
