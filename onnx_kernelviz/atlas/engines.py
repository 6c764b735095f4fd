"""Where the atlas's work runs: one engine interface, chosen by name from a registry.

The work is cut the same way for every engine, by the driver: the statistics pass into shards of images, the
explanation pass into chunks of kernels (each chunk: sites of one layer, few enough for one optimized batch).
A :class:`Worker` does one shard or one chunk; an engine only decides where workers live and hands their results
back to the driver in any order (the statistics merge in any order; explanations are saved per kernel).

- ``local`` (default): one worker in this process, nothing to start.
- ``ray``: the statistics pass as Ray Data (``map_batches`` over shards with a callable class holding the
  onnxruntime session), the explanation pass as Ray actors over chunks, one GPU each where there are GPUs
  (``ray_engine.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from onnx_kernelviz.atlas.explainer import Site, SiteExplanation, explain_sites
from onnx_kernelviz.atlas.rf import LayerField
from onnx_kernelviz.atlas.stream import ShardStats, collect_stats
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.model import Model
from onnx_kernelviz.registry import Registry


@dataclass(frozen=True)
class Work:
    """Everything a worker needs to open the model and do its share (plain data: it travels to Ray workers).

    The model and image paths must be readable from every worker (on a cluster: a shared file system).
    """

    model: str
    device: str
    input_name: str | None
    preprocess: Preprocess
    images: tuple[str, ...]
    layers: tuple[int, ...]
    top: int
    batch_size: int
    config: ExplainConfig
    ort_threads: int | None = None


@dataclass(frozen=True)
class Shard:
    """Images ``ids`` (indices into ``Work.images``) of shard ``index``."""

    index: int
    ids: tuple[int, ...]


@dataclass(frozen=True)
class Chunk:
    """Sites of one layer explained together."""

    layer: int
    sites: tuple[Site, ...]


class Worker:
    """Opens the model once and does shards and chunks of :class:`Work`."""

    def __init__(self, work: Work, fields: dict[int, LayerField] | None = None, model: Model | None = None) \
            -> None:
        self.work = work
        self.fields = fields or {}
        self.model = model or Model(work.model, device=work.device, input_name=work.input_name,
                                    layout=work.preprocess.layout, ort_threads=work.ort_threads)
        self.layers = [self.model.layers[i] for i in work.layers]

    def stats(self, shard: Shard, progress: Callable[[int], None] | None = None) -> ShardStats:
        paths = [self.work.images[i] for i in shard.ids]
        return collect_stats(self.model, paths, list(shard.ids), self.layers, self.work.preprocess,
                             top=self.work.top, batch_size=self.work.batch_size, progress=progress,
                             threads=self.work.ort_threads)

    def explain(self, chunk: Chunk) -> list[SiteExplanation]:
        images = {s.image: self.work.images[s.image] for s in chunk.sites}
        return explain_sites(self.model, self.model.layers[chunk.layer], list(chunk.sites), images,
                             self.fields[chunk.layer], self.work.config, self.work.preprocess)


ShardDone = Callable[[Shard, ShardStats], None]
ChunkDone = Callable[[Chunk, list[SiteExplanation]], None]


class Engine(Protocol):
    """Runs workers somewhere; calls ``done`` on the driver for each finished shard or chunk, in any order."""

    name: str

    def statistics(self, work: Work, shards: list[Shard], done: ShardDone,
                   progress: Callable[[int], None]) -> None: ...

    def explanations(self, work: Work, fields: dict[int, LayerField], chunks: list[Chunk],
                     done: ChunkDone) -> None: ...

    def close(self) -> None: ...


#: ``factory(address, **options) -> Engine``
ENGINES: Registry[Callable[..., Engine]] = Registry("engine")


@ENGINES.register("local")
class LocalEngine:
    """Everything in this process, one worker; ``model``: the caller's opened model, reused (not reopened)."""

    name = "local"

    def __init__(self, address: str | None = None, model: Model | None = None, **_: object) -> None:
        self._model = model
        self._worker: Worker | None = None

    def _get(self, work: Work, fields: dict[int, LayerField] | None = None) -> Worker:
        if self._worker is None or self._worker.work != work:
            self._worker = Worker(work, fields, self._model)
        if fields:
            self._worker.fields = fields
        return self._worker

    def statistics(self, work: Work, shards: list[Shard], done: ShardDone, progress: Callable[[int], None]) -> None:
        w = self._get(work)
        for shard in shards:
            done(shard, w.stats(shard, progress))

    def explanations(self, work: Work, fields: dict[int, LayerField], chunks: list[Chunk],
                     done: ChunkDone) -> None:
        w = self._get(work, fields)
        for chunk in chunks:
            done(chunk, w.explain(chunk))

    def close(self) -> None:
        self._worker = None


def check_engine(name: str, address: str | None = None) -> None:
    """Refuse an unknown engine, a missing extra or ``--address`` without Ray, before anything starts or is written.

    (``ray`` registers itself when its module is imported, and says which extra is missing when it cannot be.)
    """
    if name == "ray" and "ray" not in ENGINES:
        from onnx_kernelviz.atlas import ray_engine  # noqa: F401
    ENGINES.get(name)
    if address and name == "local":
        from onnx_kernelviz.errors import UsageError

        raise UsageError("--address joins a Ray cluster; use it with --engine ray")


def open_engine(name: str, address: str | None = None, **options: object) -> Engine:
    """The registered engine ``name``; ``options`` go to it (e.g. ``cpus_per_worker`` for ``ray``)."""
    check_engine(name, address)
    return ENGINES.get(name)(address, **options)


def image_paths(images: list[Path]) -> tuple[str, ...]:
    """Image paths as workers open them: absolute, so a Ray worker in another folder finds them too."""
    return tuple(str(p.resolve()) for p in images)
