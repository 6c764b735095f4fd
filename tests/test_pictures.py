"""The focus pictures (report/crops.py, report/charts.py): crops that keep pixels honest, the box and the peak
where they belong, the mask as a contour on its boundary, maps with a colour bar, the others chart."""

from __future__ import annotations

import numpy as np
import pytest

from onnx_kernelviz.measure.metrics import kernel_metrics
from onnx_kernelviz.report.charts import (
    BLUE,
    COLORBAR_WIDTH,
    ORANGE,
    activation_map,
    colour_map,
    others_chart,
    region_energy,
)
from onnx_kernelviz.report.crops import (
    BOX_COLOUR,
    CONTOUR_COLOUR,
    PEAK_COLOUR,
    cell_box,
    crop,
    crop_share,
    draw_mask_contour,
    mask_edges,
    photo_with_box,
    zoom,
)


def _is(img: np.ndarray, colour) -> np.ndarray:
    return (img == np.array(colour, np.uint8)).all(-1)


def _photo(h=224, w=224, seed=0) -> np.ndarray:
    """Random greys: never one of the drawing colours."""
    return np.random.default_rng(seed).integers(40, 200, (h, w, 1), dtype=np.uint8).repeat(3, -1)


@pytest.mark.parametrize("box, shape, factor", [
    ((10, 20, 24, 34), (224, 224), 16), ((0, 0, 224, 224), (224, 224), 1), ((5, 5, 12, 40), (224, 224), 7),
    ((0, 0, 163, 115), (224, 224), 2), ((0, 0, 300, 150), (300, 300), None)])
def test_crop_enlarges_by_whole_pixels_and_shrinks_by_area(box, shape, factor):
    img = _photo(*shape)
    out = crop(img, box)
    h, w = box[2] - box[0], box[3] - box[1]
    if factor is None:  # longer than CROP_SIDE: area-reduced to it
        assert zoom(box) < 1 and max(out.shape[:2]) == 224
    else:
        assert zoom(box) == factor and out.shape == (h * factor, w * factor, 3)
        # every pixel of the box becomes one factor×factor square of its own colour
        np.testing.assert_array_equal(out[::factor, ::factor], img[box[0]:box[2], box[1]:box[3]])
        np.testing.assert_array_equal(out[factor - 1::factor, factor - 1::factor], img[box[0]:box[2], box[1]:box[3]])


def test_cell_box_is_the_cells_footprint():
    assert cell_box((0, 0), (14, 14), (224, 224)) == (0, 0, 16, 16)
    assert cell_box((5, 8), (14, 14), (224, 224)) == (80, 128, 96, 144)
    assert cell_box((6, 6), (7, 7), (224, 224)) == (192, 192, 224, 224)


def test_photo_with_box_frames_the_box_and_the_peak_where_they_are():
    photo = _photo()
    rf, peak = (40, 60, 120, 150), (80, 128, 96, 144)
    out = photo_with_box(photo, rf, peak)
    s = out.shape[0] // 224
    assert s == 2 and out.shape == (448, 448, 3)
    box = _is(out, BOX_COLOUR)
    ys, xs = np.nonzero(box)
    # the frame's outer edge is the box, in the enlarged picture
    assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == tuple(v * s for v in rf)
    assert box[rf[0] * s, (rf[1] + 10) * s] and box[(rf[0] + 10) * s, rf[1] * s]
    assert not box[(rf[0] + 20) * s, (rf[1] + 20) * s]  # inside: the photo
    pk = _is(out, PEAK_COLOUR)
    ys, xs = np.nonzero(pk)
    assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == tuple(v * s for v in peak)
    # away from the frames the photo is untouched (whole-pixel enlargement)
    np.testing.assert_array_equal(out[:60:s, :100:s], photo[:30, :50])


def test_a_small_box_on_a_tiny_input_stays_a_frame():
    """A 16x16 input is enlarged 28 times: a frame 2 photo pixels wide filled a 5x8 box entirely."""
    photo = _photo(16, 16)
    rf = (11, 0, 16, 8)
    out = photo_with_box(photo, rf)
    s = out.shape[0] // 16
    assert s == 28
    assert _is(out, BOX_COLOUR)[rf[0] * s, rf[1] * s + 40]  # the frame is there
    centre = out[(rf[0] + 2) * s:(rf[0] + 3) * s, (rf[1] + 4) * s:(rf[1] + 5) * s]
    np.testing.assert_array_equal(centre, np.broadcast_to(photo[rf[0] + 2, rf[1] + 4], centre.shape))


