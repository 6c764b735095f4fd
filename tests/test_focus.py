"""Local explanations: focus cells, the focus terms and metrics, the box mask and its window, the bound."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from onnx_kernelviz.measure.focus import focus_metrics, kept_iou, readability
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.method.focus import (
    AreaProfile,
    BoxMask,
    FocusKeep,
    FocusSuppress,
    FreePixels,
    focus_cells,
    top_regions,
)
from onnx_kernelviz.method.methods import METHODS, Later, Method
from onnx_kernelviz.method.objectives import Step
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.focus import _exact_crops, locate, measure, optimize_on_focus, plan_crops

LO, HI = torch.zeros(1, 3, 1, 1), torch.full((1, 3, 1, 1), 2.0)
#: in the tiny models below every kernel scales alike with a region mask (nothing separates them), so the suppress
#: term only pulls against the keep hinge; with the default's weight (15: tuned for real models, where it buys
#: suppression) 30-step stages end near kept 0.85. The stage tests use a weaker one: they test the stages, not weights
_SUPPRESS = 6.0


def test_focus_cells_component_of_half_max_with_diagonal_neighbours():
    r = np.zeros((6, 6))
    r[2, 2] = 10  # peak
    r[3, 3] = 6   # diagonal neighbour above half: in F (8-connected)
    r[2, 3] = 4   # below half: out
    r[0, 5] = 9   # above half but not connected: out
    f = focus_cells(r)
    assert f.peak == (2, 2)
    assert set(zip(*np.nonzero(f.cells))) == {(2, 2), (3, 3)}
    assert f.bbox == (2, 2, 4, 4) and f.count == 2


def test_focus_cells_at_a_given_cell_and_where_the_kernel_is_silent():
    r = np.zeros((5, 5))
    r[0, 0], r[4, 4], r[4, 3] = 10, 2, 1.5
    f = focus_cells(r, at=(4, 4))  # threshold: half of r at that cell
    assert f.peak == (4, 4) and set(zip(*np.nonzero(f.cells))) == {(4, 4), (4, 3)}
    g = focus_cells(r, at=(2, 2))
    assert g.count == 1 and g.cells[2, 2]


def _step(act, ref, k, focus):
    return Step(act=act, ref=ref, k=torch.tensor(k), x_mod=torch.zeros(len(k), 1, 1, 1), mask=None,
                focus=focus)


def test_focus_terms_look_only_at_the_focus_cells():
    ref = torch.ones(1, 3, 4, 4)
    act = ref.clone()
    act[:, 1:, :2, :2] = 0.0       # the others vanish on F (top-left 2x2) ...
    act[:, :, 2:, 2:] = 50.0      # ... and explode elsewhere, which must not count
    focus = torch.zeros(1, 4, 4)
    focus[:, :2, :2] = 1
    s = _step(act, ref, [0], focus)
    assert float(FocusSuppress()(s)) == pytest.approx(0.0, abs=1e-3)
    assert float(FocusKeep(0.05)(s)) == pytest.approx(0.0, abs=1e-6)
    act[:, 0, :2, :2] = 0.5
    assert float(FocusKeep(0.05)(_step(act, ref, [0], focus))) == pytest.approx(0.45, abs=1e-3)


def test_area_profile_is_zero_for_a_binary_mask_of_the_target_area():
    g = torch.zeros(1, 1, 10, 10)
    g[..., :2, :5] = 1.0  # 10 % ones
    s = Step(act=torch.zeros(1, 1, 1, 1), ref=torch.zeros(1, 1, 1, 1), k=torch.tensor([0]),
             x_mod=torch.zeros(1, 1, 1, 1), mask=g, grid=g)
    assert float(AreaProfile(0.1)(s)) == 0.0
    assert float(AreaProfile(0.3)(s)) == pytest.approx(0.2)


def test_focus_metrics_restricted_to_cells():
    t_x = np.ones((3, 4, 4), np.float32)
    t_xp = t_x.copy()
    t_xp[1:, 0, 0] = 0.0
    t_xp[1:, 3, 3] = 9.0
    cells = np.zeros((4, 4), bool)
    cells[0, 0] = True
    n = focus_metrics(t_x, t_xp, 0, cells)
    assert n.kept == pytest.approx(1.0) and n.others_kept == pytest.approx(0.0)
    assert n.specificity_before == pytest.approx(1 / 3) and n.specificity_after == pytest.approx(1.0)
    assert n.gain == pytest.approx(3.0)


def test_readability_counts_regions_box_share_and_area():
    m = np.zeros((20, 20))
    m[2:6, 2:6] = 1      # 16 px
    m[10:12, 10:12] = 1  # 4 px
    m[15, 15] = 1        # 1 px
    m[18, 18] = 1        # 1 px, the 4th region
    r = readability(m, (0, 0, 10, 10))
    assert r.regions == 4 and r.top3_share == pytest.approx(21 / 22)
    assert r.inside == pytest.approx(16 / 22) and r.box_area == pytest.approx(22 / 100) and r.hidden == 0.0
    m[0, 10:19] = 0.4  # a faint stripe: no kept area, but 3.6 of the mask's 25.6 mass that x' shows
    r = readability(m, (0, 0, 10, 10))
    assert r.box_area == pytest.approx(22 / 100) and r.hidden == pytest.approx(3.6 / 25.6)
    assert readability(np.zeros((4, 4)), (0, 0, 4, 4)).hidden == 0.0
    assert kept_iou(m, m) == 1.0 and kept_iou(m, np.zeros_like(m)) == 0.0


def test_box_mask_is_the_reference_outside_the_box_and_the_window_renders_the_same():
    torch.manual_seed(0)
    x, b = torch.rand(2, 3, 32, 32), torch.zeros(2, 3, 32, 32)
    boxes = torch.tensor([[4, 8, 20, 24], [10, 0, 32, 16]])
    p = BoxMask(x, b, boxes=boxes, grid=6, init=2.0)
    with torch.no_grad():
        p.logits.normal_()
    out = p()
    for i, (t, left, bo, r) in enumerate(boxes.tolist()):
        outside = torch.ones(32, 32, dtype=torch.bool)
        outside[t:bo, left:r] = False
        assert torch.all(out.mask[i, 0][outside] == 0) and torch.all(out.x_mod[i][:, outside] == 0)
        assert out.mask[i, 0][t:bo, left:r].min() > 0
    crops = plan_crops(boxes.tolist(), (32, 32), (8, 8), most=1.0)
    q = BoxMask(x, b, boxes=boxes, grid=6, crops=crops[0], crop_size=crops[1])
    with torch.no_grad():
        q.logits.copy_(p.logits)
    win = q()
    full_x, full_m = q.render(win.grid)
    assert torch.allclose(full_x, out.x_mod, atol=1e-6) and torch.allclose(full_m, out.mask, atol=1e-6)
    (y, x0), (h, w) = crops[0][0], crops[1]
    assert torch.allclose(win.x_mod[0], out.x_mod[0, :, y:y + h, x0:x0 + w], atol=1e-6)


def test_plan_crops_aligned_to_the_stride_and_holding_every_box():
    corners, (h, w) = plan_crops([(20, 30, 60, 50), (100, 0, 130, 40)], (224, 224), (14, 14))
    assert h == 48 and w == 48 and all(y % 16 == 0 and x % 16 == 0 for y, x in corners)
    for (y, x), (t, left, b, r) in zip(corners, [(20, 30, 60, 50), (100, 0, 130, 40)]):
        assert y <= t and x <= left and y + h >= b and x + w >= r
    assert plan_crops([(0, 0, 224, 224)], (224, 224), (14, 14)) is None
    assert plan_crops([(0, 0, 10, 10)], (224, 224), (15, 15)) is None  # no whole stride


# --- a tiny model for the bound: 1x1 conv of 3 channels into 3 kernels, with a 3x3 conv before it ---

def _tiny(path, w2):
    rng = np.random.default_rng(0)
    w1 = np.zeros((3, 3, 3, 3), np.float32)
    for c in range(3):
        w1[c, c] = rng.uniform(0.05, 0.15, (3, 3))
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["a"], ["ar"], name="r1"),
             helper.make_node("Conv", ["ar", "w2"], ["y"], name="c2"),
             helper.make_node("Relu", ["y"], ["yr"], name="r2")]
    g = helper.make_graph(nodes, "bound", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                          [helper.make_tensor_value_info("yr", TensorProto.FLOAT, ["N", 3, 16, 16])],
                          initializer=[numpy_helper.from_array(w1, "w1"),
                                       numpy_helper.from_array(np.asarray(w2, np.float32).reshape(3, 3, 1, 1),
                                                               "w2")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(path))
    return Model(path, device="cpu")


def _bound(model, cfg=None):
    cfg = cfg or ExplainConfig(oracle_steps=80)
    x = np.random.default_rng(1).uniform(0.2, 0.8, (1, 3, 32, 32)).astype(np.float32)
    x[0, 0, 8:20, 4:16] += 1.0  # k (channel 0) peaks here; the other channels are the same everywhere
    la = model.layer(1)
    t = model.run_ort(x, (la.tensor,))[0]
    site = locate(model, la.tensor, t[0], 0, (32, 32))
    xt = torch.from_numpy(x)
    res = optimize_on_focus(model.layer_forward(la.tensor), lambda xx, bb, **_: FreePixels(xx, lo=LO, hi=HI),
                            Method.bound_objective(cfg), Method.bound_loop(cfg), xt, xt, torch.tensor([0]), [site],
                            crop=cfg.focus_crop)
    x_b = torch.maximum(torch.minimum(res.x_mod, HI), LO).detach().numpy()
    nums, _ = measure(model, la.tensor, t, x_b, np.array([0]), [site])
    return nums[0], site, x, t, la


def test_the_bound_is_one_when_every_other_kernel_is_a_copy_of_k(tmp_path):
    m = _tiny(tmp_path / "copies.onnx", [[1, 0, 0], [2, 0, 0], [0.5, 0, 0]])
    n, *_ = _bound(m)
    assert n.gain == pytest.approx(1.0, abs=0.02)  # r_j = c_j·r_k: no input changes k's share


def test_the_bound_is_high_when_the_kernels_read_different_channels(tmp_path):
    m = _tiny(tmp_path / "apart.onnx", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    n, site, *_ = _bound(m)
    assert n.kept >= 0.9 and n.others_kept < 0.2 and n.specificity_after > 0.95  # the most any input can do
    assert site.rf_box[2] - site.rf_box[0] <= 32


def test_explain_batch_keeps_k_on_focus_and_leaves_the_rest_as_the_reference(tmp_path):
    m = _tiny(tmp_path / "apart.onnx", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    _, site, x, t, la = _bound(m)
    cfg = replace(ExplainConfig(), steps=60, focus_suppress=_SUPPRESS)
    mask = METHODS.get("mask")
    xt = torch.from_numpy(x)
    res = optimize_on_focus(m.layer_forward(la.tensor), lambda xx, bb, **w: mask.build(xx, bb, cfg, **w),
                            mask.objective(cfg), mask.loop(cfg), xt, torch.zeros_like(xt), torch.tensor([0]), [site],
                            places_itself=True)
    x_mod, masks = res.x_mod.detach().numpy(), res.mask[:, 0].detach().numpy()
    top, left, bottom, right = site.rf_box
    outside = np.ones((32, 32), bool)
    outside[top:bottom, left:right] = False
    assert np.all(masks[0][outside] == 0) and np.allclose(x_mod[0][:, outside], 0.0)
    n, _ = measure(m, la.tensor, t, x_mod, np.array([0]), [site])
    # here a region mask cannot drop one colour channel and keep another (the bound can): k must stay, though
    assert n[0].kept >= 0.9 and n[0].gain > 0.98


def test_coarse_to_fine_keeps_the_fine_mask_inside_the_coarse_regions(tmp_path):
    m = _tiny(tmp_path / "apart.onnx", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    _, site, x, t, la = _bound(m)
    cfg = replace(ExplainConfig(), steps=30, focus_regions=1, focus_fine_grid=32, focus_fine_steps=20,
                  focus_suppress=_SUPPRESS)
    mask = METHODS.get("mask")
    refine = mask.refine(cfg)
    assert refine is not None and mask.refine(replace(cfg, focus_regions=0)) is None
    assert mask.refine(replace(cfg, steps=1)) is None and mask.loop(replace(cfg, steps=1)).steps == 1  # --steps 1
    xt = torch.from_numpy(x)
    first = optimize_on_focus(m.layer_forward(la.tensor), lambda xx, bb, **w: mask.build(xx, bb, cfg, **w),
                              mask.objective(cfg), mask.loop(cfg), xt, torch.zeros_like(xt), torch.tensor([0]),
                              [site], places_itself=True)
    res = optimize_on_focus(m.layer_forward(la.tensor), lambda xx, bb, **w: mask.build(xx, bb, cfg, **w),
                            mask.objective(cfg), mask.loop(cfg), xt, torch.zeros_like(xt), torch.tensor([0]), [site],
                            places_itself=True, refine=refine)
    assert res.stages is not None and res.steps == [a + b for a, b in zip(*res.stages)]
    assert res.grid.shape[-1] == 32
    # the fine grid is 0 outside the coarse mask's largest region grown by a cell (here: the same first stage)
    support = top_regions(first.grid, 1, dilate=1)
    up = torch.nn.functional.interpolate(support, size=(32, 32), mode="bilinear", align_corners=False)
    assert float(res.grid[(up == 0).expand_as(res.grid)].abs().max()) == 0.0
    n, _ = measure(m, la.tensor, t, res.x_mod.detach().numpy(), np.array([0]), [site])
    assert n[0].kept >= 0.9


def test_fine_stage_with_band_masks_starts_from_the_coarse_mask_and_stays_in_its_regions(tmp_path):
    m = _tiny(tmp_path / "apart.onnx", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    _, site, x, t, la = _bound(m)
    cfg = replace(ExplainConfig(), steps=30, focus_regions=1, focus_fine_grid=32, focus_fine_steps=10,
                  focus_bands=1, focus_fine_bands=3, early_stop=False, focus_suppress=_SUPPRESS)
    mask, xt = METHODS.get("mask"), torch.from_numpy(x)
    forward = m.layer_forward(la.tensor)

    def build(xx, bb, **w):
        return mask.build(xx, bb, cfg, **w)

    first = optimize_on_focus(forward, build, mask.objective(cfg), mask.loop(cfg), xt, torch.zeros_like(xt),
                              torch.tensor([0]), [site], places_itself=True)
    assert first.grid.shape[1] == 1  # the coarse stage: one region mask
    stage = mask.refine(cfg)
    assert stage is not None
    fine_build, *_ = stage(first.grid)
    param = fine_build(xt, torch.zeros_like(xt), boxes=torch.tensor([site.rf_box]))
    start = param().grid
    assert start.shape[1] == 3  # one mask per Laplacian band, each starting from the coarse mask
    assert torch.allclose(start[:, 0], start[:, 2])
    res = optimize_on_focus(forward, build, mask.objective(cfg), mask.loop(cfg), xt, torch.zeros_like(xt),
                            torch.tensor([0]), [site], places_itself=True, refine=stage)
    support = torch.nn.functional.interpolate(top_regions(first.grid, 1, dilate=1), size=(32, 32),
                                              mode="bilinear", align_corners=False)
    assert res.grid.shape[1] == 3 and float(res.grid[(support == 0).expand_as(res.grid)].abs().max()) == 0.0
    n, _ = measure(m, la.tensor, t, res.x_mod.detach().numpy(), np.array([0]), [site])
    assert n[0].kept >= 0.9


def test_a_fine_stage_that_loses_k_is_undone_for_its_row(tmp_path):
    """Where the coarse mask keeps k with mass spread thin, its regions cannot hold k: a later stage that drops k
    below KEEP_FLOOR on F is replaced by the first stage's result for that row (x', mask, grid, loss)."""
    from onnx_kernelviz.method.focus import SupportBoxMask
    from onnx_kernelviz.pipeline.focus import KEEP_FLOOR

    m = _tiny(tmp_path / "apart.onnx", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    _, site, x, t, la = _bound(m)
    cfg = replace(ExplainConfig(), steps=40, focus_regions=1, focus_fine_grid=32, focus_fine_steps=10,
                  focus_suppress=_SUPPRESS, early_stop=False)
    mask, xt, b = METHODS.get("mask"), torch.from_numpy(x), torch.zeros_like(torch.from_numpy(x))
    forward = m.layer_forward(la.tensor)

    def build(xx, bb, **w):
        return mask.build(xx, bb, cfg, **w)

    def collapse(grid):  # a fine stage whose support is empty: x' = the reference, k is gone
        def fine(xx, bb, **w):
            return SupportBoxMask(xx, bb, support=torch.zeros_like(grid[:, :1]), start=grid, grid=32, bands=3, **w)
        return Later(fine, mask.objective(cfg), replace(mask.loop(cfg), steps=5, min_steps=5))

    first = optimize_on_focus(forward, build, mask.objective(cfg), mask.loop(cfg), xt, b, torch.tensor([0]), [site],
                              places_itself=True)
    res = optimize_on_focus(forward, build, mask.objective(cfg), mask.loop(cfg), xt, b, torch.tensor([0]), [site],
                            places_itself=True, refine=collapse)
    assert res.stages is not None and res.steps == [first.steps[0] + 5]
    assert torch.allclose(res.x_mod, first.x_mod) and torch.allclose(res.mask, first.mask)
    assert res.grid.shape[1] == 3 and float(res.grid.max()) > 0  # the coarse mask, in the fine stage's shape
    n, _ = measure(m, la.tensor, t, res.x_mod.detach().numpy(), np.array([0]), [site])
    assert n[0].kept >= KEEP_FLOOR
    # a fine stage that keeps k is left as it is
    kept = optimize_on_focus(forward, build, mask.objective(cfg), mask.loop(cfg), xt, b, torch.tensor([0]), [site],
                             places_itself=True, refine=mask.refine(cfg))
    assert kept.grid.shape[1] == 3 and not torch.allclose(kept.x_mod, first.x_mod)


def test_sharpen_stage_saves_x_prime_of_the_mask_cut_at_one_half(tmp_path):
    m = _tiny(tmp_path / "apart.onnx", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    _, site, x, t, la = _bound(m)
    mask, xt = METHODS.get("mask"), torch.from_numpy(x)
    b = torch.full_like(xt, 0.5)
    for sharpen, kind in ((0, "binary"), (8, "cut"), (8, "binary")):
        seen: list[int] = []
        cfg = replace(ExplainConfig(), steps=40, focus_regions=1, focus_fine_grid=32, focus_fine_steps=20,
                      focus_sharpen_steps=sharpen, focus_sharpen=kind, early_stop=False, focus_suppress=_SUPPRESS)
        res = optimize_on_focus(m.layer_forward(la.tensor), lambda xx, bb, cfg=cfg, **w: mask.build(xx, bb, cfg, **w),
                                mask.objective(cfg), mask.loop(cfg), xt, b, torch.tensor([0]), [site],
                                places_itself=True, refine=mask.refine(cfg),
                                refine_callbacks=(lambda step, loss, running, seen=seen: seen.append(step),))
        faded = bool(torch.any((res.mask > 0) & (res.mask <= 0.5)))
        assert faded == (sharpen == 0)  # the soft fine stage alone leaves faded content outside the contour
        kept = res.mask[0, 0] > 0.5
        if sharpen:  # x' is the reference wherever the contour does not reach
            assert kept.any() and torch.allclose(res.x_mod[0][:, ~kept], b[0][:, ~kept], atol=1e-6)
    # binary: x itself inside the contour; both later stages count as one phase (12 fine steps, then 8 sharpen)
    assert bool(torch.all((res.mask == 0) | (res.mask == 1)))
    assert torch.allclose(res.x_mod[0][:, kept], xt[0][:, kept], atol=1e-6)
    assert res.stages == [[20], [20]] and res.steps == [40] and seen == list(range(1, 21))
    n, _ = measure(m, la.tensor, t, res.x_mod.detach().numpy(), np.array([0]), [site])
    assert n[0].kept >= 0.9


def test_window_is_exact_on_the_focus_cells(tmp_path):
    m = _tiny(tmp_path / "apart.onnx", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    _, site, x, _, la = _bound(m)
    crops = plan_crops([site.rf_box], (32, 32), site.focus.cells.shape, most=1.0)
    cells = torch.from_numpy(site.focus.cells[None]).float()
    assert crops is not None and _exact_crops(m.layer_forward(la.tensor), torch.from_numpy(x), cells, crops)


def test_companions_and_the_focus_block_say_who_fires_with_k(tmp_path):
    from onnx_kernelviz.pipeline.focus import companions, focus_block
    t = np.zeros((4, 3, 3), np.float32)
    t[0, 1, 1], t[2, 1, 1], t[3, 1, 1], t[1, 0, 0] = 1.0, 0.9, 0.2, 5.0
    cells = np.zeros((3, 3), bool)
    cells[1, 1] = True
    assert companions(t, 0, cells) == [2]  # kernel 1 fires elsewhere, kernel 3 too weakly
    m = _tiny(tmp_path / "copies.onnx", [[1, 0, 0], [2, 0, 0], [0.5, 0, 0]])
    n, site, x, t, la = _bound(m)
    block = focus_block(site, n, n, t[0], 0).to_json()
    assert block["separable"] is False and block["companions"] == [1, 2] and block["oracle_gain"] == n.gain
    assert set(block) >= {"peak", "cells", "rf_box", "kept", "others_kept", "specificity_before",
                          "specificity_after", "oracle_gain"}


def test_baselines_in_focus_scope_stay_in_the_box_at_our_area(tmp_path):
    from onnx_kernelviz.pipeline.focus import baselines_on_focus
    m = _tiny(tmp_path / "apart.onnx", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    _, site, x, t, la = _bound(m)
    fwd = m.layer_forward(la.tensor)
    xt = torch.from_numpy(x)
    out = baselines_on_focus(["activation", "gradient", "occlusion"], fwd, fwd.module, xt, torch.zeros_like(xt),
                             torch.tensor([0]), [site], [0.05])
    top, left, bottom, right = site.rf_box
    for name in ("activation", "gradient", "occlusion"):
        masks, x_mod, _ = out[name]
        assert abs(float(masks[0].mean()) - 0.05) <= 1 / (32 * 32)
        assert float(masks[0].sum()) == float(masks[0, top:bottom, left:right].sum())  # inside the box only
        n, _ = measure(m, la.tensor, t, x_mod.numpy(), np.array([0]), [site])
        assert 0 <= n[0].kept and n[0].specificity_after > 0


def test_an_optional_stage_is_taken_per_row_only_within_its_tolerance():
    """``_takes``: a stage every row takes is refused only where it loses k (KEEP_FLOOR); an optional tidy-up
    (tolerance δ) only where the specificity stays ≥ (1 − δ) of the row's pick and k keeps as much (or ≥ 0.9)."""
    from onnx_kernelviz.pipeline.focus import _takes

    first = (torch.tensor([0.95, 0.95, 0.95, 0.80]), torch.tensor([0.50, 0.50, 0.50, 0.50]))
    new = (torch.tensor([0.93, 0.85, 0.96, 0.85]), torch.tensor([0.46, 0.60, 0.44, 0.48]))
    pick = torch.zeros(4, dtype=torch.long)
    assert _takes([first, new], pick, None).tolist() == [True, False, True, True]
    assert _takes([first, new], pick, 0.1).tolist() == [True, False, False, True]
    assert _takes([first, new], pick, 0.0).tolist() == [False, False, False, False]
    # judged against each row's pick so far (row 1 showed the second stage: 0.9 of its 0.60 is 0.54)
    third = (torch.full((4,), 0.95), torch.full((4,), 0.55))
    assert _takes([first, new, third], torch.tensor([0, 1, 0, 0]), 0.1).tolist() == [True, True, True, True]
    assert _takes([first, new, third], torch.tensor([0, 1, 0, 0]), 0.05).tolist() == [True, False, True, True]


