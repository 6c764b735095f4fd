"""Measure local (focus) explanations against issue #11's bar, for several settings, models and layers.

Each explanation goes through explain's own steps (pipeline/batch.py: ``optimize_batch`` in focus scope,
``measure_batch``, ``baselines_batch``), so what is measured is what ``kernelviz explain`` gives. For each model
and layer: the top N kernels of each photo (largest ‖r_k(x)‖), explained at their peak with each setting
(``ExplainConfig`` fields, ``key=value`` lists as ``--set``), the bound (oracle_gain) once per case (same
functions as optimize_batch's bound; cached per model, layer, photos and oracle settings), all metrics from
onnxruntime on the original model. Prints one row per (setting, model, layer) with medians:

    kept, others_kept, gain (spec. after / before on F), oracle gain, gain / oracle, top-3 share of the kept area,
    mask inside the rf_box, kept area / rf_box, IoU of the top kernels' kept areas on one photo, the number of
    rows showing the small-box binary mask (not a median), s per kernel
    (the explanation's share plus the bound's), and with --baselines the share of cases beating every baseline

    python scripts/focus_sweep.py --models default:20 --photos chelsea,coffee --top 3 --settings default "focus_grid=8"
    python scripts/focus_sweep.py --models default:8,20,35 ppocr_det:4,12,16 layout:4,12,22 --heldout
    python scripts/focus_sweep.py ... --pictures /tmp/kv/pics    # crops of x and x' with the mask contour

Model names: ``default`` (models/efficientnet_lite0.onnx) or those of scripts/fetch_eval_models.py. The bundled
photos are the tuning set, ``--tuning-extra`` adds scripts/fetch_eval_photos.py --tuning's textures and print;
``--heldout`` uses scripts/fetch_eval_photos.py's held-out photos instead; ``--faces`` its face crops (for the
face models; tuning's, or held-out ones with ``--heldout``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from fetch_eval_models import model_path  # noqa: E402

from onnx_kernelviz import Model, resolve_preprocess  # noqa: E402
from onnx_kernelviz.cli.options import parse_settings  # noqa: E402
from onnx_kernelviz.io.images import list_images  # noqa: E402
from onnx_kernelviz.io.preprocess import valid_range  # noqa: E402
from onnx_kernelviz.measure.focus import focus_metrics, kept_iou, readability  # noqa: E402
from onnx_kernelviz.method.config import ExplainConfig  # noqa: E402
from onnx_kernelviz.method.methods import Method  # noqa: E402
from onnx_kernelviz.method.perturb import PARAMETERIZATIONS  # noqa: E402
from onnx_kernelviz.pipeline.batch import baselines_batch, locate_items, measure_batch, optimize_batch  # noqa: E402
from onnx_kernelviz.pipeline.focus import optimize_on_focus  # noqa: E402
from onnx_kernelviz.pipeline.prepare import prepare  # noqa: E402

PHOTOS = ROOT / "onnx_kernelviz" / "data" / "photos"


def config_of(text: str, **over) -> ExplainConfig:
    """ExplainConfig (focus scope) with the ``key=value,...`` overrides of ``text`` (``default``: none)."""
    if text != "default":
        over.update(parse_settings(tuple(text.split(","))))  # the CLI's --set parsing (KEY=VALUE checked)
    return replace(ExplainConfig(scope="focus"), **over).validate()


def med(values) -> float:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else float("nan")


def bound_cases(model: Model, prep, pp, items, sites, cfg: ExplainConfig, chunk: int,
                cache: Path | None) -> list[dict]:
    """The bound of each item as optimize_batch computes it (free pixels, Method.bound_objective/bound_loop on
    optimize_on_focus), measured on onnxruntime; read from ``cache`` (JSON keyed by the inputs' bytes, kernel and
    the oracle settings) when it holds them."""
    import torch
    known = json.loads(cache.read_text()) if cache is not None and cache.exists() else {}
    tag = f"{cfg.oracle_steps}:{cfg.oracle_lr}:{cfg.oracle_keep}:{cfg.oracle_suppress}:{cfg.focus_keep_margin}"
    key = lambda j: f"{hashlib.sha1(prep.x[items[j][0]].tobytes()).hexdigest()[:10]}:{items[j][1]}:{tag}"  # noqa: E731
    todo = [j for j in range(len(items)) if key(j) not in known]
    forward = model.layer_forward(prep.layer.tensor)
    lo, hi = (torch.from_numpy(v).view(1, -1, 1, 1) for v in valid_range(pp, model.channels))
    free = PARAMETERIZATIONS.get("free")
    torch.manual_seed(cfg.seed)
    for a in range(0, len(todo), chunk):
        rows = todo[a:a + chunk]
        idx = np.array([items[j][0] for j in rows])
        k = torch.tensor([items[j][1] for j in rows])
        x, b = torch.from_numpy(prep.x[idx]), torch.from_numpy(prep.b[idx])
        t0 = time.perf_counter()
        res = optimize_on_focus(forward, lambda xx, bb, **_: free(xx, lo=lo, hi=hi), Method.bound_objective(cfg),
                                Method.bound_loop(cfg), x, b, k, [sites[j] for j in rows], crop=cfg.focus_crop)
        seconds = (time.perf_counter() - t0) / len(rows)
        xm = torch.maximum(torch.minimum(res.x_mod, hi), lo).detach().numpy()
        t_mod = model.run_ort(xm, (prep.layer.tensor,))[0]
        for r, j in enumerate(rows):
            n = focus_metrics(prep.t_ort[items[j][0]], t_mod[r], items[j][1], sites[j].focus.cells)
            known[key(j)] = {"oracle_gain": n.gain, "oracle_kept": n.kept, "oracle_others": n.others_kept,
                             "oracle_seconds": seconds, "oracle_steps": res.steps[r]}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(known, indent=1))
    return [known[key(j)] for j in range(len(items))]


def run_layer(model: Model, pp, photos: list[Path], layer: str, top: int, settings: list[str], chunk: int,
              oracle: bool, pictures: Path | None, tag: str, baselines: list[str] = (),
              cache: Path | None = None) -> list[dict]:
    la = model.layer(int(layer) if layer.lstrip("-").isdigit() else layer)
    rows = []
    for text in settings:
        cfg = config_of(text)
        prep = prepare(model, photos, la, pp, cfg)  # per setting: the reference b is a setting
        items = [(i, int(k)) for i in range(len(photos)) for k in np.argsort(-prep.energy[i])[:top]
                 if prep.energy[i, k] > 0]
        sites = locate_items(model, prep, items)
        cases = [{"image": photos[i].name, "i": i, "kernel": k, "peak": s.focus.peak, "cells": s.focus.count,
                  "rf_box": s.rf_box} for (i, k), s in zip(items, sites)]
        if oracle:
            for c, o in zip(cases, bound_cases(model, prep, pp, items, sites, cfg, chunk,
                                               None if cache is None else cache / f"{tag}_{layer}.json")):
                c.update(o)
        run_cfg = replace(cfg, oracle=False, baselines=tuple(baselines))
        res = []
        for a in range(0, len(items), chunk):
            part = items[a:a + chunk]
            opt = optimize_batch(model, prep, part, run_cfg, pp, sites=sites[a:a + chunk])
            meas = measure_batch(model, prep, opt, run_cfg)
            base = baselines_batch(model, prep, opt, run_cfg, pp) if baselines else None
            for j, c in enumerate(cases[a:a + chunk]):
                n = meas.focus[j]
                r = readability(opt.masks[j], c["rf_box"])
                wins = None if base is None else all(n.specificity_after > v.focus.specificity_after
                                                     for v in base[j].values())
                res.append({**c, **n.to_dict(), "gain": n.gain, **r.to_dict(),
                            "steps": opt.steps[j], "binary": bool(opt.small_box and opt.small_box[j]),
                            "seconds": opt.seconds[j] + c.get("oracle_seconds", 0.0), "mask": opt.masks[j],
                            "x_mod": opt.x_mod[j], "wins": wins})
        ious = []
        for i in set(r["i"] for r in res):
            ms = [r["mask"] for r in res if r["i"] == i]
            ious += [kept_iou(ms[p], ms[q]) for p in range(len(ms)) for q in range(p + 1, len(ms))]
        ratio = [r["gain"] / r["oracle_gain"] if r.get("oracle_gain") and r["gain"] else None for r in res]
        row = {"setting": text, "model": tag, "layer": layer, "n": len(res), "kept": med(r["kept"] for r in res),
               "others_kept": med(r["others_kept"] for r in res), "gain": med(r["gain"] for r in res),
               "oracle_gain": med(r.get("oracle_gain") for r in res), "ratio": med(ratio),
               "top3": med(r["top3_share"] for r in res), "inside": med(r["inside"] for r in res),
               "box_area": med(r["box_area"] for r in res), "image_area": med(r["image_area"] for r in res),
               "iou": med(ious), "hidden": med(r["hidden"] for r in res), "cells": med(r["cells"] for r in res),
               "seconds": med(r["seconds"] for r in res), "steps": med(r["steps"] for r in res),
               "binary": sum(r["binary"] for r in res),
               "spec_before": med(r["specificity_before"] for r in res),
               "wins": (float(np.mean([r["wins"] for r in res])) if baselines and res else None)}
        bare = bare_pass(model, la.tensor, prep.x[:1])
        row["bare"], row["passes"] = bare, row["seconds"] / bare
        rows.append(row)
        print(fmt(row), flush=True)
        if pictures is not None:
            draw(pictures / f"{tag}_{layer}_{text.replace('=', '').replace(',', '_')}.png", prep, res, pp)
        for r in res:
            r.pop("mask"), r.pop("x_mod")
        row["cases"] = res
    return rows


def bare_pass(model: Model, tensor: str, x: np.ndarray, repeats: int = 3) -> float:
    """Seconds per row of one plain forward+backward of the truncated network on whole inputs (the unit of cost:
    a shared machine slows both alike, so their ratio holds)."""
    import torch
    tg = model.torch_graph((tensor,))
    xt = torch.from_numpy(x)
    best = float("inf")
    for _ in range(repeats):
        xx = xt.clone().requires_grad_(True)
        t0 = time.perf_counter()
        tg(xx)[0].square().sum().backward()
        best = min(best, time.perf_counter() - t0)
    return best / len(x)


HEADER = ("| setting | model | layer | n | cells | kept | others_kept | gain | oracle | gain/oracle | top-3 share "
          "| inside box | kept/box | kept/image | IoU top-k | hidden | binary rows | steps | s/kernel "
          "| cost (bare passes) |\n|" + "---|" * 20)


def fmt(r: dict) -> str:
    return (f"| {r['setting']} | {r['model']} | {r['layer']} | {r['n']} | {r['cells']:.0f} | {r['kept']:.2f} | "
            f"{r['others_kept']:.2f} | ×{r['gain']:.1f} | ×{r['oracle_gain']:.1f} | {r['ratio']:.2f} | "
            f"{r['top3']:.2f} | {r['inside']:.2f} | {r['box_area']:.2f} | {r['image_area']:.3f} | {r['iou']:.2f} | "
            f"{r['hidden']:.2f} | {r['binary']} | {r['steps']:.0f} | {r['seconds']:.2f} | {r['passes']:.0f} |"
            + ("" if r.get("wins") is None else f" {r['wins']:.0%} |"))


def draw(path: Path, prep, res: list[dict], pp) -> None:
    """One row per explanation: the rf_box crop of x and of x' (mask contour in yellow), enlarged."""
    import cv2

    from onnx_kernelviz.io.images import from_model_input
    tiles = []
    for r in res:
        t, left, b, rr = r["rf_box"]
        x = prep.photos[r["i"]][t:b, left:rr]
        xm = from_model_input(r["x_mod"], pp)[t:b, left:rr].copy()
        m = (r["mask"][t:b, left:rr] > 0.5).astype(np.uint8)
        s = 192 / max(x.shape[:2])
        size = (max(1, round(x.shape[1] * s)), max(1, round(x.shape[0] * s)))
        x, xm = cv2.resize(x, size, interpolation=cv2.INTER_NEAREST), cv2.resize(xm, size,
                                                                                  interpolation=cv2.INTER_NEAREST)
        m = cv2.resize(m, size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        xc = np.ascontiguousarray(x.copy())
        cv2.drawContours(xc, contours, -1, (255, 255, 0), 1)
        pad = np.full((192, 192 * 2 + 4, 3), 255, np.uint8)
        pad[:size[1], :size[0]] = xc
        pad[:size[1], 196:196 + size[0]] = xm
        tiles.append(pad)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = 3
    rows = [np.concatenate(tiles[i:i + cols] + [np.full_like(tiles[0], 255)] * (cols - len(tiles[i:i + cols])), 1)
            for i in range(0, len(tiles), cols)]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["default:20"], help="NAME:LAYER,LAYER ...")
    ap.add_argument("--photos", default=None, help="comma list of photo stems (default: all)")
    ap.add_argument("--heldout", action="store_true", help="the held-out photos instead of the bundled ones")
    ap.add_argument("--tuning-extra", action="store_true", help="add the second tuning set (textures, print)")
    ap.add_argument("--faces", action="store_true",
                    help="face crops (fetch_eval_photos.py --faces) instead: tuning's, or with --heldout held-out ones")
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--settings", nargs="+", default=["default"])
    ap.add_argument("--chunk", type=int, default=12)
    ap.add_argument("--no-oracle", dest="oracle", action="store_false")
    ap.add_argument("--pictures", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--baselines", default="", help="comma list (or all): baselines in focus scope at our area")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "focus_sweep",
                    help="folder of the bounds already computed (per model and layer)")
    args = ap.parse_args(argv)
    if args.heldout and args.tuning_extra:
        ap.error("--heldout and --tuning-extra: the held-out photos are never mixed with tuning ones")
    if args.faces and args.tuning_extra:
        ap.error("--faces and --tuning-extra: pick one photo set")
    if args.faces:
        import fetch_eval_photos
        photos = list_images([fetch_eval_photos.fetch_faces(tuning=not args.heldout)])
    elif args.heldout:
        import fetch_eval_photos
        photos = list_images([fetch_eval_photos.fetch()])
    else:
        photos = list_images([PHOTOS])
    if args.tuning_extra:
        import fetch_eval_photos
        photos += list_images([fetch_eval_photos.fetch(fetch_eval_photos.TUNING, tuning=True)])
    if args.photos:
        want = args.photos.split(",")
        photos = [p for p in photos if p.stem in want]
    print(HEADER)
    rows = []
    t0 = time.perf_counter()
    for spec in args.models:
        name, layers = spec.split(":")
        path = model_path(name)
        model = Model(path, device="cpu")
        pp = resolve_preprocess(path)
        for layer in layers.split(","):
            rows += run_layer(model, pp, photos, layer, args.top, args.settings, args.chunk, args.oracle,
                              args.pictures, name, [b for b in args.baselines.split(",") if b], args.cache)
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1,
                                        default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