def test_contour_lies_on_the_mask_boundary_and_nowhere_else():
    photo = _photo(64, 64)
    yy, xx = np.mgrid[0:64, 0:64]
    mask = (((yy - 30) ** 2 + (xx - 25) ** 2) <= 15 ** 2).astype(np.float32)
    out = draw_mask_contour(photo, mask, width=2)
    line = _is(out, CONTOUR_COLOUR)
    inside = mask >= 0.5
    assert line.any() and (line <= inside).all()  # drawn on kept pixels only
    # ... each within 2 pixels (4-neighbour steps) of a dropped one
    import cv2

    def distance_transform_cdt(region, metric):  # 4-neighbour steps to the nearest pixel outside ``region``
        return cv2.distanceTransform(region.astype(np.uint8), cv2.DIST_L1, 3)

    dist = distance_transform_cdt(inside, metric="taxicab")
    assert dist[line].max() <= 2
    # every kept pixel next to a dropped one is on the line: the contour is closed
    assert line[inside & (dist == 1)].all()
    # a contour, not a fog: pixels away from the edge keep their colour, inside and outside
    far = (dist > 3) | (~inside & (distance_transform_cdt(~inside, metric="taxicab") > 2))
    np.testing.assert_array_equal(out[far], photo[far])


def test_crop_border_is_not_an_edge():
    mask = np.zeros((20, 20), np.float32)
    mask[:, :10] = 1  # the left half, cut by the picture's border on three sides
    edges = mask_edges(mask, 1)
    assert edges[:, 9].all() and not edges[:, :9].any() and not edges[0, 5] and not edges[19, 5]


def test_crop_share_counts_the_box_only():
    mask = np.zeros((40, 40), np.float32)
    mask[10:20, 10:15] = 1
    assert crop_share(mask, (10, 10, 20, 20)) == pytest.approx(0.5)
    assert crop_share(mask, (0, 0, 40, 40)) == pytest.approx(50 / 1600)


def test_focus_cells_are_the_8_connected_blob_of_the_peak():
    """The pictures outline F by the method's own rule (method.focus.focus_cells), not a copy of it."""
    from onnx_kernelviz.method.focus import focus_cells as rule

    def focus_cells(r, peak):
        return rule(r, tuple(peak)).cells

    r = np.zeros((6, 6), np.float32)
    r[1, 1], r[2, 2], r[3, 3] = 10, 6, 5  # diagonal chain above half the max: one blob
    r[1, 4] = 9  # above half but apart
    r[4, 0] = 4  # under half
    cells = focus_cells(r, (1, 1))
    assert cells.sum() == 3 and cells[3, 3] and not cells[1, 4]
    assert focus_cells(r, (1, 4)).sum() == 1
    only = focus_cells(r, (4, 0))  # a cell given with --at under half the max: just that cell
    assert only.sum() == 1 and only[4, 0]


def test_activation_map_has_whole_cells_a_colour_bar_and_the_focus_outline():
    act = np.arange(49, dtype=np.float32).reshape(7, 7) / 48 * 3.0
    cells = np.zeros((7, 7), bool)
    cells[5:, 5:] = True
    img = activation_map(act, 3.0, cells, (6, 6))
    f = 32  # 224 / 7
    assert img.shape == (7 * f, 7 * f + COLORBAR_WIDTH, 3)
    # each cell one colour: its value on the 0..vmax scale
    assert (img[f + 5:2 * f - 5, 2 * f + 5:3 * f - 5] == colour_map(act[1:2, 2:3], 3.0)[0, 0]).all()
    # the colour bar: vmax's colour at the top, 0's at the bottom, tick labels beside it
    bar = img[:, 7 * f:]
    assert (bar[0, 10] == colour_map(np.array([[3.0]]), 3.0)[0, 0]).all()
    assert (bar[-1, 10] == colour_map(np.array([[0.0]]), 3.0)[0, 0]).all()
    labels = bar[:, 29:]
    assert (labels < 100).all(-1).sum() > 30  # dark text: three numbers
    # the focus cells outlined in white along their edge only; the peak framed in magenta
    white = _is(img[:, :7 * f], (255, 255, 255))
    assert white[5 * f, 5 * f + 10] and white[5 * f + 10, 5 * f] and not white[:5 * f - 1].any()
    assert _is(img, PEAK_COLOUR)[6 * f, 6 * f + 10]


