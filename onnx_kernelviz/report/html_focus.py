"""One result with a ``focus`` block (CONTRACT.md, "Local explanations: focus"), drawn to answer "what does kernel k
respond to here?": a sentence from the numbers, the photo with the receptive field boxed, that box of the photo
and of x′ side by side and enlarged, k's maps with their colour scale, and how much every other kernel keeps.

When the bound (``oracle_gain``) says no change of the input isolates k, the card says so and names the kernels
that fire with it, and the x′ crops are folded away: they would suggest a distinction that is not there.
"""

from __future__ import annotations

from onnx_kernelviz.report.crops import clip_box, crop_share, zoom
from onnx_kernelviz.report.html_base import Folder, as_dict, best, esc, fmt, num, table
from onnx_kernelviz.report.html_results import Layer, whole_map_numbers, wide
from onnx_kernelviz.report.sentence import FAINT_LOW, cannot_isolate, describe

__all__ = ["focus_body"]


def _box(focus: dict) -> tuple[int, int, int, int] | None:
    b = focus.get("rf_box")
    if isinstance(b, list) and len(b) == 4 and all(isinstance(v, int) and not isinstance(v, bool) for v in b):
        return b[0], b[1], b[2], b[3]
    return None


def _shares(folder: Folder, files: dict, focus: dict, mask_key: str = "mask_npy") -> tuple[float | None, float | None]:
    """The shares of the rf_box the mask keeps (≥ ½) and keeps faintly ([FAINT_LOW, ½)), from the mask saved in
    the folder; (None, None) without it."""
    m, box = folder.mask(files.get(mask_key)), _box(focus)
    if m is None or box is None:
        return None, None
    box = clip_box(box, m.shape)
    return crop_share(m, box), crop_share(m, box, FAINT_LOW, 0.5)


def _focus_numbers(focus: dict) -> str:
    before, after = num(focus.get("specificity_before")), num(focus.get("specificity_after"))
    bound = num(focus.get("oracle_gain"))
    parts = ([f"×{after / before:.1f}"] if before and after is not None else []) + (
        [f"best possible ×{bound:.1f}"] if bound is not None else [])
    gain = f" ({'; '.join(parts)})" if parts else ""
    cells = num(focus.get("cells"))
    where = f"on the {cells:.0f} focus cells" if cells else "on the focus cells"
    return (f"{esc(where)}: kept <b>{fmt(focus.get('kept'))}</b> · others kept <b>{fmt(focus.get('others_kept'))}"
            f"</b> · specificity <b>{fmt(focus.get('specificity_before'))} → {fmt(focus.get('specificity_after'))}"
            f"</b>{esc(gain)}")


def _crop_caption(focus: dict) -> str:
    box = _box(focus)
    if box is None:
        return "the box enlarged"
    f = zoom(clip_box(box, (1 << 30, 1 << 30)))
    size = f"{box[2] - box[0]}×{box[3] - box[1]} px"
    return f"the box ({size}) enlarged ×{f:.0f}" if f >= 1 else f"the box ({size}) reduced"


