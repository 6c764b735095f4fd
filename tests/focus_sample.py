"""An explain folder with ``focus`` blocks, built the way explain builds one but without the optimizer: a tiny
strided model (32×32 input -> 8×8 map), onnxruntime activations, a synthetic mask around each kernel's peak
inside its receptive field, and the pictures written by ``pipeline.files``. The focus numbers are measured on the
focus cells from the real activations; ``oracle_gain`` is made up (one kernel high, one low), since the bound is
another module's work.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_kernelviz.baselines.base import BaselineOutcome
from onnx_kernelviz.io.images import from_model_input
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.measure.metrics import kernel_metrics
from onnx_kernelviz.method.focus import focus_cells
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.files import write_baselines, write_explanation
from onnx_kernelviz.results import Metrics

SIDE, STRIDE, CHANNELS = 32, 4, 8
PP = Preprocess(size=(SIDE, SIDE), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def strided_model(path: Path) -> Path:
    """x [N,3,32,32] -> Conv 3->6 (3x3, stride 2, pad 1) -> Relu -> Conv 6->8 (same) -> Relu -> y [N,8,8,8].
    A cell (r, c) of y sees input rows 4r-3 .. 4r+3 (7 pixels) and columns alike."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["y"])]
    inits = [numpy_helper.from_array(rng.normal(0, 0.6, (6, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.6, (CHANNELS, 6, 3, 3)).astype(np.float32), "w2")]
    graph = helper.make_graph(nodes, "strided", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                               ["N", 3, SIDE, SIDE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", CHANNELS, 8, 8])],
                              inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    onnx.save(proto, path)
    return path


def rf_box(cells: np.ndarray) -> list[int]:
    """The receptive field of ``cells`` ``[8, 8]`` in the strided model, clipped to the input."""
    rows, cols = np.nonzero(cells)
    return [max(0, int(rows.min()) * STRIDE - 3), max(0, int(cols.min()) * STRIDE - 3),
            min(SIDE, int(rows.max()) * STRIDE + 4), min(SIDE, int(cols.max()) * STRIDE + 4)]


def _photo() -> np.ndarray:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE] / SIDE
    img = np.stack([0.3 + 0.5 * xx, 0.2 + 0.6 * yy, 0.7 - 0.4 * xx], 0)
    img[:, 8:14, 18:26] = [[[0.95]], [[0.9]], [[0.1]]]  # a yellow patch for some kernel to like
    return img.astype(np.float32)


def _focus_metrics(t: np.ndarray, t_mod: np.ndarray, cells: np.ndarray, k: int) -> dict:
    m = kernel_metrics(t[:, cells][..., None], t_mod[:, cells][..., None], k)
    return {"kept": m.kept, "others_kept": m.others_kept, "specificity_before": m.specificity_before,
            "specificity_after": m.specificity_after}


def _blend(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return (mask * x + (1 - mask) * x.mean((1, 2), keepdims=True)).astype(np.float32)


def build(out: Path, *, evil: str = "", baselines: bool = True, focus: bool = True) -> Path:
    """Write ``out/results.json`` and the pictures for the two strongest kernels (the second one "cannot be told
    apart": oracle_gain 1.3 with the kernels that fire with it). ``evil`` goes into every free-text field."""
    out.mkdir(parents=True, exist_ok=True)
    model = Model(strided_model(out.parent / f"{out.name}_net.onnx"), device="cpu")
    x = _photo()
    photo = from_model_input(x, PP)
    t = model.run_ort(x[None], ("y",))[0][0]
    energy = np.sqrt((np.maximum(t, 0) ** 2).reshape(CHANNELS, -1).sum(1))
    results = []
    for rank, k in enumerate(int(v) for v in np.argsort(-energy)[:2]):
        r_k = np.maximum(t[k], 0)
        peak = [int(v) for v in np.unravel_index(int(np.argmax(r_k)), r_k.shape)]
        cells = focus_cells(r_k, (peak[0], peak[1])).cells
        box = rf_box(cells)
        yy, xx = np.mgrid[0:SIDE, 0:SIDE]
        cy, cx = peak[0] * STRIDE + 2, peak[1] * STRIDE + 2
        d2 = (yy - cy) ** 2 + (xx - cx) ** 2
        mask = np.where(d2 <= 16, 1.0, np.where(d2 <= 36, 0.3, 0.0)).astype(np.float32)  # a faint ring around it
        mask[:box[0]], mask[box[2]:], mask[:, :box[1]], mask[:, box[3]:] = 0, 0, 0, 0
        x_mod = _blend(x, mask)
        t_mod = model.run_ort(x_mod[None], ("y",))[0][0]
        block = None
        if focus:
            block = {"peak": peak, "cells": int(cells.sum()), "rf_box": box, **_focus_metrics(t, t_mod, cells, k),
                     "oracle_gain": 6.0 if rank == 0 else 1.3}
            block["separable"] = rank == 0  # as the focus branch records it, with the kernels firing with k
            block["companions"] = [] if rank == 0 else [j for j in map(int, np.argsort(-energy)) if j != k][:3]
        files = write_explanation(out, "000_photo", photo, x, x_mod, mask, t, t_mod, k, PP, focus=block)
        whole = kernel_metrics(t, t_mod, k).to_dict()
        r = {"image": f"photos/photo{evil}.png", "kernel": k, "status": "ok", **whole,
             "mask_area": float(mask.mean()), "parity_max_abs": 1e-7, "parity_rel": 1e-8, "parity_ok": True,
             "steps": 20, "seconds": 0.1, "files": files}
        if block is not None:
            r["focus"] = block
        if baselines:
            square = np.zeros_like(mask)  # a baseline's equal-area mask: a square at the box's corner
            side = max(1, int(round(np.sqrt(mask.sum()))))
            square[box[0]:box[0] + side, box[1]:box[1] + side] = 1
            xb = _blend(x, square)
            tb = model.run_ort(xb[None], ("y",))[0][0]
            metrics = Metrics.of(kernel_metrics(t, tb, k), float(square.mean()))
            name = "corner<b onmouseover='x'>&" if evil else "corner"  # a name that is a path too: no '/'

            written = write_baselines(out, files, {name: BaselineOutcome(metrics, square, xb, square)}, PP,
                                      photo=photo, focus=block)
            r["baselines"] = {n: {**b.to_json(), **({"focus": _focus_metrics(t, tb, cells, k)} if focus else {})}
                              for n, b in written.items()}
        results.append(r)
    doc = {"model": f"models/net{evil}.onnx", "layer": f"conv2{evil}", "tensor": "y", "method": "mask",
           "version": "test", "activation_shape": [CHANNELS, 8, 8],
           "settings": {"scope": "focus" if focus else "map", "note": evil}, "results": results}
    (out / "results.json").write_text(json.dumps(doc))
    return out