def test_region_energy_and_the_chart_line_follow_the_contract_on_the_cells():
    rng = np.random.default_rng(0)
    t, t_mod = rng.normal(size=(12, 5, 5)), rng.normal(size=(12, 5, 5))
    cells = np.zeros((5, 5), bool)
    cells[1:3, 2:4] = True
    before, after = region_energy(t, cells), region_energy(t_mod, cells)
    m = kernel_metrics(t[:, cells][..., None], t_mod[:, cells][..., None], 3)
    assert after[3] / before[3] == pytest.approx(m.kept)
    rest = np.delete(np.arange(12), 3)
    assert np.linalg.norm(after[rest]) / np.linalg.norm(before[rest]) == pytest.approx(m.others_kept)


@pytest.mark.parametrize("n", [2, 6, 80, 1280])
def test_others_chart_highlights_the_kernel_at_its_rank(n):
    rng = np.random.default_rng(n)
    before = rng.uniform(0.1, 1.0, n)
    ratio = rng.uniform(0, 1.2, n)
    k = n // 3
    img = others_chart(before, before * ratio, k)
    assert img.shape == (300, 1100, 3) and img.dtype == np.uint8
    plot = img[44:260, 50:1088]  # inside the margins
    foot = plot[-2:-1]  # the row just above the axis: every bar reaches it, the labels do not
    blue_cols = np.flatnonzero(_is(foot, BLUE).any(0))
    assert len(blue_cols) >= 3  # visible among a thousand others
    rank = int(np.flatnonzero(np.argsort(-ratio, kind="stable") == k)[0])
    bars_w = min(1038, 40 * n)
    assert abs(blue_cols[0] - rank * bars_w // n) <= 3
    kept_something = (ratio > 0.02).sum()  # bars under a pixel high do not show
    assert _is(foot, ORANGE).any(0).sum() >= bars_w * (kept_something - 1) / n * 0.8 - len(blue_cols)
    assert _is(img[:30], BLUE).any()  # the legend's swatch


def test_others_chart_bar_heights_and_the_dashed_line():
    before, after = np.array([1.0, 1.0, 1.0, 0.0]), np.array([1.0, 0.5, 0.0, 0.3])  # kernel 3 silent on x
    img = others_chart(before, after, 0, width=600, height=300)
    T, ph = 44, 300 - 44 - 40
    y = lambda v: T + ph - int(round(v / 1.5 * ph))  # noqa: E731
    blue, orange = _is(img, BLUE), _is(img, ORANGE)
    col0, col1 = 50 + 20, 50 + 60  # kernel 0 (kept 1.0) first, then kernel 1 (0.5), then kernel 2 (0)
    def top(column: np.ndarray) -> int:  # the top of the run of colour that stands on the axis
        rows = np.flatnonzero(column[:T + ph])
        gaps = np.flatnonzero(np.diff(rows) > 3)  # grid and dashed lines may cross a bar; the label sits above
        return int(rows[gaps[-1] + 1] if len(gaps) else rows[0])

    assert abs(top(blue[:, col0]) - y(1.0)) <= 1
    assert abs(top(orange[:, col1]) - y(0.5)) <= 1
    assert not orange[T:T + ph - 1, 50 + 100].any()  # kept nothing: no bar
    # all others together: |(0.5, 0, 0.3)| / |(1, 1, 0)|
    together = np.sqrt(0.25 + 0.09) / np.sqrt(2)
    row = img[y(together), 200:580]
    assert (row < 80).all(-1).sum() > 100  # the dashed line


def test_crop_pair_and_tile():
    from onnx_kernelviz.report.crops import crop_pair, tile

    photo, x_mod = _photo(64, 64, 1), _photo(64, 64, 2)
    mask = np.zeros((64, 64), np.float32)
    mask[20:30, 20:30] = 1
    left, right = crop_pair(photo, x_mod, mask, (16, 16, 32, 40))
    f = int(zoom((16, 16, 32, 40)))
    assert left.shape == right.shape == (16 * f, 24 * f, 3)
    np.testing.assert_array_equal(right[::f, ::f], x_mod[16:32, 16:40])
    line = _is(left, CONTOUR_COLOUR)
    assert line.any() and not line[: 4 * f].any()  # the kept square starts at row 20 = 4 rows into the box
    t = tile(photo, x_mod, None, (16, 16, 32, 40))
    assert t.shape[0] <= 112 and t.shape[1] == 2 * t.shape[0] * 24 // 16 + 4 and not _is(t, CONTOUR_COLOUR).any()
