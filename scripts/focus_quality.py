"""Issue #11's quality table for local explanations (focus scope), from explain's own output folders.

Each case is one ``ok`` result of results.json with its ``focus`` block and its mask.npy, so the table judges
exactly what ``kernelviz explain`` writes (scripts/evaluate.py calls :func:`cases_of` on its runs and prints
:func:`quality_table`). The readability numbers are measure/focus.py's (``readability``, ``kept_iou``), as in
scripts/focus_sweep.py.

The bar (median per model and layer): kept ≥ 0.9; others_kept ≤ 0.4; gain ≥ ×3, or ≥ 0.7 of the bound where the
bound is lower; ≥ 80 % of the kept area in its 3 largest regions; ≥ 90 % of the mask inside the rf_box; kept area
≤ 30 % of the rf_box; IoU of the top kernels' kept areas on one image ≤ 0.3; ≤ 3 s per kernel at the mid layer
(2 CPU cores, bound included); ours beats each baseline at equal area on F in ≥ 90 % of cases. Beside kept/box
the table prints ``hidden`` (not part of the bar): the share of the mask's mass at ≤ ½, what x' shows outside
the kept area, since a faint mask meets the area by hiding content rather than by showing less; and ``on ref.``
(not part of the bar): the share of cases whose kernel keeps ≥ 0.9 of its activation on F on the reference alone
(``kept_on_reference``), which need no detail of the photo to fire there (the report says so); ``binary``: the rows
showing the small-box binary mask (a count). A median that 2 decimals would print as the bar's line itself is
printed to 3.
"""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from onnx_kernelviz.measure.focus import kept_iou, readability
from onnx_kernelviz.report.sentence import ENOUGH_GAIN, PART_OF_BOUND, needs_no_photo  # the bar's gain, one home

__all__ = ["cases_of", "quality_rows", "quality_table"]


def cases_of(folder: Path, model: str, layer: int) -> list[dict[str, Any]]:
    """One dict per ``ok`` result with a ``focus`` block in ``folder``/results.json: the block's numbers, its gain
    and gain/bound, the mask's readability, whether ours beats every baseline on F, and the mask itself."""
    doc = json.loads((folder / "results.json").read_text())
    out = []
    for r in doc["results"]:
        f = r.get("focus")
        if r.get("status") != "ok" or not f or not r["files"].get("mask_npy"):
            continue
        mask = np.load(folder / r["files"]["mask_npy"])
        gain = f["specificity_after"] / f["specificity_before"] if f.get("specificity_before") else None
        bound = f.get("oracle_gain")
        base = {n: (b.get("focus") or {}).get("specificity_after") for n, b in (r.get("baselines") or {}).items()}
        out.append({"model": model, "layer": layer, "image": r["image"], "kernel": r["kernel"], "kept": f["kept"],
                    "others_kept": f["others_kept"], "gain": gain, "oracle_gain": bound,
                    "ratio": gain / bound if gain and bound else None, "seconds": r["seconds"],
                    "on_reference": needs_no_photo(f), "binary": bool(f.get("binary_mask")),
                    "wins": ({n: f["specificity_after"] > v for n, v in base.items() if v is not None} or None),
                    **readability(mask, tuple(f["rf_box"])).to_dict(), "mask": mask})
    return out


def _med(values) -> float:
    v = [x for x in values if x is not None and np.isfinite(x)]
    return float(np.median(v)) if v else float("nan")


def quality_rows(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians per (model, layer); ``iou``: over the pairs of kernels explained on the same image; ``wins``: per
    baseline, the share of cases where ours has the higher specificity_after on F."""
    rows = []
    for key in dict.fromkeys((c["model"], c["layer"]) for c in cases):
        cs = [c for c in cases if (c["model"], c["layer"]) == key]
        ious = [kept_iou(a["mask"], b["mask"]) for image in dict.fromkeys(c["image"] for c in cs)
                for a, b in combinations([c for c in cs if c["image"] == image], 2)]
        names = sorted({n for c in cs for n in (c["wins"] or {})})
        wins = {n: float(np.mean([c["wins"][n] for c in cs if c["wins"] and n in c["wins"]])) for n in names}
        rows.append({"model": key[0], "layer": key[1], "n": len(cs), "iou": _med(ious), "wins": wins,
                     "on_reference": float(np.mean([c["on_reference"] for c in cs])),
                     "binary": sum(bool(c.get("binary")) for c in cs),
                     **{m: _med(c[m] for c in cs) for m in ("kept", "others_kept", "gain", "oracle_gain", "ratio",
                                                            "top3_share", "inside", "box_area", "hidden", "seconds")}})
    return rows


def _meets(r: dict[str, Any]) -> str:
    """The bar's rows this (model, layer) misses, or ✓."""
    miss = [name for name, ok in (
        ("kept", r["kept"] >= 0.9), ("others", r["others_kept"] <= 0.4),
        ("gain", r["gain"] >= ENOUGH_GAIN or (r["ratio"] == r["ratio"] and r["ratio"] >= PART_OF_BOUND)),
        ("regions", r["top3_share"] >= 0.8), ("inside", r["inside"] >= 0.9), ("area", r["box_area"] <= 0.3),
        ("distinct", not r["iou"] > 0.3), ("baselines", all(w >= 0.9 for w in r["wins"].values())))
        if not ok]
    return "✓" if not miss else "misses " + ", ".join(miss)


def _on(value: float, line: float) -> str:
    """``value`` to 2 decimals, or to 3 where 2 would print the bar's ``line`` itself (0.403 printed as 0.40 read as
    met beside "misses others")."""
    return f"{value:.3f}" if f"{value:.2f}" == f"{line:.2f}" and value != line else f"{value:.2f}"


def quality_table(cases: list[dict[str, Any]]) -> str:
    """The markdown table: one row per (model, layer), medians, and which parts of the bar it misses; ``binary``:
    how many rows show the small-box binary mask."""
    if not cases:
        return "(no focus-scope results)"
    lines = ["| model | layer | n | kept | others_kept | gain | bound | gain/bound | top-3 share | inside box | "
             "kept/box | hidden | on ref. | binary | IoU top-k | s/kernel | beats each baseline | bar |",
             "|" + "---|" * 18]
    for r in quality_rows(cases):
        wins = ", ".join(f"{n} {w:.0%}" for n, w in r["wins"].items()) or "—"
        lines.append(f"| {r['model']} | {r['layer']} | {r['n']} | {_on(r['kept'], 0.9)} | "
                     f"{_on(r['others_kept'], 0.4)} | ×{r['gain']:.1f} | ×{r['oracle_gain']:.1f} | "
                     f"{_on(r['ratio'], PART_OF_BOUND)} | {_on(r['top3_share'], 0.8)} | {_on(r['inside'], 0.9)} | "
                     f"{_on(r['box_area'], 0.3)} | {r['hidden']:.2f} | {r['on_reference']:.2f} | {r['binary']} | "
                     f"{_on(r['iou'], 0.3)} | {r['seconds']:.2f} | {wins} | {_meets(r)} |")
    return "\n".join(lines)
