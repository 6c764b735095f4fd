"""The compare part of report.html (from compare.json): the answer first (the two explanations side by side, how
much of each kernel each keeps, told apart or not and what to try), then why this pair, then the details."""

from __future__ import annotations

from typing import Any

from onnx_kernelviz.measure.pairs import SEPARATION, advice, separation
from onnx_kernelviz.report.html_base import Folder, as_dict, best, esc, fmt, num, table
from onnx_kernelviz.report.sentence import needs_no_photo

__all__ = ["compare_section"]


def _kept(entry: dict) -> list[float | None]:
    """kept_a, kept_b under x′_a, then kept_a, kept_b under x′_b."""
    return [num(as_dict(entry.get(s)).get(f"kept_{t}")) for s in "ab" for t in "ab"]


def _measured(c: dict) -> dict:
    """Where the verdict's numbers are: the shared focus block in focus scope (``ours``, ``baselines`` on F), else
    compare.json itself (the whole map)."""
    focus = as_dict(c.get("focus"))
    return focus if focus.get("ours") else c


def _verdict(c: dict, ka: str, kb: str) -> str:
    ours = as_dict(_measured(c).get("ours"))
    vals = _kept(ours)
    if None in vals:
        return ""
    sep = num(c.get("separation"))
    sep = sep if sep is not None else separation({s: as_dict(ours[s]) for s in "ab"})
    apart = c.get("told_apart") if isinstance(c.get("told_apart"), bool) else sep >= SEPARATION
    detail = (f"x′ of {ka} keeps {vals[0]:.2f} of kernel {ka} and {vals[1]:.2f} of {kb}; x′ of {kb} keeps "
              f"{vals[3]:.2f} of {kb} and {vals[2]:.2f} of {ka} (each must keep its own kernel at least "
              f"{SEPARATION:g}× as much as the other: here {min(sep, 999):.3g}×{'+' if sep > 999 else ''}).")
    if apart:
        return f'<div class="verdict good"><b>Told apart.</b> {esc(detail)}</div>'
    hint = c.get("advice")
    if not isinstance(hint, str):  # folders written before compare recorded its advice
        w = num(c.get("contrast"))
        hint = advice(str(c.get("method", "mask")), w if w is not None else 1.0, num(c.get("filter_cosine")))
    return (f'<div class="verdict bad"><b>Not told apart.</b> {esc(detail)}'
            f"<br><b>What to try:</b> {esc(hint)}</div>")


def _on_reference(c: dict, ka: str, kb: str) -> str:
    """A note for each kernel of the pair that keeps ≥ REFERENCE_KEEPS of its activation on the shared cells on the
    reference alone (compare.json's ``focus.kept_on_reference``): it needs no detail of the photo there."""
    on_ref = as_dict(as_dict(c.get("focus")).get("kept_on_reference"))
    notes = [f"kernel {k} keeps {num(on_ref.get(s)):.2f} of its activation on these cells even on the reference "
             "alone, with nothing of the photo kept: it needs no detail of the photo to fire here"
             for s, k in (("a", ka), ("b", kb)) if needs_no_photo({"kept_on_reference": on_ref.get(s)})]
    text = "; ".join(notes)
    return f'<p class="reason inactive">{esc(text[:1].upper() + text[1:])}.</p>' if notes else ""


def _why(c: dict, ka: str, kb: str) -> str:
    picked = c.get("picked")
    corr = fmt(c.get("correlation"))
    if isinstance(picked, dict) and picked.get("by") == "score":
        sa, sb = fmt(num(picked.get("share_a"))), fmt(num(picked.get("share_b")))
        mc = picked.get("most_correlated")
        also = ""
        if isinstance(mc, list) and len(mc) == 3 and [mc[0], mc[1]] != c.get("kernels"):
            also = (f" (the most correlated pair, {esc(mc[0])} and {esc(mc[1])} at {fmt(num(mc[2]))}, fires more "
                    "weakly)")
        return (f"Picked automatically: both fire strongly (‖r‖ at {sa} and {sb} of the layer's strongest kernel "
                f"on this image) and alike (correlation of their maps {corr}){also}; the pick maximizes the "
                "smaller of the correlation and the weaker kernel's share.")
    if isinstance(picked, dict) and picked.get("by") == "given" or picked == "given":
        return f"Kernels given with --kernel; correlation of their maps {corr}."
    return f"Correlation of their maps {corr}."


def _side(folder: Folder, files: dict, s: str, k: str, other: str, kept_self: float | None,
          kept_other: float | None) -> str:
    crop = files.get(f"focus_crop_modified_{s}")
    # in focus scope: where (the box), what x'_k keeps of the photo there (the outline), and x'_k itself
    pics = (folder.figure(files.get(f"focus_photo_{s}"), "the box on the photo", f"box of kernel {k}")
            + folder.figure(files.get(f"focus_crop_{s}"), f"the box; yellow: what x′ of {k} keeps",
                            f"the box of the photo, the region x′ of kernel {k} keeps outlined", True)
            + folder.figure(crop, f"x′ of {k} in the box", f"x′ of kernel {k}, the box", True)) if crop else (
        folder.figure(files.get("original"), "the photo", "original photo")
        + folder.figure(files.get(f"modified_{s}"), f"x′ of {k}", f"x′ of kernel {k}"))
    return (f'<div class="side"><h3>Explaining kernel {esc(k)}</h3><div class="focus-row pair">{pics}</div>'
            f'<p class="kept">keeps {esc(k)}: <b>{fmt(kept_self)}</b> · keeps {esc(other)}: '
            f"<b>{fmt(kept_other)}</b></p></div>")


