"""``kernelviz demo``: the default model, a bundled photo, a report — the product in one command."""

from __future__ import annotations

import json
from pathlib import Path

from onnx_kernelviz.errors import UsageError
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
    """Explain the demo kernels into ``out``; an earlier demo there is replaced, any other content refused."""
    model_path = default_model_path()
    force = _holds_only_a_demo(out)
    m = Model(model_path, device=device)
    pp = resolve_preprocess(model_path)
    cfg = ExplainConfig() if steps is None else ExplainConfig(steps=steps)
    return explain(m, [PHOTOS / DEMO_PHOTO], DEMO_LAYER, DEMO_KERNELS, out, preprocess=pp, config=cfg,
                   force=force, progress=progress, on_step=on_step)


def _holds_only_a_demo(out: Path) -> bool:
    """True when ``out`` holds an earlier kernelviz run (its results.json), so re-running the demo may replace it."""
    try:
        doc = json.loads((out / "results.json").read_text(encoding="utf-8"))
        return isinstance(doc, dict) and "model_sha256" in doc
    except (OSError, ValueError):
        return False
