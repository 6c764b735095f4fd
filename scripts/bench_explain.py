#!/usr/bin/env python
"""Speed of explanations, as ratios measured in one run (never wall-clock thresholds in tests).

Prints, on the default model (or --model) and a bundled photo:
  1. median optimizer step time vs a bare torch forward+backward of the same truncated graph, same batch;
  2. seconds per kernel at default settings at an early, a mid and a late layer (batched as `explain` does);
  3. batched vs one-by-one seconds per kernel for the kernels of a layer;
  4. truncated vs full-graph step time (forward+backward), showing what truncation saves.

Usage: python scripts/bench_explain.py [--model M] [--layers 4,20,40] [--kernels 16] [--steps 40]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess
from onnx_kernelviz.pipeline.batch import optimize_batch
from onnx_kernelviz.pipeline.demo import PHOTOS, default_model_path
from onnx_kernelviz.pipeline.explain import cuda_batch_size
from onnx_kernelviz.pipeline.prepare import Prepared, prepare
from onnx_kernelviz.runtime import keep_freed_memory


def clock(dev: torch.device) -> float:
    """Wall-clock seconds after the GPU has finished what was queued (CUDA launches return before they run)."""
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    return time.perf_counter()


def step_times(m: Model, prep: Prepared, items: list[tuple[int, int]], pp, cfg: ExplainConfig,
               n: int) -> list[float]:
    """Seconds of each optimizer step of ``explain``'s own batch step (optimize_batch), ``n`` steps, no early stop."""
    dev = m.devices.torch
    times, last = [], [clock(dev)]

    def cb(step: int, running: int, rows: int) -> None:
        now = clock(dev)
        times.append(now - last[0])
        last[0] = now

    optimize_batch(m, prep, items, replace(cfg, steps=n, early_stop=False), pp, on_step=cb)
    return times[3:]  # skip warm-up


