"""The atlas's mergeable statistics against brute force over all the data at once, in any shard order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnx_kernelviz.atlas.stats import HIST_EDGES, Comoments, LayerStats


def _activations(seed: int, n: int = 7, c: int = 5, h: int = 4, w: int = 3) -> np.ndarray:
    """[n, c, h, w] with a dead kernel (1), an exact copy (3 = 0), a scaled copy (4 = 2·2 + 1: corr 1) and
    large means (the centring must keep precision)."""
    rng = np.random.default_rng(seed)
    t = rng.standard_normal((n, c, h, w)).astype(np.float32) + 3.0
    t[:, 1] = -1.0
    t[:, 3] = t[:, 0]
    t[:, 4] = 2 * np.maximum(t[:, 2], 0) + 1
    return t


def _brute_corr(t: np.ndarray) -> np.ndarray:
    r = np.maximum(t.astype(np.float64), 0).transpose(1, 0, 2, 3).reshape(t.shape[1], -1)
    sd = r.std(axis=1)
    c = np.zeros((len(r), len(r)))
    ok = sd > 0
    c[np.ix_(ok, ok)] = np.corrcoef(r[ok])
    return c


def _fold(t: np.ndarray, splits: list[int], top: int, order: list[int] | None = None) -> LayerStats:
    parts = np.split(np.arange(len(t)), splits)
    stats = [LayerStats.of_batch(t[p], p, top) for p in parts if len(p)]
    order = [i for i in (order or range(len(stats))) if i < len(stats)]  # a permutation of the shards
    acc = LayerStats.empty(t.shape[1], top)
    for i in order:
        acc = acc.merge(stats[i])
    return acc


def test_comoments_match_numpy_at_large_means():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 5000)) * 0.01 + 1000.0).astype(np.float32)  # mean/std = 1e5: raw sums would fail
    a = Comoments.of(x[:, :1234]).merge(Comoments.of(x[:, 1234:]))
    ref = np.corrcoef(x.astype(np.float64))
    assert np.allclose(a.corr(), ref, atol=1e-4)
    assert np.allclose(a.mean, x.astype(np.float64).mean(1))


def test_layer_stats_equal_brute_force():
    t = _activations(0)
    s = _fold(t, [2, 3, 6], top=3)
    r = np.maximum(t, 0)
    assert s.images == 7
    assert np.allclose(s.moments.corr(), _brute_corr(t), atol=1e-5)
    assert np.allclose(s.moments.mean, r.mean(axis=(0, 2, 3)))
    assert np.allclose(s.peak_max, r.max(axis=(0, 2, 3)))
    assert list(s.dead()) == [False, True, False, False, False]
    assert list(s.firing_rate()) == list((r.reshape(7, 5, -1).max(-1) > 0).mean(0))
    assert s.duplicates(0.98) == [(0, 3, pytest.approx(1.0)), (2, 4, pytest.approx(1.0))]
    # exemplars: one site per image at its peak, the 3 images with the largest peak
    for k in (0, 2):
        peaks = r[:, k].reshape(7, -1).max(-1)
        want = list(np.argsort(-peaks, kind="stable")[:3])
        sites = s.top.sites(k)
        assert [i for i, *_ in sites] == want
        for i, row, col, v in sites:
            assert v == pytest.approx(float(r[i, k, row, col])) and v == pytest.approx(float(peaks[i]))
    assert s.top.sites(1) == []  # a dead kernel has no exemplar
    # histogram: one count per image, in the bin of its peak
    assert (s.hist.sum(axis=1) == 7).all() and s.hist[1, 0] == 7
    k0 = r[:, 0].reshape(7, -1).max(-1)
    assert s.hist[0, 1 + np.searchsorted(HIST_EDGES, k0[0], side="right")] >= 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=0, max_size=4, unique=True), st.permutations(range(5)),
       st.integers(0, 3))
def test_merge_is_order_independent(splits, order, seed):
    t = _activations(seed)
    t[:, 0, 0, 0] = 9.0  # equal peaks on every image: ties must break by image index, whatever the order
    one = _fold(t, [], top=4)
    many = _fold(t, sorted(splits), top=4, order=list(order))
    assert np.array_equal(one.top.image, many.top.image) and np.array_equal(one.top.value, many.top.value)
    assert np.array_equal(one.hist, many.hist) and np.array_equal(one.fired, many.fired)
    # float32 products per batch: equal up to float32 noise, whatever the split and order
    assert np.allclose(one.moments.m2, many.moments.m2, rtol=1e-5, atol=1e-5 * np.abs(one.moments.m2).max())
    assert [i for i, *_ in one.top.sites(0)] == [0, 1, 2, 3]


def test_arrays_round_trip():
    s = _fold(_activations(2), [3], top=2)
    back = LayerStats.from_arrays(s.to_arrays("L3_"), "L3_")
    assert back.images == s.images and np.array_equal(back.moments.m2, s.moments.m2)
    assert back.top.sites(0) == s.top.sites(0)
