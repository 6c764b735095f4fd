"""Preprocessing presets: a registry, so a project can add its own normalization in one line.

A preset sets the normalization (mean, std, scale, bgr); its ``size``/``layout`` only when it defines them, and
never ``fit`` (how a photo is framed is the user's choice, not the model family's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.io.preprocess import Preprocess


@dataclass(frozen=True)
class _PresetEntry:
    preset: Preprocess
    description: str


_PRESETS: dict[str, _PresetEntry] = {}


def register_preset(name: str, preset: Preprocess, description: str, *, replace_existing: bool = False) -> None:
    """Make ``preset`` available as ``--preset NAME``.

    A preset's ``None`` fields (``size``, ``layout``) say nothing, so they never override the sidecar;
    its other fields are all applied. Registering a taken name raises ``ValueError`` (a programming error)
    unless ``replace_existing`` is set.
    """
    key = name.strip().lower()
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", key):
        raise ValueError(f"preset name {name!r} must be letters, digits, '_', '.', '-'")
    if key in _PRESETS and not replace_existing:
        raise ValueError(f"preset {key!r} is already registered")
    _PRESETS[key] = _PresetEntry(preset, description)


def get_preset(name: str) -> Preprocess:
    """The preset registered as ``name`` (case-insensitive); unknown name -> :class:`UsageError` listing them."""
    entry = _PRESETS.get(str(name).strip().lower())
    if entry is None:
        known = ", ".join(sorted(_PRESETS))
        raise UsageError(f"unknown preset {name!r}; use one of: {known}")
    return entry.preset


def list_presets() -> dict[str, str]:
    """``{name: description}`` of every registered preset, sorted by name (for ``--help`` and docs)."""
    return {name: _PRESETS[name].description for name in sorted(_PRESETS)}


register_preset(
    "imagenet",
    Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=True),
    "torchvision / timm ImageNet models: 0..1, then mean 0.485,0.456,0.406 std 0.229,0.224,0.225 (default)",
)
register_preset("raw", Preprocess(mean=(0.0,), std=(1.0,), scale=False), "raw 0..255 pixel values")
register_preset("unit", Preprocess(mean=(0.0,), std=(1.0,), scale=True), "pixel values scaled to 0..1")
register_preset(
    "tf",
    Preprocess(mean=(0.5,), std=(0.5,), scale=True),
    "TensorFlow / Keras 'tf' mode (MobileNet, EfficientNet-lite, ...): scaled to -1..1",
)
register_preset("inception", get_preset("tf"), "same as tf: scaled to -1..1 (Inception, Xception)")
register_preset(
    "caffe",
    Preprocess(mean=(103.939, 116.779, 123.68), std=(1.0,), scale=False, bgr=True),
    "Caffe / Keras 'caffe' mode (VGG, ResNet50 from Keras): BGR, 0..255 minus mean 103.939,116.779,123.68",
)
register_preset(
    "clip",
    Preprocess(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711), scale=True),
    "OpenAI CLIP image encoders: 0..1, then CLIP mean/std",
)

DEFAULT_PRESET = "imagenet"


