"""What a run produces, as typed records serialised to exactly the JSON of docs/CONTRACT.md.

``results.json`` is a :class:`RunHeader`'s fields plus ``"results"``: a list of :class:`KernelResult`;
``compare.json`` is a :class:`CompareResult`. ``to_json`` gives the contract's dict (NaN/Inf are written as null by
``io.files.write_json``); ``from_json`` reads one back and raises ``ValueError`` naming the first bad field. Keys a
record does not know (written by a newer version, or added by hand) are kept in ``extra`` and written back after
its own keys, unchanged, so resuming never loses them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, cast

from onnx_kernelviz.measure.metrics import KernelMetrics, separation
from onnx_kernelviz.options import STATUSES, Status

__all__ = ["Metrics", "Parity", "FocusMetrics", "BaselineMetrics", "KernelResult", "RunHeader", "PairKept",
           "CompareResult", "JSON"]

JSON = dict[str, Any]


# -- reading JSON values with a message that names the field --------------------------------------------------

def _number(v: Any, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where} is {type(v).__name__}, not a number")
    return float(v)


def _integer(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{where} is {type(v).__name__}, not an integer")
    return v


def _string(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{where} is {type(v).__name__}, not a string")
    return v


def _object(v: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise ValueError(f"{where} is {type(v).__name__}, not an object")
    return v


def _ints(v: Any, n: int, where: str) -> tuple[int, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != n:
        raise ValueError(f"{where} is not a list of {n} integers")
    return tuple(_integer(x, where) for x in v)


def _extra(d: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known}


# -- records ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Metrics:
    """The contract's metrics of one x' (CONTRACT.md, "Metrics"); None where nothing was measured."""

    kept: float | None = None
    fidelity: float | None = None
    others_kept: float | None = None
    specificity_before: float | None = None
    specificity_after: float | None = None
    mask_area: float | None = None

    @classmethod
    def of(cls, m: KernelMetrics, mask_area: float | None) -> Metrics:
        return cls(**asdict(m), mask_area=mask_area)

    def to_json(self) -> JSON:
        return asdict(self)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> Metrics:
        return cls(**{f.name: _number(d.get(f.name), f"{where}.{f.name}") for f in fields(cls)})


METRIC_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Metrics))


@dataclass(frozen=True)
class Parity:
    """The torch copy against onnxruntime on x' (``parity_max_abs``, ``parity_rel``, ``parity_ok``)."""

    max_abs: float | None
    rel: float | None
    ok: bool | None

    def to_json(self) -> JSON:
        return {"parity_max_abs": self.max_abs, "parity_rel": self.rel, "parity_ok": self.ok}

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> Parity:
        ok = d.get("parity_ok")
        if ok is not None and not isinstance(ok, bool):
            raise ValueError(f"{where}.parity_ok is not true, false or null")
        return cls(_number(d.get("parity_max_abs"), f"{where}.parity_max_abs"),
                   _number(d.get("parity_rel"), f"{where}.parity_rel"), ok)


PARITY_KEYS = ("parity_max_abs", "parity_rel", "parity_ok")


@dataclass(frozen=True)
class FocusMetrics:
    """A local explanation's numbers (CONTRACT.md, "Local explanations"): the metrics restricted to the focus
    cells F around the kernel's ``peak`` (row, col), F's size ``cells``, its receptive field ``rf_box``
    ``[top, left, bottom, right)`` and ``oracle_gain`` (None when not computed). A baseline's block holds only
    ``kept``, ``others_kept`` and ``specificity_after``; the fields it lacks are None."""

    kept: float | None
    others_kept: float | None
    specificity_after: float | None
    specificity_before: float | None = None
    peak: tuple[int, int] | None = None
    cells: int | None = None
    rf_box: tuple[int, int, int, int] | None = None
    oracle_gain: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> JSON:
        return {"peak": None if self.peak is None else list(self.peak), "cells": self.cells,
                "rf_box": None if self.rf_box is None else list(self.rf_box), "kept": self.kept,
                "others_kept": self.others_kept, "specificity_before": self.specificity_before,
                "specificity_after": self.specificity_after, "oracle_gain": self.oracle_gain, **self.extra}

    @classmethod
    def from_json(cls, v: Any, where: str) -> FocusMetrics:
        d = _object(v, where)
        cells = d.get("cells")
        return cls(kept=_number(d.get("kept"), f"{where}.kept"),
                   others_kept=_number(d.get("others_kept"), f"{where}.others_kept"),
                   specificity_after=_number(d.get("specificity_after"), f"{where}.specificity_after"),
                   specificity_before=_number(d.get("specificity_before"), f"{where}.specificity_before"),
                   peak=cast("tuple[int, int] | None", _ints(d.get("peak"), 2, f"{where}.peak")),
                   cells=None if cells is None else _integer(cells, f"{where}.cells"),
                   rf_box=cast("tuple[int, int, int, int] | None", _ints(d.get("rf_box"), 4, f"{where}.rf_box")),
                   oracle_gain=_number(d.get("oracle_gain"), f"{where}.oracle_gain"),
                   extra=_extra(d, {"peak", "cells", "rf_box", "kept", "others_kept", "specificity_before",
                                    "specificity_after", "oracle_gain"}))


