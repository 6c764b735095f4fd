"""Seconds per kernel of focus explanations (the bound included), the defaults against the old one-stage default,
run in turn through ``explain`` itself (docs/TRADEOFF.md, "Cost"). Ratios from one run hold on a shared machine;
the seconds only when it is quiet.

    python scripts/bench_focus.py [--layer 20] [--photo .cache/eval/photos/grace_hopper.jpg] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess  # noqa: E402

#: the focus default before coarse to fine (one 24-grid stage, smooth 0.7, TV 0.3, 100 steps)
OLD = replace(ExplainConfig(), focus_regions=0, focus_smooth=0.7, focus_tv=0.3, steps=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "efficientnet_lite0.onnx")
    ap.add_argument("--photo", type=Path, default=ROOT / ".cache" / "eval" / "photos" / "grace_hopper.jpg")
    ap.add_argument("--layer", default="20")
    ap.add_argument("--kernels", default="top2")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, pp = Model(args.model, device="cpu"), resolve_preprocess(args.model)
    layer = int(args.layer) if args.layer.lstrip("-").isdigit() else args.layer
    for rep in range(args.repeats):
        for name, cfg in (("old", OLD), ("new", ExplainConfig())):
            with tempfile.TemporaryDirectory() as d:
                t0 = time.perf_counter()
                run = explain(model, [args.photo], layer, args.kernels, Path(d) / "o", preprocess=pp, config=cfg)
                wall = (time.perf_counter() - t0) / len(run.results)
            share = sum(r.seconds for r in run.results) / len(run.results)
            steps = [r.steps for r in run.results]
            print(f"{name} #{rep}: {wall:.2f} s per kernel in all, {share:.2f} s optimizing (bound included), "
                  f"steps {steps}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
