"""compare.json (docs/CONTRACT.md, "compare")."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from onnx_kernelviz.measure.pairs import SEPARATION, separation
from onnx_kernelviz.results.fields import JSON

__all__ = ["PairKept", "FocusPair", "CompareResult"]


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
        """The smaller self/other kept ratio (``measure.pairs.separation``)."""
        return separation(self.to_json())

    @property
    def told_apart(self) -> bool:
        """Each kernel keeps at least ``SEPARATION`` times more of itself than of the other (docs/METHOD.md)."""
        return not math.isnan(self.separation) and self.separation >= SEPARATION


@dataclass(frozen=True)
class FocusPair:
    """compare in focus scope: both kernels explained on the same focus cells (where both fire strongly:
    ``method.focus.pair_cells``), and kept_a / kept_b measured on those cells, for ours and each baseline."""

    peak: tuple[int, int]
    cells: int
    rf_box: tuple[int, int, int, int]
    ours: PairKept
    baselines: Mapping[str, PairKept]
    #: how much of its activation on these cells each kernel keeps on the reference alone (``a``, ``b``; the
    #: focus block's ``kept_on_reference``), None when not measured
    on_reference: tuple[float | None, float | None] = (None, None)

    def to_json(self) -> JSON:
        return {"peak": list(self.peak), "cells": self.cells, "rf_box": list(self.rf_box), "ours": self.ours.to_json(),
                "separation": self.ours.separation, "told_apart": self.ours.told_apart,
                "baselines": {n: b.to_json() for n, b in self.baselines.items()},
                "kept_on_reference": {"a": self.on_reference[0], "b": self.on_reference[1]}}


@dataclass(frozen=True)
class CompareResult:
    """compare.json (docs/CONTRACT.md, "compare"): kernels a and b of one layer on one image, and how well each
    explanation (ours, and every baseline at our mask's area) tells them apart. ``ours`` and ``baselines`` are on
    the whole map, as the contract says; in focus scope ``focus`` holds the same on the shared focus cells, and
    ``separation`` / ``told_apart`` (the verdict) are made of those."""

    model: str
    layer: str
    tensor: str
    layer_index: int
    image: str
    #: how the image was read and fitted to the input (io/decode.py, io/modelinput.py)
    image_notes: tuple[str, ...]
    kernels: tuple[int, int]
    correlation: float
    #: how the pair was chosen: ``{"by": "given"}``, or the automatic pick's rule and scores (compare.pick_pair)
    picked: Mapping[str, Any]
    contrast: float
    method: str
    filter_cosine: float | None
    ours: PairKept
    baselines: Mapping[str, PairKept]
    files: Mapping[str, str | None]
    #: what to try when ours does not tell the pair apart (measure.pairs.advice), else None
    advice: str | None = None
    #: ``focus`` (both explained on the pair's shared focus cells: ``focus``) or ``map``
    scope: str = "map"
    focus: FocusPair | None = None
    #: why a focus-scope compare fell back to the whole map (the pair shares no cell), else None
    scope_note: str | None = None

    @property
    def verdict(self) -> PairKept:
        """The numbers the verdict is made of: on the shared focus cells in focus scope, else on the whole map."""
        return self.ours if self.focus is None else self.focus.ours

    def to_json(self) -> JSON:
        focus: JSON = {} if self.focus is None else {"focus": self.focus.to_json()}
        if self.scope_note:
            focus["scope_note"] = self.scope_note
        return {"model": self.model, "layer": self.layer, "tensor": self.tensor, "layer_index": self.layer_index,
                "image": self.image, "image_notes": list(self.image_notes), "kernels": list(self.kernels),
                "correlation": self.correlation, "picked": dict(self.picked), "contrast": self.contrast,
                "method": self.method, "scope": self.scope, "filter_cosine": self.filter_cosine,
                "separation": self.verdict.separation, "told_apart": self.verdict.told_apart, "advice": self.advice,
                "ours": self.ours.to_json(), "baselines": {n: b.to_json() for n, b in self.baselines.items()},
                **focus, "files": dict(self.files)}
