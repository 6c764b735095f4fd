"""Stage 8a: pictures and JSON on disk (html.py turns them into report.html; charts.py draws the maps with their
colour scales and the others chart, crops.py the receptive-field box and its enlarged crops).

Everything is written atomically (temp file, then rename), so a crash or Ctrl-C never leaves a half-written
file, and results.json is valid after every finished explanation.
"""

from __future__ import annotations

import cv2
import numpy as np

from onnx_kernelviz.io.files import write_json
from onnx_kernelviz.io.images import write_image, write_npy
from onnx_kernelviz.report.crops import crop

__all__ = ["overlay", "components_picture", "write_json", "write_image", "write_npy"]


def overlay(photo: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The mask ``[H, W]`` in [0,1] as a heatmap over the photo ``[H, W, 3]`` uint8, outside dimmed."""
    heat = cv2.applyColorMap((np.clip(mask, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    dim = (photo.astype(np.float32) * (0.35 + 0.65 * mask[..., None]))
    out = (1 - alpha) * dim + alpha * heat.astype(np.float32) * mask[..., None] + alpha * dim * (1 - mask[..., None])
    return np.clip(out, 0, 255).astype(np.uint8)


def components_picture(photo: np.ndarray, grids: np.ndarray, names: tuple[str, ...] | list[str],
                       box: tuple[int, int, int, int] | list[int] | None = None) -> np.ndarray:
    """Each component's mask over the photo, side by side and captioned: what is kept of each band.

    Args:
        photo: ``[H, W, 3]`` uint8; grids: the component masks ``[M, h, w]`` in [0, 1] (any grid size);
        names: M captions (missing ones are numbered).
        box: for a focus explanation, the rf_box ``(top, left, bottom, right)`` the grids span (not the photo):
            the tiles are then that box of the photo, enlarged as the report's crops (report/crops.py).
    """
    where = "kept"
    if box is not None:
        photo, where = crop(photo, (box[0], box[1], box[2], box[3])), "of the box kept"
    H, W = photo.shape[:2]
    masks = [np.clip(cv2.resize(g, (W, H), interpolation=cv2.INTER_LINEAR), 0, 1)
             for g in np.asarray(grids, dtype=np.float32)]
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.42
    captions = []
    for c, m in enumerate(masks):
        name, share = names[c] if c < len(names) else f"component {c}", f"{m.mean():.0%} {where}"
        # a narrow tile (a small rf_box's crop) takes the caption on two lines rather than cutting it off
        fits = cv2.getTextSize(f"{name}: {share}", font, scale, 1)[0][0] <= W - 8
        captions.append([f"{name}: {share}"] if fits else [f"{name}:", share])
    bar_h = 22 * max(len(c) for c in captions)
    tiles = []
    for m, lines in zip(masks, captions):
        bar = np.full((bar_h, W, 3), 255, np.uint8)
        for i, line in enumerate(lines):
            cv2.putText(bar, line, (4, 16 + 22 * i), font, scale, (40, 40, 40), 1, cv2.LINE_AA)
        tiles.append(np.vstack([bar, overlay(photo, m)]))
        tiles.append(np.full((H + bar_h, 4, 3), 255, np.uint8))  # gutter
    return np.hstack(tiles[:-1])
