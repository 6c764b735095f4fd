"""The method end to end: images -> optimized x' per (image, kernel) -> onnxruntime metrics -> files.

``explain`` is the one short function that chains the steps, each a function others call too (``compare``, the
atlas, ``scripts/bench_explain.py``):

    prepare (prepare.py: inputs, references, onnxruntime activations, once per image set and layer)
    -> optimize_batch / measure_batch / baselines_batch (batch.py) -> write_batch (files.py)
    -> the results journal (journal.py: saving, resuming) -> report.html

:func:`explain_items` runs the steps after ``prepare`` for chosen items, in a folder already held (``OutDir``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onnx_kernelviz import __version__
from onnx_kernelviz.errors import ConversionError, UsageError
from onnx_kernelviz.frontend.layers import Layer, conv_weights
from onnx_kernelviz.io.images import list_images
from onnx_kernelviz.io.modelinput import FitPlan
from onnx_kernelviz.io.outdir import OutDir
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.measure.metrics import parity
from onnx_kernelviz.measure.tolerance import ToleranceRule, layer_step, tolerance_rule
from onnx_kernelviz.measure.verify import parity_error
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.method.kernels import select_items
from onnx_kernelviz.method.methods import METHODS
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.batch import baselines_batch, measure_batch, optimize_batch
from onnx_kernelviz.pipeline.files import write_batch
from onnx_kernelviz.pipeline.focus import Site
from onnx_kernelviz.pipeline.journal import RESULTS_NAME, SAVE_EVERY, Journal, input_digest
from onnx_kernelviz.pipeline.prepare import Prepared, input_size_for, prepare
from onnx_kernelviz.results import KernelResult, RunHeader
from onnx_kernelviz.runtime import cuda_free_bytes, fit_batch, halve_on_oom, keep_freed_memory, probe_row_bytes

__all__ = ["ExplainConfig", "ExplainRun", "ProgressFn", "StepProgressFn", "explain", "explain_items", "run_header",
           "check_at", "prepare", "Prepared", "cuda_batch_size", "SAVE_EVERY"]

#: called as explanations finish: (done, total, the finished result or None for the first call)
ProgressFn = Callable[[int, int, KernelResult | None], None]
#: called after every optimizer step: (explanations done, counting the running ones by their share of steps, total)
StepProgressFn = Callable[[float, int], None]


@dataclass
class ExplainRun:
    """What ``explain`` wrote: ``results`` as results.json lists them (earlier ones too, when resumed)."""

    out_dir: Path
    header: RunHeader
    results: list[KernelResult]
    #: how each picture was fitted to the model input (io/modelinput.py)
    fits: list[FitPlan] = field(default_factory=list)

    @property
    def results_path(self) -> Path:
        return self.out_dir / "results.json"

    def results_json(self) -> list[dict[str, Any]]:
        """``results`` as results.json holds them (docs/CONTRACT.md)."""
        return [r.to_json() for r in self.results]


def explain(model: Model, images: Sequence[str | Path], layer: str | int, kernels: str, out_dir: str | Path, *,
            preprocess: Preprocess, config: ExplainConfig = ExplainConfig(), force: bool = False,
            resume: bool = False, progress: ProgressFn | None = None,
            on_step: StepProgressFn | None = None) -> ExplainRun:
    """Explain ``kernels`` of ``layer`` on ``images``; write images, results.json and report.html to ``out_dir``.

    Raises:
        UsageError: bad layer/kernel/setting, a non-empty ``out_dir`` without ``force``/``resume``, or resuming a
            folder made with other settings.
        OutDirBusy: another run holds ``out_dir``.
        ConversionError: the torch copy disagrees with onnxruntime on the original images.
    """
    config.validate()
    la = model.layer(layer)
    outside = [k for pair in config.partners for k in pair if not 0 <= k < la.channels]
    if outside:  # a torch IndexError (or, negative, another kernel counted from the end) mid-run otherwise
        raise UsageError(f"--set partners: layer {la.index} has no kernel {outside[0]}; give kernels 0.."
                         f"{la.channels - 1}")
    paths = list_images([Path(p) for p in images])  # before touching --out: a typo leaves no empty folder
    with OutDir(out_dir, force=force, resume=resume, resume_file=RESULTS_NAME) as od:
        size = input_size_for(model, paths, preprocess)
        journal = Journal.start(od.path, run_header(model, la, config, preprocess, kernels, size), resume=resume)
        prep = prepare(model, paths, la, preprocess, config)
        check_at(config.at, prep)
        items = select_items(kernels, prep.energy, config.top_images)
        return explain_items(model, prep, items, od, journal, config, preprocess, progress=progress,
                             on_step=on_step)


def run_header(model: Model, layer: Layer, config: ExplainConfig, pp: Preprocess, kernels: str,
               size: tuple[int, int] | None = None) -> RunHeader:
    """results.json's header: the settings as used (the method's own loop values and the tolerance rule filled in).
    ``size``: the input size fed (default: the model's, for no particular images)."""
    rule = tolerance_rule(model, config.tolerance)
    settings = {**asdict(METHODS.get(config.method).resolve(config)), "tolerance": rule.value,
                "precision": rule.precision, "tolerance_unit": rule.unit, "kernels": kernels,
                "preprocess": pp.to_dict(), "input_size": list(size or model.input_size(pp.size))}
    return RunHeader(model=str(model.path), model_sha256=model.loaded.sha256, layer=layer.name, tensor=layer.tensor,
                     layer_index=layer.index, method=config.method, device=str(model.devices.torch),
                     ort_providers=tuple(model.ort((layer.tensor,)).providers), version=__version__,
                     settings=settings, cwd=working_folder())


def working_folder() -> str | None:
    """The absolute working folder (results.json's relative image paths are relative to it); None when it was
    removed under the running process."""
    try:
        return os.getcwd()
    except OSError:
        return None


def explain_items(model: Model, prep: Prepared, items: list[tuple[int, int]], out: OutDir, journal: Journal,
                  config: ExplainConfig, pp: Preprocess, *, progress: ProgressFn | None = None,
                  on_step: StepProgressFn | None = None, report: bool = True,
                  sites: Mapping[tuple[int, int], Site] | None = None) -> ExplainRun:
    """Explain the (image index, kernel) ``items`` of ``prep`` into ``out``, skipping what ``journal`` has finished.
    In focus scope each item is explained at its kernel's peak (or ``config.at``), or where ``sites`` says
    (compare: the pair's shared focus; the atlas: its exemplar sites).

    Kernels silent on an image are ``inactive`` and kernels whose own activation is NaN/Inf ``failed`` (the other
    kernels of that image are still explained); the rest are optimized in batches, measured, written and saved.
    """
    # [C, h, w]: the report's sentences say "row r, col c of the h×w map" and "the other C-1"
    journal.header = replace(journal.header, activation_shape=tuple(int(d) for d in prep.t_ort.shape[1:]))
    journal.ask(((prep.image(i), k) for i, k in items),
                {prep.image(i): input_digest(prep.x[i]) for i in sorted({i for i, _ in items})})
    todo = []
    for i, k in items:
        key = (prep.image(i), k)
        if journal.finished(key):
            continue
        if not prep.finite[i, k]:
            journal.add(KernelResult(key[0], k, "failed", reason=_nonfinite_reason(model, prep.layer, k),
                                     image_notes=prep.notes[i]))
        elif prep.energy[i, k] <= 0:
            journal.add(KernelResult(key[0], k, "inactive", reason="the kernel does not fire on this image "
                                     "(‖r_k(x)‖ = 0)", image_notes=prep.notes[i]))
        elif config.scope == "focus" and sites is None and config.at is not None and prep.t_ort[i, k][config.at] <= 0:
            (row, col), (h, w) = config.at, prep.t_ort.shape[-2:]
            journal.add(KernelResult(key[0], k, "inactive", reason=f"the kernel does not fire at row {row}, col "
                                     f"{col} of the {h}×{w} map (r_k = 0 there); it fires elsewhere on this image: "
                                     "leave out --at to explain it at its peak", image_notes=prep.notes[i]))
        else:
            todo.append((i, k))
    if todo:
        keep_freed_memory()
        _check_parity(model, prep, tolerance_rule(model, config.tolerance))
    out.commit()  # the start succeeded: from here on, what is written stays
    journal.save()
    total, done = len(items), len(items) - len(todo)
    if progress:
        progress(done, total, None)
    try:
        for chunk in _chunks(todo, _batch_size(model, prep, config, len(todo))):
            def step(in_batch: float, rows: int, base: int = done) -> None:
                if on_step:
                    on_step(base + in_batch, total)

            where = None if sites is None else [sites[item] for item in chunk]
            for result in _explain_bounded(model, prep, chunk, config, pp, out.path, step, where):
                journal.add(result)
                done += 1
                if progress:
                    progress(done, total, result)
            journal.save(every=SAVE_EVERY)
    finally:
        journal.save()
    if report:
        from onnx_kernelviz.report.html import write_report
        write_report(out.path)
    return ExplainRun(out.path, journal.header, journal.results, prep.fits)


def check_at(at: tuple[int, int] | None, prep: Prepared) -> None:
    """``--at ROW,COL`` must be a cell of the layer's activation map.

    Raises:
        UsageError: naming the map's size and the valid rows and cols.
    """
    if at is None:
        return
    h, w = prep.t_ort.shape[-2:]
    if not (0 <= at[0] < h and 0 <= at[1] < w):
        raise UsageError(f"--at {at[0]},{at[1]} is outside the {h}×{w} activation map of layer {prep.layer.index} "
                         f"({prep.layer.tensor}): give a row in 0..{h - 1} and a col in 0..{w - 1}")


def _nonfinite_reason(model: Model, layer: Layer, k: int) -> str:
    """Why kernel k's activation is NaN/Inf before any change: its own weights when they hold NaN/Inf, else
    (most often) preprocessing that feeds the model values it was not made for."""
    w, b = conv_weights(model.graph, layer)
    if any(t is not None and k < len(t) and not np.isfinite(t[k]).all() for t in (w, b)):
        return (f"kernel {k}'s weights in conv layer {layer.index} ({layer.name}) hold NaN/Inf, so its activation "
                "is NaN/Inf on every image; the model file is damaged: re-export it from weights without NaN/Inf")
    return (f"the model's activation {layer.tensor} is NaN/Inf on this image before any change; check the "
            "preprocessing (--preset/--mean/--std/--scale)")


def _check_parity(model: Model, prep: Prepared, rule: ToleranceRule) -> None:
    """The torch copy must agree with onnxruntime on the original images, by the model's rule."""
    tensor = prep.layer.tensor
    t_torch = model.run_torch(prep.x[:4], (tensor,))[0]
    p_abs, rel = parity(t_torch, prep.t_ort[:4])
    ok, steps = rule.judge(p_abs, rel, layer_step(prep.layer, prep.t_ort[:4]))
    if not ok:
        raise ConversionError(parity_error(f"{tensor} on these images", rule, rel, steps))


def _batch_size(model: Model, prep: Prepared, config: ExplainConfig, n: int) -> int:
    """Rows per batch: ``config.batch_size``, else 16 on CPU and, on CUDA, as many as fit the free GPU memory."""
    if config.batch_size is not None:
        return config.batch_size
    if model.devices.torch.type != "cuda":
        # beyond ~16 rows a CPU step's time grows linearly (the cores are busy), and memory stays small
        return max(1, min(n, 16))
    return cuda_batch_size(model, prep.layer.tensor, prep.x[:1], n)[0]


def cuda_batch_size(model: Model, tensor: str, x1: np.ndarray, n: int) -> tuple[int, int, int]:
    """(rows per batch, bytes a row needs, bytes free) on the model's CUDA device, for ``n`` explanations of
    ``tensor`` on inputs like ``x1`` ``[1, C, H, W]``: as many rows as fit half the free memory (``fit_batch``)."""
    forward = model.layer_forward(tensor)
    per_row = probe_row_bytes(forward, torch.from_numpy(x1).to(model.devices.torch))
    free = cuda_free_bytes(model.devices.torch)
    return fit_batch(n, free, per_row), per_row, free


def _explain_bounded(model: Model, prep: Prepared, chunk: list[tuple[int, int]], config: ExplainConfig,
                     pp: Preprocess, out: Path, on_step: Callable[[float, int], None],
                     sites: list[Site] | None = None) -> list[KernelResult]:
    """Optimize, measure and write one batch, halving it when the GPU runs out of memory instead of failing."""
    def run(lo: int, hi: int) -> list[KernelResult]:
        part = chunk[lo:hi]
        opt = optimize_batch(model, prep, part, config, pp, sites=None if sites is None else sites[lo:hi],
                             on_step=on_step)
        measured = measure_batch(model, prep, opt, config)
        baselines = baselines_batch(model, prep, opt, config, pp)
        return write_batch(out, prep, opt, measured, baselines, pp)

    return halve_on_oom(run, len(chunk))


def _chunks(seq: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]