@dataclass(frozen=True)
class BaselineMetrics:
    """One baseline on one (image, kernel), at the same mask area as ours (METHOD.md)."""

    metrics: Metrics
    focus: FocusMetrics | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> JSON:
        focus = {} if self.focus is None else {"focus": self.focus.to_json()}
        return {**self.metrics.to_json(), **focus, **self.extra}

    @classmethod
    def from_json(cls, v: Any, where: str) -> BaselineMetrics:
        d = _object(v, where)
        focus = d.get("focus")
        return cls(Metrics.from_json(d, where), None if focus is None else FocusMetrics.from_json(focus, where),
                   _extra(d, {*METRIC_KEYS, "focus"}))


@dataclass(frozen=True)
class KernelResult:
    """One (image, kernel) explanation: a results.json entry (CONTRACT.md). ``status`` ``ok``: measured;
    ``inactive`` / ``failed``: ``reason`` says why, metrics and parity are null, ``files`` is empty."""

    image: str
    kernel: int
    status: Status
    reason: str | None = None
    metrics: Metrics = Metrics()
    parity: Parity | None = None
    steps: int = 0
    #: this explanation's own share of the optimization time (a row that stops early costs less)
    seconds: float = 0.0
    files: Mapping[str, str | None] = field(default_factory=dict)
    image_notes: tuple[str, ...] = ()
    #: the objective's best value (ok results)
    loss: float | None = None
    baselines: Mapping[str, BaselineMetrics] | None = None
    focus: FocusMetrics | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        return (self.image, self.kernel)

    @property
    def finished(self) -> bool:
        """ok or inactive: resuming keeps it; a failed result is tried again."""
        return self.status in ("ok", "inactive")

    def to_json(self) -> JSON:
        d: JSON = {"image": self.image, "kernel": self.kernel, "status": self.status}
        if self.reason is not None:
            d["reason"] = self.reason
        d.update(self.metrics.to_json())
        d.update((self.parity or Parity(None, None, None)).to_json())
        d.update(steps=self.steps, seconds=self.seconds)
        if self.loss is not None:
            d["loss"] = self.loss
        d.update(image_notes=list(self.image_notes), files=dict(self.files))
        if self.baselines is not None:
            d["baselines"] = {name: b.to_json() for name, b in self.baselines.items()}
        if self.focus is not None:
            d["focus"] = self.focus.to_json()
        return {**d, **self.extra}

    @classmethod
    def from_json(cls, v: Any, where: str) -> KernelResult:
        d = _object(v, where)
        status = d.get("status")
        if status not in STATUSES:
            raise ValueError(f"{where}.status is {status!r}, not one of {', '.join(STATUSES)}")
        reason, loss = d.get("reason"), d.get("loss")
        files = _object(d.get("files", {}), f"{where}.files")
        for name, path in files.items():
            if path is not None:
                _string(path, f"{where}.files.{name}")
        notes = d.get("image_notes", [])
        if not isinstance(notes, list):
            raise ValueError(f"{where}.image_notes is not a list")
        baselines, focus = d.get("baselines"), d.get("focus")
        parity = Parity.from_json(d, where)
        seconds = _number(d.get("seconds", 0.0), f"{where}.seconds")
        return cls(
            image=_string(d.get("image"), f"{where}.image"), kernel=_integer(d.get("kernel"), f"{where}.kernel"),
            status=cast(Status, status), reason=None if reason is None else _string(reason, f"{where}.reason"),
            metrics=Metrics.from_json(d, where),
            parity=None if parity == Parity(None, None, None) else parity,
            steps=_integer(d.get("steps", 0), f"{where}.steps"),
            seconds=0.0 if seconds is None else seconds, files=dict(files),
            image_notes=tuple(_string(n, f"{where}.image_notes") for n in notes),
            loss=_number(loss, f"{where}.loss"),
            baselines=None if baselines is None else {
                str(n): BaselineMetrics.from_json(b, f"{where}.baselines.{n}")
                for n, b in _object(baselines, f"{where}.baselines").items()},
            focus=None if focus is None else FocusMetrics.from_json(focus, f"{where}.focus"),
            extra=_extra(d, {"image", "kernel", "status", "reason", *METRIC_KEYS, *PARITY_KEYS, "steps", "seconds",
                             "loss", "image_notes", "files", "baselines", "focus"}))