def bare_times(module, x: torch.Tensor, n: int) -> list[float]:
    times = []
    for i in range(n + 3):
        t0 = clock(x.device)
        xi = x.clone().requires_grad_(True)
        out = module(xi)
        out = out[0] if isinstance(out, (tuple, list)) else out
        torch.relu(out).pow(2).sum().backward()
        if i >= 3:
            times.append(clock(x.device) - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--photo", default=str(PHOTOS / "chelsea.jpg"))
    ap.add_argument("--layers", default="4,20,40", help="early,mid,late layer indices")
    ap.add_argument("--kernels", type=int, default=8, help="kernels per layer for the per-kernel timings")
    ap.add_argument("--steps", type=int, default=30, help="steps for the step-time medians")
    ap.add_argument("--step-batches", default=None,
                    help="batch sizes for the step-time ratio, e.g. 32,128 (default: --kernels)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--compare-kernels", default=None,
                    help="kernels for batched vs one-by-one at the mid layer: a number, or 'all' (default: kernels/4)")
    ap.add_argument("--widest", action="store_true",
                    help="also time all kernels of the widest layer on one image, batched and one by one")
    ap.add_argument("--widest-only", action="store_true", help="only the widest-layer timings")
    ap.add_argument("--widest-batches", default="auto",
                    help="batch sizes to time the widest layer with, e.g. 64,256,auto (default: auto)")
    args = ap.parse_args()
    # explain() sets this allocator mode before optimizing; set it first so both sides of each ratio share it
    keep_freed_memory()
    model_path = Path(args.model) if args.model else default_model_path()
    m = Model(model_path, device=args.device)
    dev = m.devices.torch
    pp = resolve_preprocess(model_path)
    cfg = ExplainConfig()
    layers = [m.layer(s) for s in args.layers.split(",")]
    print(f"model {model_path}  torch threads {torch.get_num_threads()}  device {m.devices.torch}\n")

    mid = layers[len(layers) // 2]
    prep = prepare(m, [Path(args.photo)], mid, pp, cfg)
    print("| measure | value |\n|---|---|")
    if args.widest_only:
        with tempfile.TemporaryDirectory() as tmp:
            bench_widest(m, args.photo, pp, cfg, args.widest_batches, tmp)
        return
    for B in [int(v) for v in (args.step_batches or str(args.kernels)).split(",")]:
        ks = np.resize(np.argsort(-prep.energy[0]), B)  # the top kernels, repeated when B exceeds the layer
        x = torch.from_numpy(np.repeat(prep.x, B, 0)).to(dev)
        ours = statistics.median(step_times(m, prep, [(0, int(k)) for k in ks], pp, cfg, args.steps))
        bare = statistics.median(bare_times(m.torch_graph((mid.tensor,)).module, x, args.steps))
        print(f"| step time, ours (layer {mid.index}, batch {B}) | {ours * 1e3:.1f} ms |")
        print(f"| bare torch forward+backward, same graph and batch | {bare * 1e3:.1f} ms |")
        print(f"| ratio ours / bare, batch {B} | {ours / bare:.2f}x |")

    full_name = m.layers[-1].tensor
    full = statistics.median(bare_times(m.torch_graph((full_name,)).module, x, max(5, args.steps // 3)))
    print(f"| full graph (to the last conv) forward+backward | {full * 1e3:.1f} ms |")
    print(f"| truncated / full step time | {bare / full:.2f}x |")

    with tempfile.TemporaryDirectory() as tmp:
        for la in layers:
            t0 = time.perf_counter()
            run = explain(m, [args.photo], la.index, f"top{args.kernels}", Path(tmp) / f"l{la.index}",
                          preprocess=pp, config=cfg, force=True)
            dt = time.perf_counter() - t0
            ok = [r.to_json() for r in run.results if r.status == "ok"]
            steps = statistics.median(r["steps"] for r in ok) if ok else 0
            print(f"| seconds per kernel, layer {la.index} ({la.channels} ch), default settings, batched | "
                  f"{dt / max(len(run.results), 1):.2f} s (median steps {steps}) |")
        one_cfg = replace(cfg, batch_size=1)
        n1 = (mid.channels if args.compare_kernels == "all" else
              int(args.compare_kernels) if args.compare_kernels else max(2, args.kernels // 4))
        t0 = time.perf_counter()
        explain(m, [args.photo], mid.index, f"top{n1}", Path(tmp) / "one", preprocess=pp, config=one_cfg, force=True)
        one = (time.perf_counter() - t0) / n1
        t0 = time.perf_counter()
        explain(m, [args.photo], mid.index, f"top{n1}", Path(tmp) / "bat", preprocess=pp, config=cfg, force=True)
        bat = (time.perf_counter() - t0) / n1
        print(f"| layer {mid.index}, {n1} kernels: one-by-one / batched seconds per kernel | "
              f"{one:.2f} / {bat:.2f} s = {one / bat:.2f}x |")
        if args.widest:
            bench_widest(m, args.photo, pp, cfg, args.widest_batches, tmp)

def bench_widest(m: Model, photo: str, pp, cfg: ExplainConfig, batches: str, tmp: str) -> None:
    """All kernels of the widest layer on one image, at each batch size, against one by one (8 kernels)."""
    one_cfg = replace(cfg, batch_size=1)
    wide = max(m.layers, key=lambda la: la.channels)
    t0 = time.perf_counter()
    explain(m, [photo], wide.index, "top8", Path(tmp) / "wide1", preprocess=pp,
            config=one_cfg, force=True)
    one_w = (time.perf_counter() - t0) / 8
    for bs in batches.split(","):
        wcfg = replace(cfg, batch_size=None if bs == "auto" else int(bs))
        t0 = time.perf_counter()
        run = explain(m, [photo], wide.index, "all", Path(tmp) / f"wide{bs}", preprocess=pp,
                      config=wcfg, force=True)
        dt = time.perf_counter() - t0
        ok = [r.to_json() for r in run.results if r.status == "ok"]
        print(f"| all {wide.channels} kernels of the widest layer {wide.index}, one image, batch {bs}"
              f"{f' (= {auto_batch(m, wide.tensor, run)})' if bs == 'auto' else ''} | {dt:.1f} s "
              f"({len(ok)} explained, the rest inactive) |")
        print(f"| widest layer, batch {bs}: one-by-one / batched seconds per kernel | {one_w:.3f} / "
              f"{dt / wide.channels:.3f} s = {one_w / (dt / wide.channels):.1f}x |")
        if ok:
            print(f"| widest layer, batch {bs}: median kept / others_kept | "
                  f"{statistics.median(r['kept'] for r in ok):.3f} / "
                  f"{statistics.median(r['others_kept'] for r in ok):.3f} |")


def auto_batch(m: Model, tensor: str, run) -> str:
    """The batch size ``explain`` picked automatically (for the printout), from the same probe it uses."""
    if m.devices.torch.type != "cuda":
        return "16"
    x1 = np.zeros((1, m.channels, *m.input_size(None)), np.float32)
    bs, row, free = cuda_batch_size(m, tensor, x1, len(run.results))
    return f"{bs}, {row / 2**20:.0f} MiB/row, {free / 2**30:.0f} GiB free"

if __name__ == "__main__":
    main()
