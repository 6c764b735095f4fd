"""How pixels become model input: the :class:`Preprocess` settings, their checks and command-line parsing.

A model input x for one image is computed (in :func:`onnx_kernelviz.io.modelinput.to_model_input`) as::

    v = rgb01 (in [0, 1]) fitted to the input size as ``fit`` says  ->  channel order flipped if ``bgr``
    v * 255 unless ``scale``  ->  x = (v - mean) / std          # mean/std in the MODEL's channel order

Where the settings come from (see :func:`onnx_kernelviz.io.sidecar.resolve_preprocess`): command-line values,
a ``--preset`` (``io/presets.py``), the model's sidecar file ``NET.kernelviz.json`` and the ``imagenet``
defaults.
"""

from __future__ import annotations

import importlib
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.options import FITS, LAYOUTS, Fit, Layout

DEFAULT_FIT: Fit = "crop"

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
        fit: ``"crop"`` (resize the shorter side, centre-crop: proportions kept), ``"squash"`` (stretch to the
            input size) or ``"pad"`` (letterbox with the mean colour).

    Values are checked on construction (:class:`UsageError` on a bad one) and lists are turned into tuples,
    so a ``Preprocess`` built from JSON compares equal to one built in code.
    """

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)
    scale: bool = True
    bgr: bool = False
    layout: Layout | None = None
    fit: Fit = DEFAULT_FIT

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
        object.__setattr__(self, "fit", parse_fit(self.fit))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, written to results.json ``"settings"``; keys are the field names."""
        return {
            "size": list(self.size) if self.size is not None else None,
            "mean": list(self.mean),
            "std": list(self.std),
            "scale": self.scale,
            "bgr": self.bgr,
            "layout": self.layout,
            "fit": self.fit,
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


def parse_fit(text: str) -> Fit:
    """``"Crop"`` -> ``"crop"``; one of :data:`FITS`."""
    value = str(text).strip().lower()
    if value not in FITS:
        raise UsageError(f"invalid fit {text!r}: use one of {', '.join(FITS)}")
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


# The presets and the sidecar file have their own modules; the names stay importable from here.
_MOVED = {name: "onnx_kernelviz.io.presets" for name in ("register_preset", "get_preset", "list_presets",
                                                          "DEFAULT_PRESET")}
_MOVED.update({name: "onnx_kernelviz.io.sidecar" for name in ("SIDECAR_SUFFIX", "SIDECAR_KEYS", "sidecar_path",
                                                               "load_sidecar", "resolve_preprocess")})


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
