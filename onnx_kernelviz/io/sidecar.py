"""The model's sidecar file ``NET.kernelviz.json`` and the precedence between sources of preprocessing settings
(command line > ``--preset`` > sidecar > ``imagenet``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.io.preprocess import (
    LAYOUTS,
    Preprocess,
    _check_size,
    _check_values,
    parse_fit,
    parse_layout,
    parse_size,
    parse_triplet,
)
from onnx_kernelviz.io.presets import DEFAULT_PRESET, get_preset
from onnx_kernelviz.safefile import FileTooLarge, NotRegularFile, read_capped

SIDECAR_SUFFIX = ".kernelviz.json"
SIDECAR_KEYS = ("size", "mean", "std", "scale", "bgr", "layout", "fit", "preset")
_FIELDS = tuple(f.name for f in fields(Preprocess))
MAX_SIDECAR_BYTES = 1 << 20


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
        (1 or 3 numbers), ``scale``, ``bgr`` (booleans), ``layout`` ("nchw"/"nhwc"), ``fit``
        ("crop"/"squash"/"pad"), ``preset`` (a registered name), with values normalized (tuples, lower-case
        strings).

    Raises:
        UsageError: unreadable file, invalid JSON, not an object, unknown key or a wrong value; the message
            names the file.
    """
    model_path = Path(model_path)
    candidates = [sidecar_path(model_path), model_path.with_name(model_path.name + SIDECAR_SUFFIX)]
    # is_file: a FIFO or device named like a sidecar is no sidecar (and stat never blocks)
    found = [p for i, p in enumerate(candidates) if p.is_file() and p not in candidates[:i]]
    if not found:
        return {}
    if len(found) > 1:
        raise UsageError(f"both {found[0]} and {found[1]} exist; keep one sidecar file per model")
    path = found[0]
    try:
        data = json.loads(read_capped(path, MAX_SIDECAR_BYTES).decode("utf-8"))
    except FileTooLarge:
        raise UsageError(f"invalid sidecar file {path}: larger than {MAX_SIDECAR_BYTES >> 20} MB; a sidecar holds a "
                         "few preprocessing settings") from None
    except NotRegularFile as exc:
        raise UsageError(f"invalid sidecar file {path}: it is {exc.kind}, not a regular file; remove it") from None
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
            elif key == "fit":
                if not isinstance(value, str):
                    raise UsageError(f"invalid fit {value!r}: use one of crop, squash, pad")
                out[key] = parse_fit(value)
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

    1. ``overrides`` - explicit values, e.g. ``--size``/``--mean``/``--std``/``--scale``/``--bgr``/``--layout``/
       ``--fit`` from the command line; ``None`` values mean "not given" and are skipped. Strings are parsed like the
       CLI does (``"224x224"``, ``"0.5,0.5,0.5"``, ``"nhwc"``).
    2. ``preset`` - a ``--preset`` name given on the command line.
    3. The sidecar file (:func:`load_sidecar`): its explicit values over its own ``preset`` key.
    4. The default preset (``imagenet``).

    A preset sets every normalization field (mean, std, scale, bgr), never ``fit``, and ``size``/``layout`` only
    if it defines them, so ``--preset raw`` keeps a sidecar's ``size``. Fields still unset stay ``None``
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
    # a preset never sets fit: its default would override the sidecar's choice
    return {k: v for k, v in ((f, getattr(pp, f)) for f in _FIELDS if f != "fit") if v is not None}


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
            elif key == "fit":
                value = parse_fit(value)
        out[key] = value
    # Validate now so an error names the option rather than surfacing later from Preprocess().
    replace(Preprocess(), **out)
    return out


