"""Diagnostic: how much of the bound's change could a mask make?

Per case (the top 2 kernels of each held-out photo at their peak, as scripts/evaluate.py --kernels top2): the
bound's x' (free pixels: Method.bound_objective / bound_loop on optimize_on_focus, as optimize_batch computes it),
projected on the masks' family x' = b + m ⊙ (x − b) with m in [0, 1] per pixel (shared over the channels), and
per pixel and channel. Prints the bound's gain, each projection's gain (all on onnxruntime, on the focus cells),
and the share of the bound's change inside the rf_box (squared) that each projection misses: the part no mask of
that kind can make, because it lies off the segment from x to the reference b.

    python scripts/bound_projection.py ppocr_det 16

It is a probe, not a method (docs/TRADEOFF.md "PP-OCR 16's misses are its large focus areas" says what it found).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import fetch_eval_photos  # noqa: E402
from fetch_eval_models import model_path  # noqa: E402
from focus_sweep import config_of  # noqa: E402

from onnx_kernelviz import Model, resolve_preprocess  # noqa: E402
from onnx_kernelviz.io.images import list_images  # noqa: E402
from onnx_kernelviz.io.preprocess import valid_range  # noqa: E402
from onnx_kernelviz.measure.focus import focus_metrics  # noqa: E402
from onnx_kernelviz.method.methods import Method  # noqa: E402
from onnx_kernelviz.method.perturb import PARAMETERIZATIONS  # noqa: E402
from onnx_kernelviz.pipeline.batch import locate_items  # noqa: E402
from onnx_kernelviz.pipeline.focus import optimize_on_focus  # noqa: E402
from onnx_kernelviz.pipeline.prepare import prepare  # noqa: E402


def projections(xo: torch.Tensor, x: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The x' of the masks closest to ``xo`` (all ``[B, C, H, W]``): one m per pixel (least squares over the
    channels, clipped to [0, 1]), and one per pixel and channel."""
    d, e = xo - b, x - b
    m = ((d * e).sum(1, keepdim=True) / (e * e).sum(1, keepdim=True).clamp_min(1e-12)).clamp(0, 1)
    some = e.abs() > 1e-6  # where x is b, no mask changes anything
    mc = (d / torch.where(some, e, torch.ones_like(e))).clamp(0, 1) * some
    return b + m * e, b + mc * e


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="default, or a name of scripts/fetch_eval_models.py")
    ap.add_argument("layer", type=int)
    ap.add_argument("--top", type=int, default=2)
    args = ap.parse_args()
    path = model_path(args.model)
    model, pp = Model(path, device="cpu"), resolve_preprocess(path)
    photos = list_images([fetch_eval_photos.fetch()])
    cfg = config_of("default")
    prep = prepare(model, photos, model.layer(args.layer), pp, cfg)
    items = [(i, int(k)) for i in range(len(photos)) for k in np.argsort(-prep.energy[i])[:args.top]
             if prep.energy[i, k] > 0]
    sites = locate_items(model, prep, items)
    lo, hi = (torch.from_numpy(v).view(1, -1, 1, 1) for v in valid_range(pp, model.channels))
    free = PARAMETERIZATIONS.get("free")
    torch.manual_seed(cfg.seed)
    idx = np.array([i for i, _ in items])
    x, b = torch.from_numpy(prep.x[idx]), torch.from_numpy(prep.b[idx])
    res = optimize_on_focus(model.layer_forward(prep.layer.tensor), lambda xx, bb, **_: free(xx, lo=lo, hi=hi),
                            Method.bound_objective(cfg), Method.bound_loop(cfg), x, b,
                            torch.tensor([k for _, k in items]), sites, crop=cfg.focus_crop)
    xo = torch.maximum(torch.minimum(res.x_mod, hi), lo).detach()
    per_pixel, per_channel = projections(xo, x, b)
    runs = [model.run_ort(v.numpy(), (prep.layer.tensor,))[0] for v in (xo, per_pixel, per_channel)]
    print("image       kernel  cells | bound gain | per-pixel mask: gain, missed | per-channel mask: gain, missed")
    for r, ((i, k), s) in enumerate(zip(items, sites)):
        t, left, bottom, right = (max(v, 0) for v in s.rf_box)
        change = ((xo[r] - x[r])[:, t:bottom, left:right] ** 2).sum().clamp_min(1e-12)
        missed = [float(((xo[r] - p[r])[:, t:bottom, left:right] ** 2).sum() / change)
                  for p in (per_pixel, per_channel)]
        g = [focus_metrics(prep.t_ort[i], t_run[r], k, s.focus.cells).gain for t_run in runs]
        print(f"{photos[i].name[:11]:11s} {k:6d} {s.focus.count:6d} | x{g[0]:8.2f} | x{g[1]:.2f}, {missed[0]:.2f}"
              f"                | x{g[2]:.2f}, {missed[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
