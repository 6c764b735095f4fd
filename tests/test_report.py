"""The HTML report: built from a fake output folder (tiny PNGs written with cv2), no model needed."""

from __future__ import annotations

import json
import math
import os
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import cv2
import numpy as np
import pytest

from onnx_kernelviz.errors import KernelvizError
from onnx_kernelviz.report.html import write_report

EVIL = "<script>alert('x')</script>"


def _png(path: Path, kind: str, seed: int, size: int = 64) -> str:
    """Write a small picture that looks like what explain writes: photo, mask or colour-mapped map."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    cy, cx = rng.uniform(0.3, 0.7, 2)
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
    if kind == "photo":
        img = np.stack([120 + 100 * xx, 80 + 120 * yy, 160 - 60 * xx], -1) + 90 * blob[..., None]
        img = np.clip(img, 0, 255).astype(np.uint8)
    elif kind == "mask":
        img = (255 * blob).astype(np.uint8)
    else:
        img = cv2.applyColorMap((255 * blob * rng.uniform(0.4, 1)).astype(np.uint8), cv2.COLORMAP_VIRIDIS)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path.name if path.parent.name == "." else f"{path.parent.name}/{path.name}"


def make_sample(out: Path, *, results: bool = True, compare: bool = True) -> Path:
    """A fake explain/compare folder: 2 kernels x 2 images, one inactive, one with baselines."""
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, image in enumerate(["photos/cat one.jpg", "photos/dog.jpg"]):
        _png(out / "img" / f"orig{i}.png", "photo", i)
        for kernel in (3, 7):
            tag = f"k{kernel}_i{i}"
            files = {"original": f"img/orig{i}.png"}
            for key, kind in [("modified", "photo"), ("mask", "mask"), ("overlay", "photo"),
                              ("act_before", "map"), ("act_after", "map"), ("others", "map")]:
                files[key] = _png(out / "img" / f"{key}_{tag}.png", kind, 10 * kernel + i)
            np.save(out / "img" / f"mask_{tag}.npy", np.zeros((4, 4), np.float32))
            files["mask_npy"] = f"img/mask_{tag}.npy"
            entry = {"image": image, "kernel": kernel, "status": "ok", "kept": 0.91234, "fidelity": 0.98,
                     "others_kept": 0.3, "specificity_before": 0.05, "specificity_after": 0.37,
                     "mask_area": 0.12, "parity_max_abs": 1e-6, "parity_rel": 2e-7, "parity_ok": True,
                     "steps": 200, "seconds": 1.5, "files": files, "extra_key": {"ignored": [1, 2]}}
            entries.append(entry)
    inactive = entries[3]  # kernel 7 on dog.jpg
    inactive.update(status="inactive", reason="kernel 7 is zero on this image", kept=None, fidelity=None)
    inactive["files"] = {"original": "img/orig1.png", "modified": None, "mask": "img/does_not_exist.png"}
    with_baselines = entries[0]  # kernel 3 on "cat one.jpg"
    with_baselines["others_kept"] = math.nan
    with_baselines["files"]["others"] = "../outside.png"  # outside the folder: never referenced
    _png(out.parent / "outside.png", "map", 99)
    with_baselines["baselines"] = {
        "activation": {"kept": 0.8, "others_kept": 0.6, "specificity_after": 0.1, "mask_area": 0.12},
        "guided_backprop": {"kept": 0.7, "others_kept": 0.5, "specificity_after": 0.9, "mask_area": 0.12},
        "gradient": {"kept": 0.6, "others_kept": 0.7, "specificity_after": 0.08, "mask_area": 0.12},
    }
    for name in ("activation", "guided_backprop"):
        with_baselines["files"][f"baseline_modified:{name}"] = _png(out / "img" / f"bm_{name}.png", "photo", 5)
        with_baselines["files"][f"baseline_mask:{name}"] = _png(out / "img" / f"bk_{name}.png", "mask", 6)
    if results:
        doc = {"model": f"models/{EVIL}.onnx", "model_sha256": "ab" * 32, "layer": "features.3.conv",
               "tensor": "/features/3/Relu_output_0", "method": "mask", "device": "cpu",
               "ort_providers": ["CPUExecutionProvider"], "version": "0.1.0",
               "settings": {"steps": 200, "lr": 0.05, "note": EVIL}, "results": entries, "future_field": 1}
        (out / "results.json").write_text(json.dumps(doc))
    if compare:
        files = {"original": "img/orig0.png", "modified_a": "img/modified_k3_i0.png",
                 "modified_b": "img/modified_k7_i0.png", "mask_a": "img/mask_k3_i0.png",
                 "mask_b": "img/mask_k7_i0.png", "act_a": "img/act_before_k3_i0.png",
                 "act_b": "img/act_before_k7_i0.png", "baseline_modified_a:activation": "img/bm_activation.png",
                 "baseline_modified_b:activation": None}
        doc = {"model": "m.onnx", "layer": "features.3.conv", "image": "photos/cat one.jpg", "kernels": [3, 7],
               "correlation": 0.87,
               "ours": {"a": {"kept_a": 0.95, "kept_b": 0.2}, "b": {"kept_a": 0.3, "kept_b": 0.9}},
               "baselines": {"activation": {"a": {"kept_a": 0.9, "kept_b": 0.85},
                                            "b": {"kept_a": 0.88, "kept_b": 0.9}}},
               "files": files}
        (out / "compare.json").write_text(json.dumps(doc))
    return out


class _Refs(HTMLParser):
    """Collects every <img> (attributes) and every src/href reference of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict] = []
        self.refs: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.imgs.append(attrs)
        self.refs += [attrs[k] for k in ("src", "href") if attrs.get(k)]


