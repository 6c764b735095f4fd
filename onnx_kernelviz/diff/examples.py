"""The kernels that changed most, shown: both activation maps, and whether A's explanation still isolates the kernel
in B.

For each kernel: the image where A's kernel fires most (B's, if it is silent in A), the photo and the kernel's
rectified activation in A and in B on one colour scale. Then ``explain`` on model A (the method as everywhere: x′_A
optimized on A's torch copy, measured on A with onnxruntime) and the same x′_A fed to B on onnxruntime: kept,
others_kept and specificity in B — on the focus cells F of A's local explanation (``explain``'s default scope; the
same cells in both models), or on the whole map for ``--scope map`` explanations. x′_A **still isolates** the kernel
in B when B keeps at least half of the kernel's activation (kept_B ≥ 0.5), its share of the layer rises in B
(specificity_after_B > specificity_before_B) and reaches at least half of what it reaches in A (specificity_after_B
≥ ½·specificity_after_A). Shares, not gains: a kernel that barely fires in B on the photo would turn a tiny rise
into a huge ratio. When x′_A does not raise the kernel's share in A itself, there is nothing to carry over and the
verdict is null.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnx_kernelviz.diff.stats import LayerPairStats
from onnx_kernelviz.frontend.layers import Layer
from onnx_kernelviz.io.decode import read_image
from onnx_kernelviz.io.images import write_image
from onnx_kernelviz.io.modelinput import from_model_input, mean_colour, to_model_input
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.measure.focus import focus_metrics
from onnx_kernelviz.measure.metrics import kernel_metrics
from onnx_kernelviz.method.focus import focus_cells
from onnx_kernelviz.model import Model
from onnx_kernelviz.report.charts import activation_map

if TYPE_CHECKING:
    from onnx_kernelviz.diff.run import DiffConfig

#: matched layers of A and B, by position (diff/match.py)
Pairs = list[tuple[Layer, Layer]]

#: the rule's constants (module docstring)
SHARE, MIN_KEPT = 0.5, 0.5


def show_most_changed(model_a: Model, model_b: Model, pairs: Pairs, stats: Mapping[int, LayerPairStats],
                      ranked: list[tuple[int, int, float]], paths: list[Path], size: tuple[int, int], pp: Preprocess,
                      config: DiffConfig, out: Path) -> list[dict[str, Any]]:
    """One entry per (layer, kernel, drift) of ``ranked``: pictures under ``out/kernels/``, and A's explanation
    under ``out/explanations/`` measured on B."""
    examples: list[dict[str, Any]] = []
    for layer, k, drift in ranked:
        la, lb = pairs[layer]
        sites = stats[layer].sites(0, k) or stats[layer].sites(1, k)
        if not sites:
            examples.append({"layer": layer, "kernel": k, "drift": drift, "image": None,
                             "reason": "the kernel fires on no image in either model"})
            continue
        image = paths[sites[0][0]]
        loaded = read_image(image, size=size, fit=pp.fit, fill=mean_colour(pp))
        x = to_model_input(loaded, pp, size, model_a.channels)[None]
        t_a = model_a.run_ort_each(x, (la.tensor,))[0][0]
        t_b = model_b.run_ort_each(x, (lb.tensor,))[0][0]
        files = _pictures(out, layer, k, from_model_input(x[0], pp), t_a[k], t_b[k])
        examples.append({"layer": layer, "kernel": k, "drift": drift, "image": str(image), "files": files,
                         "sites_a": stats[layer].sites(0, k)[:5], "sites_b": stats[layer].sites(1, k)[:5]})
    if config.explain:
        _explain_on_a_measure_on_b(model_a, model_b, pairs, examples, pp, config, out)
    return examples


def _pictures(out: Path, layer: int, k: int, photo: np.ndarray, act_a: np.ndarray, act_b: np.ndarray) -> dict:
    d = out / "kernels" / f"layer{layer:03d}_k{k:04d}"
    d.mkdir(parents=True, exist_ok=True)
    vmax = float(max(np.maximum(act_a, 0).max(), np.maximum(act_b, 0).max(), 1e-12))
    files = {"original": d / "original.png", "act_a": d / "act_a.png", "act_b": d / "act_b.png"}
    write_image(files["original"], photo)
    write_image(files["act_a"], activation_map(act_a, vmax))
    write_image(files["act_b"], activation_map(act_b, vmax))
    return {name: str(p.relative_to(out)) for name, p in files.items()}


def _explain_on_a_measure_on_b(model_a: Model, model_b: Model, pairs: Pairs, examples: list[dict[str, Any]],
                               pp: Preprocess, config: DiffConfig, out: Path) -> None:
    """Explain each example's kernel on A (grouped by layer and image), then measure x′_A on B."""
    from onnx_kernelviz.pipeline.explain import ExplainConfig, explain

    groups: dict[tuple[int, str], list[dict]] = {}
    for ex in examples:
        if ex.get("image"):
            groups.setdefault((ex["layer"], ex["image"]), []).append(ex)
    cfg = replace(ExplainConfig(), steps=config.steps, seed=config.seed)
    for n, ((layer, image), group) in enumerate(sorted(groups.items())):
        la, lb = pairs[layer]
        where = out / "explanations" / f"{n:02d}_layer{layer:03d}_{Path(image).stem}"
        kernels = ",".join(str(ex["kernel"]) for ex in group)
        run = explain(model_a, [image], la.index, kernels, where, preprocess=pp, config=cfg, force=True)
        by_kernel = {r["kernel"]: r for r in run.results_json()}
        for ex in group:
            ex["explanation"] = _measure_on_b(model_a, la.tensor, model_b, lb.tensor, by_kernel.get(ex["kernel"]),
                                              where, out, pp)


