"""One (image, kernel) explanation: a results.json entry (docs/CONTRACT.md, "explain"), its metrics, parity, the
baselines' metrics and the local-explanation block."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, cast

from onnx_kernelviz.measure.metrics import KernelMetrics
from onnx_kernelviz.options import STATUSES, Status
from onnx_kernelviz.results.fields import JSON, integer, ints, mapping, number, string, unknown_keys

__all__ = ["Metrics", "Parity", "FocusMetrics", "BaselineMetrics", "KernelResult", "METRIC_KEYS", "PARITY_KEYS"]


@dataclass(frozen=True)
class Metrics:
    """The contract's metrics of one x' (docs/CONTRACT.md, "Metrics"); None where nothing was measured."""

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
        return cls(**{f.name: number(d.get(f.name), f"{where}.{f.name}") for f in fields(cls)})


METRIC_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Metrics))


@dataclass(frozen=True)
class Parity:
    """The torch copy against onnxruntime on x' (``parity_max_abs``, ``parity_rel``, ``parity_ok``)."""

    max_abs: float | None
    rel: float | None
    ok: bool | None
    #: the difference in quantization steps of the layer (int8 models; measure/tolerance.py), else None
    steps: float | None = None

    def to_json(self) -> JSON:
        d: JSON = {"parity_max_abs": self.max_abs, "parity_rel": self.rel, "parity_ok": self.ok}
        if self.steps is not None:
            d["parity_steps"] = self.steps
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str) -> Parity:
        ok = d.get("parity_ok")
        if ok is not None and not isinstance(ok, bool):
            raise ValueError(f"{where}.parity_ok is not true, false or null")
        return cls(number(d.get("parity_max_abs"), f"{where}.parity_max_abs"),
                   number(d.get("parity_rel"), f"{where}.parity_rel"), ok,
                   number(d.get("parity_steps"), f"{where}.parity_steps"))


PARITY_KEYS = ("parity_max_abs", "parity_rel", "parity_ok")


@dataclass(frozen=True)
class FocusMetrics:
    """A local explanation's numbers (docs/CONTRACT.md, "Local explanations"): the metrics restricted to the focus
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
        d = mapping(v, where)
        cells = d.get("cells")
        return cls(kept=number(d.get("kept"), f"{where}.kept"),
                   others_kept=number(d.get("others_kept"), f"{where}.others_kept"),
                   specificity_after=number(d.get("specificity_after"), f"{where}.specificity_after"),
                   specificity_before=number(d.get("specificity_before"), f"{where}.specificity_before"),
                   peak=cast("tuple[int, int] | None", ints(d.get("peak"), 2, f"{where}.peak")),
                   cells=None if cells is None else integer(cells, f"{where}.cells"),
                   rf_box=cast("tuple[int, int, int, int] | None", ints(d.get("rf_box"), 4, f"{where}.rf_box")),
                   oracle_gain=number(d.get("oracle_gain"), f"{where}.oracle_gain"),
                   extra=unknown_keys(d, {"peak", "cells", "rf_box", "kept", "others_kept", "specificity_before",
                                    "specificity_after", "oracle_gain"}))


@dataclass(frozen=True)
class BaselineMetrics:
    """One baseline on one (image, kernel), at the same mask area as ours (docs/METHOD.md)."""

    metrics: Metrics
    focus: FocusMetrics | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> JSON:
        focus = {} if self.focus is None else {"focus": self.focus.to_json()}
        return {**self.metrics.to_json(), **focus, **self.extra}

    @classmethod
    def from_json(cls, v: Any, where: str) -> BaselineMetrics:
        d = mapping(v, where)
        focus = d.get("focus")
        return cls(Metrics.from_json(d, where), None if focus is None else FocusMetrics.from_json(focus, where),
                   unknown_keys(d, {*METRIC_KEYS, "focus"}))


@dataclass(frozen=True)
class KernelResult:
    """One (image, kernel) explanation: a results.json entry (docs/CONTRACT.md). ``status`` ``ok``: measured;
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
        d = mapping(v, where)
        status = d.get("status")
        if status not in STATUSES:
            raise ValueError(f"{where}.status is {status!r}, not one of {', '.join(STATUSES)}")
        reason, loss = d.get("reason"), d.get("loss")
        files = mapping(d.get("files", {}), f"{where}.files")
        for name, path in files.items():
            if path is not None:
                string(path, f"{where}.files.{name}")
        notes = d.get("image_notes", [])
        if not isinstance(notes, list):
            raise ValueError(f"{where}.image_notes is not a list")
        baselines, focus = d.get("baselines"), d.get("focus")
        parity = Parity.from_json(d, where)
        seconds = number(d.get("seconds", 0.0), f"{where}.seconds")
        return cls(
            image=string(d.get("image"), f"{where}.image"), kernel=integer(d.get("kernel"), f"{where}.kernel"),
            status=cast(Status, status), reason=None if reason is None else string(reason, f"{where}.reason"),
            metrics=Metrics.from_json(d, where),
            parity=None if parity == Parity(None, None, None) else parity,
            steps=integer(d.get("steps", 0), f"{where}.steps"),
            seconds=0.0 if seconds is None else seconds, files=dict(files),
            image_notes=tuple(string(n, f"{where}.image_notes") for n in notes),
            loss=number(loss, f"{where}.loss"),
            baselines=None if baselines is None else {
                str(n): BaselineMetrics.from_json(b, f"{where}.baselines.{n}")
                for n, b in mapping(baselines, f"{where}.baselines").items()},
            focus=None if focus is None else FocusMetrics.from_json(focus, f"{where}.focus"),
            extra=unknown_keys(d, {"image", "kernel", "status", "reason", *METRIC_KEYS, *PARITY_KEYS, "steps",
                                   "seconds", "loss", "image_notes", "files", "baselines", "focus"}))
