"""The results part of report.html (from results.json): a summary table, then one section per kernel with a card
per image. A result with a ``focus`` block is drawn by html_focus.py; one without (``--scope map``, folders
written before focus existed) as the whole-map pictures below."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from onnx_kernelviz.report.html_base import Folder, anchor, as_dict, best, esc, fmt, median, num, table
from onnx_kernelviz.report.sentence import LOW_GAIN, describe

__all__ = ["Layer", "results_section", "METRIC_HELP"]

# html_focus.focus_body (imported late: html_focus builds on this module): (folder, layer, k, r, files, name)
FocusBody = Callable[[Folder, "Layer", str, dict, dict, str], str]

# Plain-language reading of each metric (definitions in CONTRACT.md).
METRIC_HELP = [
    ("kept", "how much of kernel k's activation survives in the modified image x′ — best near 1."),
    ("fidelity", "whether k fires in the same places on x′ as on the photo (cosine) — best near 1."),
    ("others kept", "how much of every other kernel's activation survives in x′ — lower is better: "
                    "x′ shows only what k needs."),
    ("specificity before → after", "k's share of the layer's activation energy on the photo and on x′ — "
                                   "a big rise means x′ isolates k."),
    ("best possible", "the largest rise of specificity that any change of the input reached on the focus cells "
                      f"(a bound: below ×{LOW_GAIN:g}, no picture can show k apart from the kernels that fire with "
                      "it)."),
    ("mask area", "fraction of the image the mask keeps — smaller is more focused."),
    ("parity", "the torch copy used for the search agrees with onnxruntime on x′ (relative error within "
               "tolerance), so the numbers hold for the deployed model."),
]

# (files key, caption, pixel-art rendering) of the whole-map pictures, in reading order.
MAP_FIGURES = [
    ("original", "Original photo", False),
    ("modified", "Modified image x′ — what k keeps", False),
    ("mask", "Mask (bright = kept; the mean over bands)", True),
    ("overlay", "Mask over the photo", False),
]
# k's activation maps, each with its colour bar: a row of their own, large enough to read the scale
MAP_ACTIVATIONS = [
    ("act_before", "Activation of k on the photo (colour bar: its values)"),
    ("act_after", "Activation of k on x′ (same scale)"),
]

# Folders written before the colour bars and the kept-per-kernel chart: their pictures, their captions.
OLD_CAPTIONS = {"act_before": "Activation of k on the photo", "act_after": "Activation of k on x′",
                "others": "Other kernels: ‖r_j‖ on the photo (grey) and on x′ (orange), k in blue"}


def _caption(folder: Folder, files: dict, key: str, caption: str) -> str:
    """``caption``, or the old one for a picture drawn before colour bars (square maps; the 480×200 bar chart)."""
    size = folder.size(files.get(key))
    old = size is not None and key in OLD_CAPTIONS and (size[0] == size[1] if key.startswith("act_")
                                                         else size == (480, 200))
    return OLD_CAPTIONS[key] if old else caption


# Pictures wider than a grid cell, shown full width: (files key, caption).
WIDE_FIGURES = [
    ("others", "How much each kernel of the layer keeps in x′: k in blue, every other kernel in orange, "
               "the dashed line all other kernels together"),
    ("mask_components", "What is kept of each band: each band's own mask over the photo (a focus explanation's: "
                        "over its rf_box)"),
]


@dataclass(frozen=True)
class Layer:
    """What results.json says about the layer and the run, for the sentences: the map's ``(h, w)``, its kernel
    count and the reference x' starts from (``settings.reference``)."""

    map_shape: tuple[int, int] | None = None
    channels: int | None = None
    reference: str | None = None

    @staticmethod
    def of(data: dict) -> Layer:
        settings = data.get("settings")
        ref = settings.get("reference") if isinstance(settings, dict) else None
        ref = ref if isinstance(ref, str) else None
        shape = data.get("activation_shape")
        if isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape):
            return Layer((shape[1], shape[2]), shape[0], ref)
        return Layer(reference=ref)


def _focus_rows(rs: list[dict]) -> bool:
    return any(as_dict(r.get("focus")) for r in rs)


def results_section(folder: Folder, data: dict) -> str:
    from onnx_kernelviz.report.html_focus import focus_body

    raw = data.get("results")
    items = [r for r in raw if isinstance(r, dict)] if isinstance(raw, list) else []
    groups: dict[str, list[dict]] = {}
    for r in items:
        groups.setdefault(str(r.get("kernel", "?")), []).append(r)
    focus = _focus_rows(items)
    help_items = "".join(f"<li><b>{name}</b>: {esc(text)}</li>" for name, text in METRIC_HELP
                         if focus or name != "best possible")
    where = " on the focus cells (the ≥ ½-max blob around each kernel's peak)" if focus else ""
    parts = [f"<h2>Summary</h2><p>Medians over the images where the kernel fires{esc(where)}. Click a kernel to "
             "see its pictures.</p>", _summary(groups), f'<ul class="help">{help_items}</ul>']
    layer = Layer.of(data)
    parts += [_kernel(folder, layer, k, rs, focus_body) for k, rs in groups.items()]
    if not groups:
        parts.append("<p>No results in results.json.</p>")
    return "\n".join(parts)


