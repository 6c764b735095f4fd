"""``compare`` on the known-answer model of test_baselines: kernels 0 and 2 both look at the left half (their
maps correlate), kernel 1 at the right half."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from test_baselines import SIDE, halves_model

from onnx_kernelviz.baselines import BASELINES
from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.compare import compare, most_correlated_pair, pick_pair
from onnx_kernelviz.pipeline.explain import ExplainConfig

PP = Preprocess(size=(SIDE, SIDE), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
FAST = ExplainConfig(steps=8, early_stop=False, resolution=8)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    model = Model(halves_model(d / "halves.onnx"), device="cpu")
    img = d / "photo.png"
    rng = np.random.default_rng(3)
    cv2.imwrite(str(img), rng.integers(60, 255, (SIDE, SIDE, 3), dtype=np.uint8))
    return model, img


def test_most_correlated_pair():
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, (6, 6))
    t = rng.normal(size=(5, 6, 6)).astype(np.float32)
    t[1] = base
    t[3] = 2 * base + 0.01 * rng.normal(size=(6, 6))
    t[4] = -1  # silent
    a, b, c = most_correlated_pair(t)
    assert (a, b) == (1, 3) and c > 0.99
    with pytest.raises(UsageError, match="fewer than two"):
        most_correlated_pair(np.full((3, 4, 4), -1.0, np.float32))


def test_pick_pair_wants_both_strong_firing_and_correlation():
    rng = np.random.default_rng(1)
    blob = np.zeros((8, 8))
    blob[2:5, 2:5] = 1
    t = np.full((6, 8, 8), -1.0)
    t[0] = 10 * blob + 1.5 * rng.uniform(size=(8, 8))          # strong
    t[1] = 9 * blob + 1.5 * rng.uniform(size=(8, 8))           # strong, much like 0: the pair to pick
    t[2] = 0.6 * blob                                          # weak (6 % of the strongest) ...
    t[3] = 0.6 * blob                                          # ... and a perfect copy of 2: most correlated
    t[4] = 5 * rng.uniform(size=(8, 8))                        # strong, fires everywhere: unlike the others
    t = t.astype(np.float32)
    assert most_correlated_pair(t)[:2] == (2, 3)
    a, b, corr, why = pick_pair(t)
    assert (a, b) == (0, 1) and corr > 0.9
    assert why["by"] == "score" and why["share_a"] == 1.0 and 0.8 < why["share_b"] < 1
    assert why["score"] == pytest.approx(min(corr, why["share_b"]), rel=1e-6)
    assert why["most_correlated"][:2] == [2, 3] and why["candidates"] == 5
    with pytest.raises(UsageError, match="fewer than two"):
        pick_pair(np.full((3, 4, 4), -1.0, np.float32))


def test_compare_picks_the_correlated_pair_and_writes_the_contract(setup, tmp_path):
    model, img = setup
    out = tmp_path / "cmp"
    doc = compare(model, img, "conv2", None, out, preprocess=PP, config=FAST).to_json()
    assert doc["kernels"] == [0, 2] and doc["correlation"] > 0.5
    assert doc["picked"]["by"] == "score" and doc["picked"]["correlation"] == doc["correlation"]
    assert isinstance(doc["told_apart"], bool) and doc["separation"] > 0
    assert (doc["advice"] is None) == doc["told_apart"]
    on_disk = json.loads((out / "compare.json").read_text())
    assert {"model", "layer", "image", "kernels", "correlation", "ours", "baselines"} <= set(on_disk)
    assert set(on_disk["baselines"]) == set(BASELINES.names())
    for entry in [on_disk["ours"], *on_disk["baselines"].values()]:
        for s in "ab":
            assert set(entry[s]) == {"kept_a", "kept_b"}
            assert all(isinstance(v, float) for v in entry[s].values())
    # ours is rebuilt from the saved mask exactly as explain measured it
    results = {r["kernel"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    assert on_disk["ours"]["a"]["kept_a"] == pytest.approx(results[0]["kept"], rel=1e-4, abs=1e-6)
    assert on_disk["ours"]["b"]["kept_b"] == pytest.approx(results[2]["kept"], rel=1e-4, abs=1e-6)
    for key in ["original", "modified_a", "modified_b", "mask_a", "mask_b", "act_a", "act_b",
                "baseline_modified_a:activation", "baseline_modified_b:occlusion"]:
        assert (out / on_disk["files"][key]).is_file(), key
    assert (out / "report.html").is_file()


def test_compare_given_kernels_and_refusals(setup, tmp_path):
    model, img = setup
    cfg = ExplainConfig(steps=4, early_stop=False, resolution=8, baselines=("activation",))
    doc = compare(model, img, "conv2", (0, 1), tmp_path / "given", preprocess=PP, config=cfg).to_json()
    assert doc["kernels"] == [0, 1] and list(doc["baselines"]) == ["activation"]
    assert doc["picked"] == {"by": "given"}
    with pytest.raises(UsageError, match="not empty"):
        compare(model, img, "conv2", (0, 1), tmp_path / "given", preprocess=PP, config=cfg)
    with pytest.raises(UsageError, match="two different"):
        compare(model, img, "conv2", (1, 1), tmp_path / "same", preprocess=PP, config=cfg)
    with pytest.raises(UsageError, match="out of range"):
        compare(model, img, "conv2", (0, 9), tmp_path / "range", preprocess=PP, config=cfg)


def colour_model(path):
    """x -> Conv1x1(3->8) -> Relu with kernel 0 = R + 2G and kernel 1 = R: a pair a contrast can tell apart
    (drop red, keep green); kernels 2-7 = 3B outweigh kernel 1 among "the others", so the plain objective
    has little reason to drop red."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.array([[1, 2, 0], [1, 0, 0]] + [[0, 0, 3]] * 6, np.float32).reshape(8, 3, 1, 1)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"), helper.make_node("Relu", ["c"], ["y"])]
    graph = helper.make_graph(nodes, "colour", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                              ["N", 3, SIDE, SIDE])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8, SIDE, SIDE])],
                              [numpy_helper.from_array(w, "w")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 8
    onnx.save(proto, path)
    return path


def thirds_image(folder):
    """Left third red, middle green, right blue (on grey 60): for colour_model's kernels."""
    photo = np.full((SIDE, SIDE, 3), 60, np.uint8)
    third = SIDE // 3
    photo[:, :third, 2] = 255  # cv2 writes BGR
    photo[:, third:2 * third, 1] = 255
    photo[:, 2 * third:, 0] = 255
    cv2.imwrite(str(folder / "thirds.png"), photo)
    return folder / "thirds.png"


def test_contrast_drops_the_partner_more_than_the_plain_explanation(tmp_path):
    img = thirds_image(tmp_path)
    model = Model(colour_model(tmp_path / "colour.onnx"), device="cpu")
    # reference black: the default (the photo's mean colour) would put red back where the red third is dropped;
    # the whole map: in focus scope the pair's shared cells are the red third, where no input keeps 0 and drops 1
    cfg = ExplainConfig(steps=60, early_stop=False, resolution=8, baselines=("activation",), reference="zeros",
                        scope="map")
    plain = compare(model, img, "conv", (0, 1), tmp_path / "plain", preprocess=PP, config=cfg,
                    contrast=0).to_json()
    contrast = compare(model, img, "conv", (0, 1), tmp_path / "contrast", preprocess=PP, config=cfg,
                       contrast=6).to_json()
    assert plain["contrast"] == 0 and contrast["contrast"] == 6
    # x'_0 drops the red third (most of kernel 1) and keeps the green one (most of kernel 0)
    assert contrast["ours"]["a"]["kept_b"] < plain["ours"]["a"]["kept_b"] - 0.05
    a = contrast["ours"]["a"]
    assert a["kept_a"] > 1.5 * a["kept_b"]
    settings = json.loads((tmp_path / "contrast" / "results.json").read_text())["settings"]
    assert settings["contrast"] == 6 and [list(p) for p in settings["partners"]] == [[0, 1], [1, 0]]
    with pytest.raises(UsageError, match="--contrast"):
        compare(model, img, "conv", (0, 1), tmp_path / "neg", preprocess=PP, config=cfg, contrast=-1)


def test_compare_with_the_pixel_method_and_baselines_at_the_unchanged_area(tmp_path):
    """The paper's pixel method has no mask; baselines then keep as many pixels as x' left unchanged."""
    img = thirds_image(tmp_path)
    model = Model(colour_model(tmp_path / "colour.onnx"), device="cpu")
    cfg = ExplainConfig(method="pixel", steps=60, early_stop=False, baselines=("activation",))
    plain = compare(model, img, "conv", (0, 1), tmp_path / "plain", preprocess=PP, config=cfg,
                    contrast=0).to_json()
    doc = compare(model, img, "conv", (0, 1), tmp_path / "px", preprocess=PP, config=cfg, contrast=12).to_json()
    assert doc["ours"]["a"]["kept_b"] < plain["ours"]["a"]["kept_b"] - 0.05  # red drops, as with the mask
    assert "activation" in doc["baselines"] and doc["files"]["mask_a"] is None
    results = json.loads((tmp_path / "px" / "results.json").read_text())["results"]
    assert all(r["mask_area"] is None and "activation" in r["baselines"] for r in results)


def test_unchanged_fraction():
    import torch

    from onnx_kernelviz.pipeline.batch import unchanged_fraction

    x = torch.zeros(2, 3, 4, 4)
    lo, hi = torch.full((1, 3, 1, 1), -1.0), torch.full((1, 3, 1, 1), 1.0)
    x_mod = x.clone()
    x_mod[0, 1, :2] = 0.5  # half the pixels of row 0 change by a quarter of the range in one channel
    x_mod[1, :, 0, 0] = 0.1  # one pixel of row 1 changes by 5 % of the range: still "unchanged"
    assert unchanged_fraction(x_mod, x, lo, hi).tolist() == [0.5, 1.0]


def test_separation_and_filter_cosine(setup, tmp_path):
    from onnx_kernelviz.pipeline.compare import filter_cosine, separation

    entry = {"a": {"kept_a": 0.9, "kept_b": 0.3}, "b": {"kept_a": 0.5, "kept_b": 0.8}}
    assert separation(entry) == pytest.approx(1.6)  # min(3.0, 1.6)
    assert separation({"a": {"kept_a": 1.0, "kept_b": 0.0}, "b": {"kept_a": 0.0, "kept_b": 1.0}}) > 1e5
    model, _ = setup
    la = model.layer("conv2")
    assert filter_cosine(model, la, 0, 1) == pytest.approx(0.0)  # left-half vs right-half channels
    depthwise = corpus_depthwise(tmp_path)
    assert filter_cosine(depthwise, depthwise.layers[1], 0, 1) is None  # each kernel reads its own channel


def corpus_depthwise(tmp_path):
    import corpus

    g = corpus.GraphBuilder()
    x = g.op("Relu", [g.conv("input", 3, 8)])
    x = g.op("Relu", [g.conv(x, 8, 8, group=8)])
    return Model(corpus.save(g.model([corpus.image()], [corpus.head(g, x, 8)], opset=13), tmp_path / "dw.onnx"),
                 device="cpu")


def test_compare_reports_progress(setup, tmp_path):
    model, img = setup
    seen = []
    compare(model, img, "conv2", (0, 1), tmp_path / "p", preprocess=PP,
            config=ExplainConfig(steps=2, early_stop=False, resolution=8, baselines=("activation",)),
            progress=lambda done, total, result: seen.append((done, total)))
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)


