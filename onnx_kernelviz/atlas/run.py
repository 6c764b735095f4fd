"""``atlas``: every kernel of a model over a set of images, as one short chain of passes.

folder + lock (journal) → statistics pass (engine, shards) → receptive fields → exemplar crops → explanation pass
(engine, kernel chunks) → kernels.parquet + atlas.json (outputs) → atlas.html (html). Each pass checkpoints as it
goes, so ``resume`` redoes only what is missing; ``dup_corr`` is applied at the end and can change on a resume.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from onnx_kernelviz import __version__
from onnx_kernelviz.atlas.engines import Chunk, Engine, Shard, Work, check_engine, image_paths, open_engine
from onnx_kernelviz.atlas.explainer import Site, SiteExplanation
from onnx_kernelviz.atlas.journal import Journal
from onnx_kernelviz.atlas.outputs import Atlas, build_atlas, pyarrow_or_fail, write_outputs
from onnx_kernelviz.atlas.rf import LayerField, receptive_fields
from onnx_kernelviz.atlas.stream import ShardStats, model_input
from onnx_kernelviz.atlas.tiles import THUMB, crop, jpeg, strip
from onnx_kernelviz.errors import KernelvizError, ModelError, UsageError
from onnx_kernelviz.frontend.layers import Layer, require_kernel_counts
from onnx_kernelviz.frontend.load import physical_memory
from onnx_kernelviz.io.images import list_images
from onnx_kernelviz.io.modelinput import from_model_input
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.model import Model
from onnx_kernelviz.options import SCOPES

#: seconds between checkpoints of the merged statistics (a checkpoint of the default model's 49 layers is ~140 MB)
SAVE_EVERY = 30.0

#: (pass, images or kernels just finished, total): ``statistics`` counts images, ``explanations`` kernels
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class AtlasSettings:
    """What an atlas computes. ``explain``: exemplar sites explained per kernel (0: statistics only); ``scope``:
    ``focus`` explains kernel k at the exemplar cell, ``map`` its whole map on the exemplar image; ``rare``: a
    kernel firing on at most this share of the images (and not dead) is listed as rarely firing."""

    layers: str = "all"
    top: int = 5
    explain: int = 1
    dup_corr: float = 0.98
    batch_size: int = 8
    shard_size: int = 32
    rare: float = 0.05
    scope: str = "focus"


#: CxC float64 co-moment matrices of a layer alive at once while a batch is merged (the batch's, its float32
#: product, the running total, the merged result, and a shard's)
_MOMENT_COPIES = 5


def check_statistics_memory(layers: Sequence[Layer]) -> None:
    """Refuse, before anything is allocated, layers whose statistics cannot fit in half of this machine's memory.

    The duplicate search keeps each layer's CxC co-moments (``stats.Comoments``): memory grows with the square of
    the kernels, and a valid 480 KB model (one 1x1 conv with 40,000 output channels) asked for 5 x 12.8 GB.

    Raises:
        ModelError: naming the widest layer and what to do.
    """
    ram = physical_memory()
    need = sum(_MOMENT_COPIES * 8 * la.channels ** 2 for la in layers)
    if ram and layers and need > ram // 2:
        widest = max(layers, key=lambda la: la.channels)
        raise ModelError(f"the atlas statistics of {len(layers)} layer(s) need {need / 1e9:.1f} GB (a kernels x "
                         f"kernels matrix per layer for the duplicates; layer {widest.index} has {widest.channels} "
                         f"kernels), more than half of this machine's {ram / 1e9:.1f} GB of memory; choose fewer or "
                         "narrower layers with --layers")


def select_layers(model: Model, spec: str) -> list[Layer]:
    """``all``, or a comma list of layer indices, ranges ``3-7``, Conv node names or tensor names."""
    if spec.strip() == "all":
        return list(model.layers)
    chosen: dict[int, Layer] = {}
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        lo, dash, hi = item.partition("-")
        if dash and lo.isdigit() and hi.isdigit():
            if int(lo) > int(hi):
                raise UsageError(f"--layers {item}: a range goes from the smaller index to the larger")
            for i in range(int(lo), int(hi) + 1):
                chosen[model.layer(i).index] = model.layer(i)
        else:
            la = model.layer(item)
            chosen[la.index] = la
    if not chosen:
        raise UsageError("--layers is empty; give 'all' or layers such as 0,5,10-12")
    return [chosen[i] for i in sorted(chosen)]


@dataclass
class _Run:
    model: Model
    layers: list[Layer]
    work: Work
    journal: Journal
    engine: Engine
    settings: AtlasSettings
    progress: Progress
    size: tuple[int, int]
    fields: dict[int, LayerField] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def atlas(model: Model, images: Sequence[str | Path], out_dir: str | Path, *, preprocess: Preprocess,
          settings: AtlasSettings = AtlasSettings(), config: ExplainConfig = ExplainConfig(),
          engine: str = "local", address: str | None = None, engine_options: dict | None = None,
          device: str = "auto", resume: bool = False, force: bool = False, progress: Progress | None = None) -> Atlas:
    """Audit every kernel of ``settings.layers`` over ``images``; write DIR/kernels.parquet, atlas.json, atlas.html.

    Raises:
        UsageError: bad options, a non-empty ``out_dir`` without ``force``/``resume``, or a resume of another atlas.
    """
    t0 = time.perf_counter()
    if settings.top < 1 or settings.explain < 0 or settings.explain > settings.top:
        raise UsageError("--top must be at least 1 and --explain between 0 and --top")
    if not 0 < settings.dup_corr <= 1:
        raise UsageError("--dup-corr must be in (0, 1]")
    if settings.scope not in SCOPES:
        raise UsageError(f"unknown scope {settings.scope!r}; use focus or map")
    config = replace(config, scope=settings.scope).validate()  # the explanation pass's scope is the atlas's
    if settings.batch_size < 1 or settings.shard_size < 1:
        raise UsageError("--stats-batch and the shard size must be at least 1")
    pyarrow_or_fail()  # before hours of work, not after
    check_engine(engine, address)
    layers = select_layers(model, settings.layers)
    require_kernel_counts(layers, str(model.path))  # the statistics are sized by them
    check_statistics_memory(layers)
    paths = list_images([Path(p) for p in images])
    work = Work(str(Path(model.path).resolve()), device, model.loaded.input.name, preprocess, image_paths(paths),
                tuple(la.index for la in layers), settings.top, settings.batch_size, config)
    identity = {"model_sha256": model.loaded.sha256, "images": list(work.images), "layers": list(work.layers),
                "top": settings.top, "explain": settings.explain, "shard_size": settings.shard_size,
                "preprocess": preprocess.to_dict(), "method": asdict(config) if settings.explain else None,
                "scope": settings.scope if settings.explain else None}
    journal = Journal(Path(out_dir))
    with journal.locked():
        resumed = journal.prepare(identity, force=force, resume=resume)
        with journal.timed(resumed, t0) as clock:
            options = {**(engine_options or {}), **({"model": model} if engine == "local" else {})}
            eng = open_engine(engine, address, **options)
            try:
                run = _Run(model, layers, work, journal, eng, settings, progress or (lambda *_: None),
                           model.input_size(preprocess.size))
                stats = _statistics(run, resumed)
                run.fields = receptive_fields(model, layers, run.size)
                _exemplar_tiles(run, stats)
                explained = _explanations(run, stats)
            finally:
                eng.close()
            result = build_atlas(model, layers, paths, stats, run.fields, explained, settings,
                                 header={"engine": eng.name, **clock.header(),
                                         "version": __version__, "notes": run.notes,
                                         "settings": {**asdict(settings), "preprocess": preprocess.to_dict(),
                                                      "input_size": list(run.size),
                                                      "method": asdict(config) if settings.explain else None}})
            write_outputs(journal.out, result)
            from onnx_kernelviz.atlas.html import write_html
            write_html(journal.out, result)
    return result


def _statistics(run: _Run, resumed: bool) -> ShardStats:
    n, size = len(run.work.images), run.settings.shard_size
    shards = [Shard(i, tuple(range(s, min(s + size, n)))) for i, s in enumerate(range(0, n, size))]
    loaded = run.journal.load_stats() if resumed else None
    total, done = loaded if loaded else (ShardStats.empty(run.layers, run.settings.top), [])
    todo = [s for s in shards if s.index not in set(done)]
    run.progress("statistics", n - sum(len(s.ids) for s in todo), n)
    last = [time.monotonic()]

    def finished(shard: Shard, part: ShardStats) -> None:
        nonlocal total
        total = total.merge(part)
        done.append(shard.index)
        if time.monotonic() - last[0] > SAVE_EVERY:
            run.journal.save_stats(total, done)
            last[0] = time.monotonic()

    try:
        run.engine.statistics(run.work, todo, finished, lambda k: run.progress("statistics", k, n))
    finally:
        if todo:
            run.journal.save_stats(total, done)  # also on Ctrl-C: --resume starts from here
    if not total.images:
        why = total.skipped[0].reason if total.skipped else "no image"
        raise KernelvizError(f"none of the {n} images could be used ({why}); check the files and the preprocessing")
    return total


def tile_name(layer: int, kernel: int, what: str) -> str:
    """Path of a strip relative to DIR: ``tiles/L012/k0007_x.jpg`` (exemplars), ``..._e0.jpg`` (explanation 0)."""
    return f"tiles/L{layer:03d}/k{kernel:04d}_{what}.jpg"


def _exemplar_tiles(run: _Run, stats: ShardStats) -> None:
    """Each kernel's exemplar crops side by side in one strip; images read once each; strips already there kept."""
    wanted: dict[str, list[tuple[int, tuple[int, int, int, int]]]] = {}
    for la in run.layers:
        top, rf = stats.layers[la.index].top, run.fields[la.index]
        for k in range(la.channels):
            found = top.sites(k)
            name = tile_name(la.index, k, "x")
            if found and not (run.journal.out / name).exists():
                wanted[name] = [(img, rf.box(row, col)) for img, row, col, _ in found]
    by_image: dict[int, list[tuple[str, int, tuple[int, int, int, int]]]] = {}
    for name, boxes in wanted.items():
        for j, (img, box) in enumerate(boxes):
            by_image.setdefault(img, []).append((name, j, box))
    crops: dict[str, list] = {name: [None] * len(boxes) for name, boxes in wanted.items()}
    pp, grey = run.work.preprocess, np.full((THUMB, THUMB, 3), 64, np.uint8)
    for img, uses in sorted(by_image.items()):
        try:
            x = model_input(run.work.images[img], pp, run.size, run.model.channels)
            photo = from_model_input(x, pp)
        except KernelvizError:
            photo = None  # read during the statistics pass, unreadable now: a grey square
        cut: dict[tuple[int, int, int, int], np.ndarray] = {}  # deep layers: many kernels, one box (the image)
        for name, j, box in uses:
            if photo is None:
                crops[name][j] = grey
            else:
                crops[name][j] = cut[box] if box in cut else cut.setdefault(box, crop(photo, box, THUMB))
        for name in {name for name, _, _ in uses}:
            if all(c is not None for c in crops[name]):  # complete: write it and let the crops go
                _write(run.journal.out / name, jpeg(strip(crops.pop(name))))


