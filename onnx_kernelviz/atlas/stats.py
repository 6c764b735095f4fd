"""Per-kernel statistics that merge: what the statistics pass keeps while images stream through.

Every statistic here is a *mergeable summary* (a monoid): ``a.merge(b)`` equals the summary of the images of a
and b together, whatever the order, so a shard of images, a Ray worker's share and a whole local run are the
same object, and a run that stops keeps what it merged (zennit-crp keeps its reference samples the same way:
per-batch top-k, concatenated and re-sorted). Kernel k's activation is r_k = max(T_k, 0) (CONTRACT.md).

- :class:`Comoments`: count, means and centred co-moments of the C kernels over every image and position, for
  Pearson correlations. Each batch is centred on its own mean and multiplied in float32 (BLAS), then merged in
  float64 with the pairwise update of Chan, Golub & LeVeque (1979), so memory is ``C×C`` whatever the number of
  images and centring keeps the float32 products exact to ~1e-6 of the variance.
- :class:`LayerStats`: the co-moments plus, per kernel, the images where it fires, its largest value, a
  histogram of its per-image peak on fixed log2 bins (fixed, so histograms of shards add up), and its top-N
  exemplar sites: one per image (the image's peak, as zennit-crp's reference sampling takes one per sample),
  the N images with the largest peak, ties broken by the smaller image index so shards merge to the same list.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: per-image peak histogram: bin 0 counts images where the kernel stays 0; bin i ≥ 1 counts peaks in
#: [HIST_EDGES[i-2], HIST_EDGES[i-1]) with the first and last bins open-ended
HIST_EDGES = 2.0 ** np.arange(-16, 17, dtype=np.float64)
HIST_BINS = len(HIST_EDGES) + 2


@dataclass
class Comoments:
    """Count ``n``, mean ``[C]`` and centred co-moments ``m2 = Σ (x − mean)(x − mean)ᵀ`` ``[C, C]`` (float64)."""

    n: int
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def empty(cls, channels: int) -> Comoments:
        return cls(0, np.zeros(channels), np.zeros((channels, channels)))

    @classmethod
    def of(cls, x: np.ndarray, *, overwrite: bool = False) -> Comoments:
        """The summary of samples ``x`` ``[C, n]`` (float32, C-contiguous; one column per image position).

        ``overwrite``: centre ``x`` in place (the caller's buffer) instead of on a copy.
        """
        c, n = x.shape
        if n == 0:
            return cls.empty(c)
        mean = x.mean(axis=1, dtype=np.float64)
        xc = x if overwrite else x.copy()
        xc -= mean.astype(x.dtype)[:, None]
        # np.dot of an array with its own transpose runs BLAS syrk (half the work of a general product)
        m2 = np.dot(xc, xc.T).astype(np.float64)
        # centred on the float32-rounded mean: remove the rounding's share exactly (Σ(x−c)(x−c)ᵀ = m2 + n·d·dᵀ)
        d = xc.mean(axis=1, dtype=np.float64)
        m2 -= n * np.outer(d, d)
        return cls(n, mean, m2)

    def merge(self, other: Comoments) -> Comoments:
        if other.n == 0:
            return self
        if self.n == 0:
            return other
        n = self.n + other.n
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.n / n)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.n * other.n / n)
        return Comoments(n, mean, m2)

    def corr(self) -> np.ndarray:
        """Pearson correlations ``[C, C]``; 0 for a kernel that is constant over every sample (no variance)."""
        var = np.diag(self.m2).copy()
        ok = var > 1e-12 * max(1.0, float(var.max(initial=0.0)))
        sd = np.sqrt(np.where(ok, var, 1.0))
        c = self.m2 / sd[:, None] / sd[None, :]
        c[~ok, :] = 0.0
        c[:, ~ok] = 0.0
        np.fill_diagonal(c, np.where(ok, 1.0, 0.0))
        return np.clip(c, -1.0, 1.0)

    def std(self) -> np.ndarray:
        return np.sqrt(np.maximum(np.diag(self.m2), 0.0) / max(self.n, 1))


@dataclass
class TopSites:
    """The top-N exemplar sites of each of C kernels: arrays ``[N, C]`` sorted by value (largest first).

    Empty slots have value −inf and image −1; only sites where the kernel fires (value > 0) enter.
    """

    value: np.ndarray
    image: np.ndarray
    row: np.ndarray
    col: np.ndarray

    @classmethod
    def empty(cls, top: int, channels: int) -> TopSites:
        return cls(np.full((top, channels), -np.inf), np.full((top, channels), -1, np.int64),
                   np.zeros((top, channels), np.int32), np.zeros((top, channels), np.int32))

    @property
    def top(self) -> int:
        return self.value.shape[0]

    def merge(self, other: TopSites) -> TopSites:
        value = np.concatenate([self.value, other.value])
        image = np.concatenate([self.image, other.image])
        # empty slots (image −1) sort last among equal values; ties between real sites go to the smaller image
        tiebreak = np.where(image < 0, np.iinfo(np.int64).max, image)
        order = np.lexsort((tiebreak, -value), axis=0)[: self.top]
        take = lambda a: np.take_along_axis(a, order, axis=0)  # noqa: E731
        return TopSites(take(value), take(image), take(np.concatenate([self.row, other.row])),
                        take(np.concatenate([self.col, other.col])))

    def sites(self, k: int) -> list[tuple[int, int, int, float]]:
        """Kernel k's exemplar sites ``(image index, row, col, value)``, best first."""
        keep = self.image[:, k] >= 0
        return [(int(i), int(r), int(c), float(v)) for i, r, c, v in
                zip(self.image[keep, k], self.row[keep, k], self.col[keep, k], self.value[keep, k])]


@dataclass
class LayerStats:
    """Everything the atlas keeps about one layer's C kernels over the images seen so far.

    ``images``: images seen; ``fired [C]``: images where r_k > 0 somewhere; ``peak_max [C]``: the largest r_k;
    ``hist [C, HIST_BINS]``: per-image peaks on :data:`HIST_EDGES`; ``top``: exemplar sites; ``moments``: the
    co-moments of r over every image and position (so ``moments.mean`` is each kernel's mean activation).
    """

    images: int
    fired: np.ndarray
    peak_max: np.ndarray
    hist: np.ndarray
    top: TopSites
    moments: Comoments

    @classmethod
    def empty(cls, channels: int, top: int) -> LayerStats:
        return cls(0, np.zeros(channels, np.int64), np.zeros(channels), np.zeros((channels, HIST_BINS), np.int64),
                   TopSites.empty(top, channels), Comoments.empty(channels))

    @property
    def channels(self) -> int:
        return len(self.fired)

    @classmethod
    def of_batch(cls, t: np.ndarray, image_ids: np.ndarray, top: int) -> LayerStats:
        """The summary of one batch of activations ``t`` ``[B, C, H, W]`` (float32) of images ``image_ids [B]``."""
        b, c, h, w = t.shape
        # r as [C, B, H·W] in one pass (rectify while transposing): each kernel's samples contiguous for BLAS
        r = np.empty((c, b, h * w), np.float32)
        np.maximum(t.reshape(b, c, h * w).transpose(1, 0, 2), 0.0, out=r)
        flat = r.argmax(axis=2)  # [C, B]: each image's peak position (the first, on ties)
        peak = np.take_along_axis(r, flat[:, :, None], axis=2)[:, :, 0].astype(np.float64)
        bins = np.where(peak > 0, 1 + np.searchsorted(HIST_EDGES, peak, side="right"), 0)
        hist = np.zeros((c, HIST_BINS), np.int64)
        np.add.at(hist, (np.broadcast_to(np.arange(c)[:, None], bins.shape), bins), 1)
        sites = TopSites(np.where(peak > 0, peak, -np.inf).T, np.where(peak > 0, image_ids[None, :], -1).T,
                         (flat // w).astype(np.int32).T, (flat % w).astype(np.int32).T)
        fired, peak_max = (peak > 0).sum(axis=1), peak.max(axis=1)
        moments = Comoments.of(r.reshape(c, b * h * w), overwrite=True)
        return cls(b, fired, peak_max, hist, TopSites.empty(top, c).merge(sites), moments)

    def merge(self, other: LayerStats) -> LayerStats:
        return LayerStats(self.images + other.images, self.fired + other.fired,
                          np.maximum(self.peak_max, other.peak_max), self.hist + other.hist,
                          self.top.merge(other.top), self.moments.merge(other.moments))

    # -- the per-kernel reading -------------------------------------------------------------------------------

    def firing_rate(self) -> np.ndarray:
        """Share of images where r_k > 0 somewhere ``[C]``."""
        return self.fired / max(self.images, 1)

    def dead(self) -> np.ndarray:
        """r_k = 0 on every image (CONTRACT.md) ``[C]`` bool; nothing is dead before any image was seen."""
        return (self.fired == 0) & (self.images > 0)

    def duplicates(self, threshold: float) -> list[tuple[int, int, float]]:
        """Pairs a < b whose correlation over all images and positions is ≥ ``threshold``, as (a, b, corr).

        A kernel without variance (dead, or constant) has no correlation and is in no pair.
        """
        corr = self.moments.corr()
        a, b = np.nonzero(np.triu(corr >= threshold, k=1))
        return [(int(i), int(j), float(corr[i, j])) for i, j in zip(a, b)]

    # -- storage (plain arrays: no pickle crosses a file or a Ray worker) ---------------------------------------

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        m, t = self.moments, self.top
        return {f"{prefix}{k}": v for k, v in {
            "images": np.array(self.images), "fired": self.fired, "peak_max": self.peak_max, "hist": self.hist,
            "top_value": t.value, "top_image": t.image, "top_row": t.row, "top_col": t.col,
            "n": np.array(m.n), "mean": m.mean, "m2": m.m2}.items()}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray], prefix: str) -> LayerStats:
        g = lambda k: a[f"{prefix}{k}"]  # noqa: E731
        return cls(int(g("images")), g("fired"), g("peak_max"), g("hist"),
                   TopSites(g("top_value"), g("top_image"), g("top_row"), g("top_col")),
                   Comoments(int(g("n")), g("mean"), g("m2")))