def focus_body(folder: Folder, layer: Layer, k: str, r: dict, files: dict, name: str) -> str:
    focus = as_dict(r.get("focus"))
    hopeless = cannot_isolate(focus)
    sentence = describe(r, layer.map_shape, layer.channels, *_shares(folder, files, focus), reference=layer.reference)
    out = []
    if sentence:
        out.append(f'<div class="reason inactive">{esc(sentence)}</div>' if hopeless
                   else f'<p class="sentence">{esc(sentence)}</p>')
    out.append(f'<p class="nums">{_focus_numbers(focus)}<br>whole map: {whole_map_numbers(r)}</p>')
    photo = folder.figure(files.get("focus_photo"), "The photo: the cyan box holds every pixel that can reach "
                          "the focus cells; magenta: the peak cell", f"photo with the box — {name}")
    crops = [folder.figure(files.get("focus_crop"), f"The photo in {_crop_caption(focus)}; yellow line: the edge "
                           "of the kept region, where x′ keeps at least half of the photo",
                           f"the box of the photo — {name}", True),
             folder.figure(files.get("focus_crop_modified"), f"x′ in the same box: what kernel {k} keeps"
                           + (" (each pixel the photo's or the reference's: a binary mask, as the box is small)"
                              if focus.get("binary_mask") else ""),
                           f"the box of x′ — {name}", True)]
    maps = [folder.figure(files.get("act_before"), f"Activation of {k} on the photo; white line: the focus "
                          "cells", f"activation of kernel {k} on the photo — {name}", True),
            folder.figure(files.get("act_after"), f"Activation of {k} on x′ (same scale)",
                          f"activation of kernel {k} on x′ — {name}", True)]
    if hopeless:
        out.append(f'<div class="focus-row">{photo}{"".join(maps)}</div>')
        if any(crops):
            out.append(f"<details><summary>What the search produced anyway (it does not isolate kernel "
                       f"{esc(k)})</summary><div class=\"focus-row\">{''.join(crops)}</div></details>")
    else:
        out.append(f'<div class="focus-row">{photo}{"".join(crops)}</div>')
        out.append(f'<div class="focus-row maps">{"".join(maps)}</div>')
    out += wide(folder, {"others": files.get("others")}, name, k)
    whole = [folder.figure(files.get(key), cap, f"{cap} — {name}", px) for key, cap, px in (
        ("original", "Original photo", False), ("modified", "x′, whole", False),
        ("mask", "Mask (bright = kept)", True), ("overlay", "Mask over the photo", False))]
    rest = wide(folder, {"mask_components": files.get("mask_components")}, name, k)
    npy = folder.link(files.get("mask_npy"), "mask as .npy")
    if any(whole) or rest or npy:
        out.append("<details><summary>The whole photo and x′, the mask, the bands</summary>"
                   f'<div class="grid">{"".join(whole)}</div>{"".join(rest)}'
                   + (f'<p class="nums">Download: {npy}</p>' if npy else "") + "</details>")
    if as_dict(r.get("baselines")):
        out.append(_baselines(folder, r, files, name))
    return "".join(out)


def _baselines(folder: Folder, r: dict, files: dict, name: str) -> str:
    """Every method at the same area, on the same cells, its box cropped as ours: one row of pictures each."""
    entries = [("ours", as_dict(r.get("focus")), "focus_crop", "focus_crop_modified")] + [
        (str(n), as_dict(as_dict(b).get("focus")), f"baseline_crop:{n}", f"baseline_crop_modified:{n}")
        for n, b in as_dict(r.get("baselines")).items()]
    areas = {"ours": num(r.get("mask_area"))} | {str(n): num(as_dict(b).get("mask_area"))
                                                 for n, b in as_dict(r.get("baselines")).items()}
    top = best(m.get("specificity_after") for _, m, _, _ in entries)
    rows = [([esc(n), fmt(m.get("kept")), fmt(m.get("others_kept")), fmt(m.get("specificity_after")),
              fmt(areas.get(n))], top is not None and num(m.get("specificity_after")) == top)
            for n, m, _, _ in entries]
    tbl = table(["method", "kept", "others kept", "specificity after", "mask area"], rows)
    pics = []
    for n, m, left, right in entries:
        figs = [folder.figure(files.get(left), f"{n}: the photo in the box, its kept region outlined",
                              f"{n}: box of the photo — {name}", True),
                folder.figure(files.get(right), f"{n}: x′ in the box (kept {fmt(m.get('kept'))}, others "
                              f"{fmt(m.get('others_kept'))})", f"{n}: box of x′ — {name}", True)]
        if any(figs):
            pics.append(f'<div class="focus-row pair">{"".join(figs)}</div>')
    return ("<details open><summary>Against baselines at the same mask area, on the same focus cells "
            f"(highlighted: highest specificity after)</summary>{tbl}{''.join(pics)}</details>")
