"""``kernelviz diff`` (CONTRACT.md, "kernelviz diff"): the statistics, the layer matching, diff.json and diff.html."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import corpus_deployed as cd
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from onnx_kernelviz.cli import cli
from onnx_kernelviz.diff import LayerPairStats, parse_layers
from onnx_kernelviz.errors import UsageError

TOP = {"model_a", "model_b", "images", "layers", "most_changed"}
KERNEL = {"kernel", "corr", "exemplar_overlap", "drift"}


def cli_run(*args) -> tuple[int, str]:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res.exit_code, res.output


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("photos")
    for i, rgb in enumerate(cd.smooth_images(5, (40, 48), seed=7)):
        cv2.imwrite(str(d / f"p{i}.png"), (rgb[:, :, ::-1] * 255).astype(np.uint8))
    return d


# The statistics ----------------------------------------------------------------------------------------------

def _acts(seed: int, shape=(6, 3, 5, 7)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_statistics_do_not_depend_on_how_images_are_batched():
    a, b = _acts(0), _acts(1)
    one = LayerPairStats(3, top=4)
    one.update(a, b, 0)
    split = LayerPairStats(3, top=4)
    split.update(a[4:], b[4:], 4)
    split.update(a[:4], b[:4], 0)
    f1, f2 = one.finish(), split.finish()
    for key in f1:
        assert np.allclose(f1[key], f2[key]), key
    assert [one.sites(m, c) for m in (0, 1) for c in range(3)] == [split.sites(m, c) for m in (0, 1) for c in range(3)]


def test_corr_is_pearson_of_the_rectified_activations_and_drift_follows_the_formula():
    a, b = _acts(0), _acts(1)
    s = LayerPairStats(3)
    s.update(a, b, 0)
    fin = s.finish()
    ra, rb = np.maximum(a, 0).astype(np.float64), np.maximum(b, 0).astype(np.float64)
    for k in range(3):
        want = np.corrcoef(ra[:, k].ravel(), rb[:, k].ravel())[0, 1]
        ea, eb = np.linalg.norm(ra[:, k]), np.linalg.norm(rb[:, k])
        assert fin["corr"][k] == pytest.approx(want, abs=1e-9)
        assert fin["drift"][k] == pytest.approx(1 - want + abs(eb - ea) / (ea + eb), abs=1e-9)


def test_unchanged_scaled_and_silent_kernels():
    a = _acts(0)
    b = a.copy()
    b[:, 1] *= 2.0          # kernel 1 only grows: the pattern is the same
    a[:, 2] = b[:, 2] = -1  # kernel 2 never fires in either model
    s = LayerPairStats(3, top=5)
    s.update(a, b, 0)
    fin = s.finish()
    assert fin["corr"][0] == pytest.approx(1) and fin["drift"][0] == pytest.approx(0, abs=1e-9)
    assert fin["exemplar_overlap"][0] == 1.0
    assert fin["corr"][1] == pytest.approx(1) and fin["drift"][1] == pytest.approx(1 / 3)
    assert (fin["corr"][2], fin["exemplar_overlap"][2], fin["drift"][2]) == (1.0, 1.0, 0.0)
    assert s.sites(0, 2) == []


def test_a_kernel_saturated_everywhere_in_both_models_keeps_its_pattern():
    """Constant maps (a ReLU6 saturated at every site; the int8 build saturates at its top step, 5.9 here) have no
    pattern to lose: corr 1, and drift only sees the change of level."""
    a = np.full((2, 1, 3, 3), 6.0, np.float32)
    a[0, 0, 0, 0] = 5.98  # the float ReLU6 just under its cap at one site; the int8 one saturates exactly
    b = np.full((2, 1, 3, 3), 5.9, np.float32)
    s = LayerPairStats(1)
    s.update(a, b, 0)
    fin = s.finish()
    ea, eb = np.linalg.norm(a.astype(np.float64)), np.linalg.norm(b.astype(np.float64))
    assert fin["corr"][0] == 1.0 and fin["drift"][0] == pytest.approx(abs(eb - ea) / (ea + eb), rel=1e-6)


def test_ties_in_one_model_are_broken_by_the_other():
    """An int8 model that saturates: B's top sites are the saturated ones where A ranks highest."""
    a = np.arange(1, 21, dtype=np.float32).reshape(1, 1, 4, 5)
    b = np.minimum(a, 10.0)  # sites 10..20 all read 10 in B
    s = LayerPairStats(1, top=3)
    s.update(a, b, 0)
    assert [r[:3] for r in s.sites(0, 0)] == [(0, 3, 4), (0, 3, 3), (0, 3, 2)]  # A's three largest: 20, 19, 18
    assert [r[:3] for r in s.sites(1, 0)] == [r[:3] for r in s.sites(0, 0)]
    assert s.finish()["exemplar_overlap"][0] == 1.0


