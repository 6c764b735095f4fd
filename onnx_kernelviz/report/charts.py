"""Charts with their own scales: an activation map with a colour bar, and how much every other kernel keeps.

Text is drawn with Pillow's bundled font (no font files on disk are needed). Every function returns an RGB
uint8 array and writes nothing.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from onnx_kernelviz.report.crops import CROP_SIDE, PEAK_COLOUR, mask_edges

__all__ = ["colour_map", "activation_map", "region_energy", "others_chart", "BLUE", "ORANGE", "COLORBAR_WIDTH"]

BLUE, ORANGE = (40, 90, 220), (240, 140, 30)
_INK, _GRID, _MUTED = (40, 40, 40), (225, 228, 234), (110, 116, 128)
#: pixels a colour bar with its labels adds to the right of a map
COLORBAR_WIDTH = 76


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow < 10.1 or without FreeType: the small bitmap font
        return ImageFont.load_default()


def _write(img: np.ndarray, texts: list[tuple[tuple[int, int], str, tuple[int, int, int], str]],
           size: int = 13, boxed: int = 0) -> np.ndarray:
    """Draw ``(xy, text, colour, anchor)`` items (Pillow anchors, e.g. ``"lm"`` left-middle) on a copy; the last
    ``boxed`` items on a white box, so they read over bars."""
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    for i, (xy, text, colour, anchor) in enumerate(texts):
        if i >= len(texts) - boxed:
            left, top, right, bottom = draw.textbbox(xy, text, font=_font(size), anchor=anchor)
            draw.rectangle((left - 3, top - 2, right + 3, bottom + 2), fill=(255, 255, 255), outline=colour)
        draw.text(xy, text, fill=colour, font=_font(size), anchor=anchor)
    return np.asarray(pil).copy()


def colour_map(values: np.ndarray, vmax: float) -> np.ndarray:
    """``[h, w]`` values on 0..vmax as inferno colours ``[h, w, 3]`` (below 0 is 0, above vmax is vmax)."""
    top = vmax if vmax > 0 else 1.0
    u8 = np.clip(np.asarray(values, np.float32) / top * 255.0, 0, 255).round().astype(np.uint8)
    return cv2.applyColorMap(u8, cv2.COLORMAP_INFERNO)[..., ::-1].copy()


def _colorbar(height: int, vmax: float) -> np.ndarray:
    """A vertical bar, vmax at the top and 0 at the bottom, with three labelled ticks."""
    ramp = np.linspace(vmax, 0, height, dtype=np.float32)[:, None].repeat(14, 1)
    bar = np.full((height, COLORBAR_WIDTH, 3), 255, np.uint8)
    bar[:, 8:22] = colour_map(ramp, vmax)
    texts = []
    for frac in (1.0, 0.5, 0.0):  # no tick marks: a dash before a number reads as a minus sign
        y = min(height - 1, max(0, round((1 - frac) * (height - 1))))
        texts.append(((27, min(max(y, 7), height - 8)), f"{frac * vmax:.3g}", _INK, "lm"))
    return _write(bar, texts, 12)


def activation_map(act: np.ndarray, vmax: float, cells: np.ndarray | None = None,
                   peak: tuple[int, int] | list[int] | None = None, side: int = CROP_SIDE) -> np.ndarray:
    """Kernel k's rectified activation ``[h, w]`` enlarged by a whole factor (each cell a square of one colour,
    nearest neighbour) with a colour bar of its values (0..``vmax``, shared by the maps shown side by side).

    Args:
        cells: optional ``[h, w]`` bool, the focus cells, outlined in white; peak: optional ``(row, col)``,
            framed in magenta.
    Returns:
        ``[f·h, f·w + COLORBAR_WIDTH, 3]`` uint8 with ``f = max(1, round(side / max(h, w)))``.
    """
    a = np.maximum(np.asarray(act, np.float32), 0)
    f = max(1, round(side / max(a.shape)))
    img = np.repeat(np.repeat(colour_map(a, vmax), f, 0), f, 1)
    if cells is not None and np.any(cells):
        big = np.repeat(np.repeat(np.asarray(cells, np.float32), f, 0), f, 1)
        img[mask_edges(big, max(1, min(2, f // 4)))] = (255, 255, 255)
    if peak is not None:
        r, c = int(peak[0]), int(peak[1])
        cv2.rectangle(img, (c * f, r * f), ((c + 1) * f - 1, (r + 1) * f - 1), PEAK_COLOUR, max(1, min(2, f // 4)))
    return np.hstack([img, _colorbar(img.shape[0], vmax)])


def region_energy(t: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
    """‖r_j‖ over ``cells`` (``[h, w]`` bool; None: the whole map) for every kernel of ``t`` ``[C, h, w]``.
    Returns ``[C]``."""
    r = np.maximum(np.asarray(t, np.float64), 0)
    r = r[:, cells] if cells is not None else r.reshape(len(r), -1)
    return np.sqrt((r ** 2).sum(1))


def others_chart(before: np.ndarray, after: np.ndarray, k: int, where: str = "on the focus cells",
                 width: int = 1100, height: int = 300, ymax: float = 1.5) -> np.ndarray:
    """How much of its activation each kernel keeps in x′ (‖r_j(x′)‖ / ‖r_j(x)‖ over the same cells), one bar
    per kernel that fires there, sorted from most kept to least; kernel ``k`` in blue, the others in orange, and a
    dashed line at what all other kernels keep together (the ``others_kept`` of CONTRACT.md on those cells).

    Args:
        before, after: ``[C]`` per-kernel ‖r_j‖ on x and on x′ (:func:`region_energy`); k: the explained kernel;
        where: the cells, said in the x-axis label.
    Returns:
        ``[height, width, 3]`` uint8. Bars above ``ymax`` are cut and capped with a dark tick.
    """
    before, after = np.asarray(before, np.float64), np.asarray(after, np.float64)
    firing = np.flatnonzero(before > 0)
    ratio = np.zeros_like(before)
    ratio[firing] = after[firing] / before[firing]
    order = firing[np.argsort(-ratio[firing], kind="stable")]
    rest = before.copy()
    rest[k] = 0.0
    denom = math.sqrt(float((rest ** 2).sum()))
    together = math.sqrt(float(np.delete(after, k) @ np.delete(after, k))) / denom if denom > 0 else math.nan
    L, R, T, B = 50, 12, 44, 40  # margins: tick labels, right, legend, axis label
    pw, ph = width - L - R, height - T - B
    bars_w = min(pw, 40 * max(len(order), 1))  # a few kernels get bars of 40 px, not a third of the chart each
    img = np.full((height, width, 3), 255, np.uint8)
    y_of = lambda v: T + ph - int(round(min(v, ymax) / ymax * ph))  # noqa: E731
    texts = []
    for v in np.arange(0, ymax + 1e-9, 0.5):
        img[y_of(v), L:L + pw] = _GRID if v else _MUTED
        texts.append(((L - 6, y_of(v)), f"{v:.1f}", _MUTED, "rm"))
    n = max(len(order), 1)
    for i, j in enumerate(order):
        if j == k:
            continue
        x0, x1 = L + i * bars_w // n, max(L + (i + 1) * bars_w // n - (1 if bars_w / n >= 4 else 0),
                                          L + i * bars_w // n + 1)
        img[y_of(ratio[j]):T + ph, x0:x1] = ORANGE
        if ratio[j] > ymax:
            img[T:T + 3, x0:x1] = _INK
    if before[k] > 0:  # k: at its rank, at least 3 pixels wide so it shows among a thousand others
        i = int(np.flatnonzero(order == k)[0])
        x0 = min(L + i * bars_w // n, L + pw - 3)
        x1 = max(L + (i + 1) * bars_w // n - (1 if bars_w / n >= 4 else 0), x0 + 3)
        img[y_of(ratio[k]):T + ph, x0:x1] = BLUE
        label_x = min(max((x0 + x1) // 2, L + 60), L + pw - 60)
        label = ((label_x, max(y_of(ratio[k]) - 8, T + 16)), f"kernel {k}: {ratio[k]:.2f}", BLUE, "mb")
        img[max(y_of(ratio[k]) - 8, T + 16):y_of(ratio[k]), (x0 + x1) // 2] = BLUE  # a tick from label to bar
    one = y_of(1.0)
    img[one, L:L + pw] = _MUTED
    texts.append(((L + pw - 2, one - 3), "1.0 = as on the photo", _MUTED, "rb"))
    if math.isfinite(together):
        yt = y_of(together)
        dash = (np.arange(L, L + pw) // 6) % 2 == 0
        img[yt, L:L + pw][dash] = _INK
        img[min(yt + 1, T + ph), L:L + pw][dash] = _INK
    silent = len(before) - len(firing)
    others = len(firing) - int(before[k] > 0)
    pil = Image.fromarray(_write(img, texts + ([label] if before[k] > 0 else []), 13, boxed=int(before[k] > 0)))
    draw, font = ImageDraw.Draw(pil), _font(13)
    x = L
    items = [(BLUE, f"kernel {k}"), (ORANGE, f"each of the other {others} kernels firing there"),
             (None, "all other kernels together: " + (f"{together:.2f}" if math.isfinite(together) else "—"))]
    for colour, text in items:  # swatch, then its text, left to right
        if colour is None:
            for dx in range(0, 18, 6):
                draw.rectangle((x + dx, 13, x + dx + 2, 15), fill=_INK)
        else:
            draw.rectangle((x, 8, x + 11, 19), fill=colour)
        draw.text((x + 22, 14), text, fill=_INK, font=font, anchor="lm")
        x += 22 + int(draw.textlength(text, font=font)) + 24
    if silent:
        draw.text((L + pw, 14), f"({silent} silent there, not shown)", fill=_MUTED, font=font, anchor="rm")
    # the bundled font has no ‖ or ′: plain ASCII here
    draw.text((L + pw // 2, height - 14), f"one bar per kernel that fires {where}: how much of its activation "
              "x' keeps there (|r_j(x')| / |r_j(x)|), sorted from most to least", fill=_MUTED, font=font,
              anchor="mm")
    return np.asarray(pil).copy()
