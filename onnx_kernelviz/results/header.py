"""results.json's header: what ran, where, with which settings (docs/CONTRACT.md, "explain")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from onnx_kernelviz.results.fields import JSON, integer, ints, mapping, string, unknown_keys

__all__ = ["RunHeader"]


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
    #: the layer's activation ``[C, h, w]`` (the report's sentences name the map's size and the other C-1 kernels)
    activation_shape: tuple[int, ...] | None = None
    #: the working folder of the run (absolute): what its relative image paths are relative to (a resume from
    #: another folder resolves them against it; None in results.json written before it was recorded)
    cwd: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> JSON:
        shape = None if self.activation_shape is None else list(self.activation_shape)
        return {"model": self.model, "model_sha256": self.model_sha256, "layer": self.layer, "tensor": self.tensor,
                "layer_index": self.layer_index, "activation_shape": shape, "method": self.method,
                "device": self.device,
                "ort_providers": list(self.ort_providers), "version": self.version, "settings": dict(self.settings),
                "fingerprint": self.fingerprint, **({} if self.cwd is None else {"cwd": self.cwd}), **self.extra}

    @classmethod
    def from_json(cls, v: Any, where: str = "results.json") -> RunHeader:
        d = mapping(v, where)
        index, fp, shape, cwd = d.get("layer_index"), d.get("fingerprint"), d.get("activation_shape"), d.get("cwd")
        providers = d.get("ort_providers", [])
        if not isinstance(providers, list):
            raise ValueError(f"{where}.ort_providers is not a list")
        return cls(
            model=string(d.get("model"), f"{where}.model"),
            model_sha256=string(d.get("model_sha256"), f"{where}.model_sha256"),
            layer=string(d.get("layer"), f"{where}.layer"), tensor=string(d.get("tensor"), f"{where}.tensor"),
            layer_index=None if index is None else integer(index, f"{where}.layer_index"),
            method=string(d.get("method"), f"{where}.method"), device=str(d.get("device", "")),
            ort_providers=tuple(str(p) for p in providers), version=str(d.get("version", "")),
            settings=dict(mapping(d.get("settings", {}), f"{where}.settings")),
            fingerprint=None if fp is None else string(fp, f"{where}.fingerprint"),
            activation_shape=None if shape is None else ints(shape, len(shape) if isinstance(shape, list) else 3,
                                                             f"{where}.activation_shape"),
            cwd=None if cwd is None else string(cwd, f"{where}.cwd"),
            extra=unknown_keys(d, {"model", "model_sha256", "layer", "tensor", "layer_index", "activation_shape",
                                   "method", "device", "ort_providers", "version", "settings", "fingerprint",
                                   "cwd", "results"}))
