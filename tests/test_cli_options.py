"""How the CLI's options compose (cli/options.py): a named option > --set KEY=VALUE (the last) > ExplainConfig's
default; preprocessing: command line > --preset > sidecar > imagenet. Every setting given reaches results.json;
bad values are one usage error. Also the progress reported during a batch and each explanation's own seconds."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tiny_models
from click.testing import CliRunner

from onnx_kernelviz.baselines import BASELINES
from onnx_kernelviz.cli import cli

FAST = ["--steps", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_models.save(tiny_models.two_conv(), tmp_path_factory.mktemp("m") / "two.onnx")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("img") / "photo.png"
    cv2.imwrite(str(p), np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    return p


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def settings_of(model, image, out, *extra) -> dict:
    r = run("explain", model, image, "--layer", "1", "--kernel", "0", "--out", out, *extra)
    assert r.exit_code == 0, r.output
    return json.loads((out / "results.json").read_text())["settings"]


@pytest.mark.parametrize("key, value, recorded", [
    ("seed", "5", 5), ("batch_size", "2", 2), ("tolerance", "0.5", 0.5), ("early_stop", "false", False),
    ("method", "pixel", "pixel"), ("top_images", "1", 1), ("steps", "2", 2), ("reference", "zeros", "zeros"),
])
def test_set_reaches_the_settings(model, image, tmp_path, key, value, recorded):
    """--set seed=5, batch_size, tolerance, early_stop, method, top_images were dropped: the CLI's own defaults
    for those options were applied after --set."""
    s = settings_of(model, image, tmp_path / "o", "--device", "cpu", "--set", f"{key}={value}")
    assert s[key] == recorded


def test_set_baselines_is_a_list_of_names_not_characters(model, image, tmp_path):
    s = settings_of(model, image, tmp_path / "o", *FAST, "--set", "baselines=gradient,activation")
    assert s["baselines"] == ["gradient", "activation"]
    r = json.loads((tmp_path / "o" / "results.json").read_text())["results"][0]
    assert set(r["baselines"]) == {"gradient", "activation"}


def test_baselines_alone_means_all_and_does_not_swallow_the_next_option(model, image, tmp_path):
    r = run("explain", model, image, "--layer", "1", "--kernel", "0", *FAST, "--baselines", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["settings"]["baselines"] == BASELINES.names()
    assert set(doc["results"][0]["baselines"]) == set(BASELINES.names())
    s = settings_of(model, image, tmp_path / "some", *FAST, "--baselines", "occlusion,gradient")
    assert s["baselines"] == ["occlusion", "gradient"]


def test_precedence_named_option_then_last_set_then_default(model, image, tmp_path):
    assert settings_of(model, image, tmp_path / "a", "--device", "cpu", "--steps", "2",
                       "--set", "steps=3")["steps"] == 2
    assert settings_of(model, image, tmp_path / "b", "--device", "cpu", "--set", "steps=3",
                       "--set", "steps=2")["steps"] == 2
    s = settings_of(model, image, tmp_path / "c", *FAST)
    from onnx_kernelviz.method.config import ExplainConfig

    assert s["seed"] == ExplainConfig().seed and s["early_stop"] is ExplainConfig().early_stop
    # the mask method's own values for the scope, recorded as used
    assert s["scope"] == "focus" and s["lr"] == 0.1 and s["min_steps"] == 30
    s = settings_of(model, image, tmp_path / "d", *FAST, "--scope", "map")
    assert s["scope"] == "map" and s["lr"] == 0.2 and s["min_steps"] == 20


def test_preprocessing_precedence_cli_over_preset_over_sidecar(model, image, tmp_path):
    side = model.with_name(model.stem + ".kernelviz.json")
    side.write_text(json.dumps({"mean": [0.3, 0.3, 0.3], "std": [0.5, 0.5, 0.5], "scale": True}))
    try:
        pp = settings_of(model, image, tmp_path / "a", *FAST)["preprocess"]
        assert pp["mean"] == [0.3] * 3 and pp["std"] == [0.5] * 3  # sidecar over imagenet
        pp = settings_of(model, image, tmp_path / "b", *FAST, "--preset", "raw")["preprocess"]
        assert pp["mean"] == [0.0] and pp["scale"] is False  # --preset over the sidecar
        pp = settings_of(model, image, tmp_path / "c", *FAST, "--preset", "raw", "--mean", "9,9,9")["preprocess"]
        assert pp["mean"] == [9.0] * 3 and pp["scale"] is False  # an option over --preset
    finally:
        side.unlink()


@pytest.mark.parametrize("setting, needle", [
    ("resolution=0", "resolution must be at least 1"), ("lr=nan", "finite"), ("lr=-1", "lr must be above 0"),
    ("levels=0", "levels"), ("smooth=-0.5", "smooth"), ("tv=inf", "finite"), ("mask=pixel", "mask"),
    ("reference=nope", "unknown reference"), ("baselines=nope", "unknown baseline"), ("batch_size=0", "--batch-size"),
    ("patience=0", "patience"),
])
def test_bad_set_values_are_one_usage_error(model, image, tmp_path, setting, needle):
    out = tmp_path / "o"
    r = run("explain", model, image, "--layer", "1", "--kernel", "0", "--out", out, *FAST, "--set", setting)
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and needle in lines[0] and "unexpected" not in lines[0], r.output
    assert not out.exists()


def test_method_choices_are_the_registered_methods():
    from onnx_kernelviz.cli.options import METHOD_NAMES
    from onnx_kernelviz.method.methods import METHODS

    assert list(METHOD_NAMES) == METHODS.names()



@pytest.mark.parametrize("command", ["explain", "compare", "atlas"])
def test_steps_help_states_the_methods_own_defaults(command):
    """--help said 100 steps in focus scope (explain, compare) and 200 (atlas, whose scope is focus too); the mask
    method runs 160 there. The numbers in the help must be the registered methods' own."""
    from onnx_kernelviz.method.config import ExplainConfig
    from onnx_kernelviz.method.methods import METHODS

    def steps(method: str, scope: str) -> int | None:
        return METHODS.get(method).resolve(ExplainConfig(method=method, scope=scope)).steps

    others = {steps(m, s) for m in METHODS.names() for s in ("focus", "map")} - {steps("mask", "focus")}
    assert len(others) == 1
    text = " ".join(CliRunner().invoke(cli, [command, "--help"]).output.split())
    assert f"[default: {steps('mask', 'focus')} for the mask method in focus scope, else {others.pop()}]" in text

