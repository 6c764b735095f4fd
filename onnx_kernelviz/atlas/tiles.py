"""Small pictures for the atlas: strips of receptive-field crops as JPEG bytes (bytes, so a Ray worker can return
them). The crops themselves are the report's (``report/crops.py``: enlarged by whole pixels, never smoothed).

Sized for atlases of 10,000+ kernels: each crop sits in a ``THUMB``-pixel square and the crops of one kernel go side
by side into one strip (its exemplars; an explanation's photo with the kept region's contour and x'), so a kernel
costs one or two small files (~10 KB) instead of one per crop; a layer page shows one square of a strip per tile
(CSS ``object-fit``), and its images load lazily.
"""

from __future__ import annotations

import cv2
import numpy as np

from onnx_kernelviz.report.crops import crop, crop_pair

__all__ = ["THUMB", "crop", "crop_pair", "jpeg", "strip"]

#: longest side of a crop, in pixels (tiles show them at 96 CSS px, kernel pages at full size)
THUMB = 80
JPEG_QUALITY = 80


def strip(crops: list[np.ndarray], side: int = THUMB) -> np.ndarray:
    """Crops side by side, each centred in a ``side`` square (grey around a smaller crop, the middle of a larger
    one): ``[side, side·len(crops), 3]`` uint8."""
    out = np.full((side, side * max(1, len(crops)), 3), 64, np.uint8)
    for i, c in enumerate(crops):
        c = c[max(0, (c.shape[0] - side) // 2):][:side, max(0, (c.shape[1] - side) // 2):][:, :side]
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
