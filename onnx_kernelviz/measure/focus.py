"""Metrics of a local explanation (CONTRACT.md, "Local explanations: focus"), from onnxruntime activations.

``focus_metrics`` is the contract's table restricted to the focus cells F; ``readability`` measures the mask as
a person sees it (METHOD.md / issue #11's bar): how much of the kept area (mask > ½) lies in its 3 largest
regions, how much of the mask lies inside the rf_box, and the kept area as a fraction of the rf_box.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from onnx_kernelviz.measure.metrics import kernel_metrics


@dataclass(frozen=True)
class FocusNumbers:
    """``kept``, ``others_kept``, ``specificity_before/after`` on F (``others_kept`` None when no other kernel
    fires on F in x but some does in x')."""

    kept: float
    others_kept: float | None
    specificity_before: float
    specificity_after: float

    @property
    def gain(self) -> float | None:
        """specificity_after / specificity_before (None when before is 0)."""
        return self.specificity_after / self.specificity_before if self.specificity_before > 0 else None

    def to_dict(self) -> dict:
        return asdict(self)


def focus_metrics(t_x: np.ndarray, t_xp: np.ndarray, k: int, cells: np.ndarray) -> FocusNumbers:
    """The contract's metrics of kernel ``k`` on the cells ``cells`` ``[h, w]`` (bool) only; ``t_x``, ``t_xp``
    ``[C, h, w]`` from onnxruntime on x and x'."""
    sel = np.asarray(cells, bool)
    a, b = t_x[:, sel][..., None], t_xp[:, sel][..., None]  # [C, |F|, 1]
    m = kernel_metrics(a, b, k)
    return FocusNumbers(m.kept, m.others_kept, m.specificity_before, m.specificity_after)


@dataclass(frozen=True)
class Readability:
    """``top3_share``: fraction of the kept area (mask > ½) in its 3 largest 8-connected regions (1 when
    nothing is kept); ``regions``: how many regions; ``inside``: fraction of the mask's mass inside the rf_box;
    ``box_area``: kept area / rf_box area; ``image_area``: kept area / image area; ``hidden``: fraction of the
    mask's mass at ≤ ½, what x' shows outside the kept area (a faint mask keeps little area but hides content
    outside its contour: read box_area with it); ``box_shown``: the mask's mean over the rf_box, how much of the
    box x' shows, faint content counted by its strength."""

    top3_share: float
    regions: int
    inside: float
    box_area: float
    image_area: float
    hidden: float
    box_shown: float

    def to_dict(self) -> dict:
        return asdict(self)


def readability(mask: np.ndarray, box: tuple[int, int, int, int]) -> Readability:
    """Readability of a mask ``[H, W]`` in [0, 1] whose explanation's rf_box is ``box`` (top, left, bottom, right)."""
    kept = (np.asarray(mask) > 0.5).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(kept, connectivity=8)
    sizes = np.sort(stats[1:, cv2.CC_STAT_AREA])[::-1] if n > 1 else np.zeros(0)
    total = float(sizes.sum())
    t, left, b, r = box
    mass = float(np.sum(mask))
    inside = float(np.sum(mask[t:b, left:r])) / mass if mass > 0 else 1.0
    box_px = max((b - t) * (r - left), 1)
    faint = float(np.sum(np.where(kept > 0, 0.0, mask)))
    return Readability(float(sizes[:3].sum() / total) if total > 0 else 1.0, int(len(sizes)), inside,
                       total / box_px, total / kept.size, faint / mass if mass > 0 else 0.0,
                       float(np.sum(mask[max(t, 0):b, max(left, 0):r])) / box_px)


def kept_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks' kept areas (mask > ½); 0 when both are empty."""
    ka, kb = np.asarray(a) > 0.5, np.asarray(b) > 0.5
    union = np.logical_or(ka, kb).sum()
    return float(np.logical_and(ka, kb).sum() / union) if union else 0.0
