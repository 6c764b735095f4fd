"""The ``ray`` engine: the same shards and chunks as ``local``, on a Ray cluster (``--address``) or a local one.

Statistics pass: Ray Data's batch-inference pattern — a dataset of shards and ``map_batches`` with a callable
class whose constructor opens the model (onnxruntime session) once per worker; each call folds one shard and
returns its mergeable summary as ``.npz`` bytes (plain arrays, no pickle); the driver merges them as they stream
back, so its memory holds one summary at a time. Explanation pass: Ray actors (the torch copy built once each)
over kernel chunks, one GPU each where the cluster has GPUs. Workers that die are restarted and their shard or
chunk retried by Ray; if the driver stops, ``--resume`` continues from the checkpoints it wrote.

The model and images are opened by path on every worker: on a multi-node cluster they must be on a shared file
system (the same paths everywhere), as for Ray Data reading local files.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from onnx_kernelviz.atlas.engines import ENGINES, Chunk, ChunkDone, Shard, ShardDone, Work, Worker
from onnx_kernelviz.atlas.explainer import SiteExplanation
from onnx_kernelviz.atlas.rf import LayerField
from onnx_kernelviz.atlas.stream import ShardStats
from onnx_kernelviz.errors import KernelvizError

try:
    import ray
except ImportError:  # pragma: no cover - depends on the install
    raise KernelvizError("--engine ray needs Ray: pip install 'onnx-kernelviz[ray]' (or use --engine local)") \
        from None

#: an explanation actor that dies is restarted, and its chunk retried, this many times before the run fails
#: (Ray Data restarts its statistics actors and retries their shards by default, without limit)
RETRIES = 3


def _to_bytes(stats: ShardStats) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **stats.to_arrays())  # type: ignore[arg-type]  # numpy stubs take a key for allow_pickle
    return buf.getvalue()


def _from_bytes(data: bytes) -> ShardStats:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        return ShardStats.from_arrays({k: z[k] for k in z.files})


class StatsWorker:
    """Ray Data's callable class: opens the model in ``__init__``, folds one shard per call."""

    def __init__(self, work: Work) -> None:
        self.worker = Worker(work)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = []
        for index, ids in zip(batch["shard"], batch["ids"]):
            out.append(_to_bytes(self.worker.stats(Shard(int(index), tuple(int(i) for i in ids)))))
        return {"shard": np.asarray(batch["shard"]), "stats": np.array(out, dtype=object)}


class ExplainWorker:
    """A Ray actor holding the torch copy: explains chunks of kernels."""

    def __init__(self, work: Work, fields: dict[int, LayerField], threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        self.worker = Worker(work, fields)

    def explain(self, chunk: Chunk) -> tuple[Chunk, list[SiteExplanation]]:
        return chunk, self.worker.explain(chunk)


@ENGINES.register("ray")
class RayEngine:
    """Ray Data for statistics, Ray actors for explanations.

    Args:
        address: a cluster to join (``auto``, ``ray://host:10001``, ``host:6379``); None starts a local one.
        cpus_per_worker: CPUs each worker takes (default: all of a node's share, at most 4, per worker; with GPUs,
            the cluster's CPUs divided among the GPUs).
    """

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_worker: int | None = None) -> None:
        self._owns = not ray.is_initialized()
        if self._owns:
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise KernelvizError(f"cannot start or join a Ray cluster at {address or 'a new local one'}: "
                                     f"{str(e).splitlines()[0][:200]}; check --address (e.g. auto, "
                                     "ray://HOST:10001)") from None
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # the atlas shows its own bar per pass
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        res = ray.cluster_resources()
        cpus, gpus = int(res.get("CPU", 1)), int(res.get("GPU", 0))
        if gpus:
            self.workers, self.gpus = gpus, 1
            self.cpus = cpus_per_worker or max(1, cpus // gpus)
        else:
            self.cpus = cpus_per_worker or max(1, min(4, cpus))
            self.workers, self.gpus = max(1, cpus // self.cpus), 0

    def _work(self, work: Work) -> Work:
        return replace(work, ort_threads=self.cpus)

    def statistics(self, work: Work, shards: list[Shard], done: ShardDone, progress: Callable[[int], None]) -> None:
        if not shards:
            return
        by_index = {s.index: s for s in shards}
        items = ray.data.from_items([{"shard": s.index, "ids": list(s.ids)} for s in shards],
                                    override_num_blocks=len(shards))
        ds = items.map_batches(StatsWorker, fn_constructor_kwargs={"work": self._work(work)}, batch_size=1,
                            compute=ray.data.ActorPoolStrategy(size=min(self.workers, len(shards))),
                            num_cpus=self.cpus, num_gpus=self.gpus)
        for row in ds.iter_rows():
            shard = by_index[int(row["shard"])]
            progress(len(shard.ids))
            done(shard, _from_bytes(row["stats"]))

    def explanations(self, work: Work, fields: dict[int, LayerField], chunks: list[Chunk],
                     done: ChunkDone) -> None:
        if not chunks:
            return
        actor = ray.remote(ExplainWorker).options(num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=RETRIES,
                                                 max_task_retries=RETRIES)
        actors = [actor.remote(self._work(work), fields, self.cpus) for _ in range(min(self.workers, len(chunks)))]
        try:
            pool = ray.util.ActorPool(actors)
            for chunk, results in pool.map_unordered(lambda a, c: a.explain.remote(c), chunks):
                done(chunk, results)
        finally:
            for a in actors:
                ray.kill(a)  # type: ignore[arg-type]

    def close(self) -> None:
        if self._owns and ray.is_initialized():
            ray.shutdown()