def _write(path: Path, data: bytes) -> None:
    """Write a picture under a temporary name, then rename: never half a file under the final name.

    (Not ``atomic_file``: its unique temporary names and fsync cost more than the picture for 10^5 small files,
    and a picture lost in a crash is redrawn by ``--resume``.)
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _explanations(run: _Run, stats: ShardStats) -> dict[tuple[int, int], list[dict]]:
    """Explain each live kernel at its top ``explain`` sites; returns per (layer, kernel) the saved records."""
    out: dict[tuple[int, int], list[dict]] = {}
    if not run.settings.explain:
        return out
    todo: list[tuple[int, list[Site]]] = []
    for la in run.layers:
        top = stats.layers[la.index].top
        for k in range(la.channels):
            sites = [Site(la.index, k, i, r, c, v) for i, r, c, v in top.sites(k)[: run.settings.explain]]
            if not sites:
                continue  # dead: nothing to explain
            saved = run.journal.explained(la.index, k)
            if saved is not None:
                out[(la.index, k)] = saved
            else:
                todo.append((la.index, sites))
    total = len(out) + len(todo)
    run.progress("explanations", len(out), total)
    if not todo:
        return out
    gpu = getattr(run.engine, "gpus", 0) or run.model.devices.torch.type == "cuda"
    # a chunk is one optimized batch on a CPU; on a GPU the worker splits it to what fits its memory
    rows = run.work.config.batch_size or (256 if gpu else 16)
    chunks: list[Chunk] = []
    for layer, sites in todo:  # kernel-aligned chunks of one layer, about ``rows`` sites each
        if chunks and chunks[-1].layer == layer and len(chunks[-1].sites) + len(sites) <= rows:
            chunks[-1] = Chunk(layer, chunks[-1].sites + tuple(sites))
        else:
            chunks.append(Chunk(layer, tuple(sites)))

    def finished(chunk: Chunk, results: list[SiteExplanation]) -> None:
        by_kernel: dict[int, list[SiteExplanation]] = {}
        for r in results:
            by_kernel.setdefault(r.site.kernel, []).append(r)
        for k, rs in by_kernel.items():
            rs.sort(key=lambda r: -r.site.value)
            records = [_record(run, e, j) for j, e in enumerate(rs)]
            run.journal.save_kernel(chunk.layer, k, records)  # after its pictures: a saved kernel is complete
            out[(chunk.layer, k)] = records
        run.progress("explanations", len(by_kernel), total)

    run.engine.explanations(run.work, run.fields, chunks, finished)
    return out


def _record(run: _Run, e: SiteExplanation, j: int) -> dict:
    s = e.site
    name = None
    if e.picture is not None:
        name = tile_name(s.layer, s.kernel, f"e{j}")
        _write(run.journal.out / name, e.picture)
    return {"image": run.work.images[s.image], "row": s.row, "col": s.col, "value": s.value,
            "status": e.status, "reason": e.reason, **e.metrics, "steps": e.steps, "seconds": e.seconds,
            "rf_box": list(e.rf_box), "strip": name, "focus": None if e.focus is None else e.focus.to_json()}