@dataclass(frozen=True)
class RunHeader:
    """results.json's fields besides ``results``: what ran, where, and with which settings. ``fingerprint``
    identifies the settings that decide a result (``pipeline.journal.fingerprint``): ``--resume`` refuses a
    folder whose fingerprint differs."""

    model: str
    model_sha256: str
    layer: str
    tensor: str
    layer_index: int | None
    method: str
    device: str
    ort_providers: tuple[str, ...]
    version: str
    settings: Mapping[str, Any]
    fingerprint: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> JSON:
        return {"model": self.model, "model_sha256": self.model_sha256, "layer": self.layer, "tensor": self.tensor,
                "layer_index": self.layer_index, "method": self.method, "device": self.device,
                "ort_providers": list(self.ort_providers), "version": self.version, "settings": dict(self.settings),
                "fingerprint": self.fingerprint, **self.extra}

    @classmethod
    def from_json(cls, v: Any, where: str = "results.json") -> RunHeader:
        d = _object(v, where)
        index, fp = d.get("layer_index"), d.get("fingerprint")
        providers = d.get("ort_providers", [])
        if not isinstance(providers, list):
            raise ValueError(f"{where}.ort_providers is not a list")
        return cls(
            model=_string(d.get("model"), f"{where}.model"),
            model_sha256=_string(d.get("model_sha256"), f"{where}.model_sha256"),
            layer=_string(d.get("layer"), f"{where}.layer"), tensor=_string(d.get("tensor"), f"{where}.tensor"),
            layer_index=None if index is None else _integer(index, f"{where}.layer_index"),
            method=_string(d.get("method"), f"{where}.method"), device=str(d.get("device", "")),
            ort_providers=tuple(str(p) for p in providers), version=str(d.get("version", "")),
            settings=dict(_object(d.get("settings", {}), f"{where}.settings")),
            fingerprint=None if fp is None else _string(fp, f"{where}.fingerprint"),
            extra=_extra(d, {"model", "model_sha256", "layer", "tensor", "layer_index", "method", "device",
                             "ort_providers", "version", "settings", "fingerprint", "results"}))


@dataclass(frozen=True)
class PairKept:
    """kept_a and kept_b under x'_a (``aa``, ``ab``) and under x'_b (``ba``, ``bb``): compare.json's
    ``{"a": {"kept_a", "kept_b"}, "b": {...}}``."""

    aa: float
    ab: float
    ba: float
    bb: float

    def to_json(self) -> JSON:
        return {"a": {"kept_a": self.aa, "kept_b": self.ab}, "b": {"kept_a": self.ba, "kept_b": self.bb}}

    @property
    def separation(self) -> float:
        """The smaller self/other kept ratio (``measure.metrics.separation``)."""
        return separation(self.to_json())

    @property
    def told_apart(self) -> bool:
        from onnx_kernelviz.measure.metrics import SEPARATION

        return not math.isnan(self.separation) and self.separation >= SEPARATION


@dataclass(frozen=True)
class CompareResult:
    """compare.json (CONTRACT.md, "compare"): kernels a and b of one layer on one image, and how well each
    explanation (ours, and every baseline at our mask's area) tells them apart."""

    model: str
    layer: str
    tensor: str
    layer_index: int
    image: str
    kernels: tuple[int, int]
    correlation: float
    picked: str
    contrast: float
    method: str
    filter_cosine: float | None
    ours: PairKept
    baselines: Mapping[str, PairKept]
    files: Mapping[str, str | None]

    def to_json(self) -> JSON:
        return {"model": self.model, "layer": self.layer, "tensor": self.tensor, "layer_index": self.layer_index,
                "image": self.image, "kernels": list(self.kernels), "correlation": self.correlation,
                "picked": self.picked, "contrast": self.contrast, "method": self.method,
                "filter_cosine": self.filter_cosine, "ours": self.ours.to_json(),
                "baselines": {n: b.to_json() for n, b in self.baselines.items()}, "files": dict(self.files)}
