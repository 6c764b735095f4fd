"""Each mask-method loss term's value on a known case (tiny tensors, no model)."""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.method.objectives import MaskArea, MaskTV, Objective, Preserve, Step, Suppress


def _step(act, ref, k, mask=None):
    act, ref = torch.as_tensor(act, dtype=torch.float32), torch.as_tensor(ref, dtype=torch.float32)
    x = torch.zeros(len(k), 3, 4, 4)
    return Step(act, ref, torch.tensor(k), x, mask)


def test_preserve_relative_error_and_hinge():
    ref = [[[[3.0, 4.0]], [[1.0, 1.0]]]]  # kernel 0: ‖r_0‖ = 5
    act = [[[[3.0, 1.0]], [[0.0, 0.0]]]]  # error (0, 3): relative error 0.6
    s = _step(act, ref, [0])
    assert math.isclose(float(Preserve()(s)[0]), 0.6, rel_tol=1e-5)
    assert math.isclose(float(Preserve(margin=0.2)(s)[0]), 0.4, rel_tol=1e-5)
    assert float(Preserve(margin=0.7)(s)[0]) == 0.0  # within the margin: as good as x itself
    assert float(Preserve()(_step(ref, ref, [0]))[0]) < 1e-6


def test_suppress_is_others_kept():
    ref = [[[[1.0, 0.0]], [[3.0, 4.0]], [[0.0, 0.0]]]]  # others of kernel 0: ‖(3,4,0,0)‖ = 5
    act = [[[[1.0, 0.0]], [[0.0, 1.0]], [[0.0, 0.0]]]]  # others now ‖(0,1)‖ = 1
    assert math.isclose(float(Suppress()(_step(act, ref, [0]))[0]), 0.2, rel_tol=1e-3)
    # k picks the row's own kernel: for kernel 1 the others are channels 0 and 2
    assert math.isclose(float(Suppress()(_step(act, ref, [1]))[0]), 1.0, rel_tol=1e-3)


def test_area_with_and_without_target():
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, :, :2] = 1.0  # area 0.5
    s = _step(torch.zeros(2, 1, 1, 1), torch.ones(2, 1, 1, 1), [0, 0], mask)
    assert torch.allclose(MaskArea()(s), torch.tensor([0.5, 0.0]))
    assert torch.allclose(MaskArea(target=0.3)(s), torch.tensor([0.2, 0.0]))


def test_tv_counts_edges():
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :, 2:] = 1.0  # one vertical edge: 4 of the 12 horizontal neighbour pairs differ by 1
    s = _step(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1), [0], mask)
    assert math.isclose(float(MaskTV()(s)[0]), 4 / 12, rel_tol=2e-3)  # |d| smoothed below 1e-3
    assert float(MaskTV()(_step(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1), [0],
                                torch.full((1, 1, 4, 4), 0.7)))[0]) == 0.0


def test_tv_and_area_on_the_grid_scale_to_the_input():
    mask = torch.zeros(1, 1, 4, 4)
    grid = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])  # the same vertical edge at half the resolution
    s = Step(torch.zeros(1, 1, 1, 1), torch.ones(1, 1, 1, 1), torch.tensor([0]), mask, mask, grid)
    # 2 of 2 horizontal pairs differ by 1 at the grid, times grid side / input side = 1/2 (≈ 4/12 at 4x4)
    assert math.isclose(float(MaskTV()(s)[0]), 0.5, rel_tol=2e-3)
    assert math.isclose(float(MaskArea()(s)[0]), 0.5)  # the area is read from the grid too


def test_objective_weighted_sum_and_parts():
    ref = [[[[3.0, 4.0]], [[3.0, 4.0]]]]
    act = [[[[3.0, 1.0]], [[0.0, 0.0]]]]
    obj = Objective([(2.0, Preserve()), (0.5, Suppress())])
    v = obj(_step(act, ref, [0]))
    assert math.isclose(float(v[0]), 2 * 0.6 + 0.5 * 0.0, abs_tol=1e-3)
    assert set(obj.parts) == {"Preserve", "Suppress"}