def test_prune_stage_keeps_the_fine_masks_largest_regions_or_is_refused(tmp_path):
    """``focus_prune_steps``: the fine stage's last steps re-optimize on its own largest regions (the mask is 0
    elsewhere) and a row keeps that only within ``focus_prune_tolerance``; a tidy-up that would lose k is refused."""
    from onnx_kernelviz.method.focus import SupportBoxMask
    from onnx_kernelviz.pipeline.focus import _scores

    m = _tiny(tmp_path / "apart.onnx", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    _, site, x, t, la = _bound(m)
    base = replace(ExplainConfig(), steps=40, focus_regions=1, focus_fine_grid=32, focus_fine_steps=20,
                   focus_suppress=_SUPPRESS, early_stop=False)
    mask, xt = METHODS.get("mask"), torch.from_numpy(x)
    b, forward = torch.zeros_like(xt), m.layer_forward(la.tensor)
    cfg = replace(base, focus_prune_steps=8, focus_prune_tolerance=1.0)  # always taken when k stays

    def run(cfg, refine):
        return optimize_on_focus(forward, lambda xx, bb, **w: mask.build(xx, bb, cfg, **w), mask.objective(cfg),
                                 mask.loop(cfg), xt, b, torch.tensor([0]), [site], places_itself=True,
                                 refine=refine)

    stage = mask.refine(cfg)
    fine = stage(run(cfg, None).grid)
    assert isinstance(fine, Later) and fine.tolerance is None and fine.loop.steps == 12
    pruned = fine.after(torch.rand(1, 3, 32, 32))
    assert isinstance(pruned, Later) and pruned.tolerance == 1.0 and pruned.loop.steps == 8
    res = run(cfg, stage)
    assert res.stages == [[20], [20]] and res.steps == [40]
    # the same stages without the prune (coarse 20 steps, fine 12): what the prune stage started from
    no_prune = replace(cfg, focus_prune_steps=0, focus_fine_steps=12, steps=32)
    before = run(no_prune, mask.refine(no_prune))
    # taken here: x' moved on, and the mask is 0 outside the fine mask's largest region grown by a cell
    assert not torch.allclose(res.x_mod, before.x_mod)
    support = top_regions(before.grid, 1, dilate=1)
    assert float(res.grid[(support == 0).expand_as(res.grid)].abs().max()) == 0.0

    def collapse(grid):  # a tidy-up that drops everything: k is gone, so no row takes it
        def build(xx, bb, **w):
            return SupportBoxMask(xx, bb, support=torch.zeros_like(grid[:, :1]), start=grid, grid=32, bands=3, **w)
        return Later(build, mask.objective(cfg), replace(mask.loop(cfg), steps=4, min_steps=4), None, tolerance=1.0)

    def fine_then_collapse(grid):
        return stage(grid)._replace(after=collapse)

    kept = run(cfg, fine_then_collapse)
    assert kept.steps == [36] and torch.allclose(kept.x_mod, before.x_mod) and torch.allclose(kept.grid, before.grid)
    k_kept, _ = _scores(forward, kept.x_mod, torch.relu(forward(xt)), torch.tensor([0]),
                        torch.from_numpy(site.focus.cells[None]).float())
    assert float(k_kept[0]) >= 0.9


def test_shown_mask_is_the_share_of_x_that_x_prime_shows():
    """mask.npy of a focus explanation: for one mask it is that mask (locally averaged); with band masks, a place
    whose only content (its colour) is kept counts as kept, where the mean of the band masks would say 1/3."""
    from onnx_kernelviz.method.focus import shown_mask

    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64) + 0.5
    b = torch.zeros_like(x)
    m = torch.zeros(1, 1, 64, 64)
    m[..., 16:48, 8:40] = 1.0
    shown = shown_mask(b + m * (x - b), x, b)[0]
    assert shown.shape == (64, 64)
    assert float(shown[20:44, 12:36].min()) > 0.99 and float(shown[:, 50:].max()) < 0.01
    assert float(shown[m[0, 0] == 0].max()) == 0.0  # not spread by the blur onto pixels x' leaves at b
    assert float((shown > 0.5).float().mean()) == pytest.approx(float(m.mean()), abs=0.02)
    half = shown_mask(b + 0.3 * (x - b), x, b)[0]
    assert torch.allclose(half, torch.full_like(half, 0.3), atol=1e-5)
    # a flat colour patch (all of its content in the lowest band) kept by the low band's mask alone
    flat = torch.zeros(1, 3, 64, 64)
    flat[..., 16:48, 16:48] = 1.0
    low_only = b + flat  # what x' is when that band's mask is 1 and the two detail bands' 0 (no detail there)
    assert float(shown_mask(low_only, flat, b)[0, 24:40, 24:40].min()) > 0.99
    # a thin rf_box (a kernel firing along the image's edge) kept whole reads as kept: the shares are taken
    # inside the box, so the blur neither dilutes them with the photo outside nor spreads them out of the box
    thin = torch.zeros(1, 1, 64, 64)
    thin[..., :, :4] = 1.0
    strip = shown_mask(b + thin * (x - b), x, b, torch.tensor([[0, 0, 64, 4]]))[0]
    assert float(strip[:, :4].min()) > 0.99 and float(strip[:, 4:].max()) == 0.0
    # where x is the reference there is nothing to show (and no tiny difference is blown up to "all of it")
    assert float(shown_mask(b.clone(), b.clone(), b).max()) == 0.0
    x[..., :, 32:] = 0.0
    assert float(shown_mask(b + 1e-7, x, b)[0, :, 48:].max()) < 0.01


