"""Tiny ONNX CNNs built in code (milliseconds each), for CLI and reliability tests.

Every builder returns an ``onnx.ModelProto``; ``save(proto, path)`` writes it. Weights come from a fixed seed,
so results are deterministic.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def _init(name: str, arr: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _model(nodes, inputs, outputs, inits, opset: int = OPSET) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="tiny_models")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def _input(name: str = "x", h: int | str = 16, w: int | str = 16, c: int = 3, dtype=TensorProto.FLOAT,
           batch: int | str = "N"):
    return helper.make_tensor_value_info(name, dtype, [batch, c, h, w])


def _out(name: str = "y"):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", "C", "h", "w"])


def two_conv(*, dynamic: bool = False, pre: tuple[str, ...] = ()) -> onnx.ModelProto:
    """x [N,3,16,16] -> Conv 3->4 (3x3, pad 1) -> Relu -> Conv 4->6 -> Relu -> y.

    ``dynamic``: H and W symbolic (needs ``--size``). ``pre``: elementwise ops (e.g. ``("Sqrt",)``) applied to
    the input before the first conv.
    """
    rng = np.random.default_rng(0)
    nodes, src = [], "x"
    for i, op in enumerate(pre):
        nodes.append(helper.make_node(op, [src], [f"pre{i}"], name=f"pre_{op.lower()}"))
        src = f"pre{i}"
    nodes += [
        helper.make_node("Conv", [src, "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["y"], name="relu2"),
    ]
    inits = [_init("w1", rng.normal(0, 0.5, (4, 3, 3, 3))), _init("b1", np.full(4, 0.1)),
             _init("w2", rng.normal(0, 0.5, (6, 4, 3, 3))), _init("b2", np.full(6, 0.1))]
    h, w = ("H", "W") if dynamic else (16, 16)
    return _model(nodes, [_input(h=h, w=w)], [_out()], inits)


def edge_and_bias() -> onnx.ModelProto:
    """x [N,3,16,16] -> Conv 3->2 (3x3, pad 1) -> Relu -> y: kernel 0 a vertical edge detector (zero-mean weights,
    no bias: silent on a flat image), kernel 1 a large bias with faint weights (fires the same on any image)."""
    w = np.zeros((2, 3, 3, 3), np.float32)
    w[0, :, :, 0], w[0, :, :, 2] = -1.0, 1.0  # dark to the left, bright to the right
    w[1] = 0.01
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return _model(nodes, [_input()], [_out()], [_init("w", w), _init("b", np.array([0.0, 3.0]))])


def halves() -> onnx.ModelProto:
    """Known answer: one 16x16 conv (no padding, output 1x1) whose kernel 0 sees only the left half of the
    image (columns 0-7) and kernel 1 only the right half (columns 8-15); then Relu. Each kernel is the mean
    of its half (plus 0.1), so with the ``zeros`` reference a correct mask keeps its own half and drops the other."""
    w = np.zeros((2, 3, 16, 16), np.float32)
    w[0, :, :, :8] = 1.0 / 384
    w[1, :, :, 8:] = 1.0 / 384
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="halves_conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return _model(nodes, [_input(batch=1)], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 1, 1])],
                  [_init("w", w), _init("b", np.array([0.1, 0.1]))])


def dead_kernel() -> onnx.ModelProto:
    """Conv 3->2 (1x1) whose kernel 1 has zero weights and bias -1, then Relu: kernel 1 never fires."""
    w = np.zeros((2, 3, 1, 1), np.float32)
    w[0] = 0.5
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return _model(nodes, [_input()], [_out()],
                  [_init("w", w), _init("b", np.array([1.0, -1.0]))])


def planted() -> onnx.ModelProto:
    """x [N,3,16,16] -> Conv 3->6 (3x3, pad 1) -> Relu -> Conv 6->8 (3x3, pad 1) -> Relu -> y, with answers planted
    for the atlas: layer 0 kernel 2 and layer 1 kernel 5 are dead (zero filter, bias -1); layer 0 kernel 4 is an
    exact copy of kernel 1, layer 1 kernel 6 of kernel 3 (filter and bias). No other pair of kernels correlates
    above 0.9 on smooth random images (tests/test_atlas.py checks it)."""
    rng = np.random.default_rng(3)
    w1, b1 = rng.normal(0, 0.5, (6, 3, 3, 3)), rng.normal(0, 0.1, 6)
    w2, b2 = rng.normal(0, 0.5, (8, 6, 3, 3)), rng.normal(0, 0.1, 8)
    w1[2], b1[2] = 0.0, -1.0
    w1[4], b1[4] = w1[1], b1[1]
    w2[5], b2[5] = 0.0, -1.0
    w2[6], b2[6] = w2[3], b2[3]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["y"], name="relu2"),
    ]
    return _model(nodes, [_input()], [_out()], [_init("w1", w1), _init("b1", b1), _init("w2", w2), _init("b2", b2)])


def no_conv() -> onnx.ModelProto:
    """x -> Relu -> y: a valid image model without any Conv."""
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [_input()],
                  [_out()], [])


def two_images() -> onnx.ModelProto:
    """Two 4-D float inputs a, b -> Add -> Conv: which one is the image is ambiguous."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Add", ["a", "b"], ["s"], name="add"),
             helper.make_node("Conv", ["s", "w"], ["y"], name="conv")]
    return _model(nodes, [_input("a"), _input("b")], [_out()],
                  [_init("w", rng.normal(size=(2, 3, 3, 3)))])


def uint8_input() -> onnx.ModelProto:
    """An integer (uint8) image input -> Cast -> Conv."""
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Cast", ["x"], ["xf"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Conv", ["xf", "w"], ["y"], name="conv")]
    return _model(nodes, [_input(dtype=TensorProto.UINT8)],
                  [_out()],
                  [_init("w", rng.normal(size=(2, 3, 3, 3)))])


def unsupported_op() -> onnx.ModelProto:
    """Shrink (a standard op onnxruntime runs, without an onnx2torch converter) before the conv."""
    return two_conv(pre=("Shrink",))


def save(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    onnx.save(proto, str(p))
    return p


def save_external(proto: onnx.ModelProto, folder: Path, name: str = "model.onnx",
                  location: str = "model.bin") -> Path:
    """Save with every initializer in one external data file ``location`` next to the model."""
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(folder / name), save_as_external_data=True, all_tensors_to_one_file=True,
              location=location, size_threshold=0)
    return folder / name


def set_external_location(model_path: Path, location: str) -> None:
    """Rewrite every external-data reference of the saved model to ``location`` (without loading the data)."""
    m = onnx.load(str(model_path), load_external_data=False)
    for t in m.graph.initializer:
        for entry in t.external_data:
            if entry.key == "location":
                entry.value = location
    model_path.write_bytes(m.SerializeToString())
