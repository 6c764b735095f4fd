"""The small-box mask (MaskMethod.small_box): a binary mask where a focus explanation's rf_box is small, shown where
it holds k and most of the soft masks' gain (issue #11: EfficientNet-Lite0 layer 8's kept area)."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import tiny_models
import torch

from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess
from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.measure.focus import Readability
from onnx_kernelviz.method.focus import BoxMask, FocusCells
from onnx_kernelviz.pipeline.batch import optimize_batch, small_rows
from onnx_kernelviz.pipeline.focus import Site, small_takes


def _site(box):
    return Site(FocusCells((0, 0), np.ones((1, 1), bool)), box)


def test_small_rows_are_those_whose_box_holds_few_pixels():
    # by area, not by a side: a strip one kernel wide and the image tall is not small (layout 4's border kernels)
    sites = [_site((0, 0, 40, 200)), _site((10, 10, 60, 60)), _site((-5, 0, 43, 48)), _site((0, 0, 49, 49)),
             _site((0, 0, 6, 300)), _site((0, 0, 800, 6))]
    assert small_rows(sites, 48) == [2, 4]
    assert small_rows(sites, 0) == []


@pytest.mark.parametrize("hard", ["binary", ""])
def test_the_binary_box_mask_shows_the_photo_or_the_reference_and_passes_gradients(hard):
    torch.manual_seed(0)
    x, b = torch.rand(2, 3, 20, 20), torch.rand(2, 3, 20, 20)
    boxes = torch.tensor([[2, 3, 14, 15], [0, 0, 20, 9]])
    param = BoxMask(x, b, boxes=boxes, grid=12, smooth=0.0, init=0.0, bands=1, hard=hard)
    with torch.no_grad():
        param.logits.normal_(0, 2)
    p = param()
    photo = (p.x_mod - x).abs().amax(1) < 1e-6
    ref = (p.x_mod - b).abs().amax(1) < 1e-6
    if hard:
        assert bool((photo | ref).all()) and bool(photo.any()) and bool(ref.any())
    else:  # the soft mask blends: most pixels in the box are neither
        assert not bool((photo | ref).all())
    assert bool(ref[0, :2].all()) and bool(ref[1, :, 9:].all())  # outside the box: the reference
    (p.x_mod * torch.rand_like(p.x_mod)).sum().backward()
    assert param.logits.grad is not None and float(param.logits.grad.abs().sum()) > 0


def _read(shown: float, top3: float) -> Readability:
    """A candidate's readability: ``shown`` of the box (kept area, image area and mean alike), ``top3`` share."""
    return Readability(top3, 1, 1.0, shown, shown, 0.0, shown)


#: five rows whose binary mask shows less of the box than the soft masks, as readably
SHOWS_LESS = ([_read(0.1, 1.0)] * 5, [_read(0.5, 1.0)] * 5)


def test_the_binary_mask_is_taken_where_it_holds_k_and_half_the_gain():
    t = torch.tensor
    before = t([0.5, 0.5, 0.5, 0.5, 0.5])
    small = (t([0.95, 0.95, 0.85, 0.86, 0.95]), t([0.60, 0.59, 0.70, 0.70, 0.48]))
    soft = (t([0.99, 0.99, 0.99, 0.85, 0.95]), t([0.70, 0.70, 0.70, 0.70, 0.45]))
    # half the soft gain (0.1 of 0.2) is enough; less is not; k under 0.9 where the soft mask keeps it is not;
    # k as low as the soft mask's is; where the soft masks lose specificity, the binary one may lose less
    assert small_takes(small, soft, before, 0.5, SHOWS_LESS).tolist() == [True, False, False, True, True]
    assert small_takes(small, soft, before, 0.6, SHOWS_LESS).tolist() == [False, False, False, True, True]


