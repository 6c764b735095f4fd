"""Stage 8a: pictures and JSON on disk (report.py turns them into report.html).

Everything is written atomically (temp file, then rename), so a crash or Ctrl-C never leaves a half-written
file, and results.json is valid after every finished explanation.
"""

from __future__ import annotations

import cv2
import numpy as np

from onnx_kernelviz.io.files import write_json
from onnx_kernelviz.io.images import write_image, write_npy

__all__ = ["heatmap", "overlay", "activation_picture", "others_picture", "components_picture", "write_json",
           "write_image", "write_npy"]


def heatmap(values: np.ndarray, size: tuple[int, int], vmax: float | None = None) -> np.ndarray:
    """A ``[h, w]`` map as an RGB uint8 ``[H, W, 3]`` picture (inferno colormap, 0..vmax, smooth upsampling)."""
    v = np.asarray(values, dtype=np.float32)
    top = float(vmax if vmax is not None else v.max()) or 1.0
    u8 = np.clip(v / top * 255.0, 0, 255).astype(np.uint8)
    u8 = cv2.resize(u8, (size[1], size[0]), interpolation=cv2.INTER_CUBIC if v.shape[0] < size[0] else cv2.INTER_AREA)
    return cv2.applyColorMap(u8, cv2.COLORMAP_INFERNO)[:, :, ::-1].copy()


def overlay(photo: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """The mask ``[H, W]`` in [0,1] as a heatmap over the photo ``[H, W, 3]`` uint8, outside dimmed."""
    heat = cv2.applyColorMap((np.clip(mask, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    dim = (photo.astype(np.float32) * (0.35 + 0.65 * mask[..., None]))
    out = (1 - alpha) * dim + alpha * heat.astype(np.float32) * mask[..., None] + alpha * dim * (1 - mask[..., None])
    return np.clip(out, 0, 255).astype(np.uint8)


def activation_picture(act: np.ndarray, size: tuple[int, int], vmax: float) -> np.ndarray:
    """Kernel k's rectified activation ``[h, w]`` at the photo's size, on a shared scale ``vmax``."""
    return heatmap(np.maximum(act, 0), size, vmax=vmax)


def others_picture(before: np.ndarray, after: np.ndarray, k: int, width: int = 480, height: int = 200) -> np.ndarray:
    """Bars of ‖r_j‖ before (grey) and after (orange) for every kernel j, sorted by ‖r_j(x)‖; k in blue."""
    order = np.argsort(-before)
    top = float(max(before.max(), after.max(), 1e-12))
    img = np.full((height, width, 3), 255, np.uint8)
    base = height - 18
    # one bar per kernel, sorted; with more kernels than pixel columns, each column shows the bar that lands on it
    bar = np.minimum((np.arange(width) * len(order)) // width, len(order) - 1)
    j = order[bar]  # kernel shown in each column
    cols = np.flatnonzero(j == k)
    if len(cols) < 2:  # k's bar is at least 2 pixels wide, so that it stays visible among a thousand others
        pos = min(int(np.flatnonzero(order == k)[0]) * width // len(order), width - 2)
        cols = np.arange(pos, pos + 2)
    j[cols] = k
    rows = np.arange(height)[:, None]

    def fill(heights: np.ndarray, colour: np.ndarray) -> None:
        h = (heights[j] / top * (base - 10)).astype(int)
        inside = (rows >= base - h[None, :]) & (rows <= base)
        img[inside] = colour[np.broadcast_to(np.arange(width), inside.shape)[inside]]

    fill(before, np.full((width, 3), (200, 200, 200), np.uint8))
    colour = np.tile(np.array((240, 140, 30), np.uint8), (width, 1))
    colour[cols] = (40, 90, 220)
    fill(after, colour)
    cv2.putText(img, "grey: before   orange: after   blue: this kernel", (4, height - 5),
                cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1, cv2.LINE_AA)
    return img


def components_picture(photo: np.ndarray, grids: np.ndarray, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """Each component's mask over the photo, side by side and captioned: what is kept of each band.

    Args:
        photo: ``[H, W, 3]`` uint8; grids: the component masks ``[M, h, w]`` in [0, 1] (any grid size);
        names: M captions (missing ones are numbered).
    """
    H, W = photo.shape[:2]
    tiles = []
    for c, g in enumerate(np.asarray(grids, dtype=np.float32)):
        m = np.clip(cv2.resize(g, (W, H), interpolation=cv2.INTER_LINEAR), 0, 1)
        bar = np.full((22, W, 3), 255, np.uint8)
        name = names[c] if c < len(names) else f"component {c}"
        cv2.putText(bar, f"{name}: {m.mean():.0%} kept", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (40, 40, 40), 1,
                    cv2.LINE_AA)
        tiles.append(np.vstack([bar, overlay(photo, m)]))
        tiles.append(np.full((H + 22, 4, 3), 255, np.uint8))  # gutter
    return np.hstack(tiles[:-1])
