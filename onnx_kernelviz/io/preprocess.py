"""How pixels become model input: the :class:`Preprocess` settings, presets, CLI parsing and the sidecar file.

A model input x for one image is computed (in :func:`onnx_kernelviz.io.images.to_model_input`) as::

    v = rgb01 (in [0, 1])  ->  channel order flipped if ``bgr``  ->  v * 255 unless ``scale``
    x = (v - mean) / std          # mean/std in the MODEL's channel order

Where the settings come from (see :func:`resolve_preprocess`): command-line values, a ``--preset``,
the model's sidecar file ``NET.kernelviz.json`` and the ``imagenet`` defaults.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.options import LAYOUTS, Layout

#: The biggest side a ``--size`` may ask for; larger is almost surely a typo (and would not fit in memory).
MAX_SIDE = 16384


@dataclass(frozen=True)
class Preprocess:
    """Everything needed to turn an RGB image into the model's input tensor, and back.

    Attributes:
        size: ``(H, W)`` of the model input; ``None`` = take it from the model's input shape.
        mean: per-channel mean subtracted after scaling, in the model's channel order; 1 value (all channels)
            or 3.
        std: per-channel divisor, same layout as ``mean``; every value > 0.
        scale: divide 0..255 pixel values by 255 before mean/std (so mean/std are in 0..1 units).
        bgr: the model expects channels in B, G, R order (Caffe / OpenCV-trained models).
        layout: ``"nchw"`` or ``"nhwc"``; ``None`` = detect it from the model input.

    Values are checked on construction (:class:`UsageError` on a bad one) and lists are turned into tuples,
    so a ``Preprocess`` built from JSON compares equal to one built in code.
    """

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    scale: bool = True
    bgr: bool = False
    layout: Layout | None = None

    def __post_init__(self) -> None:
        # object.__setattr__ because the dataclass is frozen; normalizing here keeps every later stage simple.
        if self.size is not None:
            object.__setattr__(self, "size", _check_size(self.size, "size"))
        object.__setattr__(self, "mean", _check_values(self.mean, "mean"))
        object.__setattr__(self, "std", _check_values(self.std, "std"))
        for flag in ("scale", "bgr"):
            if not isinstance(getattr(self, flag), (bool, np.bool_)):
                raise UsageError(f"invalid {flag} {getattr(self, flag)!r}: use true or false")
            object.__setattr__(self, flag, bool(getattr(self, flag)))
        if self.layout is not None:
            object.__setattr__(self, "layout", parse_layout(self.layout))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, written to results.json ``"settings"``; keys are the field names."""
        return {
            "size": list(self.size) if self.size is not None else None,
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": self.scale,
            "bgr": self.bgr,
            "layout": self.layout,
        }


# ---------------------------------------------------------------------------------------------------------
# Parsing command-line strings.

