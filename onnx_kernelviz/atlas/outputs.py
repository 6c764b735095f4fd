"""The atlas's tables: one row per (layer, kernel) as Arrow, written once to ``kernels.parquet``, and
``atlas.json`` (CONTRACT.md, "kernelviz atlas"). Both come from the same rows, so they cannot disagree.

Decisions made here (docs/ATLAS.md): **dead** — r_k = 0 on every image used; **duplicate** pair a < b — Pearson
correlation of r_a and r_b over all images and positions ≥ ``dup_corr`` (kernels without variance are in no
pair); ``duplicate_of`` of kernel b is the smallest a it duplicates (−1 when none).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from onnx_kernelviz.atlas.rf import LayerField
from onnx_kernelviz.atlas.stats import HIST_EDGES
from onnx_kernelviz.atlas.stream import ShardStats
from onnx_kernelviz.errors import KernelvizError
from onnx_kernelviz.frontend.layers import Layer
from onnx_kernelviz.io.files import atomic_file, write_json
from onnx_kernelviz.model import Model

if TYPE_CHECKING:
    from onnx_kernelviz.atlas.run import AtlasSettings

#: correlated kernels listed per kernel (kernels.parquet ``correlated``, the kernel page)
CORRELATED = 5

_METRICS = ("kept", "fidelity", "others_kept", "specificity_before", "specificity_after", "mask_area",
            "parity_rel", "parity_ok")


@dataclass
class Atlas:
    """``header``: atlas.json; ``kernels``: the rows of kernels.parquet (dicts of the columns)."""

    header: dict
    kernels: list[dict] = field(default_factory=list)


def filter_cosines(model: Model, layer: Layer) -> np.ndarray | None:
    """Cosine of every pair of the layer's conv filters ``[C, C]``, or None when they read different input
    channels (grouped and depthwise convs: the cosine would compare unrelated weights) or are not constants."""
    if layer.group != 1:
        return None
    node = model.graph.producer.get(layer.conv_output)
    w = None if node is None or len(node.inputs) < 2 else model.graph.constant(node.inputs[1])
    if w is None or w.ndim < 2 or len(w) != layer.channels:
        return None
    f = w.reshape(len(w), -1).astype(np.float64)
    f /= np.linalg.norm(f, axis=1, keepdims=True) + 1e-12
    return f @ f.T


def build_atlas(model: Model, layers: list[Layer], paths: list[Path], stats: ShardStats,
                fields: dict[int, LayerField], explained: dict[tuple[int, int], list[dict]],
                settings: AtlasSettings, header: dict) -> Atlas:
    """The rows and the header from the merged statistics and the saved explanations."""
    from onnx_kernelviz.atlas.run import tile_name

    names = [str(p) for p in paths]
    rows, layer_info, dead_all, dups_all, details = [], [], [], [], []
    for la in layers:
        s = stats.layers[la.index]
        corr = s.moments.corr()
        cos = filter_cosines(model, la)
        dead, rate, std = s.dead(), s.firing_rate(), s.moments.std()
        dups = s.duplicates(settings.dup_corr)
        dup_of = np.full(la.channels, -1)
        for a, b, _ in sorted(dups, reverse=True):  # reversed: the smallest a is written last and kept
            dup_of[b] = a
        others = corr.copy()
        np.fill_diagonal(others, -np.inf)
        for k in range(la.channels):
            order = [int(j) for j in np.argsort(-others[k], kind="stable")[:CORRELATED] if np.isfinite(others[k, j])]
            sites = s.top.sites(k)
            rows.append({
                "layer": la.index, "tensor": la.tensor, "kernel": k, "firing_rate": float(rate[k]),
                "mean": float(s.moments.mean[k]), "std": float(std[k]), "max": float(s.peak_max[k]),
                "dead": bool(dead[k]), "duplicate_of": int(dup_of[k]),
                "rarely_firing": bool(not dead[k] and rate[k] <= settings.rare),
                "max_corr": float(others[k, order[0]]) if order else None,
                "correlated": [{"kernel": j, "corr": float(corr[k, j]),
                                "filter_cosine": None if cos is None else float(cos[k, j])} for j in order],
                "histogram": [int(v) for v in s.hist[k]],
                "exemplars": [{"image": names[i], "row": r, "col": c, "value": v,
                               "rf_box": list(fields[la.index].box(r, c))} for i, r, c, v in sites],
                "exemplar_strip": tile_name(la.index, k, "x") if sites else None,
                "explanations": [_explanation(e, k) for e in explained.get((la.index, k), [])],
            })
        dead_all += [[la.index, int(k)] for k in np.nonzero(dead)[0]]
        dups_all += [[la.index, a, b, c] for a, b, c in dups]
        details += [{"layer": la.index, "a": a, "b": b, "corr": c,
                     "filter_cosine": None if cos is None else float(cos[a, b])} for a, b, c in dups]
        rare = int(sum(bool(r["rarely_firing"]) for r in rows[-la.channels:]))
        shape = [fields[la.index].rows.m, fields[la.index].cols.m]
        layer_info.append({"index": la.index, "tensor": la.tensor, "channels": la.channels, "name": la.name,
                           "group": la.group, "shape": shape, "dead": int(dead.sum()), "duplicates": len(dups),
                           "rarely_firing": rare})
    skipped = [{"image": names[s.image], "reason": s.reason} for s in stats.skipped]
    head = {"model": str(model.path), "model_sha256": model.loaded.sha256, "images": stats.layers[
        layers[0].index].images, "images_skipped": len(skipped), **header, "layers": layer_info,
            "dead": dead_all, "duplicates": dups_all, "duplicate_details": details, "skipped": skipped,
            "histogram_edges": [float(e) for e in HIST_EDGES]}
    return Atlas(head, rows)


def _explanation(e: dict, kernel: int) -> dict:
    """A saved explanation record as the ``explanations`` column's struct (fixed keys, nulls where missing)."""
    return {"kernel": kernel, "image": e["image"], "row": e["row"], "col": e["col"], "value": e["value"],
            "status": e["status"], "reason": e.get("reason"), **{m: e.get(m) for m in _METRICS},
            "steps": e.get("steps"), "seconds": e.get("seconds"), "rf_box": e.get("rf_box"), "strip": e.get("strip"),
            "focus": e.get("focus")}