def test_progress_moves_during_a_batch_and_seconds_are_each_rows_share(model, image, tmp_path, monkeypatch):
    """One batch of 3 rows (whole-map scope: one phase): progress is reported after every optimizer step (not only
    when the batch ends); a row that stops at step 1 (its loss is NaN) costs less than the rows that run all 5
    steps."""
    import torch

    from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess
    from onnx_kernelviz.method.objectives import Objective

    real = Objective.__call__

    def nan_for_kernel_1(self, s):
        loss = real(self, s)
        return torch.where(s.k == 1, torch.full_like(loss, float("nan")), loss)

    monkeypatch.setattr(Objective, "__call__", nan_for_kernel_1)
    steps, results = [], []
    run_ = explain(Model(model, device="cpu"), [image], 1, "0,1,2", tmp_path / "o",
                   preprocess=resolve_preprocess(model),
                   config=ExplainConfig(scope="map", steps=5, early_stop=False, batch_size=3),
                   progress=lambda done, total, r: results.append(done), on_step=lambda d, t: steps.append(d))
    assert results == [0, 1, 2, 3]
    assert len(steps) == 5 and any(0 < d < 3 and d != int(d) for d in steps) and steps == sorted(steps)
    by_kernel = {r.kernel: r for r in run_.results}
    assert by_kernel[1].status == "failed" and by_kernel[1].steps == 1 and by_kernel[0].steps == 5
    assert by_kernel[1].seconds < by_kernel[0].seconds and by_kernel[1].seconds < by_kernel[2].seconds


