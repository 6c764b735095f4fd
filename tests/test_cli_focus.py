"""``explain`` in focus scope (the default) and ``--scope map`` through the CLI, on tests/tiny_models.py's two_conv
(CONTRACT.md, "Local explanations"): the focus block in results.json, the focus pictures in the report, ``--at``."""

from __future__ import annotations

import json

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import tiny_models
from click.testing import CliRunner

from onnx_kernelviz.cli import cli

# few steps for the explanation and for the bound: these tests check the wiring, not the quality
FAST = ["--steps", "4", "--set", "oracle_steps=4", "--device", "cpu", "--mean", "0,0,0", "--std", "1,1,1"]
FOCUS_KEYS = {"peak", "cells", "rf_box", "kept", "others_kept", "specificity_before", "specificity_after",
              "oracle_gain"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("focus_cli")
    model = tiny_models.save(tiny_models.two_conv(), d / "two.onnx")
    img = d / "photo.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    # layer 1's activations (the second Relu, [6, 16, 16]) on the image exactly as explain feeds it
    rgb = cv2.cvtColor(cv2.imread(str(img)), cv2.COLOR_BGR2RGB).astype(np.float32) / 255
    t = ort.InferenceSession(str(model)).run(None, {"x": rgb.transpose(2, 0, 1)[None]})[0][0]
    return model, img, t


def run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in res.output
    return res


def test_focus_block_in_results_and_its_pictures_in_the_report(setup, tmp_path):
    model, img, t = setup
    out = tmp_path / "o"
    res = run("explain", model, img, "--layer", "1", "--kernel", "0,3", "--out", out, "--baselines", "activation",
              *FAST)
    assert res.exit_code == 0, res.output
    assert "on the focus cells, median kept" in res.output
    doc = json.loads((out / "results.json").read_text())
    assert doc["settings"]["scope"] == "focus"
    html = (out / "report.html").read_text()
    for r in doc["results"]:
        f = r["focus"]
        assert FOCUS_KEYS <= set(f)
        # the peak is where r_k is largest (onnxruntime on the original model); F holds it
        assert tuple(f["peak"]) == np.unravel_index(np.argmax(t[r["kernel"]]), t.shape[1:])
        top, left, bottom, right = f["rf_box"]
        assert 0 <= top < bottom <= 16 and 0 <= left < right <= 16 and f["cells"] >= 1
        assert f["oracle_gain"] is not None and f["oracle_gain"] > 0
        for name in ("focus_photo", "focus_crop", "focus_crop_modified", "baseline_crop:activation",
                     "baseline_crop_modified:activation"):
            assert (out / r["files"][name]).is_file(), name
            assert r["files"][name].replace(":", "%3A") in html or r["files"][name] in html, name
        assert set(r["baselines"]["activation"]["focus"]) >= {"kept", "others_kept", "specificity_after"}


def test_scope_map_keeps_the_whole_map_explanation(setup, tmp_path):
    model, img, _ = setup
    out = tmp_path / "o"
    res = run("explain", model, img, "--layer", "1", "--kernel", "0", "--out", out, "--scope", "map", *FAST)
    assert res.exit_code == 0, res.output
    assert "median kept" in res.output and "on the focus cells" not in res.output
    doc = json.loads((out / "results.json").read_text())
    r = doc["results"][0]
    assert doc["settings"]["scope"] == "map" and r["status"] == "ok" and r.get("focus") is None
    assert "focus_crop" not in r["files"] and (out / r["files"]["overlay"]).is_file()


def test_at_a_cell_where_the_kernel_is_silent_is_inactive_and_says_where_it_fires(setup, tmp_path):
    model, img, t = setup
    k = next(k for k in range(t.shape[0]) if (t[k] <= 0).any() and (t[k] > 0).any())
    silent = tuple(int(v) for v in np.argwhere(t[k] <= 0)[0])
    firing = tuple(int(v) for v in np.argwhere(t[k] > 0)[0])
    out = tmp_path / "o"
    res = run("explain", model, img, "--layer", "1", "--kernel", k, "--at", f"{silent[0]},{silent[1]}",
              "--out", out, *FAST)
    assert res.exit_code == 0, res.output
    assert "0 explained, 1 inactive" in res.output
    r = json.loads((out / "results.json").read_text())["results"][0]
    assert r["status"] == "inactive"
    assert f"does not fire at row {silent[0]}, col {silent[1]}" in r["reason"] and "elsewhere" in r["reason"]
    # at a cell where it fires, F is around that cell, not the peak
    res = run("explain", model, img, "--layer", "1", "--kernel", k, "--at", f"{firing[0]},{firing[1]}",
              "--out", tmp_path / "p", *FAST)
    assert res.exit_code == 0, res.output
    r = json.loads((tmp_path / "p" / "results.json").read_text())["results"][0]
    assert r["status"] == "ok" and r["focus"]["peak"] == list(firing)
    # outside the map: one usage error, nothing written
    res = run("explain", model, img, "--layer", "1", "--kernel", k, "--at", "16,0", "--out", tmp_path / "q", *FAST)
    assert res.exit_code == 2 and "outside the 16×16 activation map" in res.output
    assert not (tmp_path / "q" / "results.json").exists()


def test_prune_option_runs_and_a_bad_tolerance_is_a_usage_error(setup, tmp_path):
    model, img, _ = setup
    res = run("explain", model, img, "--layer", "1", "--kernel", "0", "--out", tmp_path / "o", *FAST,
              "--steps", "8", "--set", "focus_prune_steps=2", "--set", "focus_prune_tolerance=1")
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["settings"]["focus_prune_steps"] == 2 and doc["results"][0]["status"] == "ok"
    res = run("explain", model, img, "--layer", "1", "--kernel", "0", "--out", tmp_path / "q", *FAST,
              "--set", "focus_prune_tolerance=1.5")
    assert res.exit_code == 2 and "focus_prune_tolerance must be at most 1" in res.output
    assert not (tmp_path / "q").exists()


def test_a_kernel_that_fires_on_the_reference_alone_is_named_so(tmp_path):
    """``kept_on_reference`` (onnxruntime on the reference, nothing of the photo kept): a bias-driven kernel keeps
    its activation there and the report and terminal say it needs no detail of the photo; an edge detector does
    not (a flat image has no edge)."""
    model = tiny_models.save(tiny_models.edge_and_bias(), tmp_path / "edge_bias.onnx")
    img = tmp_path / "step.png"
    step = np.zeros((16, 16, 3), np.uint8)
    step[:, 8:] = 200  # one vertical edge in the middle: kernel 0 peaks there
    cv2.imwrite(str(img), step)
    out = tmp_path / "o"
    res = run("explain", model, img, "--layer", "0", "--kernel", "0,1", "--out", out, *FAST)
    assert res.exit_code == 0, res.output
    assert "1 fires as much on the reference alone as on the photo" in res.output
    doc = json.loads((out / "results.json").read_text())
    on_ref = {r["kernel"]: r["focus"]["kept_on_reference"] for r in doc["results"]}
    rgb = step.astype(np.float32) / 255
    flat = np.broadcast_to(rgb.mean((0, 1)), rgb.shape).transpose(2, 0, 1)[None].astype(np.float32)
    sess = ort.InferenceSession(str(model))
    t_x, t_b = (sess.run(None, {"x": v})[0][0] for v in (rgb.transpose(2, 0, 1)[None], flat))
    for r in doc["results"]:  # the same number from onnxruntime here, on F
        k, f = r["kernel"], r["focus"]
        cells = np.zeros(t_x.shape[1:], bool)
        top, left = f["peak"]
        cells[t_x[k] >= 0.5 * t_x[k].max()] = True  # F: this model's blobs are one connected region each
        assert cells[top, left]
        expect = np.linalg.norm(t_b[k][cells]) / np.linalg.norm(t_x[k][cells])
        assert on_ref[k] == pytest.approx(expect, rel=1e-4)
    assert on_ref[1] >= 0.9 and on_ref[0] < 0.1
    html = (out / "report.html").read_text()
    assert html.count("needs no detail of the photo to fire here") == 1
    assert "kernel 1 needs no detail of the photo" in html and "a flat image of the photo&#x27;s mean colour" in html
