"""compare.json (docs/CONTRACT.md, "compare")."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from onnx_kernelviz.measure.pairs import SEPARATION, separation
from onnx_kernelviz.results.fields import JSON

__all__ = ["PairKept", "CompareResult"]


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
class CompareResult:
    """compare.json (docs/CONTRACT.md, "compare"): kernels a and b of one layer on one image, and how well each
    explanation (ours, and every baseline at our mask's area) tells them apart."""

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

    def to_json(self) -> JSON:
        return {"model": self.model, "layer": self.layer, "tensor": self.tensor, "layer_index": self.layer_index,
                "image": self.image, "image_notes": list(self.image_notes), "kernels": list(self.kernels),
                "correlation": self.correlation, "picked": dict(self.picked), "contrast": self.contrast,
                "method": self.method, "filter_cosine": self.filter_cosine, "separation": self.ours.separation,
                "told_apart": self.ours.told_apart, "advice": self.advice, "ours": self.ours.to_json(),
                "baselines": {n: b.to_json() for n, b in self.baselines.items()}, "files": dict(self.files)}