def _where(c: dict) -> str:
    focus = as_dict(c.get("focus"))
    peak, cells = focus.get("peak"), num(focus.get("cells"))
    if not focus.get("ours") or not isinstance(peak, list) or len(peak) != 2 or cells is None:
        return " · measured on the whole activation map"
    return (f" · both kernels explained and measured on the <b>{cells:.0f}</b> cells around row {esc(peak[0])}, col "
            f"{esc(peak[1])} where both fire strongly (the boxed area)")


def compare_section(folder: Folder, c: dict) -> str:
    given = c.get("kernels")
    kernels: list[Any] = given[:2] if isinstance(given, list) else []
    a, b = kernels + ["a", "b"][len(kernels):]
    ka, kb = esc(a), esc(b)
    files = as_dict(c.get("files"))
    src = _measured(c)
    vals = _kept(as_dict(src.get("ours")))
    lead = (f'<div class="pair-grid">{_side(folder, files, "a", str(a), str(b), vals[0], vals[1])}'
            f'{_side(folder, files, "b", str(b), str(a), vals[3], vals[2])}</div>')
    entries = [("ours", as_dict(src.get("ours")))] + [(str(n), as_dict(v))
                                                      for n, v in as_dict(src.get("baselines")).items()]
    rows: list[tuple[list[str], float | None]] = []
    for n, e in entries:
        raw = [as_dict(e.get(s)).get(f"kept_{t}") for s in "ab" for t in "ab"]  # aa, ab, ba, bb
        # the same measure as the verdict and the CLI (measure.pairs.separation), not a second formula
        sep = separation(e) if all(num(x) is not None for x in raw) else None
        told = "" if sep is None else " (told apart)" if sep >= SEPARATION else " (not told apart)"
        rows.append(([esc(n)] + [fmt(x) for x in raw] + [fmt(sep) + told], sep))
    top = best(sep for _, sep in rows)
    tbl = table(["method", f"on x′<sub>{ka}</sub>: kept {ka}", f"on x′<sub>{ka}</sub>: kept {kb}",
                 f"on x′<sub>{kb}</sub>: kept {ka}", f"on x′<sub>{kb}</sub>: kept {kb}", "separation"],
                [(cells, sep is not None and sep == top) for cells, sep in rows])
    grid_rows = [("The photo and the two activation maps",
                  [folder.figure(files.get("original"), "Original photo", "original photo")]
                  + [folder.figure(files.get(f"act_{s}"), f"Activation of {k}", f"activation of kernel {k}", True)
                     for s, k in (("a", a), ("b", b))])]
    for s, k in (("a", a), ("b", b)):
        grid_rows.append((f"Explanations of kernel {k}: x′ (and mask) per method", [
            folder.figure(files.get(f"modified_{s}"), "ours: x′", f"our modified image for kernel {k}"),
            folder.figure(files.get(f"mask_{s}"), "ours: mask", f"our mask for kernel {k}", True)]
            + [folder.figure(files.get(f"baseline_modified_{s}:{n}"), f"{n}: x′", f"{n} modified image for "
                             f"kernel {k}") for n, _ in entries[1:]]))
    grids = "".join(f'<h3>{esc(title)}</h3><div class="{"focus-row" if n == 0 else "grid"}">{"".join(figs)}</div>'
                    for n, (title, figs) in enumerate(grid_rows) if any(figs))
    cos = num(c.get("filter_cosine"))
    extra = f" · cosine of their filters <b>{fmt(cos)}</b>" if cos is not None else ""
    w = num(c.get("contrast"))
    contrast = ("" if w is None else f" · ours explains each kernel against the other (contrast <b>{fmt(w)}</b>)"
                if w > 0 else " · ours: plain explanations (contrast 0)")
    return (f'<section class="kernel" id="compare"><h2>Can kernels {ka} and {kb} be told apart?</h2>'
            f"{_verdict(c, str(a), str(b))}{_on_reference(c, str(a), str(b))}{lead}<p>{_why(c, str(a), str(b))}</p>"
            f'<h3>Details</h3><p class="nums">Image <b>{fmt(c.get("image"))}</b>{extra}{contrast}{_where(c)}</p>'
            f"<p>A good explanation separates them: on x′<sub>{ka}</sub> kernel {ka} stays (kept near 1) while {kb} "
            f"drops, and the reverse on x′<sub>{kb}</sub>; maps that only say where a kernel fires keep or drop both. "
            f"<i>Separation</i> is the smaller of the two self/other ratios (kept {ka} / kept {kb} on "
            f"x′<sub>{ka}</sub>, kept {kb} / kept {ka} on x′<sub>{kb}</sub>); a pair is told apart at "
            f"{SEPARATION:g} or more; highlighted: the largest.</p>{tbl}{grids}</section>")