def _metrics(r: dict) -> dict:
    """The numbers a summary row reads: the focus block's when there is one, else the whole map's."""
    f = as_dict(r.get("focus"))
    return f if f else r


def _summary(groups: dict[str, list[dict]]) -> str:
    with_baselines = any(as_dict(r.get("baselines")) for rs in groups.values() for r in rs)
    focus = any(_focus_rows(rs) for rs in groups.values())
    header = (["kernel", "images ok", "kept"] + ([] if focus else ["fidelity"])
              + ["others kept", "specificity before → after"] + (["best possible"] if focus else [])
              + ["parity ok"] + (["beats all baselines"] if with_baselines else []))
    rows = []
    for k, rs in groups.items():
        ok = [r for r in rs if r.get("status", "ok") == "ok"]
        med = {m: median(_metrics(r).get(m) for r in ok) for m in
               ("kept", "fidelity", "others_kept", "specificity_before", "specificity_after", "oracle_gain")}
        parity = [bool(r["parity_ok"]) for r in ok if isinstance(r.get("parity_ok"), bool)]
        cells = [f'<a href="#{anchor(k)}">kernel {esc(k)}</a>', f"{len(ok)} / {len(rs)}", fmt(med["kept"])]
        cells += [] if focus else [fmt(med["fidelity"])]
        cells += [fmt(med["others_kept"]), f"{fmt(med['specificity_before'])} → {fmt(med['specificity_after'])}"]
        cells += [f"×{fmt(med['oracle_gain'])}" if med["oracle_gain"] is not None else "—"] if focus else []
        cells.append((f"{sum(parity)} / {len(parity)}" if all(parity) else
                      f'<b class="failed">{sum(parity)} / {len(parity)}</b>') if parity else "—")
        if with_baselines:
            wins = [beats(r) for r in ok if as_dict(r.get("baselines"))]
            cells.append(f"{sum(wins)} / {len(wins)}" if wins else "—")
        rows.append((cells, False))
    return table(header, rows)


def beats(r: dict) -> bool:
    """Our specificity after (on the focus cells when there are some) beats every baseline's."""
    pick = (lambda e: as_dict(e.get("focus"))) if as_dict(r.get("focus")) else (lambda e: e)  # like for like
    ours = num(pick(r).get("specificity_after"))
    theirs = [num(pick(as_dict(b)).get("specificity_after")) for b in as_dict(r.get("baselines")).values()]
    return ours is not None and all(t is None or ours > t for t in theirs)


def _kernel(folder: Folder, layer: Layer, k: str, rs: list[dict], focus_body: FocusBody) -> str:
    out = [f'<section class="kernel" id="{anchor(k)}"><h2>Kernel {esc(k)}</h2>']
    ok = [r for r in rs if r.get("status", "ok") == "ok"]
    if len(ok) > 1:
        cols = []
        for r in ok:
            files, name = as_dict(r.get("files")), Path(str(r.get("image", "?"))).name
            first = files.get("focus_photo") or files.get("original")
            second = files.get("focus_crop_modified") or files.get("modified") or files.get("overlay")
            pics = folder.img(first, f"photo {name}") + folder.img(second, f"what kernel {k} keeps in {name}")
            m = _metrics(r)
            if pics:
                cols.append(f'<figure><div class="stack">{pics}</div><figcaption>{esc(name)} · kept '
                            f'{fmt(m.get("kept"))} · specificity {fmt(m.get("specificity_after"))}'
                            "</figcaption></figure>")
        if cols:
            out.append(f"<h3>Across {len(cols)} images: what stays the same?</h3><p class=\"nums\">Top: "
                       f"photo; bottom: what kernel {esc(k)} keeps.</p><div class=\"grid wide\">"
                       + "".join(cols) + "</div>")
    # Many images (--top-images): the strip above is the overview and good results open on demand;
    # anything that went wrong stays open.
    out += [_result(folder, layer, k, r, focus_body, folded=len(rs) > 3 and r.get("parity_ok") is not False)
            for r in rs]
    return "\n".join(out) + "</section>"