def test_pair_cells_are_where_both_fire():
    from onnx_kernelviz.method.focus import pair_cells

    a = np.zeros((6, 6))
    b = np.zeros((6, 6))
    a[1:3, 1:5] = 4.0   # a: a wide bar
    b[1:4, 3:5] = 2.0   # b: a tall bar overlapping a's right end
    cells = pair_cells(a, b)
    assert cells is not None and cells.cells.sum() == 4 and cells.cells[1:3, 3:5].all()
    assert pair_cells(a, np.where(a > 0, 0.0, 1.0)) is None  # never on the same cell


def test_compare_in_focus_scope_measures_on_the_shared_cells(setup, tmp_path):
    model, img = setup
    doc = compare(model, img, "conv2", None, tmp_path / "focus", preprocess=PP, config=FAST).to_json()
    assert doc["scope"] == "focus" and "scope_note" not in doc
    f = doc["focus"]
    assert f["cells"] >= 1 and len(f["peak"]) == 2 and len(f["rf_box"]) == 4
    assert set(f["baselines"]) == set(doc["baselines"])
    # the verdict is made of the numbers on the shared cells, the whole map's stay under "ours"
    assert doc["separation"] == f["separation"] and doc["told_apart"] == f["told_apart"]
    assert doc["ours"] != f["ours"]
    assert "cells around row" in (tmp_path / "focus" / "report.html").read_text()
    # kernels 0 and 1 (left and right halves) share no cell: the whole maps are compared, and it says so
    apart = compare(model, img, "conv2", (0, 1), tmp_path / "apart", preprocess=PP, config=FAST).to_json()
    assert apart["scope"] == "map" and "never fire on the same cell" in apart["scope_note"]
    assert "focus" not in apart
    # --at on a cell where one of the pair is silent: one usage error, nothing explained
    from dataclasses import replace

    t = prepare_t(model, img)
    cell = tuple(int(v) for v in np.argwhere((t[0] > 0) & (t[1] <= 0))[0])
    with pytest.raises(UsageError, match=f"kernel 1 does not fire at row {cell[0]}, col {cell[1]}"):
        compare(model, img, "conv2", (0, 1), tmp_path / "at", preprocess=PP, config=replace(FAST, at=cell))