def test_the_binary_mask_must_show_less_and_as_readably():
    # MTCNN's face nets: the binary mask was taken with more of the box shown, specks and less gain. With the
    # readability of both, it is taken only where it shows less of the box (faint content counted by strength)
    # and its kept area is in as few regions (top-3 share >= the soft one's, or >= 0.8)
    r = _read
    t = torch.tensor
    before = t([0.5] * 5)
    small = (t([0.95] * 5), t([0.7] * 5))
    soft = (t([0.95] * 5), t([0.7] * 5))
    binary = [r(0.20, 1.0), r(0.40, 1.0), r(0.20, 0.6), r(0.20, 0.85), r(0.20, 0.5)]
    soft_reads = [r(0.30, 1.0), r(0.30, 1.0), r(0.30, 0.95), r(0.30, 0.95), r(0.30, 0.4)]
    assert small_takes(small, soft, before, 0.5, SHOWS_LESS).tolist() == [True] * 5  # keep and gain: all five
    assert small_takes(small, soft, before, 0.5, (binary, soft_reads)).tolist() == [
        True, False, False, True, True]
    # a faint soft mask (little area over ½, much shown below it) does not win by fading
    faint = Readability(1.0, 1, 1.0, 0.05, 0.05, 0.8, 0.35)
    assert small_takes(small, soft, before, 0.5, ([r(0.25, 1.0)] * 5, [faint] * 5)).tolist() == [True] * 5


def test_readability_counts_faint_content_by_strength_in_box_shown():
    from onnx_kernelviz.measure.focus import readability

    m = np.zeros((10, 10))
    m[2:4, 2:4] = 1.0      # 4 kept pixels
    m[4:8, 2:7] = 0.25     # 20 faint ones, a quarter each
    r = readability(m, (2, 2, 8, 7))  # a 6x5 box
    assert r.box_area == pytest.approx(4 / 30) and r.box_shown == pytest.approx((4 + 5) / 30)


def _image(path):
    rng = np.random.default_rng(0)
    a = cv2.GaussianBlur(rng.integers(0, 255, (16, 16, 3)).astype(np.float32), (0, 0), 1.0)
    a[:, 8:] += 60
    cv2.imwrite(str(path), np.clip(a, 0, 255).astype(np.uint8))
    return path


def test_rows_show_the_binary_or_the_soft_result_and_say_which(tmp_path):
    from onnx_kernelviz.pipeline.prepare import prepare

    path = tiny_models.save(tiny_models.planted(), tmp_path / "net.onnx")
    img = _image(tmp_path / "x.png")
    m, pp = Model(path, device="cpu"), resolve_preprocess(path)
    # a stronger area weight than the default, so that on this tiny model some binary masks show less than the
    # soft ones (the rows that take them) and others more (the rows that do not); the soft stages at one area
    # weight only, so that a soft row is exactly what it is without the small-box rule
    cfg = ExplainConfig(oracle=False, focus_small_area=40, focus_small_soft_area=None)
    prep = prepare(m, [img], m.layer(1), pp, cfg)
    items = [(0, k) for k in range(8) if prep.t_ort[0, k].max() > 0]
    opt = optimize_batch(m, prep, items, cfg, pp)
    assert opt.small_box is not None and any(opt.small_box) and not all(opt.small_box) and opt.grids is not None
    for row, binary in enumerate(opt.small_box):
        photo = np.abs(opt.x_mod[row] - prep.x[0]).max(0) < 1e-6
        ref = np.abs(opt.x_mod[row] - prep.b[0]).max(0) < 1e-6
        if binary:  # each pixel the photo's or the reference's, and no band masks to draw
            assert (photo | ref).all() and opt.grids[row] is None
        else:
            assert opt.grids[row] is not None and opt.grids[row].shape[0] == 3
    # off: every row shows the soft stages (and runs only them)
    off = optimize_batch(m, prep, items, replace(cfg, focus_small_box=0), pp)
    assert off.small_box == [False] * len(items) and all(g is not None for g in off.grids or [])
    # the rows showing the soft stages show the very same result as without the binary candidate
    soft = [row for row, binary in enumerate(opt.small_box) if not binary]
    assert soft and np.array_equal(opt.x_mod[soft], off.x_mod[soft])


def test_the_report_says_x_prime_is_binary(tmp_path):
    path = tiny_models.save(tiny_models.planted(), tmp_path / "net.onnx")
    img = _image(tmp_path / "x.png")
    m, pp = Model(path, device="cpu"), resolve_preprocess(path)
    run = explain(m, [img], 1, "all", tmp_path / "o", preprocess=pp,
                  config=ExplainConfig(oracle=False, focus_small_area=40))  # as above: some rows take it
    res = [r for r in run.results_json() if r["status"] == "ok"]
    binary = [r for r in res if r["focus"]["binary_mask"]]
    assert binary and all("mask_components" not in r["files"] for r in binary)
    assert all("mask_components" in r["files"] for r in res if not r["focus"]["binary_mask"])
    html = (tmp_path / "o" / "report.html").read_text()
    assert html.count("a binary mask, as the box is small") == len(binary)