def _result(folder: Folder, layer: Layer, k: str, r: dict, focus_body: FocusBody, folded: bool = False) -> str:
    status = str(r.get("status", "ok"))
    files, image = as_dict(r.get("files")), str(r.get("image", "?"))
    name = Path(image).name
    css = status if status in ("ok", "inactive") else "failed"
    head = f'<h3 title="{esc(image)}">{esc(name)}<span class="badge {css}">{esc(status)}</span></h3>'
    if status != "ok":
        default = ("kernel does not fire on this image (‖r_k(x)‖ = 0): nothing to explain"
                   if status == "inactive" else "no reason recorded")
        body = [f'<div class="reason {css}">{esc(r.get("reason") or default)}</div>']
    elif as_dict(r.get("focus")):
        body = [focus_body(folder, layer, k, r, files, name)]
    else:
        body = _map_body(folder, layer, k, r, files, name)
    if folded and status == "ok":
        m = _metrics(r)
        brief = (f' <span class="nums">kept {fmt(m.get("kept"))} · specificity '
                 f'{fmt(m.get("specificity_before"))} → {fmt(m.get("specificity_after"))}</span>')
        return f'<details class="card"><summary>{head}{brief}</summary>{"".join(body)}</details>'
    return f'<div class="card">{head}{"".join(body)}</div>'


def whole_map_numbers(r: dict) -> str:
    nums = [("kept", "kept"), ("fidelity", "fidelity"), ("others kept", "others_kept"),
            ("mask area", "mask_area"), ("steps", "steps"), ("seconds", "seconds")]
    spec = f"<b>{fmt(r.get('specificity_before'))} → {fmt(r.get('specificity_after'))}</b>"
    parity = ' · <b class="failed">parity FAILED</b>' if r.get("parity_ok") is False else ""
    return (" · ".join(f"{label} <b>{fmt(r.get(key))}</b>" for label, key in nums)
            + f" · specificity {spec}{parity}")


def wide(folder: Folder, files: dict, name: str, k: str) -> list[str]:
    """The full-width pictures (the others chart, the band masks), each in its own row."""
    return [f'<div class="wide-figure">{fig}</div>' for fig in
            (folder.figure(files.get(key), _caption(folder, files, key, cap).replace(" k ", f" {k} "),
                           f"{cap} — {name}") for key, cap in WIDE_FIGURES) if fig]


def _map_body(folder: Folder, layer: Layer, k: str, r: dict, files: dict, name: str) -> list[str]:
    body = []
    sentence = describe(r, layer.map_shape, layer.channels)
    if sentence:
        body.append(f'<p class="sentence">{esc(sentence)}</p>')
    body.append(f'<p class="nums">{whole_map_numbers(r)}</p>')
    figs = [folder.figure(files.get(key), cap.replace(" k ", f" {k} "), f"{cap} — {name}", px)
            for key, cap, px in MAP_FIGURES]
    if any(figs):
        body.append('<div class="grid">' + "".join(figs) + "</div>")
    maps = [folder.figure(files.get(key), _caption(folder, files, key, cap).replace(" k ", f" {k} "),
                          f"{cap} — {name}", True) for key, cap in MAP_ACTIVATIONS]
    if any(maps):
        body.append('<div class="focus-row maps">' + "".join(maps) + "</div>")
    body += wide(folder, files, name, k)
    npy = folder.link(files.get("mask_npy"), "mask as .npy")
    if npy:
        body.append(f'<p class="nums">Download: {npy}</p>')
    if as_dict(r.get("baselines")):
        body.append(_map_baselines(folder, r, files, name))
    return body


def _map_baselines(folder: Folder, r: dict, files: dict, name: str) -> str:
    metrics = ["kept", "others_kept", "specificity_after", "mask_area"]
    entries = [("ours", r)] + [(str(n), as_dict(b)) for n, b in as_dict(r.get("baselines")).items()]
    top = best(e.get("specificity_after") for _, e in entries)
    rows = [([esc(n)] + [fmt(e.get(m)) for m in metrics],
             top is not None and num(e.get("specificity_after")) == top) for n, e in entries]
    tbl = table(["method", "kept", "others kept", "specificity after", "mask area"], rows)
    figs = [folder.figure(files.get("modified"), "ours: x′", f"our modified image — {name}"),
            folder.figure(files.get("mask"), "ours: mask", f"our mask — {name}", True)]
    for n, _ in entries[1:]:
        figs += [folder.figure(files.get(f"baseline_modified:{n}"), f"{n}: x′", f"{n} modified image — {name}"),
                 folder.figure(files.get(f"baseline_mask:{n}"), f"{n}: mask", f"{n} mask — {name}", True)]
    grid = '<div class="grid">' + "".join(figs) + "</div>" if any(figs[2:]) else ""
    return (f"<details open><summary>Against baselines at equal mask area (highlighted: highest "
            f"specificity after)</summary>{tbl}{grid}</details>")