def parse_size(text: str) -> tuple[int, int]:
    """``"224x160"`` -> ``(224, 160)`` (H x W, as ``--size HxW``); ``"224"`` -> ``(224, 224)``."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX×]\s*(\d+)\s*)?", str(text))
    if not match:
        raise UsageError(
            f"invalid --size {text!r}: use HxW like 224x224, or one number like 224 for a square input"
        )
    h = int(match.group(1))
    w = int(match.group(2)) if match.group(2) is not None else h
    return _check_size((h, w), "--size", shown=text)


def parse_triplet(text: str, name: str) -> tuple[float, ...]:
    """``"0.485,0.456,0.406"`` -> a tuple of 1 or 3 floats, for ``--mean`` / ``--std`` (``name``).

    A ``name`` of ``"std"`` also requires every value to be > 0, since inputs are divided by it.
    """
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UsageError(
            f"invalid --{name} {text!r}: use 1 or 3 comma-separated numbers like 0.485,0.456,0.406"
        ) from None
    return _check_values(values, f"--{name}", shown=text, positive=name.lstrip("-") == "std")


def parse_layout(text: str) -> Layout:
    """``"NCHW"`` / ``"nhwc"`` -> the :data:`Layout` literal."""
    value = str(text).strip().lower()
    if value not in LAYOUTS:
        raise UsageError(f"invalid layout {text!r}: use one of {', '.join(LAYOUTS)}")
    return value  # type: ignore[return-value]


def _check_size(size: Any, what: str, *, shown: Any = None) -> tuple[int, int]:
    shown = size if shown is None else shown
    try:
        ok = len(size) == 2 and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
    except TypeError:
        ok = False
    if not ok:
        raise UsageError(f"invalid {what} {shown!r}: give [height, width] as two whole numbers, e.g. [224, 224]")
    h, w = int(size[0]), int(size[1])
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise UsageError(f"invalid {what} {shown!r}: height and width must be between 1 and {MAX_SIDE}")
    return (h, w)


def _check_values(values: Any, what: str, *, shown: Any = None, positive: bool | None = None) -> tuple[float, ...]:
    shown = values if shown is None else shown
    if positive is None:
        positive = what.lstrip("-") == "std"
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = (values,)
    try:
        out = tuple(float(v) for v in values if not isinstance(v, (bool, str)))
        ok = len(out) == len(values)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UsageError(f"invalid {what} {shown!r}: give 1 or 3 numbers, e.g. 0.485,0.456,0.406")
    if len(out) not in (1, 3):
        raise UsageError(
            f"invalid {what} {shown!r}: got {len(out)} values; give 1 (all channels) or 3 (one per channel)"
        )
    if not all(math.isfinite(v) for v in out):
        raise UsageError(f"invalid {what} {shown!r}: values must be finite numbers")
    if positive and not all(v > 0 for v in out):
        raise UsageError(f"invalid {what} {shown!r}: every value must be > 0 (inputs are divided by it)")
    return out


# ---------------------------------------------------------------------------------------------------------
# Presets: a registry, so a project can add its own normalization in one line.

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


# ---------------------------------------------------------------------------------------------------------
# The sidecar file and the precedence between sources.

SIDECAR_SUFFIX = ".kernelviz.json"
SIDECAR_KEYS = ("size", "mean", "std", "scale", "bgr", "layout", "preset")
_FIELDS = tuple(f.name for f in fields(Preprocess))


def sidecar_path(model_path: str | Path) -> Path:
    """``models/net.onnx`` -> ``models/net.kernelviz.json`` (the model's suffix is replaced)."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + SIDECAR_SUFFIX)


def load_sidecar(model_path: str | Path) -> dict[str, Any]:
    """Read and check the preprocessing defaults stored beside a model.

    Looks for ``NET.kernelviz.json`` next to ``NET.onnx`` (also accepted: ``NET.onnx.kernelviz.json``,
    the literal reading of "MODEL.kernelviz.json"; having both is an error, so neither is silently ignored).

    Returns:
        ``{}`` when there is no sidecar; otherwise the keys present among ``size`` ([H, W]), ``mean``, ``std``
        (1 or 3 numbers), ``scale``, ``bgr`` (booleans), ``layout`` ("nchw"/"nhwc"), ``preset`` (a registered
        name), with values normalized (tuples, lower-case strings).

    Raises:
        UsageError: unreadable file, invalid JSON, not an object, unknown key or a wrong value; the message
            names the file.
    """
    model_path = Path(model_path)
    candidates = [sidecar_path(model_path), model_path.with_name(model_path.name + SIDECAR_SUFFIX)]
    found = [p for i, p in enumerate(candidates) if p.is_file() and p not in candidates[:i]]
    if not found:
        return {}
    if len(found) > 1:
        raise UsageError(f"both {found[0]} and {found[1]} exist; keep one sidecar file per model")
    path = found[0]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"cannot read sidecar file {path}: {exc.strerror or exc}; check its permissions") from None
    except UnicodeDecodeError:
        raise UsageError(f"invalid sidecar file {path}: not UTF-8 text; save it as UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise UsageError(
            f"invalid sidecar file {path}: bad JSON at line {exc.lineno} column {exc.colno} ({exc.msg}); "
            "fix it or delete the file"
        ) from None
    if not isinstance(data, dict):
        raise UsageError(f"invalid sidecar file {path}: expected a JSON object like {{\"preset\": \"imagenet\"}}")
    unknown = sorted(set(data) - set(SIDECAR_KEYS))
    if unknown:
        raise UsageError(
            f"invalid sidecar file {path}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"allowed keys: {', '.join(SIDECAR_KEYS)}"
        )
    out: dict[str, Any] = {}
    try:
        for key, value in data.items():
            if value is None:
                continue  # an explicit null means "not set", like a missing key
            if key == "size":
                # A bare number means a square input, as with --size 224.
                square = isinstance(value, int) and not isinstance(value, bool)
                out[key] = _check_size((value, value) if square else value, "size", shown=value)
            elif key in ("mean", "std"):
                out[key] = _check_values(value, key)
            elif key in ("scale", "bgr"):
                if not isinstance(value, bool):
                    raise UsageError(f"invalid {key} {value!r}: use true or false")
                out[key] = value
            elif key == "layout":
                if not isinstance(value, str):
                    raise UsageError(f"invalid layout {value!r}: use one of {', '.join(LAYOUTS)}")
                out[key] = parse_layout(value)
            elif key == "preset":
                if not isinstance(value, str):
                    raise UsageError(f"invalid preset {value!r}: give a preset name as a string")
                get_preset(value)
                out[key] = value.strip().lower()
    except UsageError as exc:
        raise UsageError(f"invalid sidecar file {path}: {exc}") from None
    return out


