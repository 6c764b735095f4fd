"""report.html for results with ``focus`` blocks (tests/focus_sample.py builds the folder with a tiny strided model
and the real picture writers), and the same folder written without them (``--scope map``, older folders)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from urllib.parse import unquote

import cv2
import focus_sample
import numpy as np
import pytest

from onnx_kernelviz.report.crops import BOX_COLOUR, CONTOUR_COLOUR
from onnx_kernelviz.report.html import write_report

EVIL = "<script>alert('x')</script>"


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.imgs: list[dict] = []
        self.attrs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs += [name for name, _ in attrs]
        if tag == "img":
            self.imgs.append(dict(attrs))


@pytest.fixture(scope="module")
def focus_folder(tmp_path_factory):
    out = focus_sample.build(tmp_path_factory.mktemp("focus") / "out", evil=EVIL)
    return out, json.loads((out / "results.json").read_text())


def test_each_focus_result_leads_with_its_sentence_and_pictures(focus_folder):
    out, doc = focus_folder
    text = write_report(out).read_text()
    good, low = doc["results"]
    f = good["focus"]
    # the sentence, from the numbers: the peak, the map's size, the other kernels' count
    expect = (f"Kernel {good['kernel']} keeps {f['kept']:.2f} of its activation on the {f['cells']} cells around "
              f"row {f['peak'][0]}, col {f['peak'][1]} of the 8×8 map (the boxed area of the photo) while the other "
              f"7 kernels there")
    assert expect in text
    # ... and the kept share of the box, from the saved mask
    mask = np.load(out / good["files"]["mask_npy"])
    top, left, bottom, right = f["rf_box"]
    share = (mask[top:bottom, left:right] >= 0.5).mean()
    assert f"the kept region is {share * 100:.0f} % of the boxed area" in text
    # ... and the box's share that x' keeps faintly (the sample's ring at 0.3 around the kept disc)
    faint = ((mask[top:bottom, left:right] >= 0.25) & (mask[top:bottom, left:right] < 0.5)).mean()
    assert faint >= 0.05 and f"x′ keeps fainter traces of the photo over another {faint * 100:.0f} %." in text
    card = text.split(expect)[1].split('class="card"')[0]
    for key in ("focus_photo", "focus_crop", "focus_crop_modified", "act_before", "act_after", "others"):
        assert f'src="{good["files"][key]}"' in card, key
    # the second kernel: the bound is low, so the card says so, names the kernels, and folds its x' away
    mates = low["focus"]["companions"]
    warn = (f"Kernel {low['kernel']} cannot be told apart from kernels {mates[0]}, {mates[1]} and {mates[2]} at "
            "this layer: no change of the input isolates it (best possible gain ×1.3).")
    assert warn in text
    low_card = text.split(warn)[1]
    folded = low_card.split("What the search produced anyway")[1].split("</details>")[0]
    assert low["files"]["focus_crop_modified"] in folded
    assert low_card.index(low["files"]["focus_photo"]) < low_card.index("What the search produced anyway")


def test_focus_summary_and_baselines_use_the_focus_numbers(focus_folder):
    out, doc = focus_folder
    text = write_report(out).read_text()
    assert "best possible" in text and "×6" in text and "×1.3" in text
    good = doc["results"][0]
    ours, theirs = good["focus"], next(iter(good["baselines"].values()))["focus"]
    assert f"<td>{ours['specificity_after']:.3g}</td>" in text and f"<td>{theirs['specificity_after']:.3g}</td>" in text
    name = next(iter(good["baselines"]))
    for key in (f"baseline_crop:{name}", f"baseline_crop_modified:{name}"):
        assert (out / good["files"][key]).is_file()


def test_every_string_from_json_is_escaped(focus_folder):
    out, _ = focus_folder
    page = _Page()
    text = write_report(out).read_text()
    page.feed(text)
    assert "script" not in page.tags
    assert "onmouseover" not in page.attrs
    assert "<script" not in text.lower() and "&lt;script&gt;" in text
    assert "&lt;b onmouseover=&#x27;x&#x27;&gt;&amp;" in text
    for img in page.imgs:  # every picture the page shows exists, inside the folder
        assert img["alt"] and (out / unquote(img["src"])).is_file(), img


def test_focus_pictures_on_disk_show_the_box_and_the_contour(focus_folder):
    out, doc = focus_folder
    files = doc["results"][0]["files"]
    photo = cv2.imread(str(out / files["focus_photo"]))[..., ::-1]
    crop = cv2.imread(str(out / files["focus_crop"]))[..., ::-1]
    assert (photo == np.array(BOX_COLOUR, np.uint8)).all(-1).any()
    assert (crop == np.array(CONTOUR_COLOUR, np.uint8)).all(-1).any()
    top, left, bottom, right = doc["results"][0]["focus"]["rf_box"]
    assert crop.shape[0] / (bottom - top) == crop.shape[1] / (right - left) >= 1  # enlarged by a whole factor


def test_map_scope_folder_renders_the_whole_map_pictures(tmp_path):
    out = focus_sample.build(tmp_path / "map", focus=False)
    doc = json.loads((out / "results.json").read_text())
    assert not any("focus" in r for r in doc["results"])
    text = write_report(out).read_text()
    r = doc["results"][0]
    assert f"Kernel {r['kernel']} keeps {r['kept']:.2f} of its activation over the whole 8×8 map" in text
    for key in ("original", "modified", "mask", "overlay", "act_before", "act_after", "others"):
        assert f'src="{r["files"][key]}"' in text, key
    assert "focus_photo" not in text and "best possible" not in text.split("</table>")[0]


def test_older_folder_without_activation_shape_still_reads(focus_folder, tmp_path):
    out, doc = focus_folder
    doc = {k: v for k, v in doc.items() if k != "activation_shape"}
    (out / "results.json").write_text(json.dumps(doc))
    try:
        text = write_report(out).read_text()
        assert "of its map (the boxed area of the photo) while the other kernels there" in text
    finally:
        (out / "results.json").write_text(json.dumps({**doc, "activation_shape": [8, 8, 8]}))


def test_captions_follow_the_pictures_drawn(tmp_path):
    """New maps carry a colour bar and the chart is per-kernel kept; a folder drawn before keeps fitting captions."""
    out = focus_sample.build(tmp_path / "map", focus=False, baselines=False)
    text = write_report(out).read_text()
    assert "(colour bar: its values)" in text and "the dashed line all other kernels together" in text
    r = json.loads((out / "results.json").read_text())["results"][0]
    cv2.imwrite(str(out / r["files"]["act_before"]), np.zeros((64, 64, 3), np.uint8))  # square: no colour bar
    cv2.imwrite(str(out / r["files"]["others"]), np.zeros((200, 480, 3), np.uint8))  # the old bar chart
    text = write_report(out).read_text()
    assert f"Activation of {r['kernel']} on the photo</figcaption>" in text
    assert f"on x′ (orange), {r['kernel']} in blue" in text


def test_compare_leads_with_the_two_boxes_and_the_verdict(focus_folder, tmp_path):
    out, doc = focus_folder
    (a, fa), (b, fb) = [(r["kernel"], r["files"]) for r in doc["results"]]
    files = {f"{key}_{s}": f[key] for s, f in (("a", fa), ("b", fb))
             for key in ("focus_photo", "focus_crop", "focus_crop_modified")}
    files.update(original=fa["original"], modified_a=fa["modified"], modified_b=fb["modified"])
    cmp = {"model": "m.onnx", "layer": "conv2", "image": "photo.png", "kernels": [a, b], "correlation": 0.8,
           "picked": {"by": "score", "score": 0.6, "correlation": 0.8, "share_a": 1.0, "share_b": 0.6,
                      "most_correlated": [a, b, 0.8]},
           "ours": {"a": {"kept_a": 0.9, "kept_b": 0.7}, "b": {"kept_a": 0.8, "kept_b": 0.95}},
           "separation": 0.95 / 0.8, "told_apart": False, "advice": "Try <another> image.", "files": files}
    (out / "compare.json").write_text(json.dumps(cmp))
    try:
        text = write_report(out).read_text()
    finally:
        (out / "compare.json").unlink()
    lead = text.split('id="compare"')[1].split("<h3>Details</h3>")[0]
    assert "<b>Not told apart.</b>" in lead and "Try &lt;another&gt; image." in lead
    assert lead.index(fa["focus_crop_modified"]) < lead.index(fb["focus_crop_modified"])
    # each side shows what its x' keeps of the photo (the outlined crop) before x' itself
    crop_a, crop_b = (lead.index(f["focus_crop"] + '"') for f in (fa, fb))
    assert crop_a < lead.index(fa["focus_crop_modified"]) < crop_b
    assert f"keeps {a}: <b>0.9</b> · keeps {b}: <b>0.7</b>" in lead
    assert "both fire strongly" in text.split("<h3>Details</h3>")[0]
    assert text.index('id="compare"') < text.index("<h2>Summary</h2>")  # the answer before the explanations
