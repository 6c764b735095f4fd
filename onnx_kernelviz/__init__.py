"""onnx_kernelviz: show what one convolution kernel of a CNN responds to, from the deployed ONNX file.

Pipeline: load -> normalize -> layers -> expose -> convert -> objectives/optimize -> verify -> report.
Public names load lazily, so ``kernelviz --help`` and error messages do not wait for torch to import.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "KernelvizError": "errors", "UsageError": "errors", "ModelError": "errors", "ConversionError": "errors",
    "ImageError": "errors", "Model": "model", "Layer": "frontend.layers", "Preprocess": "io.preprocess",
    "resolve_preprocess": "io.sidecar", "verify_model": "measure.verify", "VerifyReport": "measure.verify",
    "ExplainConfig": "method.config", "ExplainRun": "pipeline.explain", "explain": "pipeline.explain",
    "compare": "pipeline.compare", "METHODS": "method.methods", "KernelResult": "results", "RunHeader": "results",
    "CompareResult": "results", "FocusMetrics": "results", "BaselineMetrics": "results", "Metrics": "results",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