def test_parse_layers():
    assert parse_layers("all", 5) == [0, 1, 2, 3, 4] and parse_layers("1,3-4,-1", 5) == [1, 3, 4]
    for bad in ("7", "a", "2-x", "4-2"):  # 4-2 selected no layer: an empty diff, exit 0
        with pytest.raises(UsageError):
            parse_layers(bad, 5)


# The command -------------------------------------------------------------------------------------------------

def test_a_model_against_itself_has_not_changed(deployed_build, photos, tmp_path):
    model = Path(deployed_build("qdq")).parent / "tiny_float.onnx"
    twin = shutil.copy(model, tmp_path / "twin.onnx")
    code, text = cli_run("diff", model, twin, photos, "--out", tmp_path / "d", "--explain", 0)
    assert code == 0, text
    doc = json.loads((tmp_path / "d" / "diff.json").read_text())
    assert TOP <= set(doc) and doc["images"] == 5 and len(doc["layers"]) == cd.TINY_CONVS
    for la in doc["layers"]:
        assert {"index", "tensor_a", "tensor_b", "kernels"} <= set(la)
        for k in la["kernels"]:
            assert KERNEL <= set(k)
            assert k["corr"] == pytest.approx(1) and k["exemplar_overlap"] == 1
            assert k["drift"] == pytest.approx(0, abs=1e-9)


def test_fp32_against_its_int8_build(deployed_build, photos, tmp_path):
    fp32 = Path(deployed_build("qdq")).parent / "tiny_float.onnx"
    out = tmp_path / "d"
    code, text = cli_run("diff", fp32, deployed_build("qdq"), photos, "--out", out, "--explain", 2, "--steps", 5,
                         "--device", "cpu", "--layers", "1,3-4")
    assert code == 0, text
    doc = json.loads((out / "diff.json").read_text())
    assert [la["index"] for la in doc["layers"]] == [1, 3, 4]
    drifts = [d for _, _, d in doc["most_changed"]]
    assert drifts == sorted(drifts, reverse=True) and min(drifts) >= 0 and max(drifts) > 0
    assert len(drifts) == 16 * 3 and {i for i, _, _ in doc["most_changed"]} == {1, 3, 4}
    # the page leads with the most changed kernels that carry signal in A (energy >= the layer's median)
    kernels = {(la["index"], k["kernel"]): k for la in doc["layers"] for k in la["kernels"]}
    median = {la["index"]: float(np.median([k["energy_a"] for k in la["kernels"]])) for la in doc["layers"]}
    strong = [(i, k) for i, k, _ in doc["most_changed"]
              if 0 < kernels[i, k]["energy_a"] >= median[i] and kernels[i, k]["energy_b"] > 0]
    assert [(e["layer"], e["kernel"]) for e in doc["examples"]] == strong[:2]
    assert doc["silenced"] == [[i, k, e["energy_a"]] for (i, k), e in kernels.items()
                               if e["energy_a"] > 0 and e["energy_b"] == 0]
    for e in doc["examples"]:
        assert all((out / f).is_file() for f in e["files"].values())
        expl = e["explanation"]
        if expl["status"] == "ok":
            assert expl["isolates_in_b"] in (True, False, None) and set(expl["a"]) == set(expl["b"])
            if expl["a"]["specificity_after"] <= expl["a"]["specificity_before"]:
                assert expl["isolates_in_b"] is None
    page = (out / "diff.html").read_text()
    assert "Content-Security-Policy" in page and "<script" not in page.lower()
    for src in re.findall(r'src="([^"]+)"', page):
        assert (out / src).is_file() and not src.startswith(("/", "http"))
    assert page.index("Kernels that changed most") < page.index("Drift by layer")


def test_models_whose_layers_do_not_match_are_refused(deployed_build, photos, tmp_path):
    import tiny_models

    other = tiny_models.save(tiny_models.two_conv(), tmp_path / "other.onnx")
    fp32 = Path(deployed_build("qdq")).parent / "tiny_float.onnx"
    code, text = cli_run("diff", fp32, other, photos, "--out", tmp_path / "d")
    assert code == 1 and text.startswith("Error: the models' conv layers do not match") and "5" in text
    assert not (tmp_path / "d").exists()  # refused before anything was written


