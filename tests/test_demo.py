"""The demo and the default model end to end (slow: the real EfficientNet-Lite0)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from onnx_kernelviz.cli import cli

pytestmark = pytest.mark.slow

CONTRACT_KEYS = {"image", "kernel", "status", "kept", "fidelity", "others_kept", "specificity_before",
                 "specificity_after", "mask_area", "parity_max_abs", "parity_rel", "parity_ok", "steps", "seconds",
                 "files"}


def test_demo_writes_a_report_and_can_be_rerun(tmp_path):
    out = tmp_path / "demo"
    for _ in range(2):  # a second run replaces the earlier demo instead of refusing
        r = CliRunner().invoke(cli, ["demo", "--out", str(out), "--steps", "8", "--device", "cpu"])
        assert r.exit_code == 0, r.output
        # the photo is cropped to the input; demo has no --fit to point to (it said "--fit pad keeps ...")
        assert "centre-cropped" in r.output and "--fit" not in r.output
    doc = json.loads((out / "results.json").read_text())
    assert (out / "report.html").stat().st_size > 1000
    assert len(doc["results"]) == 3 and all(CONTRACT_KEYS <= set(res) for res in doc["results"])
    html = (out / "report.html").read_text()
    assert doc["settings"]["scope"] == "focus"
    for res in doc["results"]:
        assert res["parity_ok"] and res["status"] == "ok"
        for path in res["files"].values():
            assert path is None or (out / path).exists()
        # the demo shows the local explanation: where k fires most, its box, the crops
        assert res["focus"]["cells"] >= 1 and res["focus"]["oracle_gain"] is not None
        for name in ("focus_photo", "focus_crop", "focus_crop_modified"):
            assert res["files"][name] in html


def test_demo_refuses_a_folder_with_other_files(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    r = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--steps", "2"])
    assert r.exit_code == 2 and "not empty" in r.output
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_pixel_method_on_the_default_model(tmp_path):
    from onnx_kernelviz.pipeline.demo import PHOTOS, default_model_path

    r = CliRunner().invoke(cli, ["explain", str(default_model_path()), str(PHOTOS / "coffee.jpg"), "--layer", "20",
                                 "--kernel", "top1", "--method", "pixel", "--steps", "10",
                                 "--out", str(tmp_path / "p")])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "p" / "results.json").read_text())["results"][0]
    assert res["mask_area"] is None and res["files"]["mask"] is None and res["parity_ok"]