def _schema() -> Any:
    import pyarrow as pa

    exemplar = pa.struct([("image", pa.string()), ("row", pa.int32()), ("col", pa.int32()), ("value", pa.float64()),
                          ("rf_box", pa.list_(pa.int32()))])
    # the contract's focus block (CONTRACT.md, "Local explanations"); null in map scope
    focus = pa.struct([("peak", pa.list_(pa.int32())), ("cells", pa.int32()), ("rf_box", pa.list_(pa.int32())),
                       ("kept", pa.float64()), ("others_kept", pa.float64()), ("specificity_before", pa.float64()),
                       ("specificity_after", pa.float64()), ("oracle_gain", pa.float64()), ("separable", pa.bool_()),
                       ("companions", pa.list_(pa.int32())), ("kept_on_reference", pa.float64()),
                       ("binary_mask", pa.bool_())])
    correlated = pa.struct([("kernel", pa.int32()), ("corr", pa.float64()), ("filter_cosine", pa.float64())])
    explanation = pa.struct([("kernel", pa.int32()), ("image", pa.string()), ("row", pa.int32()), ("col", pa.int32()),
                             ("value", pa.float64()), ("status", pa.string()), ("reason", pa.string()),
                             *[(m, pa.bool_() if m == "parity_ok" else pa.float64()) for m in _METRICS],
                             ("steps", pa.int32()), ("seconds", pa.float64()), ("rf_box", pa.list_(pa.int32())),
                             ("strip", pa.string()), ("focus", focus)])
    return pa.schema([
        ("layer", pa.int32()), ("tensor", pa.string()), ("kernel", pa.int32()), ("firing_rate", pa.float64()),
        ("mean", pa.float64()), ("std", pa.float64()), ("max", pa.float64()), ("dead", pa.bool_()),
        ("duplicate_of", pa.int32()), ("rarely_firing", pa.bool_()), ("max_corr", pa.float64()),
        ("correlated", pa.list_(correlated)), ("histogram", pa.list_(pa.int64())),
        ("exemplars", pa.list_(exemplar)), ("exemplar_strip", pa.string()), ("explanations", pa.list_(explanation))])


def pyarrow_or_fail() -> Any:
    """``pyarrow.parquet``, or one error line naming the extra that installs it."""
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise KernelvizError("kernelviz atlas writes kernels.parquet with pyarrow: pip install "
                             "'onnx-kernelviz[atlas]'") from None
    return pq


def write_outputs(out: Path, atlas: Atlas) -> None:
    """``out/kernels.parquet`` (one Arrow table, written once) and ``out/atlas.json``."""
    import pyarrow as pa

    pq = pyarrow_or_fail()
    table = pa.Table.from_pylist(atlas.kernels, schema=_schema())
    with atomic_file(out / "kernels.parquet") as f:
        pq.write_table(table, f)
    write_json(out / "atlas.json", atlas.header)
