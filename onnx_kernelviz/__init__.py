"""onnx_kernelviz: show what one convolution kernel of a CNN responds to, from the deployed ONNX file.

Pipeline: load -> normalize -> layers -> expose -> convert -> objectives/optimize -> verify -> report.
"""

__version__ = "0.1.0"

from .errors import ConversionError, ImageError, KernelvizError, ModelError, UsageError  # noqa: E402
from .model import Model  # noqa: E402
from .layers import Layer  # noqa: E402
from .preprocess import Preprocess, resolve_preprocess  # noqa: E402
from .verify import VerifyReport, verify_model  # noqa: E402
from .explain import ExplainConfig, ExplainRun, explain  # noqa: E402

__all__ = ["__version__", "Model", "Layer", "Preprocess", "resolve_preprocess", "verify_model", "VerifyReport",
           "explain", "ExplainConfig", "ExplainRun", "KernelvizError", "UsageError", "ModelError",
           "ConversionError", "ImageError"]