def prepare_t(model, img):
    """Layer conv2's onnxruntime activations on the image, as compare sees them ``[C, h, w]``."""
    from onnx_kernelviz.pipeline.prepare import prepare

    return prepare(model, [img], model.layer("conv2"), PP, FAST).t_ort[0]


def test_compare_says_which_kernel_fires_on_the_reference_alone(tmp_path):
    """tiny_models.edge_and_bias: kernel 1 (a bias) fires on the flat reference as on the photo, kernel 0 (an edge)
    does not; compare.json's focus block records both numbers and the report names kernel 1 only."""
    import tiny_models

    model = Model(tiny_models.save(tiny_models.edge_and_bias(), tmp_path / "eb.onnx"), device="cpu")
    img = tmp_path / "step.png"
    step = np.zeros((16, 16, 3), np.uint8)
    step[:, 8:] = 200
    cv2.imwrite(str(img), step)
    pp = Preprocess(size=(16, 16), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    doc = compare(model, img, 0, (0, 1), tmp_path / "c", preprocess=pp, config=FAST).to_json()
    assert doc["scope"] == "focus"
    on_ref = doc["focus"]["kept_on_reference"]
    assert on_ref["b"] >= 0.9 and on_ref["a"] < 0.1
    html = (tmp_path / "c" / "report.html").read_text()
    note = html.split('<p class="reason inactive">')[1].split("</p>")[0]
    assert note.startswith("Kernel 1 keeps") and note.endswith("it needs no detail of the photo to fire here.")
    assert "kernel 0" not in note.lower()