def test_small_box_settings_are_checked():
    with pytest.raises(UsageError, match="focus_small_area must be at least 0"):
        ExplainConfig(focus_small_area=-1.0).validate()
    with pytest.raises(UsageError, match="focus_small_box must be at least 0"):
        ExplainConfig(focus_small_box=-1).validate()


def test_the_binary_masks_cut_grid_is_the_one_its_x_prime_shows():
    """With ``cut_grid`` (``focus_small_cut``), the area and TV terms and the optimizer's best step read the grid cut at
    ½, so a logit drifting towards ½ no longer lowers the area term while x' still shows the whole box; without it
    they read the soft grid (the default)."""
    torch.manual_seed(0)
    x, b = torch.rand(2, 3, 20, 20), torch.rand(2, 3, 20, 20)
    boxes = torch.tensor([[2, 3, 14, 15], [0, 0, 20, 9]])
    half = torch.sigmoid(torch.tensor(0.3)).item()  # every cell kept, but a soft grid counts it as 0.57
    for cut in (True, False):
        param = BoxMask(x, b, boxes=boxes, grid=6, smooth=0.0, init=0.3, bands=1, hard="binary", cut_grid=cut)
        p = param()
        assert p.grid is not None
        if cut:
            assert set(p.grid.unique().tolist()) == {1.0}
            x_full, m_full = param.render(p.grid.detach())
            assert torch.allclose(x_full, p.x_mod) and torch.allclose(m_full, p.mask)
            p.grid.sum().backward()  # the gradient still reaches the logits through the cut
            assert param.logits.grad is not None and float(param.logits.grad.abs().sum()) > 0
        else:
            assert torch.allclose(p.grid, torch.full_like(p.grid, half))
        uncut = BoxMask(x, b, boxes=boxes, grid=6, smooth=0.0, init=0.3, bands=1, hard="binary")()
        assert torch.equal(uncut.x_mod, p.x_mod)  # x' is cut at ½ either way
    # a soft mask's grid stays soft, asked to cut or not
    soft = BoxMask(x, b, boxes=boxes, grid=6, smooth=0.0, init=0.3, bands=1, hard="", cut_grid=True)()
    assert soft.grid is not None and torch.allclose(soft.grid, torch.full_like(soft.grid, half))