def test_row_seconds_split_each_step_among_the_running_rows():
    from onnx_kernelviz.pipeline.batch import row_seconds

    assert row_seconds([1.0, 1.0, 1.0, 1.0], [2, 4], setup=0.4) == pytest.approx([1.2, 3.2])
    assert sum(row_seconds([0.3, 0.2], [1, 2, 2], setup=0.3)) == pytest.approx(0.8)


def test_focus_progress_moves_through_the_bound_and_seconds_include_its_share(model, image, tmp_path, monkeypatch):
    """Focus scope: the bound's steps move the bar too (before the explanation's), and each row's seconds are its
    share of both (a clock that ticks 1 s per reading: 3 rows, 4 bound steps + 5 steps = 3 s a row)."""
    import itertools
    import types

    from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess
    from onnx_kernelviz.pipeline import batch

    ticks = itertools.count()
    monkeypatch.setattr(batch, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    steps: list[float] = []
    cfg = ExplainConfig(steps=5, early_stop=False, batch_size=3, oracle_steps=4, focus_regions=0,  # one mask stage
                        focus_small_box=0)
    run_ = explain(Model(model, device="cpu"), [image], 1, "0,1,2", tmp_path / "o",
                   preprocess=resolve_preprocess(model), config=cfg, on_step=lambda d, t: steps.append(d))
    assert len(steps) == 9 and steps == sorted(steps) and steps[-1] == pytest.approx(3.0)
    assert steps[3] == pytest.approx(3 * 4 / 9)  # the bound's last step: its share of the work
    assert all(r.seconds == pytest.approx(3.0) for r in run_.results)
    assert all(r.focus is not None and r.focus.oracle_gain is not None for r in run_.results)


def test_focus_progress_counts_the_binary_candidate_of_small_boxes(model, image, tmp_path, monkeypatch):
    """The tiny model's boxes are small: the soft mask at the heavier area weight and the binary mask are the last
    phases of the bar (4 bound + 5 mask + 5 heavier mask + 5 binary steps, 1 s a clock reading: 19 s for 3 rows),
    each row's seconds count every candidate, its steps only the shown one's."""
    import itertools
    import types

    from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess
    from onnx_kernelviz.pipeline import batch

    ticks = itertools.count()
    monkeypatch.setattr(batch, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    steps: list[float] = []
    cfg = ExplainConfig(steps=5, early_stop=False, batch_size=3, oracle_steps=4, focus_regions=0)
    run_ = explain(Model(model, device="cpu"), [image], 1, "0,1,2", tmp_path / "o",
                   preprocess=resolve_preprocess(model), config=cfg, on_step=lambda d, t: steps.append(d))
    assert len(steps) == 19 and steps == sorted(steps) and steps[-1] == pytest.approx(3.0)
    assert steps[8] == pytest.approx(3 * 9 / 19)  # the soft mask's last step
    assert steps[13] == pytest.approx(3 * 14 / 19)  # the heavier soft mask's last step
    assert all(r.seconds == pytest.approx(19 / 3) and r.steps == 5 for r in run_.results)


def test_focus_progress_counts_the_fine_stage_of_coarse_to_fine(model, image, tmp_path, monkeypatch):
    """``focus_regions`` > 0: the fine stage's steps are a third phase of the bar (after the bound's and the coarse
    mask's) and of each row's seconds (1 s a clock reading: 3 rows, 4 + 5 + 3 steps = 4 s a row); ``steps`` (8) is
    still the most an explanation runs: the fine stage's 3 are among them."""
    import itertools
    import types

    from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess
    from onnx_kernelviz.pipeline import batch

    ticks = itertools.count()
    monkeypatch.setattr(batch, "time", types.SimpleNamespace(perf_counter=lambda: float(next(ticks))))
    steps: list[float] = []
    cfg = ExplainConfig(steps=8, early_stop=False, batch_size=3, oracle_steps=4, focus_regions=1, focus_fine_steps=3,
                        focus_small_box=0)
    run_ = explain(Model(model, device="cpu"), [image], 1, "0,1,2", tmp_path / "o",
                   preprocess=resolve_preprocess(model), config=cfg, on_step=lambda d, t: steps.append(d))
    assert len(steps) == 12 and steps == sorted(steps) and steps[-1] == pytest.approx(3.0)
    assert steps[8] == pytest.approx(3 * 9 / 12)  # the coarse mask's last step
    assert all(r.seconds == pytest.approx(4.0) and r.steps == 8 for r in run_.results)


def one_usage_error(result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("command, key, value, needles", [
    ("atlas", "at", "1,1", ("exemplar",)),  # the atlas explained each kernel at its own sites: --at was dropped
    ("atlas", "top_images", "1", ("--top",)),
    ("atlas", "partners", "0:1", ("compare",)),
    ("atlas", "contrast", "3", ("compare",)),
    ("compare", "partners", "0:1", ("--kernel",)),  # compare replaced it by its pair
    ("compare", "top_images", "1", ("one image",)),
])
def test_set_keys_a_command_cannot_use_are_refused(model, image, tmp_path, command, key, value, needles):
    args = [command, model, image, "--layer", "1"] if command == "compare" else [command, model, image]
    one_usage_error(run(*args, "--out", tmp_path / "o", *FAST, "--set", f"{key}={value}"), f"--set {key}", *needles)
    assert not (tmp_path / "o").exists()


def test_explain_contrast_needs_a_partner_and_partners_need_a_contrast(model, image, tmp_path):
    """``--set contrast=3`` did nothing in explain (no partner kernel to suppress); ``--set partners=1`` said only
    "not a valid tuple"; partners without a contrast did nothing either."""
    args = ("explain", model, image, "--layer", "1", "--kernel", "0", "--out", tmp_path / "o", *FAST)
    one_usage_error(run(*args, "--set", "contrast=3"), "--set contrast", "kernelviz compare", "partners=")
    one_usage_error(run(*args, "--set", "partners=1"), "--set partners=1", "KERNEL:PARTNER", "3:7")
    one_usage_error(run(*args, "--set", "partners=0:1"), "--set partners", "--set contrast=")
    for outside in ("0:6", "0:-1"):
        one_usage_error(run(*args, "--set", f"partners={outside}", "--set", "contrast=3"), "no kernel", "0..5")
    s = settings_of(model, image, tmp_path / "ok", *FAST, "--set", "partners=0:1", "--set", "contrast=3")
    assert s["partners"] == [[0, 1]] and s["contrast"] == 3



def test_compare_takes_set_contrast_when_contrast_is_not_given(model, image, tmp_path):
    """compare replaced --set contrast=W by its own default (12) without a word."""
    def contrast(out, *extra):
        r = run("compare", model, image, "--layer", "1", "--out", out, *FAST, *extra)
        assert r.exit_code == 0, r.output
        return json.loads((out / "compare.json").read_text())["contrast"]

    assert contrast(tmp_path / "a", "--set", "contrast=3") == 3
    assert contrast(tmp_path / "b", "--set", "contrast=3", "--contrast", "5") == 5



def test_atlas_takes_set_scope_and_oracle_when_their_options_are_not_given(model, image, tmp_path):
    """atlas's --scope and --bound defaults replaced --set scope=map and --set oracle=false without a word."""
    def method(out, *extra):
        r = run("atlas", model, image, "--out", out, "--layers", "0", *FAST, *extra)
        assert r.exit_code == 0, r.output
        return json.loads((out / "atlas.json").read_text())["settings"]

    s = method(tmp_path / "a", "--set", "scope=map", "--set", "oracle=false")
    assert s["scope"] == "map" and s["method"]["scope"] == "map" and s["method"]["oracle"] is False
    s = method(tmp_path / "b", "--set", "scope=map", "--scope", "focus", "--set", "oracle=false", "--bound")
    assert s["scope"] == "focus" and s["method"]["oracle"] is True
