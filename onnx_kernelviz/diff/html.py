"""``diff.html``: the kernels that changed most between two models first, then every layer's drift.

Like report.html: one file that opens from disk, CSS inline, no scripts (the Content-Security-Policy refuses any),
pictures by relative paths inside the folder, every string from the JSON escaped. ``drift_by_layer.png`` is drawn
here with numpy (the median and largest drift of each layer).
"""

from __future__ import annotations

import html
import json
import math
import os
import statistics
from pathlib import Path
from urllib.parse import quote

import numpy as np

from onnx_kernelviz.errors import KernelvizError
from onnx_kernelviz.report.html import CSP, CSS_FILE
from onnx_kernelviz.report.pictures import write_image

#: a kernel counts as changed in the per-layer table above this drift
CHANGED = 0.25
#: rows of the "all kernels by drift" table
TABLE_ROWS = 100


def write_diff_report(out: Path) -> Path:
    """Write ``out/diff.html`` (and ``out/drift_by_layer.png``) from ``out/diff.json``; return the page's path."""
    try:
        doc = json.loads((out / "diff.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise KernelvizError(f"cannot read {out / 'diff.json'} ({e}); run `kernelviz diff` again") from e
    chart = out / "drift_by_layer.png"
    write_image(chart, drift_chart(doc.get("layers", [])))
    page = _page(out, doc)
    tmp = out / f".diff.html.{os.getpid()}.tmp"
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out / "diff.html")
    return out / "diff.html"


def _e(v: object) -> str:
    return html.escape(str(v), quote=True)


def _f(v: object, digits: int = 3) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else f"{v:.{digits}g}"
    return "—" if v is None else _e(v)


def _img(out: Path, rel: object, alt: str, pixel: bool = False) -> str:
    """An <img> of a file inside the folder (nothing for a missing one or one outside it)."""
    if not isinstance(rel, str):
        return ""
    path = (out / rel).resolve()
    if not path.is_file() or not path.is_relative_to(out.resolve()):
        return ""
    cls = ' class="px"' if pixel else ""
    return f'<img src="{_e(quote(path.relative_to(out.resolve()).as_posix()))}" alt="{_e(alt)}" loading="lazy"{cls}>'


def _figure(out: Path, rel: object, caption: str, pixel: bool = False) -> str:
    tag = _img(out, rel, caption, pixel)
    return f"<figure>{tag}<figcaption>{_e(caption)}</figcaption></figure>" if tag else ""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _page(out: Path, doc: dict) -> str:
    settings = doc.get("settings", {})
    meta = [("model A", doc.get("model_a")), ("model B", doc.get("model_b")), ("images", doc.get("images")),
            ("input", "x".join(map(str, settings.get("input_size", [])))),
            ("layers", len(doc.get("layers", []))), ("seconds", doc.get("seconds"))]
    cells = "".join(f"<div><b>{k}</b>{_f(v)}</div>" for k, v in meta)
    parts = [f"<header><h1>What changed between two versions of a model, kernel by kernel</h1>"
             f'<div class="meta">{cells}</div></header><main>',
             "<h2>How to read this</h2><ul class=\"help\">"
             "<li><b>corr</b>: Pearson correlation of the kernel's rectified activation in A and in B over all "
             "images and positions — 1 when B's map is A's up to scale.</li>"
             "<li><b>exemplar overlap</b>: Jaccard index of the two models' top exemplar sites (image, row, col).</li>"
             "<li><b>drift</b> = (1 − corr) + |‖r_B‖ − ‖r_A‖| / (‖r_A‖ + ‖r_B‖): 0 for an unchanged kernel, up to 3."
             "</li><li><b>still isolates in B</b>: A's explanation x′_A (optimized on A, where the kernel fires "
             "most) raises the kernel's share of the layer in B at least half as much as in A, and B keeps at "
             "least half of the kernel's activation, both measured on the same focus cells.</li></ul>",
             "<h2>Kernels that changed most</h2><p>Among the kernels that carry signal in A (their activation "
             "energy is at least their layer's median) and still fire in B. "
             f"{len(doc.get('silenced', []))} kernels fire in A and never in B "
             f"({len(doc.get('silenced_with_signal', []))} of them carry signal in A, listed below the examples), "
             f"{len(doc.get('awakened', []))} fire in B and never in A.</p>"]
    examples = doc.get("examples", [])
    parts += [_example(out, ex) for ex in examples] or ["<p>No kernel was shown (--explain 0).</p>"]
    silenced = doc.get("silenced_with_signal", [])
    if silenced:
        parts.append("<h3>Kernels that carry signal in A and never fire in B</h3>"
                     + _table(["layer", "kernel", "energy in A"], [[_f(i), _f(k), _f(e)] for i, k, e in silenced]))
    parts.append("<h2>Drift by layer</h2>" + _figure(out, "drift_by_layer.png",
                                                      "median (dark) and largest (light) drift of each layer"))
    parts.append(_layers_table(doc.get("layers", [])))
    ranked = doc.get("most_changed", [])[:TABLE_ROWS]
    corr = {(la.get("index"), k.get("kernel")): k for la in doc.get("layers", []) for k in la.get("kernels", [])}
    rows = [[_f(i), _f(k), _f(d), _f(corr.get((i, k), {}).get("corr")),
             _f(corr.get((i, k), {}).get("exemplar_overlap"))] for i, k, d in ranked]
    parts.append(f"<h2>All kernels by drift (first {len(rows)})</h2>"
                 + _table(["layer", "kernel", "drift", "corr", "exemplar overlap"], rows))
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            f"<title>kernelviz diff — {_e(doc.get('model_a'))} vs {_e(doc.get('model_b'))}</title>"
            f"<style>{CSS_FILE.read_text(encoding='utf-8')}</style></head><body>" + "\n".join(parts)
            + f"</main><footer>Generated by onnx_kernelviz {_f(doc.get('version'))}. All activations come from "
              "onnxruntime on the two original models.</footer></body></html>\n")


