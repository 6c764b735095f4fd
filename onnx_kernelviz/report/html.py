"""Report stage: turn ``results.json`` / ``compare.json`` of an output folder into one ``report.html``.

The page opens from disk with no network: CSS is inline, there are no scripts or fonts, and images are
referenced by paths relative to the folder. Every string taken from the JSON is HTML-escaped; a path in
``files`` that is missing, empty, outside the folder or unreadable is skipped rather than shown broken.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import statistics
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from onnx_kernelviz.errors import KernelvizError
from onnx_kernelviz.io.files import read_json_object, write_text
from onnx_kernelviz.measure.metrics import SEPARATION, separation

__all__ = ["write_report"]

# Plain-language reading of each metric (definitions in CONTRACT.md).
METRIC_HELP = [
    ("kept", "how much of kernel k's activation survives in the modified image x′ — best near 1."),
    ("fidelity", "whether k fires in the same places on x′ as on the photo (cosine) — best near 1."),
    ("others kept", "how much of every other kernel's activation survives in x′ — lower is better: "
                    "x′ shows only what k needs."),
    ("specificity before → after", "k's share of the layer's activation energy on the photo and on x′ — "
                                   "a big rise means x′ isolates k."),
    ("mask area", "fraction of the image the mask keeps — smaller is more focused."),
    ("parity", "the torch copy used for the search agrees with onnxruntime on x′ (relative error within "
               "tolerance), so the numbers hold for the deployed model."),
]

# (files key, caption, pixel-art rendering) for the figure row of one result, in reading order.
RESULT_FIGURES = [
    ("original", "Original photo", False),
    ("modified", "Modified image x′ — what k keeps", False),
    ("mask", "Mask (bright = kept; the mean over bands)", True),
    ("overlay", "Mask over the photo", False),
    ("act_before", "Activation of k on the photo", True),
    ("act_after", "Activation of k on x′", True),
    ("others", "Other kernels on x′ (dark = suppressed)", True),
]

# Pictures wider than a grid cell, shown full width under the grid: (files key, caption).
WIDE_FIGURES = [("mask_components", "What is kept of each band: each band's own mask over the photo")]

# The browser itself then refuses any script or remote load: the page stays offline and inert.
CSP = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'"
CSS_FILE = Path(__file__).parent / "templates" / "report.css"  # inlined into the page


def write_report(out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` from ``results.json`` and/or ``compare.json``; return its path.

    Raises:
        KernelvizError: ``out_dir`` is not a folder, holds neither JSON file, or a JSON file is malformed.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise KernelvizError(f"{out_dir} is not a folder; run `kernelviz explain ... --out {out_dir}` first")
    results, compare = _load(out_dir / "results.json"), _load(out_dir / "compare.json")
    if results is None and compare is None:
        raise KernelvizError(
            f"{out_dir} has no results.json or compare.json; run `kernelviz explain MODEL IMAGE --layer L "
            f"--kernel K --out {out_dir}` (or `kernelviz compare ... --out {out_dir}`) first")
    page = _Page(out_dir).render(results, compare)
    # A crash or a concurrent reader never sees half a report (io/files.py writes beside it, then renames).
    return write_text(out_dir / "report.html", page, durable=False)


def _load(path: Path) -> dict[str, Any] | None:
    # io/files.py turns every way a JSON file can be damaged (syntax, encoding, a 5,000-digit number, deep
    # nesting, not an object) into one message naming the file
    return read_json_object(path) if path.exists() else None


def _e(value: Any) -> str:
    """HTML-escaped text; a file name that is not valid UTF-8 shows its bytes as backslash escapes (``\\xe9``)."""
    text = str(value)
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return html.escape(text, quote=True)


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _fmt(value: Any) -> str:
    """Escaped display text: 3 significant digits for numbers, yes/no for booleans, — for missing/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return _e(value)


def _median(values: Iterable[Any]) -> float | None:
    nums = [v for v in map(_num, values) if v is not None]
    return statistics.median(nums) if nums else None


