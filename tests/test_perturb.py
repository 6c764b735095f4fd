"""Mask parameterization: range, shape, coarse-to-fine levels; the optimizer loop's row independence; and a
known answer on a tiny model: kernel 0 sees only the left half of the image, kernel 1 only the right half."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx_kernelviz.method.objectives import MaskArea, Objective, Preserve, Suppress
from onnx_kernelviz.method.optimize import OptimizeConfig, optimize
from onnx_kernelviz.method.perturb import PARAMETERIZATIONS, MaskParameterization


def test_mask_range_shape_and_levels():
    x, b = torch.randn(2, 3, 32, 48), torch.zeros(2, 3, 32, 48)
    p = MaskParameterization(x, b, resolution=16, levels=3, fine_lr=0.5, smooth=0.05, init=0.0)
    assert [tuple(t.shape) for t in p.logits] == [(2, 1, 3, 4), (2, 1, 5, 8), (2, 1, 11, 16)]  # coarsest first
    with torch.no_grad():
        for t in p.logits:
            t.normal_(0, 5)
    with torch.no_grad():
        out = p()
    assert out.x_mod.shape == x.shape and out.mask.shape == (2, 1, 32, 48)
    assert float(out.mask.min()) >= 0.0 and float(out.mask.max()) <= 1.0
    # x' = m x + (1 - m) b, rows selectable
    assert torch.allclose(out.x_mod, out.mask * x, atol=1e-6)
    with torch.no_grad():
        sub = p(torch.tensor([1]))
    assert torch.allclose(sub.x_mod, out.x_mod[1:], atol=1e-6)
    # lr of finer levels scaled down
    assert [g["lr_scale"] for g in p.parameters()] == [1.0, 0.5, 0.25]


def test_mask_init_and_configure():
    x = torch.ones(1, 3, 16, 16)
    p = MaskParameterization(x, torch.zeros_like(x), resolution=8, levels=1, smooth=0.0, init=3.0)
    assert torch.allclose(p().mask, torch.sigmoid(torch.tensor(3.0)))
    p.configure(resolution=4, levels=2)
    assert [tuple(t.shape[-2:]) for t in p.logits] == [(2, 2), (4, 4)]
    with pytest.raises(ValueError):
        p.configure(levels=0)


def test_pixel_parameterization_is_x():
    x = torch.randn(2, 3, 8, 8)
    p = PARAMETERIZATIONS.get("pixel")(x, None, resolution=4)
    assert torch.equal(p().x_mod, x) and p().mask is None
    assert torch.equal(p(torch.tensor([1])).x_mod, x[1:])


def test_rows_are_independent_of_their_batch():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    fwd = lambda t: conv(t)  # noqa: E731
    x = torch.rand(3, 3, 16, 16)
    k = torch.tensor([0, 1, 2])
    with torch.no_grad():
        ref = torch.relu(fwd(x))
    obj = lambda: Objective([(1.0, Preserve()), (1.0, Suppress()), (0.3, MaskArea())])  # noqa: E731
    cfg = OptimizeConfig(steps=15, lr=0.2, min_steps=0, patience=1, tol=0.0, early_stop=False)
    together = optimize(fwd, MaskParameterization(x, torch.zeros_like(x), resolution=8), obj(), ref, k, cfg)
    alone = optimize(fwd, MaskParameterization(x[1:2], torch.zeros_like(x[1:2]), resolution=8), obj(), ref[1:2],
                     k[1:2], cfg)
    assert torch.allclose(together.mask[1], alone.mask[0], atol=1e-4)


def _half_model(path, size=16):
    """Conv over the whole image, 2 kernels: kernel 0's weights cover the left half, kernel 1's the right."""
    w = np.zeros((2, 3, size, size), np.float32)
    w[0, :, :, : size // 2] = 1.0 / (3 * size * size)
    w[1, :, :, size // 2:] = 1.0 / (3 * size * size)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[size, size], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    graph = helper.make_graph(nodes, "half", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                           [1, 3, size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 1, 1])],
                              initializer=[numpy_helper.from_array(w, "w")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


@pytest.mark.parametrize("mask,margin", [("region", 0.4), ("bands", 0.2)])
def test_known_answer_left_half(tmp_path, mask, margin):
    # these kernels see only a half's mean: a region mask keeps the half; band masks keep its coarse band only,
    # so their mean (mask.npy) on the kept half is about 1/3 and the margin is smaller
    from onnx_kernelviz.io.preprocess import get_preset
    from onnx_kernelviz.model import Model
    from onnx_kernelviz.pipeline.explain import ExplainConfig, explain

    path = tmp_path / "half.onnx"
    _half_model(path)
    img = tmp_path / "img.png"
    import cv2

    rng = np.random.default_rng(0)
    cv2.imwrite(str(img), rng.integers(150, 256, (16, 16, 3), dtype=np.uint8))
    model = Model(path, device="cpu")
    cfg = ExplainConfig(mask=mask, steps=60, early_stop=False, reference="zeros", resolution=8, levels=2,
                        smooth=0.0)
    run = explain(model, [img], 0, "0,1", tmp_path / "out", preprocess=get_preset("unit"), config=cfg)
    res = {r.kernel: r.to_json() for r in run.results}
    assert res[0]["status"] == "ok" and res[0]["kept"] > 0.8 and res[0]["others_kept"] < 0.3
    m0 = np.load(tmp_path / "out" / res[0]["files"]["mask_npy"])
    m1 = np.load(tmp_path / "out" / res[1]["files"]["mask_npy"])
    assert m0[:, :8].mean() > m0[:, 8:].mean() + margin  # kernel 0's mask covers the left half
    assert m1[:, 8:].mean() > m1[:, :8].mean() + margin  # kernel 1's the right half
    json.loads((tmp_path / "out" / "results.json").read_text())


@pytest.mark.parametrize("method", ["bands", "bands4", "lumchroma", "bands_lc"])
def test_component_masks_span_x_to_b(method):
    torch.manual_seed(0)
    x, b = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    p = PARAMETERIZATIONS.get(method)(x, b, resolution=16, levels=2, smooth=0.0, init=0.0)
    M = p.comps.shape[1]
    assert [tuple(t.shape) for t in p.logits] == [(2, M, 8, 8), (2, M, 16, 16)]
    assert torch.allclose(p.comps.sum(1), x - b, atol=1e-5)  # the components add up to x - b
    for value, want in ((30.0, x), (-30.0, b)):  # all masks 1 gives x, all 0 gives b
        with torch.no_grad():
            p.logits[0].fill_(value)
            out = p()
        assert torch.allclose(out.x_mod, want, atol=1e-4)
    with torch.no_grad():
        for t in p.logits:
            t.normal_(0, 3)
        out, sub = p(), p(torch.tensor([1]))
    # one "what is kept" picture: the mean of the component masks; the grids keep all of them
    assert out.mask.shape == (2, 1, 32, 32) and out.grid.shape == (2, M, 16, 16)
    assert float(out.mask.min()) >= 0.0 and float(out.mask.max()) <= 1.0
    assert torch.equal(sub.x_mod, out.x_mod[1:]) and torch.equal(sub.mask, out.mask[1:])


def test_mask_grid_is_the_finest_level_and_upsampled_once():
    x = torch.randn(1, 3, 64, 64)
    p = MaskParameterization(x, torch.zeros_like(x), resolution=16, levels=2, smooth=0.03, init=0.0)
    with torch.no_grad():
        for t in p.logits:
            t.normal_(0, 2)
        out = p()
    assert out.grid.shape == (1, 1, 16, 16)
    up = torch.nn.functional.interpolate(out.grid, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(out.mask, up) and torch.allclose(out.x_mod, out.mask * x, atol=1e-6)
