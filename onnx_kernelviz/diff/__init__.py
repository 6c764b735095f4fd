"""``kernelviz diff``: what changed between two versions of a model (fp32 and its int8 or fp16 build, two training
runs), kernel by kernel (CONTRACT.md, "kernelviz diff")."""

from onnx_kernelviz.diff.match import match_layers, parse_layers
from onnx_kernelviz.diff.run import DiffConfig, DiffRun, diff_models
from onnx_kernelviz.diff.stats import LayerPairStats

__all__ = ["DiffConfig", "DiffRun", "LayerPairStats", "diff_models", "match_layers", "parse_layers"]