def _example(out: Path, ex: dict) -> str:
    head = f"layer {_f(ex.get('layer'))}, kernel {_f(ex.get('kernel'))} — drift {_f(ex.get('drift'))}"
    if not ex.get("image"):
        return f'<section class="card"><h3>{head}</h3><p>{_e(ex.get("reason", ""))}</p></section>'
    files = ex.get("files", {})
    figs = [_figure(out, files.get("original"), f"image {Path(ex['image']).name}"),
            _figure(out, files.get("act_a"), "activation in A", True),
            _figure(out, files.get("act_b"), "activation in B (same scale)", True)]
    expl = ex.get("explanation") or {}
    verdict = ""
    if expl.get("status") == "ok":
        figs += [_figure(out, expl.get("files", {}).get("modified"), "x′_A: A's explanation"),
                 _figure(out, expl.get("files", {}).get("overlay"), "its mask over the image")]
        good = expl.get("isolates_in_b")
        label = {True: ("ok", "still isolates it in B"), False: ("failed", "no longer isolates it in B"),
                 None: ("inactive", "does not isolate it in A either")}[good]
        verdict = f'<span class="badge {label[0]}">{label[1]}</span>'
        keys = ("kept", "others_kept", "specificity_before", "specificity_after")
        rows = [[name] + [_f(expl.get(m, {}).get(k)) for k in keys] for name, m in (("A", "a"), ("B", "b"))]
        verdict += _table(["on x′_A", "kept", "others kept", "specificity before", "specificity after"], rows)
    elif expl:
        verdict = f'<p class="reason inactive">explanation: {_e(expl.get("status"))} {_e(expl.get("reason", ""))}</p>'
    return (f'<section class="card"><h3>{head}</h3><div class="grid">{"".join(figs)}</div>{verdict}</section>')


def _layers_table(layers: list[dict]) -> str:
    rows = []
    for la in layers:
        ks = la.get("kernels", [])
        if not ks:
            continue
        drift = [k["drift"] for k in ks]
        rows.append([_f(la.get("index")), _e(la.get("tensor_a")), _f(la.get("channels")),
                     _f(statistics.median(k["corr"] for k in ks)),
                     _f(statistics.median(k["exemplar_overlap"] for k in ks)),
                     _f(statistics.median(drift)), _f(max(drift)), _f(sum(d > CHANGED for d in drift))])
    return _table(["layer", "tensor (A)", "kernels", "median corr", "median overlap", "median drift", "max drift",
                   f"drift &gt; {CHANGED}"], rows)


def drift_chart(layers: list[dict], height: int = 240, bar: int = 12) -> np.ndarray:
    """Bars of each layer's median (dark) and largest (light) drift, ``[height, width, 3]`` uint8 RGB, with the
    drift scale on the left and layer indices below."""
    import cv2

    shown = [la for la in layers if la.get("kernels")]
    stats = [(statistics.median(k["drift"] for k in la["kernels"]), max(k["drift"] for k in la["kernels"]))
             for la in shown]
    left, base = 44, height - 28
    width = max(320, left + 10 + bar * len(stats))
    img = np.full((height, width, 3), 255, np.uint8)
    top = max([m for _, m in stats] + [1e-6])
    for i, (med, mx) in enumerate(stats):
        x0 = left + 4 + i * bar
        for value, colour in ((mx, (170, 190, 235)), (med, (47, 91, 211))):
            h = int(round((base - 14) * value / top))
            img[base - h:base, x0:x0 + bar - 2] = colour
    img[base:base + 1, left:] = 0
    img[10:base, left:left + 1] = 0
    text = lambda s, xy: cv2.putText(img, s, xy, cv2.FONT_HERSHEY_SIMPLEX, 0.38, (60, 60, 60), 1,  # noqa: E731
                                     cv2.LINE_AA)
    text(f"{top:.2g}", (4, 18))
    text("0", (30, base + 4))
    step = max(1, len(shown) // 8)
    for i in range(0, len(shown), step):
        text(str(shown[i].get("index")), (left + 2 + i * bar, base + 16))
    text("layer", (width - 44, height - 4))
    return img
