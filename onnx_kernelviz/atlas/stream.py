"""The statistics pass: images stream in batches through onnxruntime on the ORIGINAL model, every chosen
layer's activation tensor exposed in one session, and fold into mergeable summaries (``stats.py``).

No gradients, no torch copy: this is the deployed graph as onnxruntime runs it. Images are decoded ahead of
onnxruntime on a thread (OpenCV releases the GIL), and an image that cannot be read, or whose activations are
NaN/Inf, is skipped with a note instead of ending the run. ``stream_activations`` is the reusable part (``kernelviz
diff`` compares two models' kernels over the same stream); ``collect_stats`` is one shard of the atlas.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from onnx_kernelviz.atlas.stats import LayerStats
from onnx_kernelviz.errors import ImageError, KernelvizError
from onnx_kernelviz.frontend.layers import Layer
from onnx_kernelviz.io.decode import read_image
from onnx_kernelviz.io.modelinput import mean_colour, to_model_input
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.model import Model


@dataclass(frozen=True)
class Skipped:
    """An image left out of the statistics, and why (``reason`` says what to do about it)."""

    image: int
    reason: str


@dataclass
class Batch:
    """Images ``ids [B]`` that made it, their model inputs ``x [B, C, H, W]``, and the ones skipped."""

    ids: np.ndarray
    x: np.ndarray
    skipped: list[Skipped] = field(default_factory=list)


def model_input(path: str | Path, pp: Preprocess, size: tuple[int, int], channels: int) -> np.ndarray:
    """One image as ``explain`` reads it: fitted to the input as it is read (``--fit``), normalized ``[C, H, W]``.

    Raises:
        ImageError: the file cannot be used (the message says why).
    """
    return to_model_input(read_image(path, size=size, fit=pp.fit, fill=mean_colour(pp)), pp, size, channels)


def load_batches(paths: Sequence[str | Path], ids: Sequence[int], pp: Preprocess, size: tuple[int, int],
                 channels: int, batch_size: int) -> Iterator[Batch]:
    """Decode and preprocess images ``paths`` (global indices ``ids``) into batches, one batch ahead.

    Each image is read as ``explain`` reads it (:func:`model_input`), so exemplars found here are the same
    pixels an explanation starts from.
    """

    def load(item: tuple[int, str | Path]) -> tuple[int, np.ndarray | None, str | None]:
        i, p = item
        try:
            return i, model_input(p, pp, size, channels), None
        except ImageError as e:
            return i, None, str(e)

    items = list(zip(ids, paths))
    chunks = [items[s:s + batch_size] for s in range(0, len(items), batch_size)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        ahead = [pool.submit(lambda c: [load(it) for it in c], chunk) for chunk in chunks[:1]]
        for n in range(len(chunks)):
            if n + 1 < len(chunks):  # decode the next batch while this one runs
                ahead.append(pool.submit(lambda c: [load(it) for it in c], chunks[n + 1]))
            done = ahead.pop(0).result()
            good = [(i, x) for i, x, _ in done if x is not None]
            skipped = [Skipped(i, why or "") for i, x, why in done if x is None]
            x = np.stack([x for _, x in good]) if good else np.zeros((0, channels, *size), np.float32)
            yield Batch(np.array([i for i, _ in good], np.int64), x, skipped)


def stream_activations(model: Model, paths: Sequence[str | Path], ids: Sequence[int], tensors: Sequence[str],
                       pp: Preprocess, batch_size: int = 8) -> Iterator[tuple[Batch, list[np.ndarray]]]:
    """Yield each batch with onnxruntime's activations of ``tensors`` (``[B, C, h, w]`` each) on the original graph.

    Images whose activations hold NaN/Inf on any tensor are moved to ``batch.skipped`` (a NaN would poison every
    sum it enters) and dropped from the arrays.
    """
    size = model.input_size(pp.size)
    runner = model.ort(tuple(tensors))
    for batch in load_batches(paths, ids, pp, size, model.channels, batch_size):
        if not len(batch.ids):
            yield batch, [np.zeros((0, 0, 0, 0), np.float32) for _ in tensors]
            continue
        acts = runner.run(batch.x, list(tensors))
        for t, a in zip(tensors, acts):
            if a.ndim != 4:
                raise KernelvizError(f"the activation {t} has shape {list(a.shape)}; the atlas reads 2-D "
                                     "convolutions ([N, C, H, W]); choose other --layers")
        # a per-image sum is NaN/Inf when any value is (cheap next to the statistics themselves)
        finite = np.ones(len(batch.ids), bool)
        for t, a in zip(tensors, acts):
            bad = ~np.isfinite(a.reshape(len(a), -1).sum(axis=1, dtype=np.float64))
            for i in np.nonzero(bad & finite)[0]:
                batch.skipped.append(Skipped(int(batch.ids[i]), f"the activation {t} is NaN/Inf on this image; "
                                             "check the preprocessing (--preset/--mean/--std/--scale)"))
            finite &= ~bad
        if not finite.all():
            batch = Batch(batch.ids[finite], batch.x[finite], batch.skipped)
            acts = [a[finite] for a in acts]
        yield batch, acts


@dataclass
class ShardStats:
    """The summaries of a set of images: per layer index a :class:`LayerStats`, the image ids folded in, and the
    images skipped. Merging two shards gives the summary of both (any order)."""

    layers: dict[int, LayerStats]
    images: list[int] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @classmethod
    def empty(cls, layers: Sequence[Layer], top: int) -> ShardStats:
        return cls({la.index: LayerStats.empty(la.channels, top) for la in layers})

    def merge(self, other: ShardStats) -> ShardStats:
        return ShardStats({i: s.merge(other.layers[i]) for i, s in self.layers.items()},
                          sorted(self.images + other.images), sorted(self.skipped + other.skipped,
                                                                      key=lambda s: s.image))

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"layer_indices": np.array(sorted(self.layers), np.int64), "images": np.array(self.images, np.int64),
               "skipped_ids": np.array([s.image for s in self.skipped], np.int64),
               "skipped_reasons": np.array([s.reason for s in self.skipped], dtype=str)}
        for i, s in self.layers.items():
            out.update(s.to_arrays(f"L{i}_"))
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> ShardStats:
        layers = {int(i): LayerStats.from_arrays(a, f"L{int(i)}_") for i in a["layer_indices"]}
        skipped = [Skipped(int(i), str(r)) for i, r in zip(a["skipped_ids"], a["skipped_reasons"])]
        return cls(layers, [int(i) for i in a["images"]], skipped)


ProgressFn = Callable[[int], None]  # called with the number of images just finished (read or skipped)


def collect_stats(model: Model, paths: Sequence[str | Path], ids: Sequence[int], layers: Sequence[Layer],
                  pp: Preprocess, *, top: int, batch_size: int = 8, progress: ProgressFn | None = None,
                  threads: int | None = None) -> ShardStats:
    """The statistics of ``layers`` over images ``paths`` (global indices ``ids``): one shard of an atlas.

    onnxruntime runs batch i+1 while a second thread folds batch i into the summaries (both release the GIL), so
    the products of the co-moments hide behind onnxruntime as far as the cores allow; at most two batches of
    activations are held at once.

    Args:
        top: exemplar sites kept per kernel.
        batch_size: images per onnxruntime run.
        progress: told how many images each batch finished (read or skipped).
        threads: the cores this worker may use (default: all of the machine's).
    """
    acc = [ShardStats.empty(layers, top)]
    tensors = [la.tensor for la in layers]

    def fold(batch: Batch, acts: list[np.ndarray]) -> None:
        if len(batch.ids):
            part = {la.index: LayerStats.of_batch(a, batch.ids, top) for la, a in zip(layers, acts)}
            acc[0] = acc[0].merge(ShardStats(part, [int(i) for i in batch.ids]))
        acc[0].skipped.extend(batch.skipped)
        if progress:
            progress(len(batch.ids) + len(batch.skipped))

    with blas_threads(max(1, threads // 2) if threads else None), ThreadPoolExecutor(max_workers=1) as folder:
        pending = None
        for batch, acts in stream_activations(model, paths, ids, tensors, pp, batch_size):
            if pending is not None:
                pending.result()
            pending = folder.submit(fold, batch, acts)
        if pending is not None:
            pending.result()
    return acc[0]


@contextmanager
def blas_threads(n: int | None = None) -> Iterator[None]:
    """Limit BLAS (the co-moments' products) to ``n`` threads, by default half the cores.

    onnxruntime keeps its own threads busy meanwhile; OpenBLAS threads that spin-wait beside them made the products
    5-10x slower on a 2-core machine (measured). Needs threadpoolctl (the ``atlas`` extra); without it nothing is
    limited.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the install
        yield
        return
    with threadpool_limits(limits=n or max(1, (os.cpu_count() or 2) // 2), user_api="blas"):
        yield
