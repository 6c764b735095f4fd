"""Pictures of where kernel k was explained: the photo with the receptive field boxed, and that box enlarged.

A *box* is ``(top, left, bottom, right)`` in model-input pixels, bottom and right exclusive (CONTRACT.md's
``rf_box``). Enlarging repeats pixels (nearest neighbour, by a whole factor) and shrinking averages them
(area), so every pixel of a crop is one the model saw: nothing is smoothed into detail that is not there.

These functions take and return RGB uint8 arrays and write nothing; ``pipeline/files.py`` saves them and the
atlas reuses them for its kernel tiles.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["Box", "clip_box", "cell_box", "zoom", "crop", "mask_edges", "draw_mask_contour", "photo_with_box",
           "crop_share", "crop_pair", "tile", "CROP_SIDE", "BOX_COLOUR", "PEAK_COLOUR", "CONTOUR_COLOUR"]

Box = tuple[int, int, int, int]

#: a crop's longer side is enlarged to about this many pixels: large enough to read, small enough to sit in a row
CROP_SIDE = 224
#: the receptive field's frame, the peak cell's frame, and the mask's contour (a yellow that reads on photos)
BOX_COLOUR = (0, 200, 255)
PEAK_COLOUR = (255, 40, 200)
CONTOUR_COLOUR = (255, 230, 0)
_DARK = (0, 0, 0)


def clip_box(box: tuple[int, int, int, int] | list[int], shape: tuple[int, int]) -> Box:
    """``box`` clipped to an image of ``shape`` ``(H, W)``, at least one pixel high and wide."""
    h, w = shape
    top, left = min(max(int(box[0]), 0), h - 1), min(max(int(box[1]), 0), w - 1)
    return top, left, min(max(int(box[2]), top + 1), h), min(max(int(box[3]), left + 1), w)


def cell_box(cell: tuple[int, int] | list[int], map_shape: tuple[int, int], image_shape: tuple[int, int]) -> Box:
    """The input pixels that cell ``(row, col)`` of an ``[h, w]`` map sits over (its footprint at the map's
    stride, not its receptive field, which is larger)."""
    (r, c), (h, w), (H, W) = cell, map_shape, image_shape
    return clip_box((r * H // h, c * W // w, -(-(r + 1) * H // h), -(-(c + 1) * W // w)), (H, W))


def zoom(box: Box, side: int = CROP_SIDE) -> float:
    """How much a crop of ``box`` is scaled: the smallest whole factor that makes its longer side at least
    ``side`` (nearest-neighbour; a 163-pixel box is doubled, not left at ×1 for the browser to stretch unevenly),
    or a shrink factor < 1 when the box is already longer than ``side`` (area)."""
    longest = max(box[2] - box[0], box[3] - box[1])
    return float(math.ceil(side / longest)) if longest <= side else side / longest


def _scale(img: np.ndarray, factor: float) -> np.ndarray:
    if factor >= 1:
        f = int(factor)
        return np.repeat(np.repeat(img, f, axis=0), f, axis=1)
    h, w = img.shape[:2]
    return cv2.resize(img, (max(1, round(w * factor)), max(1, round(h * factor))), interpolation=cv2.INTER_AREA)


def crop(img: np.ndarray, box: Box, side: int = CROP_SIDE) -> np.ndarray:
    """``img[top:bottom, left:right]`` scaled by :func:`zoom` (``[h', w', ...]``, same dtype)."""
    box = clip_box(box, img.shape[:2])
    return _scale(img[box[0]:box[2], box[1]:box[3]], zoom(box, side))


def mask_edges(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The inner edge of the kept region {mask ≥ ½}: kept pixels within ``width`` pixels of a dropped one
    (4-neighbours). The picture's border is not an edge: a region cut by the crop stays open there. ``[H, W]``
    bool."""
    inside = (np.asarray(mask, np.float32) >= 0.5).astype(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    eroded = cv2.erode(inside, cross, iterations=width, borderType=cv2.BORDER_REPLICATE)
    return (inside > 0) & (eroded == 0)


def draw_mask_contour(img: np.ndarray, mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The photo ``[H, W, 3]`` with the edge of the kept region {mask ≥ ½} drawn as a line, the pixels inside and
    outside left as they are (a contour, not a tint). ``mask`` ``[h, w]`` is scaled to the picture (nearest)."""
    m: np.ndarray = np.asarray(mask, np.float32)
    if m.shape != img.shape[:2]:
        m = cv2.resize(m, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
    out = img.copy()
    inner = mask_edges(m, width)
    # a dark line just outside keeps the yellow readable on bright photos
    outside = mask_edges(1.0 - m, 1) & ~(m >= 0.5)
    out[outside] = _DARK
    out[inner] = CONTOUR_COLOUR
    return out


def _frame(img: np.ndarray, box: Box, colour: tuple[int, int, int], width: int) -> None:
    """Draw a frame of ``width`` pixels just inside ``box`` (in ``img``'s pixels), with a dark line inside it, so
    the frame's outer edge is exactly the box."""
    top, left, bottom, right = box
    for wide, c in ((width + 1, _DARK), (width, colour)):
        w = min(wide, (bottom - top + 1) // 2, (right - left + 1) // 2)
        img[top:top + w, left:right] = img[bottom - w:bottom, left:right] = c
        img[top:bottom, left:left + w] = img[top:bottom, right - w:right] = c


def photo_with_box(photo: np.ndarray, rf_box: Box, peak_box: Box | None = None,
                   scale: int | None = None) -> np.ndarray:
    """The photo ``[H, W, 3]`` enlarged ``scale`` times (nearest; by default so that its longer side is about
    2·CROP_SIDE, so the frames stay thin against the photo) with the receptive field ``rf_box`` framed in cyan and
    the peak cell's footprint ``peak_box`` in magenta (both in model-input pixels).
    Returns ``[scale·H, scale·W, 3]`` uint8."""
    scale = scale or max(1, round(2 * CROP_SIDE / max(photo.shape[:2])))
    out = np.ascontiguousarray(_scale(photo, scale))
    # about 2 pixels of the photo, so it stays visible when the page shows it smaller; at most 6, else on a tiny
    # input enlarged 28 times the frame of a small box filled the whole box
    width = min(max(2, 2 * scale), 6)
    def scaled(b: Box) -> Box:
        top, left, bottom, right = clip_box(b, photo.shape[:2])
        return top * scale, left * scale, bottom * scale, right * scale

    _frame(out, scaled(rf_box), BOX_COLOUR, width)
    if peak_box is not None:
        _frame(out, scaled(peak_box), PEAK_COLOUR, width)
    return out


def crop_share(mask: np.ndarray, box: Box, low: float = 0.5, high: float = math.inf) -> float:
    """The share of ``box`` where ``low`` ≤ mask < ``high`` (by default what the mask keeps: mask ≥ ½), in [0, 1]."""
    box = clip_box(box, mask.shape[:2])
    inside = np.asarray(mask, np.float32)[box[0]:box[2], box[1]:box[3]]
    return float(((inside >= low) & (inside < high)).mean()) if inside.size else math.nan


def crop_pair(photo: np.ndarray, x_mod_photo: np.ndarray, mask: np.ndarray | None, box: Box,
              side: int = CROP_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """The ``box`` of the photo with the kept region's contour (mask ≥ ½; none when ``mask`` is None) and the same
    box of x′, both scaled by :func:`zoom` (``side``). photo, x_mod_photo ``[H, W, 3]`` uint8; mask ``[H, W]``."""
    box = clip_box(box, photo.shape[:2])
    left = crop(photo, box, side)
    if mask is not None:
        left = draw_mask_contour(left, crop(np.asarray(mask, np.float32), box, side))
    return left, crop(x_mod_photo, box, side)


def tile(photo: np.ndarray, x_mod_photo: np.ndarray, mask: np.ndarray | None, box: Box, side: int = 112,
         gutter: int = 4) -> np.ndarray:
    """A small kernel tile (the atlas's): :func:`crop_pair` side by side on white, ``[h, 2·w + gutter, 3]``."""
    left, right = crop_pair(photo, x_mod_photo, mask, box, side)
    return np.hstack([left, np.full((left.shape[0], gutter, 3), 255, np.uint8), right])
