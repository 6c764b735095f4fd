"""Synthetic pictures for checks without a photo (``verify`` without IMAGE).

A check must see the range of values a real image has after the model's preprocessing: N(0, 1) noise is fine for a
model normalized with ImageNet's mean and std, but a model that expects 0–255 then sees almost nothing, and one
whose activations saturate differs from torch in ways no photo would show. These pictures are smooth colour
gradients with a few soft blobs in [0, 1] RGB, fed through the same preprocessing as a photo.
"""

from __future__ import annotations

import numpy as np


def smooth_pictures(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` deterministic pictures ``[n, H, W, 3]`` float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), np.float32)
    side = float(max(h, w))
    for i in range(n):
        img = rng.uniform(0.15, 0.85, 3).astype(np.float32)[None, None]
        grad = rng.uniform(-0.6, 0.6, (2, 3)).astype(np.float32) / side
        img = img + yy[..., None] * grad[0] + xx[..., None] * grad[1]
        for _ in range(4):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            r = rng.uniform(0.08, 0.35) * side
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            img = img + blob[..., None] * rng.uniform(-0.6, 0.6, 3).astype(np.float32)
        out[i] = np.clip(img, 0.0, 1.0)
    return out
