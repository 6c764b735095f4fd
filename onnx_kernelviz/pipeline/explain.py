"""The method end to end: images -> optimized x' per (image, kernel) -> onnxruntime metrics -> files.

``explain`` is the one short function that chains the stages; everything it computes once per image and
layer (inputs, reference images, original activations on both runtimes, the truncated torch module) is reused
across kernels, and explanations are optimized in batches.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from onnx_kernelviz import __version__
from onnx_kernelviz.report.pictures import write_json
from onnx_kernelviz.errors import ConversionError, KernelvizError, UsageError
from onnx_kernelviz.pipeline.files import write_baselines, write_explanation
from onnx_kernelviz.io.decode import read_image
from onnx_kernelviz.io.images import list_images
from onnx_kernelviz.io.modelinput import FitPlan, from_model_input, mean_colour, plan_fit, to_model_input
from onnx_kernelviz.method.kernels import select_items
from onnx_kernelviz.measure.metrics import kernel_energy, kernel_metrics, parity
from onnx_kernelviz.model import Model
from onnx_kernelviz.method.objectives import (ImageL1, MaskArea, MaskTV, Objective, PaperPreserve, PaperSuppress, Preserve, Suppress,
                         SuppressPartner)
from onnx_kernelviz.method.optimize import OptimizeConfig, optimize
from onnx_kernelviz.io.outdir import prepare_out_dir
from onnx_kernelviz.method.perturb import PARAMETERIZATIONS
from onnx_kernelviz.io.preprocess import Preprocess, valid_range
from onnx_kernelviz.method.references import REFERENCES
from onnx_kernelviz.runtime import cuda_free_bytes, fit_batch, keep_freed_memory, probe_row_bytes
from onnx_kernelviz.measure.verify import DEFAULT_TOLERANCE


@dataclass(frozen=True)
class ExplainConfig:
    """Settings of one ``explain`` run (recorded in results.json ``settings``).

    Mask-method loss = ``preserve``·max(0, e_k − ``preserve_margin``) + ``suppress``·others_kept
    + ``area``·max(0, mean(m) − ``area_target``) + ``tv``·TV(m); the mask is a coarse-to-fine pyramid of
    ``levels`` logit grids up to ``resolution``, smoothed by a Gaussian of ``smooth``·side; it is built, and its
    area and TV computed, at that finest grid, then upsampled once to the input size for the blend. Defaults
    chosen by measurement (docs/TRADEOFF.md, scripts/tune_defaults.py). ``mask`` names the mask
    parameterization of the mask method: ``mask`` (one region mask) or a component mask (``bands``, ``bands4``,
    ``lumchroma``, ``bands_lc``: one region mask per Laplacian band or luminance/colour component, same loss;
    measured in docs/TRADEOFF.md).
    The pixel method uses the paper's α = β = γ = 1 and SGD (lr 0.1, momentum 0.9).
    """

    method: str = "mask"
    mask: str = "bands"
    steps: int = 200
    early_stop: bool = True
    batch_size: int | None = None
    seed: int = 0
    reference: str = "mean"
    resolution: int = 56
    levels: int = 3
    fine_lr: float = 1.0
    smooth: float = 0.015
    init: float = 1.0
    preserve: float = 5.0
    preserve_margin: float = 0.12
    suppress: float = 6.0
    area: float = 0.3
    area_target: float = 0.0
    tv: float = 0.5
    lr: float | None = None
    min_steps: int = 20
    patience: int = 10
    tol: float = 2e-3
    baselines: tuple[str, ...] = ()
    #: (kernel, partner) pairs: the partner is singled out for suppression, weighted ``contrast``
    #: (``compare`` explains a against b and b against a; SuppressPartner in objectives.py)
    partners: tuple[tuple[int, int], ...] = ()
    contrast: float = 0.0
    top_images: int | None = None
    tolerance: float = DEFAULT_TOLERANCE

    @property
    def parameterization(self) -> str:
        """The registered parameterization that builds x' (``pixel``, or the mask method's ``mask`` setting)."""
        return "pixel" if self.method == "pixel" else self.mask

    def optimize_config(self) -> OptimizeConfig:
        if self.method == "pixel":
            return OptimizeConfig(steps=self.steps, lr=self.lr or 0.1, optimizer="sgd", momentum=0.9,
                                  early_stop=self.early_stop)
        return OptimizeConfig(steps=self.steps, lr=self.lr or 0.2, optimizer="adam", early_stop=self.early_stop,
                              min_steps=self.min_steps, patience=self.patience, tol=self.tol,
                              param_options=(("resolution", self.resolution), ("levels", self.levels),
                                             ("fine_lr", self.fine_lr), ("smooth", self.smooth),
                                             ("init", self.init)))

    def objective(self) -> Objective:
        if self.method == "pixel":
            terms = [(1.0, PaperPreserve()), (1.0, PaperSuppress()), (1.0, ImageL1())]
        else:
            terms = [(self.preserve, Preserve(self.preserve_margin)), (self.suppress, Suppress()),
                     (self.area, MaskArea(self.area_target)), (self.tv, MaskTV())]
        if self.contrast and self.partners:
            terms.append((self.contrast, SuppressPartner()))
        return Objective(terms)


@dataclass
class Prepared:
    """Everything computed once per (image set, layer): inputs ``x [N, C, H, W]``, references ``b``, onnxruntime
    activations ``t_ort [N, C', h, w]`` and their per-kernel energy ``[N, C']``."""

    paths: list[Path]
    photos: list[np.ndarray]
    notes: list[tuple[str, ...]]
    x: np.ndarray
    b: np.ndarray
    t_ort: np.ndarray
    energy: np.ndarray
    fits: list[FitPlan] = field(default_factory=list)  # how each picture was fitted to the input


@dataclass
class ExplainRun:
    out_dir: Path
    results: list[dict] = field(default_factory=list)
    fits: list[FitPlan] = field(default_factory=list)

    @property
    def results_path(self) -> Path:
        return self.out_dir / "results.json"


ProgressFn = Callable[[int, int, dict | None], None]  # (done, total, finished result or None)


def explain(model: Model, images: Sequence[str | Path], layer: str | int, kernels: str, out_dir: str | Path, *,
            preprocess: Preprocess, config: ExplainConfig = ExplainConfig(), force: bool = False,
            resume: bool = False, progress: ProgressFn | None = None) -> ExplainRun:
    """Explain ``kernels`` of ``layer`` on ``images``; write images, results.json and report.html to ``out_dir``.

    Raises:
        UsageError: bad layer/kernel/option, or a non-empty ``out_dir`` without ``force``/``resume``.
        ConversionError: the torch copy disagrees with onnxruntime on the original images.
    """
    if config.method not in ("mask", "pixel"):
        raise UsageError(f"unknown method {config.method!r}; use mask or pixel")
    PARAMETERIZATIONS.get(config.parameterization)
    REFERENCES.get(config.reference)
    if config.steps < 1:
        raise UsageError("--steps must be at least 1")
    la = model.layer(layer)
    out = Path(out_dir)
    paths = list_images([Path(p) for p in images])  # before creating --out: a typo leaves no empty folder
    created = not out.exists()
    previous = prepare_out_dir(out, force=force, resume=resume)
    try:
        prep = prepare(model, paths, la.tensor, preprocess, config)
        items = select_items(kernels, prep.energy, config.top_images)
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        raise
    run = ExplainRun(out, fits=prep.fits)
    # activation_shape [C, h, w]: the report's sentences say "row r, col c of the h×w map" and "the other C-1"
    header = {"model": str(model.path), "model_sha256": model.loaded.sha256, "layer": la.name, "tensor": la.tensor,
              "layer_index": la.index, "activation_shape": list(prep.t_ort.shape[1:]),
              "method": config.method, "device": str(model.devices.torch),
              "ort_providers": list(model.ort((la.tensor,)).providers), "version": __version__,
              "settings": {**asdict(config), "kernels": kernels, "preprocess": preprocess.to_dict(),
                           "input_size": list(prep.x.shape[-2:])}}
    done = {(r["image"], r["kernel"]): r for r in previous.get("results", [])
            if r.get("status") in ("ok", "inactive")} if resume else {}
    if resume and previous:
        if previous.get("model_sha256") != model.loaded.sha256:
            raise UsageError(f"{out} holds results of another model; use a new --out or --force")
        # finished results are keyed by (image, kernel): reusing them for another layer or method would be wrong
        if (previous.get("tensor"), previous.get("method")) != (la.tensor, config.method):
            raise UsageError(f"{out} holds results for layer {previous.get('tensor')!r} with method "
                             f"{previous.get('method')!r}; resume with the same --layer and --method, or use a "
                             "new --out or --force")
    todo = []
    finite = [bool(np.isfinite(t).all()) for t in prep.t_ort]
    for i, k in items:
        key = (str(prep.paths[i]), k)
        if key in done:
            run.results.append(done[key])
        elif not finite[i]:
            run.results.append(_unmeasured(key[0], k, "failed", prep.notes[i],
                                           f"the model's activation {la.tensor} is NaN/Inf on this image before any "
                                           "change; check the preprocessing (--preset/--mean/--std/--scale)"))
        elif prep.energy[i, k] <= 0:
            run.results.append(_unmeasured(key[0], k, "inactive", prep.notes[i],
                                           "the kernel does not fire on this image (‖r_k(x)‖ = 0)"))
        else:
            todo.append((i, k))

    order = {(str(prep.paths[i]), k): n for n, (i, k) in enumerate(items)}

    last_save = [0.0]

    def save(every: float = 0.0) -> None:
        # Rewriting results.json costs time linear in its length: after each result, a layer of 1280 kernels spent
        # longer serializing JSON than optimizing. Save after a batch at most every SAVE_EVERY seconds, and always
        # at the end (also on errors and Ctrl-C), so --resume loses at most that much work.
        if time.monotonic() - last_save[0] < every:
            return
        # in the order asked for (image, then kernel), however the work was batched or resumed
        run.results.sort(key=lambda r: order.get((r["image"], r["kernel"]), len(order)))
        write_json(out / "results.json", {**header, "results": run.results})
        last_save[0] = time.monotonic()

    save()
    total = len(items)
    if progress:
        progress(len(run.results), total, None)
    if todo:
        keep_freed_memory()
        _check_parity(model, la.tensor, prep, config.tolerance)
        try:
            for chunk in _chunks(todo, _batch_size(model, la.tensor, prep, config, len(todo))):
                for result in _explain_bounded(model, la.tensor, prep, chunk, config, preprocess, out):
                    run.results.append(result)
                    if progress:
                        progress(len(run.results), total, result)
                save(every=SAVE_EVERY)
        finally:
            save()
    from onnx_kernelviz.report.html import write_report
    write_report(out)
    return run


#: seconds between saves of results.json while a run goes on (see ``save`` in ``explain``)
SAVE_EVERY = 5.0

_METRIC_KEYS = ("kept", "fidelity", "others_kept", "specificity_before", "specificity_after", "mask_area",
                "parity_max_abs", "parity_rel", "parity_ok")


def _unmeasured(image: str, k: int, status: str, notes: tuple[str, ...], reason: str, steps: int = 0,
                seconds: float = 0.0) -> dict:
    """An inactive or failed result: every contract key present (null where nothing was measured)."""
    return {"image": image, "kernel": k, "status": status, "reason": reason, **dict.fromkeys(_METRIC_KEYS),
            "steps": steps, "seconds": seconds, "image_notes": list(notes), "files": {}}


def prepare(model: Model, paths: list[Path], tensor: str, pp: Preprocess, config: ExplainConfig) -> Prepared:
    """Read and preprocess the images, build their references, and run them once through onnxruntime."""
    size = model.input_size(pp.size)
    # each picture is fitted to the input as it is read, so only input-sized arrays are kept (io/decode.py)
    loaded = [read_image(p, size=size, fit=pp.fit, fill=mean_colour(pp)) for p in paths]
    x = np.stack([to_model_input(im, pp, size, model.channels) for im in loaded])
    photos = [from_model_input(xi, pp) for xi in x]
    lo, hi = (torch.from_numpy(v) for v in valid_range(pp, model.channels))
    gen = torch.Generator().manual_seed(config.seed)
    b = REFERENCES.get(config.reference)(torch.from_numpy(x), lo, hi, gen).numpy()
    t = model.run_ort(x, (tensor,))[0]
    notes = [im.notes for im in loaded]
    return Prepared(paths, photos, notes, x, b, t, np.stack([kernel_energy(ti) for ti in t]),
                    [plan_fit(im.original_size, size, pp.fit) for im in loaded])


def _check_parity(model: Model, tensor: str, prep: Prepared, tol: float) -> None:
    t_torch = model.run_torch(prep.x[:4], (tensor,))[0]
    _, rel = parity(t_torch, prep.t_ort[:4])
    if rel > tol:
        raise ConversionError(f"the torch copy disagrees with onnxruntime at {tensor} on these images (relative "
                              f"error {rel:.2e} > {tol:.0e}); results would not hold for the deployed model. "
                              "Run `kernelviz verify MODEL IMAGE` to see which layer diverges first")


def _batch_size(model: Model, tensor: str, prep: Prepared, config: ExplainConfig, n: int) -> int:
    """Rows per batch: ``config.batch_size``, else 16 on CPU and, on CUDA, as many as fit the free GPU memory."""
    if config.batch_size is not None:
        if config.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        return config.batch_size
    if model.devices.torch.type != "cuda":
        # beyond ~16 rows a CPU step's time grows linearly (the cores are busy), and memory stays small
        return min(n, 16)
    return cuda_batch_size(model, tensor, prep.x[:1], n)[0]


def cuda_batch_size(model: Model, tensor: str, x1: np.ndarray, n: int) -> tuple[int, int, int]:
    """(rows per batch, bytes a row needs, bytes free) on the model's CUDA device, for ``n`` explanations of
    ``tensor`` on inputs like ``x1`` ``[1, C, H, W]``: as many rows as fit half the free memory (``fit_batch``)."""
    tg = model.torch_graph((tensor,))
    per_row = probe_row_bytes(lambda inp: tg(inp)[0], torch.from_numpy(x1).to(model.devices.torch))
    free = cuda_free_bytes(model.devices.torch)
    return fit_batch(n, free, per_row), per_row, free


def _explain_bounded(model: Model, tensor: str, prep: Prepared, chunk: list[tuple[int, int]],
                     config: ExplainConfig, pp: Preprocess, out: Path) -> list[dict]:
    """``_explain_chunk``, halving the chunk when the GPU runs out of memory instead of failing the run."""
    try:
        return _explain_chunk(model, tensor, prep, chunk, config, pp, out)
    except torch.cuda.OutOfMemoryError:
        if len(chunk) == 1:
            raise KernelvizError("out of GPU memory with a single explanation; use --device cpu or a smaller "
                                 "--size") from None
        torch.cuda.empty_cache()
        half = len(chunk) // 2
        return (_explain_bounded(model, tensor, prep, chunk[:half], config, pp, out)
                + _explain_bounded(model, tensor, prep, chunk[half:], config, pp, out))


def _chunks(seq: list, size: int):
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def _explain_chunk(model: Model, tensor: str, prep: Prepared, chunk: list[tuple[int, int]], config: ExplainConfig,
                   pp: Preprocess, out: Path) -> list[dict]:
    dev = model.devices.torch
    torch.manual_seed(config.seed)
    idx = np.array([i for i, _ in chunk])
    k = torch.tensor([kk for _, kk in chunk], device=dev)
    x = torch.from_numpy(prep.x[idx]).to(dev)
    b = torch.from_numpy(prep.b[idx]).to(dev)
    tg = model.torch_graph((tensor,))
    forward = lambda inp: tg(inp)[0]  # noqa: E731
    with torch.no_grad():
        ref = torch.relu(forward(x))
    param = PARAMETERIZATIONS.get(config.parameterization)(x, b, resolution=config.resolution)
    t0 = time.perf_counter()
    partners = dict(config.partners)
    partner = torch.tensor([partners.get(kk, -1) for _, kk in chunk], device=dev) if partners else None
    res = optimize(forward, param, config.objective(), ref, k, config.optimize_config(), partner=partner)
    seconds = (time.perf_counter() - t0) / len(chunk)
    lo, hi = (torch.from_numpy(v).to(dev).view(1, -1, 1, 1) for v in valid_range(pp, model.channels))
    # The returned x' is what gets saved and measured: within the range a real image can hold.
    x_mod = torch.maximum(torch.minimum(res.x_mod, hi), lo).detach()
    x_np = x_mod.cpu().numpy()
    t_ort = model.run_ort(x_np, (tensor,))[0]
    with torch.no_grad():
        t_torch = forward(x_mod).float().cpu().numpy()
    masks = None if res.mask is None else res.mask[:, 0].detach().cpu().numpy()
    # per-band masks: mask.png is their mean, which reads as blobs; the bands side by side say what is kept where
    grids = None if res.grid is None or res.grid.shape[1] < 2 else res.grid.detach().cpu().numpy()
    names = getattr(PARAMETERIZATIONS.get(config.parameterization), "NAMES", ())
    extra = _baselines(model, tensor, prep, idx, x, b, k, masks, x_mod, forward, config, lo, hi)

    def result(row: int) -> dict:
        i, kk = chunk[row]
        base = {"image": str(prep.paths[i]), "kernel": kk}
        if res.failed[row]:
            return _unmeasured(base["image"], kk, "failed", prep.notes[i], res.failed[row], res.steps[row], seconds)
        m = kernel_metrics(prep.t_ort[i], t_ort[row], kk)
        p_abs, p_rel = parity(t_torch[row], t_ort[row])
        mask = None if masks is None else masks[row]
        files = write_explanation(out, f"{i:03d}_{prep.paths[i].stem}", prep.photos[i], prep.x[i], x_np[row], mask,
                                  prep.t_ort[i], t_ort[row], kk, pp, None if grids is None else (names, grids[row]))
        if extra is not None:
            base["baselines"] = write_baselines(out, files, extra[row], pp)
        return {**base, "status": "ok", **m.to_dict(), "mask_area": None if mask is None else float(mask.mean()),
                "parity_max_abs": p_abs, "parity_rel": p_rel, "parity_ok": bool(p_rel <= config.tolerance),
                "steps": res.steps[row], "seconds": seconds, "loss": float(res.loss[row]),
                "image_notes": list(prep.notes[i]), "files": files}

    # PNG encoding releases the GIL: on a GPU, writing 500 explanations' pictures one at a time took a third of
    # the run. Files are written atomically, so two rows writing the same image's original.png do not clash.
    with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
        return list(pool.map(result, range(len(chunk))))


#: threads writing pictures (PNG encoding runs outside the GIL)
_WRITERS = min(8, os.cpu_count() or 1)


#: the pixel method's "kept area": pixels whose largest channel change is under this fraction of the value range
UNCHANGED_TOL = 0.1


def unchanged_fraction(x_mod: torch.Tensor, x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Per row, the fraction of pixels x' left (nearly) as in x: max over channels of |x' − x| / (hi − lo) under
    ``UNCHANGED_TOL``. The pixel method's counterpart of a mask's area, for baselines at equal area. ``[B]``."""
    change = ((x_mod - x).abs() / (hi - lo).clamp_min(1e-12)).amax(1)
    return (change < UNCHANGED_TOL).float().flatten(1).mean(1).cpu()


def _baselines(model: Model, tensor: str, prep: Prepared, idx: np.ndarray, x: torch.Tensor, b: torch.Tensor,
               k: torch.Tensor, masks: np.ndarray | None, x_mod: torch.Tensor, forward, config: ExplainConfig, lo,
               hi) -> list | None:
    """Baselines at the same area as ours (the mask's, or for the pixel method the unchanged pixels'), measured on
    onnxruntime like ours (METHOD.md)."""
    if not config.baselines:
        return None
    from onnx_kernelviz.baselines import evaluate_baselines
    # the pixel method has no mask: its "kept area" is where x' left the photo (nearly) as it was
    areas = [float(m.mean()) for m in masks] if masks is not None else unchanged_fraction(x_mod, x, lo, hi).tolist()
    return evaluate_baselines(
        list(config.baselines), forward=forward, x=x, b=b, k=k, areas=areas,
        ort_activations=lambda xb: model.run_ort(xb, (tensor,))[0], t_x=prep.t_ort[idx], lo=lo, hi=hi)