def resolve_preprocess(
    model_path: str | Path | None,
    *,
    preset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Preprocess:
    """Combine every source of preprocessing settings into one :class:`Preprocess`.

    Precedence, highest first (each field is taken from the first source that sets it):

    1. ``overrides`` - explicit values, e.g. ``--size``/``--mean``/``--std``/``--scale``/``--bgr``/``--layout``
       from the command line; ``None`` values mean "not given" and are skipped. Strings are parsed like the
       CLI does (``"224x224"``, ``"0.5,0.5,0.5"``, ``"nhwc"``).
    2. ``preset`` - a ``--preset`` name given on the command line.
    3. The sidecar file (:func:`load_sidecar`): its explicit values over its own ``preset`` key.
    4. The default preset (``imagenet``).

    A preset sets every normalization field (mean, std, scale, bgr) but never ``size``/``layout`` unless it
    defines them, so ``--preset raw`` keeps a sidecar's ``size``. Fields still unset stay ``None``
    (size / layout: taken from the model later).

    Args:
        model_path: the ONNX file (its sidecar is looked up beside it); ``None`` skips the sidecar.
        preset: a registered preset name, or ``None``.
        overrides: ``{field: value}`` for fields of :class:`Preprocess`.

    Raises:
        UsageError: an unknown preset or option name, a bad value, or a bad sidecar file.
    """
    sidecar = load_sidecar(model_path) if model_path is not None else {}
    layers: list[Mapping[str, Any]] = [_preset_fields(DEFAULT_PRESET)]  # lowest precedence first
    if "preset" in sidecar:
        layers.append(_preset_fields(sidecar["preset"]))
    layers.append({k: v for k, v in sidecar.items() if k != "preset"})
    if preset is not None:
        layers.append(_preset_fields(preset))
    layers.append(_parse_overrides(overrides or {}))
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer)
    return Preprocess(**merged)


def _preset_fields(name: str) -> dict[str, Any]:
    pp = get_preset(name)
    return {k: v for k, v in ((f, getattr(pp, f)) for f in _FIELDS) if v is not None}


def _parse_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in _FIELDS:
            raise UsageError(f"unknown preprocessing option {key!r}; known: {', '.join(_FIELDS)}")
        if value is None:
            continue
        if isinstance(value, str):
            if key == "size":
                value = parse_size(value)
            elif key in ("mean", "std"):
                value = parse_triplet(value, key)
            elif key == "layout":
                value = parse_layout(value)
        out[key] = value
    # Validate now so an error names the option rather than surfacing later from Preprocess().
    replace(Preprocess(), **out)
    return out


# ---------------------------------------------------------------------------------------------------------
# Per-channel statistics and the range a real image can reach.

def channel_stats(pp: Preprocess, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, std)`` as float32 arrays of shape ``[channels]``, in model channel order.

    One value is broadcast to every channel. A 1-channel (grayscale) model with a 3-value mean/std - e.g. the
    ``imagenet`` default - uses the average of the three, the closest single-channel equivalent.
    """
    if channels < 1:
        raise UsageError(f"invalid channel count {channels}; the model input must have 1 or 3 channels")
    out = []
    for name, values in (("mean", pp.mean), ("std", pp.std)):
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 1:
            arr = np.full(channels, arr[0])
        elif arr.size != channels:
            if channels == 1:
                arr = np.full(1, arr.mean())
            else:
                raise UsageError(
                    f"--{name} has {arr.size} values but the model input has {channels} channels; "
                    f"give 1 or {channels} values"
                )
        out.append(arr.astype(np.float32))
    return out[0], out[1]


def valid_range(pp: Preprocess, channels: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel lowest and highest normalized value a real image can produce.

    A pixel value v in 0..1 (``scale``) or 0..255 becomes (v - mean) / std, so with std > 0 the bounds are
    the images of black and white. The range is the same for every colour, hence already in model channel
    order (mean/std are given in that order).

    Returns:
        ``(low, high)``, float32 arrays of shape ``[channels]``.
    """
    mean, std = channel_stats(pp, channels)
    top = 1.0 if pp.scale else 255.0
    return ((0.0 - mean) / std).astype(np.float32), ((top - mean) / std).astype(np.float32)
