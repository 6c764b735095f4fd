#!/usr/bin/env python
"""Re-run the measurement behind the mask method's defaults (docs/TRADEOFF.md).

For each setting (the METHOD.md-style single-grid rows and the chosen default) runs ``explain`` on the default
model, the given layers and photos, the top kernels of each photo, and prints a markdown table of medians:
kept, fidelity, others_kept, specificity before -> after (and their ratio), mask_area, steps, seconds/kernel.
With ``--out DIR`` it also writes DIR/grid.png: per (photo, kernel) the photo, then the overlay per setting.

Also prints an "oracle" line per layer: the best others_kept a mask that only selects WHERE could reach at
kept = 0.9 (keep activation positions by decreasing r_k^2 / sum_j r_j^2 until 81% of k's energy is kept) --
an upper bound on what a readable, region-like mask can do at that layer.

Usage: python scripts/tune_defaults.py [--layers 20] [--photos chelsea,coffee] [--kernels top3]
                                       [--settings default,14tv,56,224] [--out docs/img] [--name tradeoff_grid]

The ``bands*``, ``lumchroma`` and ``bands_lc`` settings are the component-mask parameterizations of
onnx_kernelviz/method/perturb.py (``mask="bands"`` etc.): one region mask per Laplacian band / per luminance and colour.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from onnx_kernelviz.io.preprocess import resolve_preprocess
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.explain import explain
from onnx_kernelviz.pipeline.prepare import prepare

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "onnx_kernelviz" / "data" / "photos"
MODEL = ROOT / "models" / "efficientnet_lite0.onnx"

D = ExplainConfig()
SETTINGS = {
    "default": ("chosen default: 3 band masks, each a 14→28→56 pyramid; 200 steps, suppress 6, margin 0.12", D),
    "14tv": ("one region mask 14×14, strong TV", replace(D, mask="region", resolution=14, levels=1, smooth=0.0,
                                                         tv=1.0)),
    "56": ("one region mask 56×56", replace(D, mask="region", resolution=56, levels=1, smooth=0.0, tv=0.3)),
    "224": ("one region mask 224×224, weak TV", replace(D, mask="region", resolution=224, levels=1, smooth=0.0,
                                                       tv=0.05)),
    "bands": ("bands: coarse / mid / fine band masks", replace(D, mask="bands")),
    "lumchroma": ("luminance + colour masks", replace(D, mask="lumchroma")),
    "bands_lc": ("coarse + detail band × luminance + colour (4 masks)", replace(D, mask="bands_lc")),
    "bands4": ("bands4: 4 band masks (side/8, /24, /72)", replace(D, mask="bands4")),
    "bands_s4": ("bands, suppress 4", replace(D, mask="bands", suppress=4.0)),
    "bands_tv": ("bands, TV 0.1", replace(D, mask="bands", tv=0.1)),
    "bands_a": ("bands, area 0.1", replace(D, mask="bands", area=0.1)),
    "bands_lr": ("bands, 100 steps", replace(D, mask="bands", steps=100)),
    "bands_fast": ("bands, lr 0.4", replace(D, mask="bands", lr=0.4)),
    "bands_fast_s4": ("bands, lr 0.4, suppress 4", replace(D, mask="bands", lr=0.4, suppress=4.0)),
    "bands_100_s4": ("bands, 100 steps, suppress 4", replace(D, mask="bands", steps=100, suppress=4.0)),
    "bands_200_s4": ("bands, 200 steps, suppress 4", replace(D, mask="bands", steps=200, suppress=4.0)),
    "default_100": ("default, 100 steps", replace(D, steps=100)),
    "bands_100_s4_f1": ("bands, 100 steps, suppress 4, fine_lr 1", replace(D, mask="bands", steps=100,
                                                                            suppress=4.0, fine_lr=1.0)),
    "bands_100_s6": ("bands, 100 steps, suppress 6", replace(D, mask="bands", steps=100, suppress=6.0)),
    "bands_100_s4_lr4": ("bands, 100 steps, suppress 4, lr 0.4", replace(D, mask="bands", steps=100,
                                                                          suppress=4.0, lr=0.4)),
    "bands4_100_s4": ("bands4, 100 steps, suppress 4", replace(D, mask="bands4", steps=100, suppress=4.0)),
    "bands_200_s4_f1": ("bands, 200 steps, suppress 4, fine_lr 1", replace(D, mask="bands", steps=200,
                                                                            suppress=4.0, fine_lr=1.0)),
    "bands_150_s4_f1": ("bands, 150 steps, suppress 4, fine_lr 1", replace(D, mask="bands", steps=150,
                                                                            suppress=4.0, fine_lr=1.0)),
    "bands_100_s5_f1_lr3": ("bands, 100 steps, suppress 5, fine_lr 1, lr 0.3",
                            replace(D, mask="bands", steps=100, suppress=5.0, fine_lr=1.0, lr=0.3)),
    "bands_120_s4_f1_lr3": ("bands, 120 steps, suppress 4, fine_lr 1, lr 0.3",
                            replace(D, mask="bands", steps=120, suppress=4.0, fine_lr=1.0, lr=0.3)),
    "region50": ("one region mask, 50 steps, suppress 2, margin 0.2 (the default before band masks)",
                 replace(D, mask="region", steps=50, suppress=2.0, fine_lr=0.5, preserve_margin=0.2)),
    "margin10": ("bands, margin 0.1, suppress 4", replace(D, preserve_margin=0.1, suppress=4.0)),
    "margin15": ("bands, margin 0.15, suppress 4", replace(D, preserve_margin=0.15, suppress=4.0)),
    "margin10_s5": ("bands, margin 0.1, suppress 5", replace(D, preserve_margin=0.1, suppress=5.0)),
    "margin10_s6": ("bands, margin 0.1, suppress 6", replace(D, preserve_margin=0.1, suppress=6.0)),
    "margin12_s5": ("bands, margin 0.12, suppress 5", replace(D, preserve_margin=0.12, suppress=5.0)),
    "lr25": ("bands, margin 0.1, suppress 5, lr 0.25", replace(D, preserve_margin=0.1, suppress=5.0, lr=0.25)),
    "margin12_s6": ("bands, margin 0.12, suppress 6", replace(D, preserve_margin=0.12, suppress=6.0)),
    "margin15_s6": ("bands, margin 0.15, suppress 6", replace(D, preserve_margin=0.15, suppress=6.0)),
    "old": ("previous default: 28×28, blur, preserve+suppress, 300 steps",
            replace(D, resolution=28, levels=1, smooth=0.0, init=3.0, reference="blur", preserve=1.0,
                    preserve_margin=0.0, suppress=1.0, tv=0.3, lr=0.1, steps=300, min_steps=40, patience=20)),
}


def oracle(energy_maps: np.ndarray, k: int) -> float:
    t = np.maximum(energy_maps, 0).reshape(energy_maps.shape[0], -1).astype(np.float64)
    ek = t[k] ** 2
    eo = (t ** 2).sum(0) - ek
    order = np.argsort(-(ek / (eo + 1e-12)))
    ck, co = np.cumsum(ek[order]) / ek.sum(), np.cumsum(eo[order]) / max(eo.sum(), 1e-12)
    return float(np.sqrt(co[np.searchsorted(ck, 0.81)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", default="20")
    ap.add_argument("--photos", default="chelsea,coffee")
    ap.add_argument("--kernels", default="top3")
    ap.add_argument("--settings", default="default,14tv,56,224", help=f"comma list of {','.join(SETTINGS)}")
    ap.add_argument("--out", default=None, help="also write a picture grid (DIR/NAME.jpg)")
    ap.add_argument("--name", default="tradeoff_grid", help="file name of the picture grid, without .jpg")
    args = ap.parse_args()
    m = Model(MODEL, device="cpu")
    pp = resolve_preprocess(MODEL)
    photos = [PHOTOS / f"{p}.jpg" for p in args.photos.split(",")]
    names = args.settings.split(",")
    print("| setting | layers | kept | fidelity | others_kept | specificity before → after (×) | mask_area | steps "
          "| s/kernel |")
    print("|---|---|---|---|---|---|---|---|---|")
    overlays: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for layer in args.layers.split(","):
            prep = prepare(m, photos, m.layer(layer), pp, D)
            from onnx_kernelviz.method.kernels import select_items
            items = select_items(args.kernels, prep.energy, None)
            orc = statistics.median(oracle(prep.t_ort[i], k) for i, k in items)
            for name in names:
                label, cfg = SETTINGS[name]
                out = Path(tmp) / f"{name}_{layer}"
                run = explain(m, photos, layer, args.kernels, out, preprocess=pp, config=cfg, force=True)
                ok = [r.to_json() for r in run.results if r.status == "ok"]
                med = lambda f, ok=ok: statistics.median(r[f] for r in ok)  # noqa: E731
                ratio = statistics.median(r["specificity_after"] / r["specificity_before"] for r in ok)
                print(f"| {label} | {layer} | {med('kept'):.3f} | {med('fidelity'):.3f} | {med('others_kept'):.3f} | "
                      f"{med('specificity_before'):.3f} → {med('specificity_after'):.3f} (×{ratio:.1f}) | "
                      f"{med('mask_area'):.2f} | {med('steps'):.0f} | {med('seconds'):.2f} |", flush=True)
                if args.out:
                    import cv2
                    for r in ok:
                        img = cv2.imread(str(out / r["files"]["overlay"]))
                        overlays.setdefault((layer, r["image"], r["kernel"]), {})[name] = img
                        overlays[(layer, r["image"], r["kernel"])]["photo"] = cv2.imread(
                            str(out / r["files"]["original"]))
            print(f"| oracle (region mask, kept 0.9) | {layer} | 0.90 | — | {orc:.2f} | — | — | — | — |", flush=True)
    if args.out:
        import cv2
        side = 128
        rows = []
        for ims in overlays.values():
            rows.append(np.hstack([cv2.resize(ims[c], (side, side)) if c in ims else np.zeros((side, side, 3),
                                   np.uint8) for c in ["photo", *names]]))
        head = np.full((24, side * (len(names) + 1), 3), 255, np.uint8)
        for j, c in enumerate(["photo", *names]):
            cv2.putText(head, c, (j * side + 4, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(Path(args.out) / f"{args.name}.jpg"), np.vstack([head, *rows]),
                    [cv2.IMWRITE_JPEG_QUALITY, 80])
        print(f"\nwrote {Path(args.out) / (args.name + '.jpg')}")


if __name__ == "__main__":
    main()
