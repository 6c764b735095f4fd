"""``kernelviz demo``: the default model, a bundled photo, a report — the product in one command."""

from __future__ import annotations

import hashlib
from pathlib import Path

from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.io.files import JsonFileError, read_json_object
from onnx_kernelviz.io.sidecar import resolve_preprocess
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.explain import ExplainConfig, ExplainRun, ProgressFn, StepProgressFn, explain

PACKAGE = Path(__file__).resolve().parents[1]
PHOTOS = PACKAGE / "data" / "photos"
#: the default model lives in the repository's models/ (installed editable) or inside the package
MODEL_CANDIDATES = (PACKAGE.parent / "models" / "efficientnet_lite0.onnx",
                    PACKAGE / "data" / "models" / "efficientnet_lite0.onnx")
DEMO_PHOTO = "chelsea.jpg"
DEMO_LAYER = 20      # /_blocks.6/_project_conv: 80 kernels at 14x14, the mid layer of docs/METHOD.md
DEMO_KERNELS = "top3"


def default_model_path() -> Path:
    for p in MODEL_CANDIDATES:
        if p.exists():
            return p
    raise UsageError("the default model is not installed; install from a checkout of the repository "
                     "(`pip install -e .[gpu]`) or run `python scripts/export_default_model.py`")


def run_demo(out: Path, *, steps: int | None = None, device: str = "auto", progress: ProgressFn | None = None,
             on_step: StepProgressFn | None = None) -> ExplainRun:
    """Explain the demo kernels into ``out``; an earlier demo there is replaced, any other content refused.

    Raises:
        UsageError: a bad ``steps``, or ``out`` is not empty and holds no earlier demo (both before the model is
            opened, so a mistake costs no wait).
    """
    model_path = default_model_path()
    cfg = (ExplainConfig() if steps is None else ExplainConfig(steps=steps)).validate()
    force = _holds_a_demo(out, model_path)
    if not force and out.is_dir() and any(out.iterdir()):
        # explain's own refusal would suggest --force and --resume, which the demo does not have
        raise UsageError(f"--out {out} is not empty and holds no earlier demo; choose a new folder (the demo "
                         "replaces only an earlier demo)")
    m = Model(model_path, device=device)
    pp = resolve_preprocess(model_path)
    return explain(m, [PHOTOS / DEMO_PHOTO], DEMO_LAYER, DEMO_KERNELS, out, preprocess=pp, config=cfg,
                   force=force, progress=progress, on_step=on_step)


def _holds_a_demo(out: Path, model_path: Path) -> bool:
    """True when ``out``'s results.json is an earlier demo's (the default model on the bundled photo), so re-running
    the demo may replace it. Any other run there, e.g. the user's own explain of the same model, is theirs: taking
    every results.json for a demo wrote over it."""
    try:
        # read_json_object: --out is the user's folder, and a FIFO named results.json there hung the demo
        doc = read_json_object(out / "results.json")
        sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    except (JsonFileError, OSError):
        return False
    if doc.get("model_sha256") != sha or not isinstance(doc.get("results"), list):
        return False
    # by file name: the package's folder may have moved since (a reinstall)
    return all(isinstance(r, dict) and Path(str(r.get("image"))).name == DEMO_PHOTO for r in doc["results"])
