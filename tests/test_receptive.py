"""rf_box from the graph: known answers on tiny graphs (strides, dilations, pads, pools, branches, resize,
transposed convs, global ops), and the exact dependency set measured by perturbing every input pixel."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnx_kernelviz.frontend.graph import GraphView
from onnx_kernelviz.frontend.receptive import receptive_field, tensor_shapes

H = W = 24


def _init(name, arr):
    return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)


def _build(nodes, inits, out="y", size=(H, W), opset=17) -> onnx.ModelProto:
    g = helper.make_graph(nodes, "rf", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, *size])],
                          [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["n", "c", "h", "w"])],
                          initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


_rng = np.random.default_rng(0)


def conv(name, src, dst, cin, cout, k, **attrs):
    """A Conv node with random (non-zero) weights."""
    kh, kw = (k, k) if isinstance(k, int) else k
    w = _rng.uniform(0.5, 1.5, (cout, cin // attrs.get("group", 1), kh, kw))
    return helper.make_node("Conv", [src, f"{name}_w"], [dst], name=name, **attrs), _init(f"{name}_w", w)


def rf(model, cells, size=(H, W), tensor="y"):
    g = GraphView(model)
    shapes = tensor_shapes(model, "x", (1, 2, *size))
    return receptive_field(g, shapes, tensor, cells, "x", "nchw", size)


def measured(model, cell, size=(H, W)):
    """The bounding box of the input pixels whose change moves ``y[..., cell]``: every pixel perturbed once."""
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x0 = _rng.uniform(0.1, 1.0, (1, 2, *size)).astype(np.float32)
    y0 = sess.run(None, {"x": x0})[0][0, :, cell[0], cell[1]]
    hit = np.zeros(size, bool)
    for r in range(size[0]):
        x = np.repeat(x0, size[1], 0)
        x[np.arange(size[1]), :, r, np.arange(size[1])] += 1.0
        y = sess.run(None, {"x": x})[0][:, :, cell[0], cell[1]]
        hit[r] = np.abs(y - y0).max(1) > 1e-6
    rows, cols = np.nonzero(hit)
    return (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)


def test_single_conv_with_padding_is_the_kernel_window_clipped_at_the_border():
    n, w = conv("c", "x", "y", 2, 3, 3, pads=[1, 1, 1, 1])
    m = _build([n], [w])
    assert rf(m, (5, 5, 6, 6)).box == (4, 4, 7, 7)
    assert rf(m, (0, 0, 1, 1)).box == (0, 0, 2, 2)
    assert rf(m, (2, 3, 4, 7)).box == (1, 2, 5, 8)  # a block of cells: the union of their windows


def test_stride_then_dilation():
    # layer 1: k3 s2 p1 -> cells [a, b) read [2a - 1, 2b); layer 2: k3 d2 p2 -> cell o reads [o - 2, o + 3)
    n1, w1 = conv("c1", "x", "h", 2, 3, 3, strides=[2, 2], pads=[1, 1, 1, 1])
    n2, w2 = conv("c2", "h", "y", 3, 3, 3, dilations=[2, 2], pads=[2, 2, 2, 2])
    m = _build([n1, n2], [w1, w2])
    assert rf(m, (4, 6, 5, 7)).box == (3, 7, 14, 18)
    assert rf(m, (4, 6, 5, 7)).box == measured(m, (4, 6))


def test_asymmetric_kernel_pads_and_same_upper():
    n1, w1 = conv("c1", "x", "h", 2, 2, (5, 1), pads=[2, 0, 2, 0])
    n2, w2 = conv("c2", "h", "y", 2, 2, (2, 2), strides=[2, 2], auto_pad="SAME_UPPER")
    m = _build([n1, n2], [w1, w2])
    # SAME_UPPER, k2 s2 on 24: total pad 0 -> cell o reads h [2o, 2o + 2); then rows +-2
    assert rf(m, (3, 4, 4, 5)).box == (4, 8, 10, 10)
    assert rf(m, (3, 4, 4, 5)).box == measured(m, (3, 4))


def test_pool_pad_node_and_branches_union():
    n1, w1 = conv("c1", "x", "a", 2, 2, 1)
    pool = helper.make_node("MaxPool", ["a"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2])
    pad = helper.make_node("Pad", ["p", "pads"], ["pp"], name="pad", mode="constant")
    n2, w2 = conv("c2", "pp", "b1", 2, 2, 3)           # branch 1: 3x3 on the padded map (valid)
    n3, w3 = conv("c3", "p", "b2", 2, 2, 5, pads=[2, 2, 2, 2])  # branch 2: 5x5, same size
    add = helper.make_node("Add", ["b1", "b2"], ["y"], name="add")
    pads = numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")
    m = _build([n1, pool, pad, n2, n3, add], [w1, w2, w3, pads])
    # y cell o: branch 1 reads pp [o, o + 3) = p [o - 1, o + 2); branch 2 reads p [o - 2, o + 3): union p [o-2, o+3)
    # p cells [a, b) read x [2a, 2b)
    assert rf(m, (5, 5, 6, 6)).box == (6, 6, 16, 16)
    assert rf(m, (5, 5, 6, 6)).box == measured(m, (5, 5))


def test_concat_of_branches_with_different_windows():
    n1, w1 = conv("c1", "x", "a", 2, 2, 1)
    n2, w2 = conv("c2", "x", "b", 2, 2, 7, pads=[3, 3, 3, 3])
    cat = helper.make_node("Concat", ["a", "b"], ["y"], name="cat", axis=1)
    m = _build([n1, n2, cat], [w1, w2])
    assert rf(m, (10, 10, 11, 11)).box == (7, 7, 14, 14)


def test_global_pool_makes_the_whole_image_count():
    n1, w1 = conv("c1", "x", "a", 2, 2, 3, pads=[1, 1, 1, 1])
    gap = helper.make_node("GlobalAveragePool", ["a"], ["g"], name="gap")
    mul = helper.make_node("Mul", ["a", "g"], ["y"], name="se")  # a squeeze-excitation style gate
    m = _build([n1, gap, mul], [w1])
    r = rf(m, (5, 5, 6, 6))
    assert r.box == (0, 0, H, W) and r.whole


def test_unknown_op_is_the_whole_image():
    n1, w1 = conv("c1", "x", "a", 2, 2, 1)
    lrn = helper.make_node("LpNormalization", ["a"], ["y"], name="norm", axis=3)  # mixes a whole row
    m = _build([n1, lrn], [w1])
    assert rf(m, (5, 5, 6, 6)).whole


def test_resize_nearest_and_conv_transpose():
    n1, w1 = conv("c1", "x", "a", 2, 2, 3, strides=[2, 2], pads=[1, 1, 1, 1])  # 12x12
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    up = helper.make_node("Resize", ["a", "", "scales"], ["y"], name="up", mode="nearest")
    m = _build([n1, up], [w1, scales])
    r = rf(m, (9, 9, 10, 10))
    exact = measured(m, (9, 9))
    assert r.box[0] <= exact[0] and r.box[2] >= exact[2]  # a bound, at most one cell of slack per side
    assert exact[0] - r.box[0] <= 4 and r.box[2] - exact[2] <= 4

    n2, w2 = conv("c2", "x", "b", 2, 2, 3, strides=[2, 2], pads=[1, 1, 1, 1])
    wt = _init("wt", _rng.uniform(0.5, 1.5, (2, 2, 4, 4)))
    tr = helper.make_node("ConvTranspose", ["b", "wt"], ["y"], name="tr", strides=[2, 2], pads=[1, 1, 1, 1])
    m2 = _build([n2, tr], [w2, wt])
    assert rf(m2, (9, 9, 10, 10)).box == measured(m2, (9, 9))


@pytest.mark.parametrize("seed", range(6))
def test_random_conv_stacks_match_the_measured_dependency_box(seed):
    rng = np.random.default_rng(seed)
    nodes, inits, src, c, holes = [], [], "x", 2, False
    for i in range(3):
        k = int(rng.choice([1, 2, 3, 5]))
        s = int(rng.choice([1, 2])) if i < 2 else 1
        d = int(rng.choice([1, 2])) if k > 1 else 1
        p = [int(v) for v in rng.integers(0, k, 4)] if k > 1 else [0, 0, 0, 0]
        n, w = conv(f"c{i}", src, "y" if i == 2 else f"h{i}", c, 2, k, strides=[s, s], dilations=[d, d], pads=p)
        nodes.append(n)
        inits.append(w)
        src = f"h{i}"
        holes |= s > 1 and d > 1  # a dilated window on a strided grid skips whole rows: the box is a bound
    m = _build(nodes, inits)
    shape = onnx.shape_inference.infer_shapes(m).graph.output[0].type.tensor_type.shape.dim
    oh, ow = shape[2].dim_value, shape[3].dim_value
    cell = (oh // 2, ow // 3)
    box, exact = rf(m, (cell[0], cell[1], cell[0] + 1, cell[1] + 1)).box, measured(m, cell)
    if holes:
        assert box[0] <= exact[0] and box[1] <= exact[1] and box[2] >= exact[2] and box[3] >= exact[3]
    else:
        assert box == exact


@pytest.mark.slow
def test_default_model_gradient_support_inside_the_box():
    """On the real model, the input gradient of one cell is zero outside its rf_box, and reaches its edges."""
    import torch
    from corpus import DEFAULT_MODEL

    from onnx_kernelviz.model import Model
    m = Model(DEFAULT_MODEL, device="cpu")
    la = m.layer(12)
    shapes = tensor_shapes(m.loaded.proto, m.loaded.input.name, (1, 3, 224, 224))
    box = receptive_field(m.graph, shapes, la.tensor, (14, 14, 15, 15), m.loaded.input.name, "nchw",
                          (224, 224)).box
    tg = m.torch_graph((la.tensor,))
    x = torch.from_numpy(m.synthetic_input(1)).requires_grad_(True)
    tg(x)[0][0, :, 14, 14].sum().backward()
    g = x.grad[0].abs().sum(0).numpy()
    rows, cols = np.nonzero(g > 0)
    t, left, b, r = box
    assert rows.min() >= t and rows.max() < b and cols.min() >= left and cols.max() < r
    assert rows.min() - t <= 2 and b - 1 - rows.max() <= 2  # tight, up to dead (clipped) border paths