def _parse(path: Path) -> tuple[str, _Refs]:
    text = path.read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(text)
    return text, parser


def test_report_shows_every_kernel_and_status(tmp_path):
    out = make_sample(tmp_path / "out")
    path = write_report(out)
    assert path == out / "report.html"
    text, _ = _parse(path)
    assert 'id="kernel-3"' in text and 'id="kernel-7"' in text and 'id="compare"' in text
    assert "kernel 7 is zero on this image" in text and "inactive" in text
    assert "Across 2 images" in text  # consistency view for kernel 3 (kernel 7 has one active image)
    assert "—" in text  # NaN others_kept
    assert "0.912" in text and "0.91234" not in text
    assert '<tr class="win"><td>guided_backprop</td>' in text  # best specificity_after among ours + baselines
    assert '<tr class="win"><td>ours</td>' in text  # compare: ours separates the two kernels best


def test_report_escapes_strings_from_json(tmp_path):
    text, parser = _parse(write_report(make_sample(tmp_path / "out")))
    assert "script" not in parser.tags
    assert "<script" not in text.lower()
    assert "&lt;script&gt;" in text


def test_report_references_only_existing_local_files(tmp_path):
    out = make_sample(tmp_path / "out")
    text, parser = _parse(write_report(out))
    assert "http://" not in text and "https://" not in text
    assert parser.refs, "the sample has images"
    for ref in parser.refs:
        if ref.startswith("#"):
            continue
        assert not os.path.isabs(ref) and ".." not in ref.split("/"), ref
        assert (out / unquote(ref)).is_file(), ref
    assert any(r.endswith(".npy") for r in parser.refs)
    assert "cat%20one" not in text  # image names are shown, not linked
    for img in parser.imgs:
        assert img.get("alt") and img.get("loading") == "lazy"
        assert int(img["width"]) > 0 and int(img["height"]) > 0


def test_report_skips_missing_and_null_files(tmp_path):
    out = make_sample(tmp_path / "out")
    text, parser = _parse(write_report(out))
    assert "does_not_exist" not in text and "outside.png" not in text
    srcs = [i["src"] for i in parser.imgs]
    assert "img/bm_activation.png" in srcs and "img/bk_guided_backprop.png" in srcs


def test_compare_only_and_results_only(tmp_path):
    text, _ = _parse(write_report(make_sample(tmp_path / "c", results=False)))
    assert 'id="compare"' in text and "kernel-3" not in text
    text, _ = _parse(write_report(make_sample(tmp_path / "r", compare=False)))
    assert 'id="compare"' not in text and 'id="kernel-3"' in text


def test_failed_result_shows_reason(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    doc = {"model": "m.onnx", "results": [{"image": "a.jpg", "kernel": 1, "status": "failed",
                                          "reason": "optimizer diverged <NaN>", "files": None}]}
    (out / "results.json").write_text(json.dumps(doc))
    text = write_report(out).read_text()
    assert "failed" in text and "optimizer diverged &lt;NaN&gt;" in text


def test_odd_json_does_not_crash(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"results": 5, "settings": [1], "ort_providers": "cpu"}))
    (tmp_path / "compare.json").write_text(json.dumps({"kernels": [1], "ours": None, "files": ["x"],
                                                       "baselines": {"b": {"a": 3}}}))
    text = write_report(tmp_path).read_text()
    assert "No results" in text and 'id="compare"' in text


def test_no_results_is_an_error(tmp_path):
    with pytest.raises(KernelvizError, match="kernelviz explain"):
        write_report(tmp_path)
    with pytest.raises(KernelvizError, match="not a folder"):
        write_report(tmp_path / "missing")
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(KernelvizError, match="results.json"):
        write_report(tmp_path)



@pytest.mark.parametrize("name, page, command", [("atlas.json", "atlas.html", "kernelviz atlas"),
                                                 ("diff.json", "diff.html", "kernelviz diff")])
