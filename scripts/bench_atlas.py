#!/usr/bin/env python
"""Speed and memory of ``kernelviz atlas``, as ratios measured in one run (never wall-clock thresholds in tests).

Prints, on the default model and N images made from the bundled photos (random crops and flips):
  1. the statistics pass against a bare onnxruntime loop over the same images with the same tensors exposed
     (images/s of each, interleaved repeats, median), for all layers and for one mid layer;
  2. peak memory of the statistics pass over N/4 and N images (it must not grow with N);
  3. the explanation pass's seconds per kernel against ``explain``'s batched seconds per kernel, same
     (image, kernel) pairs and settings (both in the focus scope, at the kernel's peak), and the focus scope's
     seconds per kernel at its defaults, with and without the bound;
  4. the whole default model (all layers, all kernels, --explain 0) over N images with the local engine: the
     statistics pass and the whole atlas (pictures, parquet, html);
  5. the Ray engine on this machine against the local engine, same work (the Ray cluster's start counted apart).

Usage: python scripts/bench_atlas.py [--images 100] [--skip ray,explain,whole] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess
from onnx_kernelviz.atlas import AtlasSettings, collect_stats, run_atlas, stream_activations
from onnx_kernelviz.pipeline.demo import PHOTOS, default_model_path


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` photos cut from the bundled ones: random crops of 50-100 % of each side, random horizontal flips."""
    rng = np.random.default_rng(seed)
    photos = [cv2.imread(str(p)) for p in sorted(PHOTOS.glob("*.jpg"))]
    out = []
    for i in range(n):
        im = photos[i % len(photos)]
        h, w = im.shape[:2]
        ch, cw = (int(s * rng.uniform(0.5, 1.0)) for s in (h, w))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        c = im[y:y + ch, x:x + cw]
        p = folder / f"img{i:04d}.jpg"
        cv2.imwrite(str(p), c[:, ::-1] if rng.random() < 0.5 else c)
        out.append(p)
    return out


def statistics_vs_bare(m: Model, pp, paths: list[Path], layers, repeats: int, batch: int = 8) -> dict:
    tensors = [la.tensor for la in layers]
    ids = list(range(len(paths)))
    for _ in stream_activations(m, paths[:batch], ids[:batch], tensors, pp, batch):  # warm-up: session, caches
        pass
    bare, stats = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in stream_activations(m, paths, ids, tensors, pp, batch):
            pass
        bare.append(len(paths) / (time.perf_counter() - t))
        t = time.perf_counter()
        collect_stats(m, paths, ids, layers, pp, top=5, batch_size=batch)
        stats.append(len(paths) / (time.perf_counter() - t))
    b, s = statistics.median(bare), statistics.median(stats)
    return {"bare_img_s": round(b, 2), "stats_img_s": round(s, 2), "ratio": round(s / b, 2),
            "runs_bare": [round(v, 1) for v in bare], "runs_stats": [round(v, 1) for v in stats]}