def test_the_binary_mask_can_start_from_the_soft_masks_result():
    """``start``: the logits follow the given masks (kept where they are over ½), within ±span."""
    x, b = torch.rand(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    start = torch.zeros(1, 3, 8, 8)
    start[:, :, :4] = 0.9  # the top half kept by every band mask
    param = BoxMask(x, b, boxes=torch.tensor([[0, 0, 16, 16]]), grid=4, smooth=0.0, init=2.0, bands=1,
                    hard="binary", start=start, span=1.0)
    lg = param.logits.detach()
    assert bool((lg[0, 0, :2] == 1.0).all()) and bool((lg[0, 0, 2:] == -1.0).all())
    p = param()
    assert torch.equal(p.x_mod[0, :, 8:], b[0, :, 8:]) and torch.equal(p.x_mod[0, :, :8], x[0, :, :8])


def test_the_small_box_mask_starts_from_the_soft_result_when_asked(tmp_path, monkeypatch):
    from onnx_kernelviz.pipeline.prepare import prepare

    path = tiny_models.save(tiny_models.planted(), tmp_path / "net.onnx")
    img = _image(tmp_path / "x.png")
    m, pp = Model(path, device="cpu"), resolve_preprocess(path)
    starts, cuts = [], []
    real = BoxMask.__init__

    def spy(self, *args, **kw):
        if kw.get("hard") == "binary":
            starts.append(kw.get("start"))
            cuts.append(kw.get("cut_grid"))
        real(self, *args, **kw)

    monkeypatch.setattr(BoxMask, "__init__", spy)
    for start, cut in (("kept", False), ("soft", True)):
        cfg = ExplainConfig(oracle=False, focus_small_start=start, focus_small_cut=cut)
        prep = prepare(m, [img], m.layer(1), pp, cfg)
        items = [(0, k) for k in range(8) if prep.t_ort[0, k].max() > 0]
        optimize_batch(m, prep, items, cfg, pp)
    kept, soft = starts
    assert kept is None and soft is not None and soft.shape[0] == len(items) and soft.dim() == 4
    assert cuts == [False, True]


def test_the_small_box_start_is_checked():
    with pytest.raises(UsageError, match="focus_small_start=x: use one of: kept, soft"):
        ExplainConfig(focus_small_start="x").validate()


def test_small_rows_show_the_heavier_area_weight_where_it_costs_little(tmp_path):
    """``focus_small_soft_area``: rows with a small rf_box also run the soft stages with that area weight and show
    that result where it costs little specificity and shows less (``smaller_takes``); rows with a larger box are
    exactly as without it (MTCNN's face nets: their small boxes kept 0.36-0.55 of the box)."""
    from onnx_kernelviz.pipeline.batch import locate_items
    from onnx_kernelviz.pipeline.prepare import prepare

    path = tiny_models.save(tiny_models.planted(), tmp_path / "net.onnx")
    img = _image(tmp_path / "x.png")
    m, pp = Model(path, device="cpu"), resolve_preprocess(path)
    # boxes of at most 49 pixels are small here; a binary mask that drops everything never wins, so each small
    # row shows one of the two soft results
    cfg = ExplainConfig(oracle=False, focus_small_box=7, focus_small_area=1000.0, steps=60,
                        focus_small_soft_area=None)
    prep = prepare(m, [img], m.layer(1), pp, cfg)
    items = [(0, k) for k in range(8) if prep.t_ort[0, k].max() > 0]
    few = small_rows(locate_items(m, prep, items), 7)
    big = [r for r in range(len(items)) if r not in few]
    assert few and big
    both = optimize_batch(m, prep, items, replace(cfg, focus_small_soft_area=4.0), pp)
    # the small rows alone, at the heavier weight: the very batch the heavier run is (same windows, same rows)
    heavy = optimize_batch(m, prep, [items[r] for r in few], replace(cfg, focus_area=4.0), pp)
    default = optimize_batch(m, prep, items, cfg, pp)
    assert not any(both.small_box or [])
    assert np.array_equal(both.x_mod[big], default.x_mod[big])
    shown = ["heavy" if np.array_equal(both.x_mod[r], heavy.x_mod[j]) else
             "default" if np.array_equal(both.x_mod[r], default.x_mod[r]) else "neither" for j, r in enumerate(few)]
    assert "neither" not in shown and "heavy" in shown, shown
    # a row showing the heavier weight's result shows less of its box (the shown mask is 0 outside it)
    assert all(both.masks[r].sum() < default.masks[r].sum() for r, w in zip(few, shown) if w == "heavy")


def test_the_heavier_area_result_is_taken_where_it_costs_little_and_shows_less():
    from onnx_kernelviz.pipeline.focus import smaller_takes

    t = torch.tensor
    r = _read
    heavy = (t([0.95, 0.95, 0.85, 0.95, 0.95]), t([0.65, 0.62, 0.70, 0.70, 0.70]))
    soft = (t([0.95, 0.95, 0.95, 0.95, 0.95]), t([0.70, 0.70, 0.70, 0.70, 0.70]))
    reads = ([r(0.2, 1.0), r(0.2, 1.0), r(0.2, 1.0), r(0.4, 1.0), r(0.2, 0.5)], [r(0.3, 1.0)] * 5)
    # 0.65 of 0.70 is within 10 %, 0.62 not; k under 0.9 where the default keeps it, no; showing more, no;
    # in more pieces (top-3 share 0.5 against 1.0), no
    assert smaller_takes(heavy, soft, 0.1, reads).tolist() == [True, False, False, False, False]
    assert smaller_takes(heavy, soft, 0.2, reads).tolist() == [True, True, False, False, False]
    # faded: less shown (0.25 of the box against 0.3) but more of it faint (0.8 of the mass against 0.1), no
    faded = Readability(1.0, 1, 1.0, 0.05, 0.05, 0.8, 0.25)
    firm = Readability(1.0, 1, 1.0, 0.28, 0.28, 0.1, 0.3)
    assert smaller_takes(heavy, soft, 0.1, ([faded] * 5, [firm] * 5)).tolist() == [False] * 5
