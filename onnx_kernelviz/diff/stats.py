"""Statistics of one layer's kernels in two models over a stream of images, merged batch by batch.

For each kernel k, with r = max(T, 0) the rectified activation of model A and model B at every image and position:

* ``corr``: the Pearson correlation of r_A and r_B over all images and positions (as the atlas correlates two
  kernels), from running sums; 1 when both are constant (standard deviation under 1 % of the mean: silent, or
  saturated nearly everywhere; the energy term of ``drift`` still sees a change of level), 0 when only one is.
* ``exemplar_overlap``: the Jaccard index |S_A ∩ S_B| / |S_A ∪ S_B| of the two models' top-N exemplar sites (image,
  row, col), positive values only; ties in one model (an int8 model saturates many sites at the same value) are
  broken by the other model's value, so sites the int8 model cannot tell apart count as agreeing where the float
  model ranks them. 1 when neither model fires, 0 when only one does.
* ``drift`` = (1 − corr) + |‖r_B‖ − ‖r_A‖| / (‖r_A‖ + ‖r_B‖), in [0, 3]: 0 for an unchanged kernel; the first term
  says the pattern moved, the second that its strength changed (a kernel that only scales up or down keeps corr 1).

Everything merges over batches in any order (sums, and top-N pools re-ranked), so a run is one pass over the images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: exemplar sites per kernel and model
TOP_SITES = 16
#: a map is constant when its standard deviation is at most this share of its mean
FLAT = 0.01


@dataclass
class LayerPairStats:
    """Running statistics of one layer, ``channels`` kernels, models A and B."""

    channels: int
    top: int = TOP_SITES
    n: np.ndarray = field(init=False)
    sums: np.ndarray = field(init=False)  # [5, C]: Σa, Σb, Σa², Σb², Σab (float64)
    pools: list = field(init=False)  # per model: [C] lists of (primary, secondary, image, row, col) rows

    def __post_init__(self) -> None:
        self.n = np.zeros(self.channels, np.float64)
        self.sums = np.zeros((5, self.channels), np.float64)
        self.pools = [[np.empty((0, 5)) for _ in range(self.channels)] for _ in range(2)]

    def update(self, t_a: np.ndarray, t_b: np.ndarray, first_image: int) -> None:
        """Add a batch: activations ``[B, C, h, w]`` of A and B on the same images, numbered from ``first_image``."""
        if t_a.shape != t_b.shape:
            raise ValueError(f"activation shapes differ: {t_a.shape} and {t_b.shape}")
        b, c, h, w = t_a.shape
        ra = np.maximum(t_a, 0).astype(np.float64).transpose(1, 0, 2, 3).reshape(c, -1)
        rb = np.maximum(t_b, 0).astype(np.float64).transpose(1, 0, 2, 3).reshape(c, -1)
        self.n += ra.shape[1]
        self.sums += np.stack([ra.sum(1), rb.sum(1), (ra * ra).sum(1), (rb * rb).sum(1), (ra * rb).sum(1)])
        pos = np.arange(ra.shape[1])
        site = np.stack([first_image + pos // (h * w), (pos // w) % h, pos % w], 1).astype(np.float64)
        for model, (p, q) in enumerate(((ra, rb), (rb, ra))):
            self._merge(model, p, q, site)

    def _merge(self, model: int, p: np.ndarray, q: np.ndarray, site: np.ndarray) -> None:
        """Keep, per kernel, the ``top`` sites ranked by ``p`` then ``q`` (positive ``p`` only)."""
        m = p.shape[1]
        k = min(self.top, m)
        # every site tied with the k-th largest value stays a candidate, so the tie-break by q is exact
        thr = np.partition(p, m - k, axis=1)[:, m - k]
        for c in range(self.channels):
            keep = np.flatnonzero((p[c] >= thr[c]) & (p[c] > 0))
            if keep.size == 0:
                continue
            rows = np.column_stack([p[c, keep], q[c, keep], site[keep]])
            pool = np.concatenate([self.pools[model][c], rows])
            # rank by primary value, then the other model's value, then site (deterministic), largest first
            order = np.lexsort((-pool[:, 4], -pool[:, 3], -pool[:, 2], pool[:, 1], pool[:, 0]))[::-1]
            self.pools[model][c] = pool[order[:self.top]]

    def sites(self, model: int, c: int) -> list[tuple[int, int, int, float]]:
        """Model ``model``'s (0: A, 1: B) exemplar sites of kernel ``c``: (image, row, col, value), best first."""
        return [(int(r[2]), int(r[3]), int(r[4]), float(r[0])) for r in self.pools[model][c]]

    def finish(self) -> dict[str, np.ndarray]:
        """Per kernel ``[C]``: corr, exemplar_overlap, drift, and the energies ‖r_A‖, ‖r_B‖."""
        n = np.maximum(self.n, 1)
        sa, sb, saa, sbb, sab = self.sums
        cov = sab / n - (sa / n) * (sb / n)
        va, vb = np.maximum(saa / n - (sa / n) ** 2, 0), np.maximum(sbb / n - (sb / n) ** 2, 0)
        # constant over all images and positions (silent, or saturated nearly everywhere): the spread is under 1 % of
        # the mean. An int8 ReLU6 saturates exactly where the float one is 5.98..6.0: with an exact test the float
        # map "varies" and the pair got corr 0, drift 1, for maps that agree to 1 %.
        flat_a = np.sqrt(va) <= FLAT * np.abs(sa / n) + 1e-12
        flat_b = np.sqrt(vb) <= FLAT * np.abs(sb / n) + 1e-12
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = np.where(flat_a | flat_b, 0.0, cov / np.sqrt(va * vb))
        corr = np.clip(np.where(flat_a & flat_b, 1.0, corr), -1.0, 1.0)
        ea, eb = np.sqrt(saa), np.sqrt(sbb)
        with np.errstate(invalid="ignore", divide="ignore"):
            energy = np.where(ea + eb > 0, np.abs(eb - ea) / (ea + eb), 0.0)
        overlap = np.array([self._jaccard(c) for c in range(self.channels)])
        return {"corr": corr, "exemplar_overlap": overlap, "drift": (1.0 - corr) + energy,
                "energy_a": ea, "energy_b": eb}

    def _jaccard(self, c: int) -> float:
        a = {tuple(r[2:].astype(int)) for r in self.pools[0][c]}
        b = {tuple(r[2:].astype(int)) for r in self.pools[1][c]}
        if not a and not b:
            return 1.0
        return len(a & b) / len(a | b)