def test_a_local_explanation_is_judged_on_its_focus_cells_in_both_models(deployed_build, photos, tmp_path):
    """explain's default is the local (focus) explanation: B is measured on the same focus cells as A, so a model
    compared with itself gives B's numbers equal to A's focus block (before: A's focus explanation was judged by its
    whole-map numbers, where its specificity usually falls)."""
    fp32 = Path(deployed_build("qdq")).parent / "tiny_float.onnx"
    out = tmp_path / "d"
    code, text = cli_run("diff", fp32, fp32, photos, "--out", out, "--layers", "1", "--explain", 1, "--steps", 5,
                         "--device", "cpu")
    assert code == 0, text
    expl = json.loads((out / "diff.json").read_text())["examples"][0]["explanation"]
    assert expl["status"] == "ok" and expl["scope"] == "focus" and expl["cells"] >= 1
    folder = next((out / "explanations").iterdir())
    result = json.loads((folder / "results.json").read_text())["results"][0]
    assert expl["peak"] == result["focus"]["peak"]
    for key in ("kept", "others_kept", "specificity_before", "specificity_after"):
        assert expl["a"][key] == result["focus"][key]
        assert expl["b"][key] == pytest.approx(expl["a"][key], rel=1e-4, abs=1e-6)


def test_force_is_needed_to_write_into_a_used_folder(deployed_build, photos, tmp_path):
    fp32 = Path(deployed_build("qdq")).parent / "tiny_float.onnx"
    args = ["diff", fp32, fp32, photos, "--out", tmp_path / "d", "--explain", 0, "--layers", "0"]
    assert cli_run(*args)[0] == 0
    code, text = cli_run(*args)
    assert code == 2 and "--force" in text
    assert cli_run(*args, "--force")[0] == 0



@pytest.mark.parametrize("option, value", [("--steps", 0), ("--steps", -3), ("--batch-size", 0), ("--top", 0),
                                           ("--explain", -1)])
def test_a_bad_number_is_a_usage_error_naming_its_option(photos, tmp_path, option, value):
    """--steps 0 (docs/RELIABILITY.md: 'must be at least 1') ran and skipped the --explain asked for, silently;
    the other numbers' error named all three options whichever was wrong."""
    import tiny_models

    model = tiny_models.save(tiny_models.two_conv(), tmp_path / "two.onnx")
    code, text = cli_run("diff", model, model, photos, "--out", tmp_path / "d", option, value)
    errors = [line for line in text.splitlines() if line.startswith("Error:")]
    assert code == 2 and len(errors) == 1 and errors[0].startswith(f"Error: {option} must be at least"), text
    assert str(value) in errors[0] and not (tmp_path / "d").exists()

@pytest.mark.slow
def test_default_model_against_its_int8_build(default_build, tmp_path):
    """The shipped model and its QDQ build (onnxruntime's tools): early layers barely move, later ones drift."""
    import corpus

    photos = corpus.ROOT / "onnx_kernelviz" / "data" / "photos"
    out = tmp_path / "d"
    code, text = cli_run("diff", corpus.DEFAULT_MODEL, default_build("qdq"), photos, "--out", out, "--layers",
                         "0,20", "--explain", 1, "--steps", 10, "--device", "cpu")
    assert code == 0, text
    doc = json.loads((out / "diff.json").read_text())
    first, mid = (np.median([k["corr"] for k in la["kernels"]]) for la in doc["layers"])
    assert first > 0.99 and 0.5 < mid < first
    expl = doc["examples"][0]["explanation"]
    assert expl["status"] == "ok" and expl["isolates_in_b"] in (True, False, None)


def test_an_interrupted_diff_points_to_force_not_to_a_resume_it_does_not_have(tmp_path, monkeypatch):
    """Ctrl-C in the example pass (after the statistics, --out already written to), then the same command: both
    messages say what works (run again with --force), not the ``--resume`` that diff does not have."""
    import tiny_models

    import onnx_kernelviz.diff.examples as examples

    model = tiny_models.save(tiny_models.two_conv(), tmp_path / "m.onnx")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for i in range(2):
        cv2.imwrite(str(imgs / f"p{i}.png"), np.random.default_rng(i).integers(0, 256, (16, 16, 3), dtype=np.uint8))

    def interrupted(*args, **kwargs):
        (args[-1] / "kernels").mkdir()  # what the pass had written so far
        raise KeyboardInterrupt

    args = ["diff", model, model, imgs, "--out", tmp_path / "d", "--explain", 1, "--steps", 3]
    with monkeypatch.context() as mp:
        mp.setattr(examples, "show_most_changed", interrupted)
        code, text = cli_run(*args)
    assert code == 130 and "Interrupted" in text and "--force" in text and "--resume" not in text, text
    code, text = cli_run(*args)
    assert code == 2 and "not empty" in text and "--force" in text and "--resume" not in text, text
    code, text = cli_run(*args, "--force")
    assert code == 0 and (tmp_path / "d" / "diff.json").is_file(), text