def test_focus_explanation_reports_the_shown_mask(tmp_path):
    """What explain saves as a focus explanation's mask is shown_mask of its saved x' (not the band masks' mean)."""
    from PIL import Image

    from onnx_kernelviz.io.preprocess import Preprocess
    from onnx_kernelviz.method.focus import shown_mask
    from onnx_kernelviz.pipeline.batch import optimize_batch
    from onnx_kernelviz.pipeline.prepare import prepare

    m = _tiny(tmp_path / "apart.onnx", [[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    img = np.random.default_rng(1).uniform(60, 190, (32, 32, 3)).astype(np.uint8)
    img[8:20, 4:16, 0] = 250  # k (channel 0) peaks here
    Image.fromarray(img).save(tmp_path / "p.png")
    pp = Preprocess(size=(32, 32), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    cfg = replace(ExplainConfig(), steps=20, focus_fine_steps=10, focus_regions=1, focus_fine_grid=32,
                  focus_fine_bands=3, oracle=False, early_stop=False, focus_small_box=0)
    prep = prepare(m, [tmp_path / "p.png"], m.layer(1), pp, cfg)
    opt = optimize_batch(m, prep, [(0, 0)], cfg, pp)
    want = shown_mask(torch.from_numpy(opt.x_mod), torch.from_numpy(prep.x[:1]), torch.from_numpy(prep.b[:1]),
                      torch.tensor([opt.sites[0].rf_box]))
    assert opt.masks is not None and opt.grids is not None and opt.grids[0] is not None
    assert opt.grids[0].shape[0] == 3
    assert np.allclose(opt.masks, want.numpy(), atol=1e-6) and float(opt.masks.max()) > 0.5
