"""``kernelviz diff``: what changed between two versions of a model, kernel by kernel (CONTRACT.md).

One pass over the images in batches: both models run on onnxruntime with the chosen layers exposed, and each layer's
:class:`~onnx_kernelviz.diff.stats.LayerPairStats` takes the batch. Then the kernels that changed most are shown:
their activation maps in A and B side by side on the image where A's kernel fires most, and whether A's explanation
of the kernel (x′_A, optimized on A) still isolates it in B, measured on B with onnxruntime.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnx_kernelviz import __version__
from onnx_kernelviz.diff.examples import Pairs
from onnx_kernelviz.diff.match import match_layers, parse_layers
from onnx_kernelviz.diff.stats import TOP_SITES, LayerPairStats
from onnx_kernelviz.errors import ModelError, UsageError
from onnx_kernelviz.frontend.layers import require_kernel_counts
from onnx_kernelviz.io.decode import median_aspect, read_image
from onnx_kernelviz.io.images import list_images
from onnx_kernelviz.io.modelinput import mean_colour, to_model_input
from onnx_kernelviz.io.outdir import OutDir
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.model import Model
from onnx_kernelviz.report.pictures import write_json

ProgressFn = Callable[[int, int], None]  # (images done, images in all)


@dataclass(frozen=True)
class DiffConfig:
    """Settings of one diff (recorded in diff.json ``settings``).

    ``layers``: ``all`` or indices/ranges (``3,7,10-12``); ``batch_size``: images per onnxruntime run; ``top``:
    exemplar sites per kernel; ``explain``: how many of the most changed kernels get A's explanation measured on B
    (0: none), with ``steps`` optimizer steps each.
    """

    layers: str = "all"
    batch_size: int = 8
    top: int = TOP_SITES
    explain: int = 6
    steps: int = 200
    seed: int = 0


@dataclass
class DiffRun:
    out_dir: Path
    doc: dict[str, Any]

    @property
    def diff_path(self) -> Path:
        return self.out_dir / "diff.json"


def diff_models(model_a: Model, model_b: Model, images: Sequence[str | Path], out_dir: str | Path, *,
                preprocess: Preprocess, config: DiffConfig = DiffConfig(), force: bool = False,
                progress: ProgressFn | None = None) -> DiffRun:
    """Compare the matched conv layers of ``model_a`` and ``model_b`` over ``images``; write diff.json, pictures
    and diff.html into ``out_dir``.

    Raises:
        ModelError: the models' layers or inputs do not match.
        UsageError: bad ``--layers``, no images, or a non-empty ``out_dir`` without ``force``.
    """
    # --steps too (docs/RELIABILITY.md): 0 used to skip the explanations --explain asked for, without a word
    for option, value, least in (("--batch-size", config.batch_size, 1), ("--top", config.top, 1),
                                 ("--explain", config.explain, 0), ("--steps", config.steps, 1)):
        if value < least:
            raise UsageError(f"{option} must be at least {least} (got {value})")
    pairs = match_layers(model_a.layers, model_b.layers, str(model_a.path), str(model_b.path))
    chosen = parse_layers(config.layers, len(pairs))
    # before LayerPairStats allocates per-kernel statistics (a kernel count of 0 is unknown, never trusted from
    # a declared shape)
    require_kernel_counts([pairs[i][0] for i in chosen], str(model_a.path))
    require_kernel_counts([pairs[i][1] for i in chosen], str(model_b.path))
    paths = list_images([Path(p) for p in images])
    size = _common_size(model_a, model_b, preprocess,
                        median_aspect(paths) if model_a.aspect_matters(preprocess.size) else None)
    with OutDir(out_dir, force=force, resume=False, resumable=False) as od:
        out = od.path
        t0 = time.perf_counter()
        stats = _stream(model_a, model_b, pairs, chosen, paths, size, preprocess, config, progress)
        od.commit()  # the statistics are in: from here on, what is written stays
        doc = _finish(model_a, model_b, pairs, chosen, stats, paths, size, preprocess, config, out)
        doc["seconds"] = time.perf_counter() - t0
        write_json(out / "diff.json", doc)
        from onnx_kernelviz.diff.html import write_diff_report

        write_diff_report(out)
    return DiffRun(Path(out_dir), doc)


#: a kernel carries signal when its energy in A is at least this share of its layer's median (the stronger half)
SIGNAL = 1.0


def _carrying_signal(layers: list[dict[str, Any]]) -> set[tuple[int, int]]:
    """(layer, kernel) pairs whose activation energy in A is at least :data:`SIGNAL` × the layer's median in A.

    A kernel that barely fires in A and not at all in B has drift 2 (corr 0, all of its energy gone); quantization
    does that to hundreds of weak kernels, which would crowd out the kernels whose real work changed (with a tenth
    of the median as the floor, the first examples on the default model's int8 build had a share of 6e-6 of their
    layer on their own best image). And a kernel silent in A has no explanation on A to test in B.
    ``most_changed`` keeps every kernel; the page shows these first and counts the kernels that fire in one model
    only apart.
    """
    keep = set()
    for la in layers:
        energy = [k["energy_a"] for k in la["kernels"]]
        floor = SIGNAL * float(np.median(energy)) if energy else 0.0
        keep |= {(la["index"], k["kernel"]) for k, e in zip(la["kernels"], energy) if e > 0 and e >= floor}
    return keep


def _silent(layers: list[dict[str, Any]], fires: str, silent: str) -> list[list[float]]:
    """[layer, kernel, energy] of kernels that fire in one model (``fires``) and never in the other."""
    return [[la["index"], k["kernel"], k[fires]] for la in layers for k in la["kernels"]
            if k[fires] > 0 and k[silent] == 0]


def _finish(model_a: Model, model_b: Model, pairs: Pairs, chosen: list[int], stats: dict[int, LayerPairStats],
            paths: list[Path], size: tuple[int, int], preprocess: Preprocess, config: DiffConfig,
            out: Path) -> dict[str, Any]:
    """diff.json's content: every kernel's statistics, the ranking, and the most changed kernels shown."""
    layers: list[dict[str, Any]] = []
    ranked: list[tuple[int, int, float]] = []
    for i in chosen:
        la, lb = pairs[i]
        fin = stats[i].finish()
        kernels = [{"kernel": k, "corr": float(fin["corr"][k]), "exemplar_overlap": float(fin["exemplar_overlap"][k]),
                    "drift": float(fin["drift"][k]), "energy_a": float(fin["energy_a"][k]),
                    "energy_b": float(fin["energy_b"][k])} for k in range(la.channels)]
        layers.append({"index": la.index, "tensor_a": la.tensor, "tensor_b": lb.tensor, "channels": la.channels,
                       "kernels": kernels})
        ranked += [(la.index, k, float(fin["drift"][k])) for k in range(la.channels)]
    ranked.sort(key=lambda r: (-r[2], r[0], r[1]))
    from onnx_kernelviz.diff.examples import show_most_changed

    strong = _carrying_signal(layers)
    energy_b = {(la["index"], k["kernel"]): k["energy_b"] for la in layers for k in la["kernels"]}
    # shown with pictures: the most changed kernels that still fire in B (one silent in B has an empty map there;
    # those are listed apart, see `silenced`)
    shown = [r for r in ranked if (r[0], r[1]) in strong and energy_b[r[0], r[1]] > 0][:config.explain]
    examples = show_most_changed(model_a, model_b, pairs, stats, shown, paths, size, preprocess, config, out)
    silenced = _silent(layers, "energy_a", "energy_b")
    return {"model_a": str(model_a.path), "model_b": str(model_b.path), "model_a_sha256": model_a.loaded.sha256,
            "model_b_sha256": model_b.loaded.sha256, "images": len(paths), "version": __version__,
            "settings": {**asdict(config), "preprocess": preprocess.to_dict(), "input_size": list(size),
                         "drift": "(1 - corr) + |‖r_B‖ - ‖r_A‖| / (‖r_A‖ + ‖r_B‖)"},
            "layers": layers, "most_changed": [[i, k, d] for i, k, d in ranked], "examples": examples,
            "silenced": silenced, "awakened": _silent(layers, "energy_b", "energy_a"),
            "silenced_with_signal": [r for r in silenced if (r[0], r[1]) in strong]}


def _stream(model_a: Model, model_b: Model, pairs: Pairs, chosen: list[int], paths: list[Path], size: tuple[int, int],
            pp: Preprocess, config: DiffConfig, progress: ProgressFn | None) -> dict[int, LayerPairStats]:
    """One pass over the images, ``config.batch_size`` at a time; returns each layer's statistics."""
    tensors_a = tuple(pairs[i][0].tensor for i in chosen)
    tensors_b = tuple(pairs[i][1].tensor for i in chosen)
    stats = {i: LayerPairStats(pairs[i][0].channels, config.top) for i in chosen}
    if progress:
        progress(0, len(paths))
    for start in range(0, len(paths), config.batch_size):
        # each picture is fitted to the input as it is read (io/decode.py), as explain reads it
        loaded = [read_image(p, size=size, fit=pp.fit, fill=mean_colour(pp))
                  for p in paths[start:start + config.batch_size]]
        x = np.stack([to_model_input(im, pp, size, model_a.channels) for im in loaded])
        out_a = model_a.run_ort_each(x, tensors_a)
        out_b = model_b.run_ort_each(x, tensors_b)
        for i, ta, tb in zip(chosen, out_a, out_b):
            if ta.shape != tb.shape:
                raise ModelError(f"layer {i} gives activations of shape {list(ta.shape[1:])} in {model_a.path} and "
                                 f"{list(tb.shape[1:])} in {model_b.path}; kernelviz diff compares two versions of "
                                 "one model")
            stats[i].update(ta, tb, start)
        if progress:
            progress(min(start + config.batch_size, len(paths)), len(paths))
    return stats


def _common_size(model_a: Model, model_b: Model, pp: Preprocess, aspect: float | None) -> tuple[int, int]:
    if model_a.channels != model_b.channels:
        raise ModelError(f"{model_a.path} takes {model_a.channels} input channels and {model_b.path} "
                         f"{model_b.channels}; kernelviz diff compares two versions of one model")
    size_a, size_b = model_a.input_size(pp.size, aspect), model_b.input_size(pp.size, aspect)
    if size_a != size_b:
        raise ModelError(f"{model_a.path} takes {size_a[0]}x{size_a[1]} inputs and {model_b.path} "
                         f"{size_b[0]}x{size_b[1]}; give --size HxW if both accept it")
    return size_a