def peak_memory(n: int, folder: Path) -> float:
    """Peak resident memory (MiB) of a fresh process running the statistics pass over the first ``n`` images."""
    code = f"""
import resource, sys
from pathlib import Path
from onnx_kernelviz import Model, resolve_preprocess
from onnx_kernelviz.atlas import collect_stats
from onnx_kernelviz.pipeline.demo import default_model_path
m = Model(default_model_path()); pp = resolve_preprocess(default_model_path())
paths = sorted(Path({str(folder)!r}).glob('*.jpg'))[:{n}]
collect_stats(m, paths, list(range(len(paths))), m.layers, pp, top=5)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def explain_cost(m: Model, pp, paths: list[Path], layer: int, n: int, steps: int, repeats: int = 2) -> dict:
    """Seconds per kernel: the atlas's explanation pass vs explain, on the same n (image, kernel) pairs, run
    alternately ``repeats`` times each (medians); both must run the same optimizer steps."""
    from onnx_kernelviz.atlas.explainer import Site, explain_sites
    from onnx_kernelviz.atlas.rf import receptive_fields
    from onnx_kernelviz.atlas.stream import model_input

    cfg = ExplainConfig(steps=steps, batch_size=n)
    la = m.layer(layer)
    image = PHOTOS / "chelsea.jpg"
    x1 = model_input(image, pp, m.input_size(pp.size), m.channels)
    t = m.run_ort(x1[None], (la.tensor,))[0][0]
    kernels = [int(k) for k in np.argsort(-np.maximum(t, 0).reshape(len(t), -1).max(1))[:n]]
    field = receptive_fields(m, [la], m.input_size(pp.size))[la.index]
    sites = []
    for k in kernels:
        r, c = np.unravel_index(int(np.argmax(t[k])), t[k].shape)
        sites.append(Site(la.index, k, 0, int(r), int(c), float(t[k, r, c])))

    def run_explain(ks: list[int]) -> tuple[float, int]:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            run = explain(m, [image], layer, ",".join(map(str, ks)), d, preprocess=pp, config=cfg, force=True)
            return (time.perf_counter() - t0) / len(ks), sum(r.steps for r in run.results)

    def run_atlas(ss: list) -> tuple[float, int]:
        t0 = time.perf_counter()
        res = explain_sites(m, la, ss, {0: str(image)}, field, cfg, pp)
        return (time.perf_counter() - t0) / len(ss), sum(r.steps for r in res)

    run_explain(kernels[:2])  # warm-up both (conversion, allocator)
    run_atlas(sites[:2])
    ours, theirs = [], []
    for _ in range(repeats):
        theirs.append(run_explain(kernels))
        ours.append(run_atlas(sites))
    e, a = statistics.median(v for v, _ in theirs), statistics.median(v for v, _ in ours)
    # the atlas's default scope (kernel k at its exemplar cell), with and without the bound, default settings
    focus = {}
    for name, cfg_f in (("focus_s_per_kernel", ExplainConfig(batch_size=n)),
                        ("focus_no_bound_s_per_kernel", ExplainConfig(batch_size=n, oracle=False))):
        t0 = time.perf_counter()
        explain_sites(m, la, sites, {0: str(image)}, field, cfg_f, pp)
        focus[name] = round((time.perf_counter() - t0) / n, 3)
    return {"layer": layer, "kernels": n, "steps": steps, "explain_s_per_kernel": round(e, 3),
            "atlas_s_per_kernel": round(a, 3), "ratio": round(a / e, 2),
            "runs_ratio": [round(x[0] / y[0], 2) for x, y in zip(ours, theirs)],
            "same_steps": all(x[1] == y[1] for x, y in zip(ours, theirs)), **focus}


def whole_atlas(model: Path, folder: Path, out: Path, engine: str, layers: str = "all", **options) -> dict:
    passes: dict[str, list[float]] = {}

    def progress(name: str, advance: int, total: int) -> None:
        now = time.perf_counter()
        passes.setdefault(name, [now, now])[1] = now

    t0 = time.perf_counter()
    res = run_atlas(Model(model), [folder], out, preprocess=resolve_preprocess(model), engine=engine,
                    settings=AtlasSettings(layers=layers, explain=0), force=True, progress=progress,
                    engine_options=options or None)
    total = time.perf_counter() - t0
    h = res.header
    return {"engine": engine, "layers": len(h["layers"]), "kernels": sum(la["channels"] for la in h["layers"]),
            "images": h["images"], "statistics_s": round(passes["statistics"][1] - passes["statistics"][0], 1),
            "atlas_s": round(total, 1), "dead": len(h["dead"]), "duplicate_pairs": len(h["duplicates"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma list of: ratio, memory, explain, whole, ray")
    ap.add_argument("--explain-kernels", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40)
    a = ap.parse_args()
    skip = set(a.skip.split(","))
    model = default_model_path()
    m, pp = Model(model), resolve_preprocess(model)
    report: dict = {"model": model.name, "images": a.images, "cpus": __import__("os").cpu_count(),
                    "machine": "shared 2-core machine (timings vary run to run; ratios are from one run)"}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        paths = make_images(folder, a.images)
        if "ratio" not in skip:
            few = paths[: min(32, len(paths))]
            report["statistics_vs_bare_all_layers"] = statistics_vs_bare(m, pp, few, m.layers, a.repeats)
            report["statistics_vs_bare_layer_20"] = statistics_vs_bare(m, pp, few, [m.layer(20)], a.repeats)
            print(json.dumps(report, indent=1), flush=True)
        if "memory" not in skip:
            n = max(8, a.images // 4)
            report["peak_rss_mib"] = {str(n): round(peak_memory(n, folder)), str(a.images): round(
                peak_memory(a.images, folder))}
            print(json.dumps(report["peak_rss_mib"]), flush=True)
        if "explain" not in skip:
            report["explanation_pass"] = explain_cost(m, pp, paths, 20, a.explain_kernels, a.steps)
            print(json.dumps(report["explanation_pass"]), flush=True)
        if "whole" not in skip:
            report["whole_model_local"] = whole_atlas(model, folder, Path(tmp) / "local", "local")
            print(json.dumps(report["whole_model_local"]), flush=True)
        if "ray" not in skip:
            import ray

            t0 = time.perf_counter()
            ray.init(include_dashboard=False, log_to_driver=False)
            start = time.perf_counter() - t0
            try:
                local = whole_atlas(model, folder, Path(tmp) / "l2", "local")
                far = whole_atlas(model, folder, Path(tmp) / "ray", "ray")
            finally:
                ray.shutdown()
            report["ray_vs_local"] = {"ray_start_s": round(start, 1), "local": local, "ray": far,
                                      "ratio_statistics": round(far["statistics_s"] / local["statistics_s"], 2),
                                      "ratio_atlas": round(far["atlas_s"] / local["atlas_s"], 2)}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
