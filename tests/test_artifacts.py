"""Pictures written per explanation (artifacts.py)."""

import numpy as np
import pytest

from onnx_kernelviz.report.pictures import others_picture

BLUE, ORANGE, GREY = (40, 90, 220), (240, 140, 30), (200, 200, 200)


def _has(img: np.ndarray, colour) -> np.ndarray:
    """Columns that hold ``colour`` somewhere."""
    return (img == np.array(colour, np.uint8)).all(-1).any(0)


@pytest.mark.parametrize("n", [1, 6, 80, 1280])
def test_others_picture_shows_this_kernel_in_blue_and_the_drop_in_grey(n):
    rng = np.random.default_rng(n)
    before = rng.uniform(0.1, 1.0, n)
    after = before * 0.5
    k = n // 3
    img = others_picture(before, after, k)
    assert img.shape == (200, 480, 3) and img.dtype == np.uint8
    blue = _has(img, BLUE)
    # k's bar: at least 2 columns, at its rank among the kernels sorted by activation before
    rank = int(np.flatnonzero(np.argsort(-before) == k)[0])
    assert blue.sum() >= 2 and abs(np.flatnonzero(blue)[0] - rank * 480 // n) <= 2
    assert _has(img, GREY).all()  # every column: 'before' rises above 'after'
    assert n == 1 or _has(img, ORANGE).sum() >= 480 - blue.sum() - 1


def test_others_picture_bar_heights_follow_the_values():
    img = others_picture(np.array([1.0, 0.5]), np.array([1.0, 0.0]), 1)
    left, right = img[:, 100], img[:, 380]
    orange = (left == np.array(ORANGE, np.uint8)).all(-1).sum()
    grey_right = (right == np.array(GREY, np.uint8)).all(-1).sum()
    assert orange > 1.9 * grey_right > 0  # kernel 0 kept all of its 1.0; kernel 1 had 0.5 and kept nothing


def test_components_picture_one_captioned_overlay_per_band():
    from onnx_kernelviz.report.pictures import components_picture

    photo = np.full((40, 60, 3), 128, np.uint8)
    grids = np.zeros((3, 8, 12), np.float32)
    grids[1] = 1.0  # the middle band kept everywhere, the others nowhere
    img = components_picture(photo, grids, ("coarse", "mid"))  # the third caption is missing: numbered
    assert img.shape == (40 + 22, 3 * 60 + 2 * 4, 3) and img.dtype == np.uint8
    tiles = [img[22:, i * 64: i * 64 + 60].astype(int) for i in range(3)]
    # a kept band shows the heat colours, a dropped one the dimmed photo
    assert np.abs(tiles[1] - tiles[0]).mean() > 20 and np.abs(tiles[2] - tiles[0]).mean() < 1


def test_explain_writes_the_band_masks_for_component_masks_only(tmp_path):
    import cv2
    import tiny_models

    from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess

    path = tiny_models.save(tiny_models.two_conv(), tmp_path / "net.onnx")
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    m, pp = Model(path, device="cpu"), resolve_preprocess(path)
    for mask, expect in (("bands", True), ("region", False)):
        run = explain(m, [img], 1, "top1", tmp_path / mask, preprocess=pp,
                      config=ExplainConfig(steps=3, mask=mask, resolution=8))
        files = run.results[0].files
        assert ("mask_components" in files) == expect
        if expect:
            assert (tmp_path / mask / files["mask_components"]).is_file()
            assert "What is kept of each band" in (tmp_path / mask / "report.html").read_text()
