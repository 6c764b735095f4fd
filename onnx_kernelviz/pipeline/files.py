"""Step 4 of an explanation: its files (pictures, x' and its mask as .npy, and each baseline's, named as
docs/CONTRACT.md's ``files``, paths relative to the output folder) and its
:class:`~onnx_kernelviz.results.KernelResult`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from onnx_kernelviz.baselines.base import BaselineOutcome
from onnx_kernelviz.io.images import from_model_input
from onnx_kernelviz.io.outdir import out_dir_error
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.method.focus import focus_cells
from onnx_kernelviz.pipeline.batch import Measured, Optimized
from onnx_kernelviz.pipeline.focus import focus_block
from onnx_kernelviz.pipeline.prepare import Prepared
from onnx_kernelviz.report.charts import activation_map, others_chart, region_energy
from onnx_kernelviz.report.crops import cell_box, crop_pair, photo_with_box
from onnx_kernelviz.report.pictures import components_picture, overlay, write_image, write_npy
from onnx_kernelviz.results import BaselineMetrics, FocusMetrics, KernelResult, Metrics

__all__ = ["write_batch", "write_explanation", "write_baselines"]

#: threads writing pictures (PNG encoding runs outside the GIL)
_WRITERS = min(8, os.cpu_count() or 1)


def write_batch(out: Path, prep: Prepared, opt: Optimized, meas: Measured,
                baselines: list[dict[str, BaselineOutcome]] | None, pp: Preprocess) -> list[KernelResult]:
    """Write each row's files and return its result (failed rows: the reason, no files)."""

    def result(row: int) -> KernelResult:
        i, k = opt.items[row]
        image, notes, steps, seconds = prep.image(i), prep.notes[i], opt.steps[row], opt.seconds[row]
        failure = opt.failed[row]
        if failure:
            return KernelResult(image, k, "failed", reason=failure, steps=steps, seconds=seconds, image_notes=notes)
        mask = None if opt.masks is None else opt.masks[row]
        grid = None if opt.grids is None else opt.grids[row]
        bands = None if grid is None else (opt.component_names, grid)
        focus, cells = None, None
        if opt.sites is not None and meas.focus is not None and (n := meas.focus[row]) is not None:
            site = opt.sites[row]
            focus = focus_block(site, n, None if meas.oracle is None else meas.oracle[row], prep.t_ort[i], k,
                                None if meas.reference is None else meas.reference[row],
                                None if opt.small_box is None else opt.small_box[row])
            cells = site.focus.cells
        block = None if focus is None else focus.to_json()
        files = write_explanation(out, prep.folders[i], prep.photos[i], prep.x[i], opt.x_mod[row], mask,
                                  prep.t_ort[i], meas.t_ort[row], k, pp, bands, focus=block, cells=cells)
        base = None if baselines is None else write_baselines(out, files, baselines[row], pp, prep.photos[i],
                                                              focus=block)
        return KernelResult(image, k, "ok", metrics=meas.metrics[row] or Metrics(), parity=meas.parity[row],
                            steps=steps, seconds=seconds, files=files, image_notes=notes, loss=float(opt.loss[row]),
                            baselines=base, focus=focus)

    # Each image's photo, written anew by every batch (one picture per image, beside the batch's many) rather
    # than kept when it exists: an earlier run in this folder (--force, or the same path holding another image
    # now) left its own photo there, which the report showed beside this run's x'.
    for i in sorted({i for (i, _), failure in zip(opt.items, opt.failed) if not failure}):
        _folder(out / prep.folders[i])
        write_image(out / prep.folders[i] / "original.png", prep.photos[i])
    # PNG encoding releases the GIL: on a GPU, writing 500 explanations' pictures one at a time took a third of
    # the run.
    with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
        return list(pool.map(result, range(len(opt.items))))


def _folder(d: Path) -> Path:
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where the folder goes, a read-only or full disk
        raise out_dir_error(d, e, "create") from None
    return d