def _best(values: Iterable[Any]) -> float | None:
    return max((v for v in map(_num, values) if v is not None), default=None)


def _anchor(kernel: str) -> str:
    return "kernel-" + re.sub(r"[^A-Za-z0-9_-]", "_", kernel)


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _image_size(path: Path) -> tuple[int, int] | None:
    with path.open("rb") as fh:
        head = fh.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) == 24:
        return struct.unpack(">II", head[16:24])
    import cv2  # only for the rare non-PNG image

    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    return None if img is None else (img.shape[1], img.shape[0])


def _table(header: list[str], rows: list[tuple[list[str], bool]]) -> str:
    """Rows are (already-escaped cells, highlighted?)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(('<tr class="win">' if win else "<tr>") + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
                   for cells, win in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


class _Page:
    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.root = out_dir.resolve()

    # -- images ------------------------------------------------------------------------------------------
    def _local(self, rel: Any) -> Path | None:
        """The file ``rel`` names inside the folder, or None (missing, empty, elsewhere) to skip it."""
        try:
            path = (self.out_dir / rel).resolve() if isinstance(rel, str) and rel.strip() else None
        except (OSError, ValueError):
            return None
        return path if path and path.is_file() and path.is_relative_to(self.root) else None

    def _href(self, path: Path) -> str:
        # the file name's own bytes, percent-encoded: also names that are not valid UTF-8 resolve
        return _e(quote(os.fsencode(path.relative_to(self.root).as_posix())))

    def img(self, rel: Any, alt: str, pixel: bool = False) -> str:
        path = self._local(rel)
        try:
            size = _image_size(path) if path is not None else None
        except (OSError, struct.error):
            size = None
        if path is None or not size:
            return ""
        cls = ' class="px"' if pixel else ""
        return (f'<img src="{self._href(path)}" alt="{_e(alt)}" width="{size[0]}" height="{size[1]}" '
                f'loading="lazy"{cls}>')

    def figure(self, rel: Any, caption: str, alt: str, pixel: bool = False) -> str:
        tag = self.img(rel, alt, pixel)
        return f"<figure>{tag}<figcaption>{_e(caption)}</figcaption></figure>" if tag else ""

    def link(self, rel: Any, text: str) -> str:
        path = self._local(rel)
        return f'<a href="{self._href(path)}">{_e(text)}</a>' if path else ""

    # -- page --------------------------------------------------------------------------------------------
    def render(self, results: dict | None, compare: dict | None) -> str:
        meta = results or compare or {}
        title = f"kernelviz — {meta.get('model', 'report')} · {meta.get('layer', '')}"
        parts = [self.header(meta), "<main>"]
        if results is not None:
            parts.append(self.results(results))
        if compare is not None:
            parts.append(self.compare(compare))
        return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                '<meta name="viewport" content="width=device-width,initial-scale=1">'
                f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
                f"<title>{_e(title)}</title><style>{CSS_FILE.read_text(encoding='utf-8')}</style></head><body>"
                + "\n".join(parts)
                + f"</main><footer>Generated by onnx_kernelviz {_fmt(meta.get('version'))}. All numbers come "
                  "from onnxruntime on the original model.</footer></body></html>\n")

    def header(self, meta: dict) -> str:
        sha, providers = meta.get("model_sha256"), meta.get("ort_providers")
        fields = [("model", meta.get("model")), ("layer", meta.get("layer")), ("tensor", meta.get("tensor")),
                  ("method", meta.get("method")), ("device", meta.get("device")),
                  ("onnxruntime", ", ".join(map(str, providers)) if isinstance(providers, list) else providers),
                  ("version", meta.get("version")), ("sha256", sha[:12] + "…" if isinstance(sha, str) else None)]
        cells = "".join(f"<div><b>{name}</b>{_fmt(v)}</div>" for name, v in fields if v not in (None, ""))
        settings = _dict(meta.get("settings"))
        rows = [([_e(k), f"<code>{_e(json.dumps(v, default=str))}</code>"], False) for k, v in settings.items()]
        details = f"<details><summary>Settings ({len(rows)})</summary>{_table(['setting', 'value'], rows)}</details>"
        return (f"<header><h1>What does kernel k of {_fmt(meta.get('layer', '?'))} respond to?</h1>"
                f'<div class="meta">{cells}</div>{details if rows else ""}</header>')

    def results(self, data: dict) -> str:
        raw = data.get("results")
        items = [r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else []
        groups: dict[str, list[dict]] = {}
        for r in items:
            groups.setdefault(str(r.get("kernel", "?")), []).append(r)
        help_items = "".join(f"<li><b>{name}</b>: {_e(text)}</li>" for name, text in METRIC_HELP)
        parts = ["<h2>Summary</h2><p>Medians over the images where the kernel fires. Click a kernel to see "
                 "its pictures.</p>", self.summary(groups), f'<ul class="help">{help_items}</ul>']
        parts += [self.kernel(k, rs) for k, rs in groups.items()]
        if not groups:
            parts.append("<p>No results in results.json.</p>")
        return "\n".join(parts)

    def summary(self, groups: dict[str, list[dict]]) -> str:
        with_baselines = any(_dict(r.get("baselines")) for rs in groups.values() for r in rs)
        header = ["kernel", "images ok", "kept", "fidelity", "others kept", "specificity before → after",
                  "parity ok"] + (["beats all baselines"] if with_baselines else [])
        rows = []
        for k, rs in groups.items():
            ok = [r for r in rs if r.get("status", "ok") == "ok"]
            med = {m: _median(r.get(m) for r in ok) for m in
                   ("kept", "fidelity", "others_kept", "specificity_before", "specificity_after")}
            parity = [bool(r["parity_ok"]) for r in ok if isinstance(r.get("parity_ok"), bool)]
            cells = [f'<a href="#{_anchor(k)}">kernel {_e(k)}</a>', f"{len(ok)} / {len(rs)}",
                     _fmt(med["kept"]), _fmt(med["fidelity"]), _fmt(med["others_kept"]),
                     f"{_fmt(med['specificity_before'])} → {_fmt(med['specificity_after'])}",
                     (f"{sum(parity)} / {len(parity)}" if all(parity) else
                      f'<b class="failed">{sum(parity)} / {len(parity)}</b>') if parity else "—"]
            if with_baselines:
                wins = [self._beats(r) for r in ok if _dict(r.get("baselines"))]
                cells.append(f"{sum(wins)} / {len(wins)}" if wins else "—")
            rows.append((cells, False))
        return _table(header, rows)

    @staticmethod
    def _beats(r: dict) -> bool:
        ours = _num(r.get("specificity_after"))
        theirs = [_num(_dict(b).get("specificity_after")) for b in _dict(r.get("baselines")).values()]
        return ours is not None and all(t is None or ours > t for t in theirs)

    def kernel(self, k: str, rs: list[dict]) -> str:
        out = [f'<section class="kernel" id="{_anchor(k)}"><h2>Kernel {_e(k)}</h2>']
        ok = [r for r in rs if r.get("status", "ok") == "ok"]
        if len(ok) > 1:
            cols = []
            for r in ok:
                files, name = _dict(r.get("files")), Path(str(r.get("image", "?"))).name
                pics = self.img(files.get("original"), f"photo {name}") + self.img(
                    files.get("modified") or files.get("overlay"), f"what kernel {k} keeps in {name}")
                if pics:
                    cols.append(f'<figure><div class="stack">{pics}</div><figcaption>{_e(name)} · kept '
                                f'{_fmt(r.get("kept"))} · specificity {_fmt(r.get("specificity_after"))}'
                                "</figcaption></figure>")
            if cols:
                out.append(f"<h3>Across {len(cols)} images: what stays the same?</h3><p class=\"nums\">Top: "
                           f"photo; bottom: what kernel {_e(k)} keeps.</p><div class=\"grid wide\">"
                           + "".join(cols) + "</div>")
        # Many images (--top-images): the strip above is the overview and good results open on demand;
        # anything that went wrong stays open.
        out += [self.result(k, r, folded=len(rs) > 3 and r.get("parity_ok") is not False) for r in rs]
        return "\n".join(out) + "</section>"

    def result(self, k: str, r: dict, folded: bool = False) -> str:
        status = str(r.get("status", "ok"))
        files, image = _dict(r.get("files")), str(r.get("image", "?"))
        name = Path(image).name
        css = status if status in ("ok", "inactive") else "failed"
        head = f'<h3 title="{_e(image)}">{_e(name)}<span class="badge {css}">{_e(status)}</span></h3>'
        body = []
        if status != "ok":
            default = ("kernel does not fire on this image (‖r_k(x)‖ = 0): nothing to explain"
                       if status == "inactive" else "no reason recorded")
            body.append(f'<div class="reason {css}">{_e(r.get("reason") or default)}</div>')
        else:
            nums = [("kept", "kept"), ("fidelity", "fidelity"), ("others kept", "others_kept"),
                    ("mask area", "mask_area"), ("steps", "steps"), ("seconds", "seconds")]
            spec = f"<b>{_fmt(r.get('specificity_before'))} → {_fmt(r.get('specificity_after'))}</b>"
            parity = ' · <b class="failed">parity FAILED</b>' if r.get("parity_ok") is False else ""
            body.append('<p class="nums">' + " · ".join(f"{label} <b>{_fmt(r.get(key))}</b>" for label, key
                                                       in nums) + f" · specificity {spec}{parity}</p>")
        figs = [self.figure(files.get(key), cap.replace(" k ", f" {k} "), f"{cap} — {name}", px)
                for key, cap, px in RESULT_FIGURES]
        if any(figs):
            body.append('<div class="grid">' + "".join(figs) + "</div>")
        body += [f'<div class="wide-figure">{fig}</div>' for fig in
                 (self.figure(files.get(key), cap, f"{cap} — {name}") for key, cap in WIDE_FIGURES) if fig]
        npy = self.link(files.get("mask_npy"), "mask as .npy")
        if npy:
            body.append(f'<p class="nums">Download: {npy}</p>')
        if _dict(r.get("baselines")):
            body.append(self.baselines(r, files, name))
        if folded and status == "ok":
            brief = (f' <span class="nums">kept {_fmt(r.get("kept"))} · specificity '
                     f'{_fmt(r.get("specificity_before"))} → {_fmt(r.get("specificity_after"))}</span>')
            return f'<details class="card"><summary>{head}{brief}</summary>{"".join(body)}</details>'
        return f'<div class="card">{head}{"".join(body)}</div>'

    def baselines(self, r: dict, files: dict, name: str) -> str:
        metrics = ["kept", "others_kept", "specificity_after", "mask_area"]
        entries = [("ours", r)] + [(str(n), _dict(b)) for n, b in _dict(r.get("baselines")).items()]
        best = _best(e.get("specificity_after") for _, e in entries)
        rows = [([_e(n)] + [_fmt(e.get(m)) for m in metrics],
                 best is not None and _num(e.get("specificity_after")) == best) for n, e in entries]
        table = _table(["method", "kept", "others kept", "specificity after", "mask area"], rows)
        figs = [self.figure(files.get("modified"), "ours: x′", f"our modified image — {name}"),
                self.figure(files.get("mask"), "ours: mask", f"our mask — {name}", True)]
        for n, _ in entries[1:]:
            figs += [self.figure(files.get(f"baseline_modified:{n}"), f"{n}: x′", f"{n} modified image — {name}"),
                     self.figure(files.get(f"baseline_mask:{n}"), f"{n}: mask", f"{n} mask — {name}", True)]
        grid = '<div class="grid">' + "".join(figs) + "</div>" if any(figs[2:]) else ""
        return (f"<details open><summary>Against baselines at equal mask area (highlighted: highest "
                f"specificity after)</summary>{table}{grid}</details>")

    def compare(self, c: dict) -> str:
        given = c.get("kernels")
        kernels: list[Any] = given if isinstance(given, list) else []
        a, b = (kernels[:2] + ["a", "b"][len(kernels[:2]):])
        entries = [("ours", _dict(c.get("ours")))] + [(str(n), _dict(v))
                                                      for n, v in _dict(c.get("baselines")).items()]
        table_rows: list[tuple[list[str], float | None]] = []
        for n, e in entries:
            raw = [_dict(e.get(s)).get(f"kept_{t}") for s in "ab" for t in "ab"]  # aa, ab, ba, bb
            sep = None if None in map(_num, raw) else separation(e)
            told = "" if sep is None else " (told apart)" if sep >= SEPARATION else " (not told apart)"
            table_rows.append(([_e(n)] + [_fmt(v) for v in raw] + [_fmt(sep) + told], sep))
        best = _best(sep for _, sep in table_rows)
        ka, kb = _e(a), _e(b)
        table = _table(["method", f"on x′<sub>{ka}</sub>: kept {ka}", f"on x′<sub>{ka}</sub>: kept {kb}",
                        f"on x′<sub>{kb}</sub>: kept {ka}", f"on x′<sub>{kb}</sub>: kept {kb}", "separation"],
                       [(cells, sep is not None and sep == best) for cells, sep in table_rows])
        files = _dict(c.get("files"))
        rows = [("The photo and the two activation maps",
                 [self.figure(files.get("original"), "Original photo", "original photo")]
                 + [self.figure(files.get(f"act_{s}"), f"Activation of {k}", f"activation of kernel {k}", True)
                    for s, k in (("a", a), ("b", b))])]
        for s, k in (("a", a), ("b", b)):
            rows.append((f"Explanations of kernel {k}: x′ (and mask) per method", [
                self.figure(files.get(f"modified_{s}"), "ours: x′", f"our modified image for kernel {k}"),
                self.figure(files.get(f"mask_{s}"), "ours: mask", f"our mask for kernel {k}", True)]
                + [self.figure(files.get(f"baseline_modified_{s}:{n}"), f"{n}: x′", f"{n} modified image for "
                               f"kernel {k}") for n, _ in entries[1:]]))
        grids = "".join(f'<h3>{_e(title)}</h3><div class="grid">{"".join(figs)}</div>'
                        for title, figs in rows if any(figs))
        cos = _num(c.get("filter_cosine"))
        if cos is not None:
            contrast_note = " (near-copies: a mask cannot tell them apart; try --method pixel)" \
                if cos >= 0.9 and c.get("method", "mask") == "mask" else ""
            extra = f" · cosine of their filters <b>{_fmt(cos)}</b>{_e(contrast_note)}"
        else:
            extra = ""
        w = _num(c.get("contrast"))
        contrast = ("" if w is None else f" · ours explains each kernel against the other (contrast <b>{_fmt(w)}</b>)"
                    if w > 0 else " · ours: plain explanations (contrast 0)")
        return (f'<section class="kernel" id="compare"><h2>Two similar kernels: {ka} and {kb}</h2>'
                f'<p class="nums">Image <b>{_fmt(c.get("image"))}</b> · correlation of their activation maps '
                f'<b>{_fmt(c.get("correlation"))}</b>{extra}{contrast}</p><p>A good explanation separates them: on '
                f'x′<sub>{ka}</sub>'
                f" kernel {ka} stays (kept near 1) while {kb} drops, and the reverse on x′<sub>{kb}</sub>; "
                "maps that only say where a kernel fires keep or drop both. <i>Separation</i> is the smaller of "
                f"the two self/other ratios (kept {ka} / kept {kb} on x′<sub>{ka}</sub>, kept {kb} / kept {ka} on "
                f"x′<sub>{kb}</sub>); a pair is told apart at {SEPARATION:g} or more; highlighted: the largest."
                f"</p>{table}{grids}</section>")
