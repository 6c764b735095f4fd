"""Small pictures for the atlas: receptive-field crops as JPEG bytes (bytes, so a Ray worker can return them).

Sized for atlases of 10,000+ kernels: each crop is letterboxed into a ``THUMB``-pixel square and the crops of one
kernel go side by side into one strip (its exemplars; an explanation's photo, x' and mask), so a kernel costs one
or two small files (~10 KB) instead of one per crop; a layer page shows one square of a strip per tile (CSS
``object-fit``), and its images load lazily.
"""

from __future__ import annotations

import cv2
import numpy as np

#: longest side of a crop, in pixels (tiles show them at 96 CSS px, kernel pages at full size)
THUMB = 80
JPEG_QUALITY = 80


def crop(photo: np.ndarray, box: tuple[int, int, int, int], side: int = THUMB) -> np.ndarray:
    """``photo [H, W, 3]`` uint8 cut to ``box`` ``[top, left, bottom, right)`` and scaled so its longer side is
    ``side`` (nearest-neighbour when enlarging, so the pixels a kernel saw stay visible as pixels)."""  # noqa: D401
    t, lft, b, r = box
    c = photo[t:b, lft:r]
    h, w = c.shape[:2]
    if not h or not w:
        c, h, w = photo, photo.shape[0], photo.shape[1]
    scale = side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(c, size, interpolation=cv2.INTER_NEAREST if scale > 1 else cv2.INTER_AREA)


def strip(crops: list[np.ndarray], side: int = THUMB) -> np.ndarray:
    """Crops side by side, each letterboxed (grey) into a ``side`` square: ``[side, side·len(crops), 3]`` uint8."""
    out = np.full((side, side * max(1, len(crops)), 3), 64, np.uint8)
    for i, c in enumerate(crops):
        h, w = c.shape[:2]
        t, lft = (side - h) // 2, (side - w) // 2
        out[t:t + h, i * side + lft:i * side + lft + w] = c
    return out


def jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """RGB ``[H, W, 3]`` uint8 as JPEG bytes."""
    ok, enc = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 RGB array
        raise ValueError("cannot encode a JPEG")
    return enc.tobytes()


def mark_cell(photo: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """A copy of ``photo`` with a thin yellow frame around ``box`` (the cell's own stride-sized patch)."""
    out = photo.copy()
    t, lft, b, r = box
    cv2.rectangle(out, (lft, t), (max(lft, r - 1), max(t, b - 1)), (255, 214, 0), 1)
    return out
