"""Probe: how small can an *honest* (binary) kept area be at one layer, on the held-out photos?

Per case (top 2 kernels of each photo, at their peak; the same cases as scripts/evaluate.py --kernels top2): a
per-pixel mask inside the rf_box, binary in the forward pass (x' = x where kept, the reference b elsewhere; the
gradient passed straight through), loss 20·max(0, 0.95 − kept_F) + ``--suppress``·others_kept_F + w·area, Adam
lr 0.1, ``--steps`` steps from a fully kept box, for each w of ``--weights``; of the runs whose kept_F (onnxruntime,
original model) is ≥ 0.9, the one with the smallest area. Prints per case the area (share of the rf_box), kept,
others_kept, gain on F, the top-3 share and region count of the mask, and the medians (a case with no run keeping
k counts as area 1). There is no faint content: x' shows exactly the kept area (hidden = 0).

    python scripts/binary_probe.py default:8 --weights 8

It is a probe, not a method (no bound, no smoothing, no coarse stage; docs/TRADEOFF.md "A stage that shrinks only
the large kept areas" says what it found at EfficientNet-Lite0's layer 8).
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

from fetch_eval_models import model_path  # noqa: E402
from focus_sweep import config_of  # noqa: E402

from onnx_kernelviz import Model, resolve_preprocess  # noqa: E402
from onnx_kernelviz.measure.focus import focus_metrics, readability  # noqa: E402
from onnx_kernelviz.method.focus import focus_norms, kept_on_focus  # noqa: E402
from onnx_kernelviz.pipeline.batch import locate_items  # noqa: E402
from onnx_kernelviz.pipeline.prepare import prepare  # noqa: E402


def probe(fwd, x: torch.Tensor, b: torch.Tensor, k: int, cells: np.ndarray, box: tuple[int, int, int, int],
          w: float, suppress: float, steps: int) -> np.ndarray:
    """The binary mask ``[H, W]`` after ``steps`` steps (x, b ``[1, C, H, W]``)."""
    t, left, bottom, right = (max(v, 0) for v in box)
    inside = torch.zeros_like(x[:, :1])
    inside[..., t:bottom, left:right] = 1
    f = torch.from_numpy(cells[None]).to(x.dtype)
    kk = torch.tensor([k])
    with torch.no_grad():
        ref = torch.relu(fwd(x))
        others_ref = focus_norms(ref, kk, f)[1].clamp_min(1e-12)
    logits = torch.full_like(x[:, :1], 2.0, requires_grad=True)  # start fully kept
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(steps):
        m = torch.sigmoid(logits) * inside
        hard = m + ((m > 0.5).to(m.dtype) - m).detach()  # binary forward, straight-through gradient
        act = torch.relu(fwd(b + hard * (x - b)))
        loss = (20 * torch.relu(0.95 - kept_on_focus(act, ref, kk, f)) + suppress * focus_norms(act, kk, f)[1]
                / others_ref + w * m.sum() / inside.sum()).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return ((torch.sigmoid(logits) * inside) > 0.5).to(x.dtype)[0, 0].numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("row", help="model:layer, e.g. default:8 (names of scripts/fetch_eval_models.py)")
    ap.add_argument("--weights", default="0.5,2,8", help="area weights w to try, comma-separated")
    ap.add_argument("--suppress", type=float, default=15.0)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--top", type=int, default=2)
    ap.add_argument("--images", nargs="+", default=[str(ROOT / ".cache" / "eval" / "photos")],
                    help="folders of photos (default: the held-out photos; the tuning sets are "
                    "onnx_kernelviz/data/photos and .cache/tune/photos)")
    args = ap.parse_args()
    tag, layer = args.row.split(":")
    photos = sorted(p for d in args.images for p in Path(d).iterdir()
                    if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    path = model_path(tag)
    model, pp = Model(path, device="cpu"), resolve_preprocess(path)
    la = model.layer(int(layer))
    prep = prepare(model, photos, la, pp, config_of("default"))
    items = [(i, int(k)) for i in range(len(photos)) for k in np.argsort(-prep.energy[i])[:args.top]
             if prep.energy[i, k] > 0]
    fwd = model.layer_forward(la.tensor)
    torch.manual_seed(0)
    areas, gains, tops = [], [], []
    for (i, k), site in zip(items, locate_items(model, prep, items)):
        x, b = torch.from_numpy(prep.x[i:i + 1]), torch.from_numpy(prep.b[i:i + 1])
        best = None
        for w in (float(v) for v in args.weights.split(",")):
            mask = probe(fwd, x, b, k, site.focus.cells, site.rf_box, w, args.suppress, args.steps)
            x_mod = (b + torch.from_numpy(mask) * (x - b)).numpy()
            n = focus_metrics(prep.t_ort[i], model.run_ort(x_mod, (la.tensor,))[0][0], k, site.focus.cells)
            r = readability(mask, site.rf_box)
            if n.kept >= 0.9 and (best is None or r.box_area < best[0]):
                best = (r.box_area, n.kept, n.others_kept, n.gain, r.top3_share, r.regions, w)
        areas.append(1.0 if best is None else best[0])
        if best is not None:
            gains.append(best[3])
            tops.append(best[4])
        print(f"{photos[i].stem} k{k}: " + ("no run kept k >= 0.9" if best is None else
              "area {:.2f} kept {:.2f} others {:.2f} gain x{:.2f} top-3 {:.2f} regions {} (w {:g})".format(*best)),
              flush=True)
    print(f"{tag} {layer}: median area {np.median(areas):.2f}, gain x{np.median(gains):.2f}, top-3 share "
          f"{np.median(tops):.2f} over {len(areas)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