def test_default_objective_and_loop_settings():
    from onnx_kernelviz.method.methods import METHODS

    cfg = ExplainConfig(scope="map")
    mask = METHODS.get(cfg.method)
    names = [type(t).__name__ for _, t in mask.objective(cfg).terms]
    assert names == ["Preserve", "Suppress", "MaskArea", "MaskTV"]
    oc = mask.loop(cfg)
    assert oc.steps == mask.loops["map"].steps and mask.param_options(cfg)["resolution"] == cfg.resolution
    focus = ExplainConfig()  # the default scope
    assert [type(t).__name__ for _, t in mask.objective(focus).terms] == ["FocusKeep", "FocusSuppress", "BoxArea",
                                                                          "GridTV"]
    # coarse to fine: the first stage's loop and the fine stage's steps make the focus scope's steps together
    assert mask.loop(focus).steps + mask.fine_steps(focus) == mask.loops["focus"].steps
    assert mask.fine_steps(focus) == focus.focus_fine_steps and mask.param_options(focus)["grid"] == 24
    assert mask.fine_steps(replace(focus, focus_regions=0)) == 0 and mask.fine_steps(cfg) == 0
    assert mask.parameterization(focus) == "box" and mask.parameterization(cfg) == "bands"
    pixel_cfg = ExplainConfig(method="pixel", scope="map")
    pixel = METHODS.get(pixel_cfg.method)
    assert [type(t).__name__ for _, t in pixel.objective(pixel_cfg).terms] == ["PaperPreserve", "PaperSuppress",
                                                                                 "ImageL1"]
    assert pixel.loop(pixel_cfg).optimizer == "sgd" and pixel.param_options(pixel_cfg) == {}


def test_one_source_for_every_default():
    """perturb.py and OptimizeConfig had defaults of their own that disagreed with ExplainConfig's (a docstring
    described an init of 3 that never ran; 300/40/20 steps against 200/20/10)."""
    import inspect

    from onnx_kernelviz.method.focus import BoxMask
    from onnx_kernelviz.method.methods import METHODS
    from onnx_kernelviz.method.optimize import OptimizeConfig
    from onnx_kernelviz.method.perturb import MaskParameterization

    cfg = ExplainConfig()
    for scope, cls in (("map", MaskParameterization), ("focus", BoxMask)):
        params = inspect.signature(cls.__init__).parameters
        for name, value in METHODS.get("mask").param_options(replace(cfg, scope=scope)).items():
            assert params[name].default == value, (scope, name)
    loop_defaults = {f: OptimizeConfig.__dataclass_fields__[f].default for f in ("steps", "min_steps", "patience",
                                                                                "tol", "lr")}
    assert all(v is __import__("dataclasses").MISSING for v in loop_defaults.values()), loop_defaults
    assert METHODS.get("mask").loop(cfg).min_steps == METHODS.get("mask").loops[cfg.scope].min_steps
    assert METHODS.get("mask").loop(ExplainConfig(min_steps=7)).min_steps == 7  # --set min_steps=7 reaches the loop


def test_suppress_partner_is_the_partner_kept_relative_to_k_and_zero_without_one():
    import torch

    from onnx_kernelviz.method.objectives import Step, SuppressPartner

    ref = torch.ones(3, 4, 2, 2)
    act = ref.clone()
    act[:, 2] *= 0.25  # kernel 2 keeps a quarter
    act[:, 1] *= 0.5
    k = torch.tensor([0, 0, 1])
    s = Step(act, ref, k, torch.zeros(3, 3, 4, 4), None, partner=torch.tensor([2, -1, 1]))
    # kept of the partner relative to kept of k (1 here, plus the floor)
    assert torch.allclose(SuppressPartner(floor=0.0)(s), torch.tensor([0.25, 0.0, 1.0]), atol=1e-6)
    assert torch.allclose(SuppressPartner()(s)[:1], torch.tensor([0.25 / 1.05]), atol=1e-6)
    assert torch.equal(SuppressPartner()(Step(act, ref, k, torch.zeros(3, 3, 4, 4), None)), torch.zeros(3))
