"""Pictures written per explanation (artifacts.py)."""

import numpy as np
import pytest

from onnx_kernelviz.artifacts import others_picture

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
