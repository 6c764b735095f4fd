"""Hostile inputs built in code: models whose names are code, and files that are not what they claim.

``payload(env)`` is a node name that, written unescaped into torch.fx's generated ``forward``, creates the file
named by the environment variable ``env`` (no dots: onnx2torch turns them into ``/``; no shell).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MARKER_ENV = "KV_TEST_MARKER"


def payload(env: str = MARKER_ENV) -> str:
    """Breaks out of fx's ``getattr(self, "NAME")``: the third argument of getattr is evaluated first."""
    path = f'getattr(__import__("os"), "environ")["{env}"]'
    return f'", getattr(getattr(__import__("pathlib"), "Path")({path}), "touch")()) or ("'


TENSORS = ("x", "w1", "b1", "c1", "r1", "w2", "b2", "c2", "y")
NODES = ("conv1", "relu1", "conv2", "relu2")


def named_two_conv(tensors: tuple[str, ...] = TENSORS, nodes: tuple[str, ...] = NODES,
                   dim: str = "N") -> onnx.ModelProto:
    """tiny_models.two_conv with every tensor name, node name and the batch dim's name given.

    ``tensors`` (9, distinct): input, w1, b1, conv1 out, relu1 out, w2, b2, conv2 out, output.
    """
    x, w1, b1, c1, r1, w2, b2, c2, y = tensors
    rng = np.random.default_rng(0)
    ns = [helper.make_node("Conv", [x, w1, b1], [c1], name=nodes[0], pads=[1, 1, 1, 1]),
          helper.make_node("Relu", [c1], [r1], name=nodes[1]),
          helper.make_node("Conv", [r1, w2, b2], [c2], name=nodes[2], pads=[1, 1, 1, 1]),
          helper.make_node("Relu", [c2], [y], name=nodes[3])]
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for a, n in (
        (rng.normal(0, 0.5, (4, 3, 3, 3)), w1), (np.full(4, 0.1), b1),
        (rng.normal(0, 0.5, (6, 4, 3, 3)), w2), (np.full(6, 0.1), b2))]
    graph = helper.make_graph(ns, "tiny", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [dim, 3, 16, 16])],
                              [helper.make_tensor_value_info(y, TensorProto.FLOAT, [dim, 6, 16, 16])], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hostile")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def sparse_external_bias(location: str, where: str = "initializer") -> onnx.ModelProto:
    """named_two_conv whose first bias ``b1`` is a sparse tensor with its 4 floats in external file ``location``.

    ``where``: ``"initializer"`` (``graph.sparse_initializer``) or ``"attribute"`` (a Constant's ``sparse_value``).
    onnx's external-data loader visits neither, yet onnxruntime reads them (relative to its working directory).
    """
    m = named_two_conv()
    g = m.graph
    dense = [t for t in g.initializer if t.name != "b1"]
    del g.initializer[:]
    g.initializer.extend(dense)
    values = TensorProto(name="b1", data_type=TensorProto.FLOAT, dims=[4], data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", "16")):
        values.external_data.add(key=key, value=value)
    sparse = helper.make_sparse_tensor(values, numpy_helper.from_array(np.arange(4, dtype=np.int64), "b1_i"), [4])
    if where == "initializer":
        g.sparse_initializer.append(sparse)
    else:
        g.node.insert(0, helper.make_node("Constant", [], ["b1"], name="b1_const", sparse_value=sparse))
    return m


def declared_weight_shape(kernels: int = 10**12, *, outputs: bool = False) -> onnx.ModelProto:
    """named_two_conv whose first conv reads its weight ``w1`` [4, 3, 3, 3] through an Identity ``w1i``, with a
    ``value_info`` declaring ``w1i`` as [kernels, 3, 3, 3]; ``outputs``: the conv output and the graph output
    declared with ``kernels`` channels too. onnx's shape inference keeps such declared shapes."""
    m = named_two_conv()
    g = m.graph
    g.node.insert(0, helper.make_node("Identity", ["w1"], ["w1i"], name="w1_identity"))
    g.node[1].input[1] = "w1i"
    g.value_info.append(helper.make_tensor_value_info("w1i", TensorProto.FLOAT, [kernels, 3, 3, 3]))
    if outputs:
        g.value_info.append(helper.make_tensor_value_info("c1", TensorProto.FLOAT, ["N", kernels, 16, 16]))
        g.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", kernels, 16, 16]))
    return m


#: the ops of :func:`computes_huge`, each computing a huge tensor from constants (and the fixed input's sides)
HUGE_KINDS = ("ConstantOfShape", "Expand", "Tile", "Range", "Resize", "Shape->ConstantOfShape")


def computes_huge(kind: str = "ConstantOfShape", free: bool = False) -> onnx.ModelProto:
    """named_two_conv (batch fixed at 1) plus a branch no output uses, node ``huge``, whose output holds 5e9 or
    more elements (20 GB and up), all from constants and the input's fixed sides: a 2 KB file. ``free``: the
    input's height and width are free (``H``, ``W``), so a size that follows them is known only at run time."""
    m = named_two_conv()
    g = m.graph
    g.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    if free:
        for d, name in zip(g.input[0].type.tensor_type.shape.dim[2:], "HW"):
            d.dim_param = name

    def const(name: str, value, dtype=np.int64) -> str:
        g.initializer.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    n = 5_000_000_000
    node = {
        "ConstantOfShape": lambda: helper.make_node("ConstantOfShape", [const("s", [n])], ["big"]),
        "Expand": lambda: helper.make_node("Expand", [const("one", [1.0], np.float32), const("s", [n])], ["big"]),
        "Tile": lambda: helper.make_node("Tile", ["x", const("r", [1, 1, 100000, 100000])], ["big"]),
        "Range": lambda: helper.make_node("Range", [const("a", 0.0, np.float32), const("b", float(n), np.float32),
                                                    const("d", 1.0, np.float32)], ["big"]),
        "Resize": lambda: helper.make_node("Resize", ["x", "", const("sc", [1, 1, 20000, 20000], np.float32)],
                                           ["big"]),
    }
    if kind == "Shape->ConstantOfShape":  # the shape is computed from the input's (fixed) sides
        g.node.extend([helper.make_node("Shape", ["x"], ["sx"], name="shape"),
                       helper.make_node("Mul", ["sx", const("k", [1, 1, 100000, 100000])], ["s2"], name="mul"),
                       helper.make_node("ConstantOfShape", ["s2"], ["big"], name="huge")])
    else:
        g.node.append(node[kind]())
        g.node[-1].name = "huge"
    onnx.checker.check_model(m)
    return m


def computes_huge_in_branch(declared: bool = False, n: int = 5_000_000_000) -> onnx.ModelProto:
    """named_two_conv (batch fixed at 1) plus an If on a constant ``True`` whose output nothing uses; its then
    branch holds node ``huge``, a ``ConstantOfShape`` of a constant [n] (5e9: 20 GB) made inside the branch.
    ``declared``: the branch declares its output as [1] (a claim the size check must not trust)."""
    m = named_two_conv()
    g = m.graph
    g.input[0].type.tensor_type.shape.dim[0].dim_value = 1

    def branch(n: int, tag: str) -> onnx.GraphProto:
        size = helper.make_node("Constant", [], [f"{tag}_s"], value=numpy_helper.from_array(np.asarray([n], np.int64)))
        fill = helper.make_node("ConstantOfShape", [f"{tag}_s"], [f"{tag}_o"], name="huge" if tag == "t" else "small")
        out = helper.make_tensor_value_info(f"{tag}_o", TensorProto.FLOAT, [1] if declared else None)
        return helper.make_graph([size, fill], f"{tag}_branch", [], [out])

    g.initializer.append(numpy_helper.from_array(np.asarray(True), "cond"))
    g.node.append(helper.make_node("If", ["cond"], ["big"], name="branch", then_branch=branch(n, "t"),
                                   else_branch=branch(1, "e")))
    onnx.checker.check_model(m)
    return m


def runtime_weight(kernels: int = 10**12) -> onnx.ModelProto:
    """One conv whose weight [4, 3, 3, 3] is reshaped at run time by a shape computed from the input's free
    height (``4 * (H / H)``), so no inference can know it, with a ``value_info`` declaring ``kernels`` kernels.
    onnxruntime runs it; onnx2torch cannot convert it (the weight is not a constant)."""
    def const(name: str, value, dtype=np.int64) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(value, dtype), name)

    inits = [const("wf", np.random.default_rng(0).normal(size=108), np.float32), const("st", [2]),
             const("en", [3]), const("c4", [4]), const("c333", [3, 3, 3])]
    nodes = [helper.make_node("Shape", ["x"], ["sx"]), helper.make_node("Slice", ["sx", "st", "en"], ["h"]),
             helper.make_node("Div", ["h", "h"], ["one"]), helper.make_node("Mul", ["c4", "one"], ["k"]),
             helper.make_node("Concat", ["k", "c333"], ["ws"], axis=0),
             helper.make_node("Reshape", ["wf", "ws"], ["w"]),
             helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph(nodes, "tiny", [x],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "C", "h", "w"])], inits,
                              value_info=[helper.make_tensor_value_info("w", TensorProto.FLOAT, [kernels, 3, 3, 3])])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hostile")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m