def write_explanation(out: Path, stem: str, photo: np.ndarray, x: np.ndarray, x_mod: np.ndarray,
                      mask: np.ndarray | None, t_before: np.ndarray, t_after: np.ndarray, k: int, pp: Preprocess,
                      bands: tuple[tuple[str, ...], np.ndarray] | None = None,
                      focus: Mapping[str, Any] | None = None, cells: np.ndarray | None = None) -> dict[str, str | None]:
    """Pictures of kernel k's explanation on one image, in ``out/stem/kNNNN/``; returns their paths relative to
    ``out``.

    Args:
        photo: the image as the model saw it ``[H, W, 3]`` uint8; x, x_mod: model inputs ``[C, H, W]`` before and
            after; mask: ``[H, W]`` or None (pixel method); t_before, t_after: onnxruntime activations
            ``[C', h, w]``; bands: a component mask's names and grids ``[M, h, w]`` (mask_components.png);
            focus: the result's ``focus`` block (docs/CONTRACT.md, "Local explanations": ``peak``, ``rf_box``), or None
            for a whole-map explanation. With it, the photo with the box and the peak (focus_photo.png), the box
            of the photo with the mask's contour and of x' (focus_crop.png, focus_crop_modified.png), and the
            maps and the others chart on the focus cells.
        cells: the focus cells F ``[h, w]`` bool when the caller has them (compare's shared F); by default F is
            recomputed from ``before`` and the block's ``peak`` (the contract's rule: method.focus.focus_cells).
    """
    d = _folder(out / stem / f"k{k:04d}")
    original = out / stem / "original.png"
    if not original.exists():
        write_image(original, photo)
    before, after = t_before[k], t_after[k]
    vmax = float(max(np.maximum(before, 0).max(), np.maximum(after, 0).max(), 1e-12))
    files: dict[str, Path] = {"original": original, "modified": d / "modified.png",
                              "modified_npy": d / "modified.npy", "act_before": d / "act_before.png",
                              "act_after": d / "act_after.png", "others": d / "others.png"}
    modified = from_model_input(x_mod, pp)
    write_image(files["modified"], modified)
    # x' exactly as measured (model input space, [C, H, W] float32): the PNG is rounded to 8 bits
    write_npy(files["modified_npy"], x_mod.astype(np.float32))
    peak: tuple[int, int] | None = None
    if focus is None:
        cells = None
    else:
        peak = (int(focus["peak"][0]), int(focus["peak"][1]))
        cells = focus_cells(before, peak).cells if cells is None else np.asarray(cells, bool)
        files.update(focus_photo=d / "focus_photo.png", focus_crop=d / "focus_crop.png",
                     focus_crop_modified=d / "focus_crop_modified.png")
        write_image(files["focus_photo"], photo_with_box(photo, focus["rf_box"],
                                                         cell_box(peak, before.shape, photo.shape[:2])))
        left, right = crop_pair(photo, modified, mask, focus["rf_box"])
        write_image(files["focus_crop"], left)
        write_image(files["focus_crop_modified"], right)
    write_image(files["act_before"], activation_map(before, vmax, cells, peak))
    write_image(files["act_after"], activation_map(after, vmax, cells, peak))
    write_image(files["others"], others_chart(region_energy(t_before, cells), region_energy(t_after, cells), k,
                                              "on the focus cells" if cells is not None else "on the map"))
    if mask is not None:
        files["mask"] = d / "mask.png"
        files["mask_npy"] = d / "mask.npy"
        files["overlay"] = d / "overlay.png"
        write_image(files["mask"], (np.clip(mask, 0, 1) * 255).astype(np.uint8))
        write_npy(files["mask_npy"], mask.astype(np.float32))
        write_image(files["overlay"], overlay(photo, mask))
        if bands is not None:
            files["mask_components"] = d / "mask_components.png"
            # a focus mask's grids span its rf_box, not the photo
            write_image(files["mask_components"], components_picture(
                photo, bands[1], bands[0], None if focus is None else focus["rf_box"]))
    else:
        # pixel method: the change |x' - x| is the closest thing to a mask
        diff = np.abs(x_mod - x).mean(0)
        files["overlay"] = d / "overlay.png"
        write_image(files["overlay"], overlay(photo, diff / (diff.max() + 1e-12)))
    rel: dict[str, str | None] = {name: str(p.relative_to(out)) for name, p in files.items()}
    return rel if mask is not None else {**rel, "mask": None}


def write_baselines(out: Path, files: dict[str, str | None], outcomes: dict[str, BaselineOutcome],
                    pp: Preprocess, photo: np.ndarray | None = None,
                    focus: Mapping[str, Any] | None = None) -> dict[str, BaselineMetrics]:
    """Save each baseline's mask and x' next to ours; returns {name: metrics} and adds their files.

    With ``photo`` ``[H, W, 3]`` and the result's ``focus`` block, each baseline's box is cropped as ours is
    (``baseline_crop:NAME`` with its mask's contour, ``baseline_crop_modified:NAME``), so they read side by side.
    """
    metrics: dict[str, BaselineMetrics] = {}
    d = (out / str(files["modified"])).parent
    for name, o in outcomes.items():
        mpath, xpath = d / f"baseline_{name}_mask.png", d / f"baseline_{name}_modified.png"
        npath = d / f"baseline_{name}_modified.npy"
        modified = from_model_input(o.x_mod, pp)
        write_image(mpath, (np.clip(o.mask, 0, 1) * 255).astype(np.uint8))
        write_image(xpath, modified)
        write_npy(npath, o.x_mod.astype(np.float32))  # exact x', so compare can re-measure it without recomputing
        files[f"baseline_mask:{name}"] = str(mpath.relative_to(out))
        files[f"baseline_modified:{name}"] = str(xpath.relative_to(out))
        files[f"baseline_modified_npy:{name}"] = str(npath.relative_to(out))
        if focus is not None and photo is not None:
            left, right = crop_pair(photo, modified, o.mask, focus["rf_box"])
            for key, pic in ((f"baseline_crop:{name}", left), (f"baseline_crop_modified:{name}", right)):
                path = d / f"{key.replace(':', '_')}.png"
                write_image(path, pic)
                files[key] = str(path.relative_to(out))
        on_f = None if o.focus is None else FocusMetrics(o.focus.kept, o.focus.others_kept, o.focus.specificity_after)
        metrics[name] = BaselineMetrics(o.metrics, on_f)
    return metrics