def _measure_on_b(model_a: Model, tensor_a: str, model_b: Model, tensor: str, result: dict | None, where: Path,
                  out: Path, pp: Preprocess) -> dict:
    """A's metrics of its explanation next to B's on the same x′_A and x (onnxruntime), and the verdict.

    A local explanation (focus scope, ``explain``'s default) is judged where it was made: on its focus cells F,
    found again from A's activation on x at the result's peak, and B measured on those same cells. A whole-map
    explanation (``scope`` map) is judged on the whole map."""
    if result is None or result.get("status") != "ok":
        return {"status": (result or {}).get("status", "failed"), "reason": (result or {}).get("reason", "")}
    x_mod = np.load(where / result["files"]["modified_npy"])[None]
    # x at the size explain fed (a free side follows that image's aspect ratio), as explain prepared it
    size = tuple(json.loads((where / "results.json").read_text(encoding="utf-8"))["settings"]["input_size"])
    photo = read_image(Path(result["image"]), size=size, fit=pp.fit, fill=mean_colour(pp))
    x = to_model_input(photo, pp, size, model_b.channels)[None]
    t = model_b.run_ort_each(np.concatenate([x, x_mod]), (tensor,))[0]
    k = result["kernel"]
    keys = ("kept", "others_kept", "specificity_before", "specificity_after")
    focus = result.get("focus")
    if focus:
        t_a = model_a.run_ort(x, (tensor_a,))[0][0]
        cells = focus_cells(t_a[k], tuple(focus["peak"])).cells
        mb = focus_metrics(t[0], t[1], k, cells).to_dict()
        a = {key: focus[key] for key in keys}
        scope = {"scope": "focus", "peak": list(focus["peak"]), "cells": int(np.count_nonzero(cells))}
    else:
        mb = kernel_metrics(t[0], t[1], k).to_dict()
        a = {key: result[key] for key in keys}
        scope = {"scope": "map"}
    b = {key: mb[key] for key in keys}
    isolates = None
    if a["specificity_after"] > a["specificity_before"]:
        isolates = bool((b["kept"] or 0) >= MIN_KEPT and b["specificity_after"] > b["specificity_before"]
                        and b["specificity_after"] >= SHARE * a["specificity_after"])
    files = {key: str((where / v).relative_to(out)) for key, v in result["files"].items()
             if v and key in ("modified", "overlay")}
    return {"status": "ok", "a": a, "b": b, "isolates_in_b": isolates, "files": files, **scope}
