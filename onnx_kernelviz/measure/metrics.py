"""The contract's metrics (docs/CONTRACT.md, "Metrics"), computed from onnxruntime activations.

All functions take activation tensors ``T`` of one image, shape ``[C, H, W]`` (float32), as onnxruntime
returned them for the ORIGINAL model, never the torch copy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class KernelMetrics:
    """``kept``, ``fidelity``, ``others_kept``, ``specificity_before/after`` as defined in docs/CONTRACT.md.

    ``others_kept`` is None when no other kernel fires on x (nothing to suppress) but some fires on x'.
    """

    kept: float
    fidelity: float
    others_kept: float | None
    specificity_before: float
    specificity_after: float

    def to_dict(self) -> dict:
        return asdict(self)


def rectified(t: np.ndarray) -> np.ndarray:
    """r_j = max(T_j, 0) flattened per channel: ``[C, H, W] -> [C, H*W]`` (float64 for stable sums).

    NaN/Inf count as 0: a channel that holds them (broken weights) is left out of the others' sums instead of
    making every kernel's metrics NaN; the pipeline reports such a kernel itself as failed before measuring it.
    """
    t64 = t.reshape(t.shape[0], -1).astype(np.float64)
    return np.maximum(np.nan_to_num(t64, nan=0.0, posinf=0.0, neginf=0.0), 0.0)


def kernel_energy(t: np.ndarray) -> np.ndarray:
    """‖r_j(x)‖ for every kernel j: ``[C, H, W] -> [C]``."""
    return np.sqrt((rectified(t) ** 2).sum(axis=1))


def kernel_metrics(t_x: np.ndarray, t_xp: np.ndarray, k: int) -> KernelMetrics:
    """Metrics of kernel ``k`` for original activations ``t_x`` and modified ``t_xp`` (both ``[C, H, W]``).

    The caller reports a kernel with ‖r_k(x)‖ = 0 as inactive instead of calling this.
    """
    r, rp = rectified(t_x), rectified(t_xp)
    sq, sqp = (r ** 2).sum(axis=1), (rp ** 2).sum(axis=1)
    nk, nkp = np.sqrt(sq[k]), np.sqrt(sqp[k])
    kept = float(nkp / nk) if nk > 0 else 0.0
    fidelity = float(r[k] @ rp[k] / (nk * nkp)) if nk > 0 and nkp > 0 else 0.0
    o, op = np.sqrt(sq.sum() - sq[k]), np.sqrt(sqp.sum() - sqp[k])
    others = float(op / o) if o > 0 else (0.0 if op == 0 else None)
    spec_b = float(sq[k] / sq.sum()) if sq.sum() > 0 else 0.0
    spec_a = float(sqp[k] / sqp.sum()) if sqp.sum() > 0 else 0.0
    return KernelMetrics(kept, fidelity, others, spec_b, spec_a)


def parity(t_torch: np.ndarray, t_ort: np.ndarray) -> tuple[float, float]:
    """(max |T_torch − T_ort|, that divided by max |T_ort|) — the contract's ``parity_max_abs``/``parity_rel``.

    Only where onnxruntime is finite: a channel that is NaN/Inf there (broken weights; its kernel is reported
    failed) is not compared. NaN/Inf from torch where onnxruntime is finite is an infinite difference.
    """
    ok = np.isfinite(t_ort)
    if not ok.any():
        return 0.0, 0.0
    d = np.abs(t_torch.astype(np.float64)[ok] - t_ort.astype(np.float64)[ok])
    diff = float(np.max(np.nan_to_num(d, nan=np.inf)))
    scale = float(np.max(np.abs(t_ort[ok])))
    return diff, (diff / scale if scale > 0 else diff)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two rectified activation maps over spatial positions (0 when one is constant)."""
    a, b = np.maximum(a.ravel(), 0).astype(np.float64), np.maximum(b.ravel(), 0).astype(np.float64)
    sa, sb = a.std(), b.std()
    return float(((a - a.mean()) * (b - b.mean())).mean() / (sa * sb)) if sa > 0 and sb > 0 else 0.0
