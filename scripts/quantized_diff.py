"""Quantize the default model with onnxruntime's tools and compare each int8 build with the fp32 model
(docs/QUANTIZED.md).

    python scripts/quantized_diff.py [--out build/quantized] [--kinds qdq dynamic] [--calibration DIR]

For each kind: the int8 build (``qdq``: static QDQ, onnxruntime's defaults, calibrated on ``--calibration``, by
default the bundled photos; ``qoperator``: static QLinearConv, per channel; ``dynamic``: ConvInteger), then
``kernelviz diff models/efficientnet_lite0.onnx BUILD onnx_kernelviz/data/photos --out OUT/diff_KIND`` (the command is
printed), then markdown tables: drift by layer, and the kernels that changed most.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import corpus_deployed  # noqa: E402

from onnx_kernelviz.io.images import list_images, read_image, to_model_input  # noqa: E402
from onnx_kernelviz.io.preprocess import resolve_preprocess  # noqa: E402

MODEL = ROOT / "models" / "efficientnet_lite0.onnx"
PHOTOS = ROOT / "onnx_kernelviz" / "data" / "photos"


def calibration_inputs(folder: Path) -> np.ndarray:
    pp = resolve_preprocess(MODEL, preset=None, overrides={})
    return np.stack([to_model_input(read_image(p), pp, (224, 224), 3) for p in list_images([folder])])


def layer_table(doc: dict) -> str:
    rows = ["| layer | kernels | median corr | median exemplar overlap | median drift | max drift | "
            "kernels silent in int8 |", "|---|---|---|---|---|---|---|"]
    silenced = {}
    for i, _, _ in doc["silenced"]:
        silenced[i] = silenced.get(i, 0) + 1
    for la in doc["layers"]:
        ks = la["kernels"]
        med = {key: statistics.median(k[key] for k in ks) for key in ("corr", "exemplar_overlap", "drift")}
        rows.append(f"| {la['index']} | {la['channels']} | {med['corr']:.3f} | {med['exemplar_overlap']:.2f} | "
                    f"{med['drift']:.3f} | {max(k['drift'] for k in ks):.2f} | {silenced.get(la['index'], 0)} |")
    return "\n".join(rows)


def examples_table(doc: dict) -> str:
    kernels = {(la["index"], k["kernel"]): k for la in doc["layers"] for k in la["kernels"]}
    rows = ["| layer | kernel | drift | corr | exemplar overlap | energy int8 / fp32 | specificity on x′: fp32 | "
            "int8 | kept in int8 | still isolates in int8 |", "|---|---|---|---|---|---|---|---|---|---|"]
    for ex in doc["examples"]:
        k = kernels[ex["layer"], ex["kernel"]]
        e = ex.get("explanation") or {}
        verdict = {True: "yes", False: "no", None: "not isolated in fp32 either"}
        if e.get("status") == "ok":
            a, b = e["a"], e["b"]
            gains = (f"{a['specificity_before']:.3g} → {a['specificity_after']:.3g} | "
                     f"{b['specificity_before']:.3g} → {b['specificity_after']:.3g} | {b['kept']:.2f} | "
                     f"{verdict[e['isolates_in_b']]}")
        else:
            gains = f"— | — | — | {e.get('status', '—')}"
        rows.append(f"| {ex['layer']} | {ex['kernel']} | {ex['drift']:.2f} | {k['corr']:.3f} | "
                    f"{k['exemplar_overlap']:.2f} | {k['energy_b'] / max(k['energy_a'], 1e-12):.2f} | {gains} |")
    return "\n".join(rows)


def compose(out: Path, doc: dict, rows: int = 3, side: int = 160) -> Path:
    """``out/examples.png``: for the first ``rows`` examples, the photo, the kernel's activation in fp32 and int8
    (one colour scale), and x′ (A's explanation); labels on top."""
    import cv2

    def tile(name: str | None) -> np.ndarray:
        if not name:
            return np.full((side, side, 3), 255, np.uint8)
        img = cv2.imread(str(out / name))
        return cv2.resize(img, (round(img.shape[1] * side / img.shape[0]), side), interpolation=cv2.INTER_AREA)

    lines, widths = [], []
    for ex in [e for e in doc["examples"] if e.get("files")][:rows]:
        expl = (ex.get("explanation") or {}).get("files", {})
        pics = [tile(n) for n in (ex["files"]["original"], ex["files"]["act_a"], ex["files"]["act_b"],
                                  expl.get("modified"))]
        widths = [p.shape[1] for p in pics]
        row = np.concatenate([np.pad(p, ((0, 0), (0, 6), (0, 0)), constant_values=255) for p in pics], 1)
        label = np.full((24, row.shape[1], 3), 255, np.uint8)
        cv2.putText(label, f"layer {ex['layer']}, kernel {ex['kernel']}: drift {ex['drift']:.2f}", (4, 17),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.5, (30, 30, 30), 1, cv2.LINE_AA)
        lines += [label, row]
    head = np.full((24, lines[-1].shape[1], 3), 255, np.uint8)
    x = 4
    for text, w in zip(("photo", "fp32 activation", "int8 activation", "x' (explained on fp32)"), widths):
        cv2.putText(head, text, (x, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
        x += w + 6
    path = out / "examples.png"
    cv2.imwrite(str(path), np.concatenate([head, *lines], 0))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "quantized")
    kinds = ["qdq", "qoperator", "dynamic"]
    parser.add_argument("--kinds", nargs="+", default=kinds, choices=kinds)
    parser.add_argument("--calibration", type=Path, default=PHOTOS, help="images to calibrate static builds on")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per explanation")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    calibration = calibration_inputs(args.calibration)
    for kind in args.kinds:
        build = corpus_deployed.quantize_model(MODEL, args.out / f"efficientnet_lite0.{kind}.onnx", kind,
                                               size=(224, 224), calibration=calibration)
        out = args.out / f"diff_{kind}"
        cmd = ["kernelviz", "diff", str(MODEL.relative_to(ROOT)), str(build), str(PHOTOS.relative_to(ROOT)), "--out",
               str(out), "--steps", str(args.steps), "--device", "cpu", "--force"]
        print(f"\n## {kind}\n\n    {shlex.join(cmd)}\n", flush=True)
        subprocess.run([sys.executable, "-m", "onnx_kernelviz", *cmd[1:]], check=True, cwd=ROOT)
        doc = json.loads((out / "diff.json").read_text())
        compose(out, doc)
        print(layer_table(doc), "\n\n" + examples_table(doc), f"\n\n{len(doc['silenced'])} kernels fire in fp32 and "
              f"never in int8, {len(doc['awakened'])} the reverse; {doc['seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
