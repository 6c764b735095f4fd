"""Baselines on a known-answer model built in code: kernel 0 (and 2) see only the left half, kernel 1 only the
right half; plus the shared equal-area step and the guided-backprop hook lifetime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx_kernelviz.baselines import BASELINES, equal_area_masks, evaluate_baselines, guided_relus, resolve_names
from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.model import Model

SIDE = 16


def halves_model(path: Path, side: int = SIDE) -> Path:
    """x [N,3,S,S] -> Conv3x3(3->4) -> Relu -> * gate (ch 0,1 left half, ch 2,3 right half) -> Conv1x1(4->3) -> Relu.

    The layer under test is the 1x1 conv: kernel 0 = ch0 + ch1 (left), kernel 1 = ch2 + ch3 (right),
    kernel 2 = ch0 + 0.5 ch1 (left again, so its map correlates with kernel 0's).
    """
    rng = np.random.default_rng(0)
    w1 = np.abs(rng.normal(0.3, 0.2, (4, 3, 3, 3))).astype(np.float32)
    gate = np.zeros((1, 4, side, side), np.float32)
    gate[:, :2, :, : side // 2] = 1
    gate[:, 2:, :, side // 2:] = 1
    w2 = np.array([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0.5, 0, 0]], np.float32).reshape(3, 4, 1, 1)
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(np.full(4, 0.05, np.float32), "b1"),
             numpy_helper.from_array(gate, "gate"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.zeros(3, np.float32), "b2")]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Mul", ["r1", "gate"], ["g1"], name="gate"),
             helper.make_node("Conv", ["g1", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Relu", ["c2"], ["y"], name="relu2")]
    graph = helper.make_graph(nodes, "halves", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                              ["N", 3, side, side])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, side, side])], inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="test")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    onnx.save(proto, path)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    model = Model(halves_model(tmp_path_factory.mktemp("m") / "halves.onnx"), device="cpu")
    la = model.layer("conv2")
    tg = model.torch_graph((la.tensor,))
    x = torch.from_numpy(np.random.default_rng(1).uniform(0.2, 1, (2, 3, SIDE, SIDE)).astype(np.float32))
    return model, la, tg, x


def test_all_registered():
    assert {"activation", "gradient", "guided", "input_x_gradient", "occlusion"} <= set(BASELINES.names())
    assert resolve_names(["all"]) == BASELINES.names()
    assert resolve_names(["gradient", "activation", "gradient"]) == ["gradient", "activation"]
    with pytest.raises(UsageError, match="unknown baseline"):
        resolve_names(["nope"])


@pytest.mark.parametrize("name", ["activation", "gradient", "guided", "input_x_gradient", "occlusion"])
def test_baseline_shape_and_known_answer(tiny, name):
    _, _, tg, x = tiny
    forward = lambda inp: tg(inp)[0]  # noqa: E731 - the same form explainer.py passes
    k = torch.tensor([0, 1])
    sal = BASELINES.get(name)(forward, torch.zeros_like(x), module=tg.module)(x, k)
    assert sal.shape == (2, SIDE, SIDE)
    assert torch.isfinite(sal).all() and (sal >= 0).all()
    h = SIDE // 2
    left, right = sal[..., : h - 1].mean((1, 2)), sal[..., h + 1:].mean((1, 2))
    assert left[0] > 3 * right[0], (name, left, right)  # kernel 0: the left half
    assert right[1] > 3 * left[1], (name, left, right)  # kernel 1: the right half


@pytest.mark.parametrize("area", [0.0, 0.1, 0.37, 0.5, 0.999, 1.0])
def test_equal_area_masks_hit_the_area(area):
    sal = torch.rand(3, 20, 30, generator=torch.Generator().manual_seed(0))
    m = equal_area_masks(sal, [area] * 3)
    assert m.shape == (3, 20, 30)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert (m.sum((1, 2)) - area * 600).abs().max() <= 1


def test_equal_area_masks_follow_the_saliency():
    sal = torch.zeros(1, 10, 10)
    sal[0, :, :3] = 1
    assert equal_area_masks(sal, [0.3], sigma=0)[0, :, :3].all()


def test_guided_hooks_are_removed_and_module_untouched(tiny):
    _, _, tg, x = tiny
    module = tg.module
    before = tg(x)[0].clone()
    n_hooks = sum(len(m._forward_hooks) for m in module.modules())
    with guided_relus(module) as n:
        assert n >= 2  # relu1 and relu2
        assert sum(len(m._forward_hooks) for m in module.modules()) == n_hooks + n
    assert sum(len(m._forward_hooks) for m in module.modules()) == n_hooks
    with pytest.raises(RuntimeError):
        with guided_relus(module):
            raise RuntimeError("boom")
    assert sum(len(m._forward_hooks) for m in module.modules()) == n_hooks
    assert torch.equal(tg(x)[0], before)
    # and guided backprop really changes the backward pass: only non-negative gradients reach conv1's input
    forward = lambda inp: tg(inp)[0]  # noqa: E731
    g = BASELINES.get("guided")(forward, module=module)
    assert g(x, torch.tensor([0, 1])).shape == (2, SIDE, SIDE)
    assert sum(len(m._forward_hooks) for m in module.modules()) == n_hooks


def test_guided_takes_its_module_explicitly_not_from_a_closure(tiny):
    """The module is passed in; guided backprop no longer digs it out of a lambda's ``__closure__``."""
    from onnx_kernelviz.errors import KernelvizError

    _, _, tg, x = tiny
    forward = lambda inp: tg(inp)[0]  # noqa: E731 - the module is only reachable through the closure
    with pytest.raises(KernelvizError, match="module="):
        BASELINES.get("guided")(forward)(x, torch.tensor([0, 1]))


def test_evaluate_baselines_measures_on_onnxruntime(tiny):
    model, la, tg, x = tiny
    b = torch.zeros_like(x)
    t_x = model.run_ort(x.numpy(), (la.tensor,))[0]
    lo, hi = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    out = evaluate_baselines(["all"], forward=lambda inp: tg(inp)[0], module=tg.module, x=x, b=b,
                             k=torch.tensor([0, 1]), areas=[0.5, 0.55],
                             ort_activations=lambda xb: model.run_ort(xb, (la.tensor,))[0],
                             t_x=t_x, lo=lo, hi=hi)
    assert len(out) == 2 and set(out[0]) == set(BASELINES.names())
    for row, area in enumerate([0.5, 0.55]):
        for o in out[row].values():
            assert {"kept", "others_kept", "specificity_after", "mask_area", "fidelity"} \
                <= set(o.metrics.to_json())
            assert abs(o.metrics.mask_area - area) <= 1 / SIDE ** 2 + 1e-9
            assert o.mask.shape == (SIDE, SIDE) and o.x_mod.shape == (3, SIDE, SIDE)
    # keeping the left half keeps kernel 0 almost whole and removes kernel 1 (the right half)
    act = out[0]["activation"].metrics.to_json()
    assert act["kept"] > 0.8 and act["specificity_after"] > act["specificity_before"]
