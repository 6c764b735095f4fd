#!/usr/bin/env python
"""Where one `explain` run spends its time: cProfile's top functions, by own time and by cumulative time.

Usage: python scripts/profile_explain.py [--model M] [--layer 48] [--kernel all] [--device cuda] [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess
from onnx_kernelviz.pipeline.demo import PHOTOS, default_model_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None)
    ap.add_argument("--photo", default=str(PHOTOS / "chelsea.jpg"))
    ap.add_argument("--layer", default="48")
    ap.add_argument("--kernel", default="all")
    ap.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    path = Path(args.model) if args.model else default_model_path()
    m = Model(path, device=args.device)
    pp = resolve_preprocess(path)
    with tempfile.TemporaryDirectory() as tmp:
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        run = explain(m, [args.photo], args.layer, args.kernel, Path(tmp) / "o", preprocess=pp, config=ExplainConfig())
        prof.disable()
        dt = time.perf_counter() - t0
    ok = sum(r.status == "ok" for r in run.results)
    print(f"{len(run.results)} kernels ({ok} explained) of layer {args.layer} on {m.devices.torch}: {dt:.1f} s\n")
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumtime").print_stats(args.top)


if __name__ == "__main__":
    main()