def test_report_on_an_atlas_or_diff_folder_points_to_its_own_page(tmp_path, name, page, command):
    """The advice was to run `kernelviz explain` into a folder that already holds an atlas or a diff, whose page
    their own command writes."""
    (tmp_path / name).write_text("{}")
    with pytest.raises(KernelvizError) as e:
        write_report(tmp_path)
    assert str(tmp_path / page) in str(e.value) and command in str(e.value)
    assert "kernelviz explain MODEL" not in str(e.value) and not (tmp_path / "report.html").exists()


def test_a_read_only_folder_is_one_clear_error(tmp_path, monkeypatch):
    """Simulated (tests run as root): writing report.html into a read-only folder was "unexpected OSError ...
    please report it"."""
    import errno

    from onnx_kernelviz.report import html

    (tmp_path / "results.json").write_text(json.dumps({"results": []}))

    def refuse(path, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(html, "write_text", refuse)
    with pytest.raises(KernelvizError) as e:
        write_report(tmp_path)
    assert "report.html" in str(e.value) and "read-only" in str(e.value) and "--out" not in str(e.value)

def test_write_is_atomic(tmp_path, monkeypatch):
    out = make_sample(tmp_path / "out")
    write_report(out)
    before = (out / "report.html").read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(KernelvizError, match="cannot write .*report.html: disk full"):
        write_report(out)
    assert (out / "report.html").read_bytes() == before
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["compare.json", "report.html", "results.json"]


@pytest.mark.parametrize("contrast, shown", [(12.0, "contrast <b>12</b>"), (0.0, "plain explanations (contrast 0)"),
                                             (None, None), ("x", None)])
def test_compare_section_says_how_ours_was_made(tmp_path, contrast, shown):
    out = make_sample(tmp_path / "c", results=False)
    doc = json.loads((out / "compare.json").read_text())
    doc["contrast"] = contrast
    (out / "compare.json").write_text(json.dumps(doc))
    text = write_report(out).read_text()
    assert (shown in text) if shown else ("contrast" not in text.split('id="compare"')[1].split("</p>")[0])


def test_compare_section_shows_the_filter_cosine(tmp_path):
    out = make_sample(tmp_path / "c", results=False)
    doc = json.loads((out / "compare.json").read_text())
    doc.update(filter_cosine=0.97, method="mask")
    (out / "compare.json").write_text(json.dumps(doc))
    text = write_report(out).read_text()
    assert "cosine of their filters <b>0.97</b>" in text
    # the sample's pair is told apart (0.95 vs 0.2, 0.9 vs 0.3): nothing to try
    assert "<b>Told apart.</b>" in text and "What to try" not in text
    doc["ours"]["a"]["kept_b"] = 0.9  # x'_a keeps b as much as a: not told apart
    (out / "compare.json").write_text(json.dumps(doc))
    text = write_report(out).read_text()
    # a folder without compare's recorded advice gets it from the cosine: near-copies need the pixel method
    assert "<b>Not told apart.</b>" in text and "--method pixel" in text.split("What to try")[1]


def test_compare_section_judges_separation_as_the_cli_does(tmp_path):
    """One formula: the report highlights the method with the largest self/other ratio (the CLI's "told apart"
    rule), not the largest mean gap — before, ours was highlighted while the CLI said "not told apart"."""
    from onnx_kernelviz.measure.pairs import SEPARATION, separation

    out = make_sample(tmp_path / "c", results=False)
    doc = json.loads((out / "compare.json").read_text())
    # ours: larger gaps (0.25) but ratio 1.36 < 1.5; the baseline: smaller gaps (0.15) but ratio 2.0
    doc["ours"] = {"a": {"kept_a": 0.95, "kept_b": 0.7}, "b": {"kept_a": 0.7, "kept_b": 0.95}}
    doc["baselines"] = {"activation": {"a": {"kept_a": 0.3, "kept_b": 0.15}, "b": {"kept_a": 0.15, "kept_b": 0.3}}}
    (out / "compare.json").write_text(json.dumps(doc))
    assert separation(doc["ours"]) < SEPARATION <= separation(doc["baselines"]["activation"])
    text = write_report(out).read_text()
    assert '<tr class="win"><td>activation</td>' in text and '<tr class="win"><td>ours</td>' not in text
    assert "1.36 (not told apart)" in text and "2 (told apart)" in text


def test_a_report_that_cannot_be_written_is_one_line(tmp_path):
    """A folder from elsewhere may hold a folder named report.html: the rename failed with the 'unexpected'
    fallback that asks users to report a bug."""
    from click.testing import CliRunner

    from onnx_kernelviz.cli import cli

    out = make_sample(tmp_path / "out")
    (out / "report.html").mkdir()
    r = CliRunner().invoke(cli, ["report", str(out)])
    assert r.exit_code == 1 and r.output.startswith("Error: cannot write") and r.output.count("\n") == 1, r.output
    assert "report.html: Is a directory" in r.output and "unexpected" not in r.output
    assert (out / "report.html").is_dir() and not [p for p in out.iterdir() if p.name.endswith(".tmp")]
