"""The CLI's happy paths on tiny models built in code (CONTRACT.md, "CLI"), through click's CliRunner."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import cv2
import numpy as np
import onnx
import pytest
import tiny_models
from click.testing import CliRunner

from onnx_kernelviz.cli import cli

# The contract's results.json keys (CONTRACT.md, "explain: DIR/results.json").
TOP_KEYS = {"model", "model_sha256", "layer", "tensor", "method", "device", "ort_providers", "version", "settings",
            "results"}
RESULT_KEYS = {"image", "kernel", "status", "kept", "fidelity", "others_kept", "specificity_before",
               "specificity_after", "mask_area", "parity_max_abs", "parity_rel", "parity_ok", "steps", "seconds",
               "files"}
FAST = ["--steps", "5", "--device", "cpu"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {"two": tiny_models.save(tiny_models.two_conv(), d / "two.onnx"),
            "dyn": tiny_models.save(tiny_models.two_conv(dynamic=True), d / "dyn.onnx")}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("images") / "photo.png"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(p), rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    return p


def run(*args, **kwargs):
    result = CliRunner().invoke(cli, [str(a) for a in args], **kwargs)
    assert "Traceback" not in result.output
    return result


def ok(*args):
    result = run(*args)
    assert result.exit_code == 0, result.output
    return result


def test_runner_mixes_stderr_into_output():
    # click >= 8.2: errors (stderr) land in result.output, which the other tests rely on
    result = run("inspect", "/nonexistent/model.onnx")
    assert result.exit_code == 1
    assert "Error:" in result.output and "Error:" in result.stderr


def test_inspect_table(models):
    out = ok("inspect", models["two"]).output
    assert "opset 17" in out and "2 conv layers" in out
    assert re.search(r"^\s+0\s+4\s+1\s+4x16x16\s+Relu\s+r1$", out, re.M)
    assert re.search(r"^\s+1\s+6\s+1\s+6x16x16\s+Relu\s+y$", out, re.M)


def test_inspect_table_free_sides(models):
    # a model with free H and W: onnx's shape inference names the layers' sides unk__0, unk__1, ...; the table
    # says "?" instead of its placeholders (--json keeps the names it derived)
    out = ok("inspect", models["dyn"]).output
    assert "unk__" not in out
    assert re.search(r"^\s+0\s+4\s+1\s+4x\?x\?\s+Relu\s+r1$", out, re.M)


def test_inspect_json_schema(models):
    doc = json.loads(ok("inspect", models["two"], "--json").output)
    assert set(doc) == {"model", "opset", "producer", "inputs", "layers"}
    assert doc["opset"] == 17 and doc["producer"] == "tiny_models"
    assert [set(i) for i in doc["inputs"]] == [{"name", "shape", "layout"}]
    assert doc["inputs"][0] == {"name": "x", "shape": ["N", 3, 16, 16], "layout": "nchw"}
    assert len(doc["layers"]) == 2
    for la in doc["layers"]:
        # the contract's keys, and "quantization" (null for float layers; test_quantized.py)
        assert set(la) == {"index", "name", "op", "tensor", "conv_output", "channels", "shape", "group",
                           "quantization"}
    assert doc["layers"][1] == {"index": 1, "name": "conv2", "op": "Conv", "tensor": "y", "conv_output": "c2",
                                "channels": 6, "shape": ["N", 6, 16, 16], "group": 1, "quantization": None}


def test_expose_adds_outputs_and_refuses_overwrite(models, tmp_path):
    out = tmp_path / "exposed.onnx"
    result = ok("expose", models["two"], "--layer", "0", "--layer", "conv2", "--output", out)
    assert "r1" in result.output
    outputs = [o.name for o in onnx.load(str(out)).graph.output]
    assert "r1" in outputs and "y" in outputs
    before = out.read_bytes()
    result = run("expose", models["two"], "--layer", "0", "--output", out)
    assert result.exit_code == 2
    assert "Error:" in result.output and "--force" in result.output
    assert out.read_bytes() == before
    ok("expose", models["two"], "--layer", "0", "--output", out, "--force")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]



def test_expose_output_naming_a_folder_or_under_a_file_is_one_clear_error(models, tmp_path):
    """``-o exposed/`` wrote a file named ``exposed`` (the slash was dropped); ``-o photo.png/x.onnx`` said only
    "File exists"."""
    result = run("expose", models["two"], "--layer", "0", "--output", f"{tmp_path / 'exposed'}/")
    assert result.exit_code == 2 and "names a folder" in result.output and "exposed/" in result.output
    assert not (tmp_path / "exposed").exists()
    (tmp_path / "photo.png").write_bytes(b"mine")
    result = run("expose", models["two"], "--layer", "0", "--output", tmp_path / "photo.png" / "x.onnx")
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 1 and len(errors) == 1 and "photo.png is a file" in errors[0], result.output
    assert (tmp_path / "photo.png").read_bytes() == b"mine"

def test_verify_table_and_json(models, image):
    out = ok("verify", models["two"]).output
    assert "all layers agree" in out
    assert re.search(r"^\s+0\s+\S+\s+\S+\s+ok\s+r1$", out, re.M)
    assert re.search(r"^\s+1\s+\S+\s+\S+\s+ok\s+y$", out, re.M)
    doc = json.loads(ok("verify", models["two"], image, "--json").output)
    # the contract's keys, and the tolerance rule's precision and unit (measure/tolerance.py)
    assert set(doc) == {"model", "tolerance", "ok", "layers", "precision", "tolerance_unit"}
    assert doc["ok"] is True and doc["tolerance"] == 1e-3
    assert (doc["precision"], doc["tolerance_unit"]) == ("fp32", "relative")
    assert [set(la) for la in doc["layers"]] == [{"index", "tensor", "parity_max_abs", "parity_rel", "ok", "step",
                                                  "parity_steps"}] * 2
    assert doc["layers"][0]["parity_steps"] is None  # in quantization steps for int8 models only
    doc = json.loads(ok("verify", models["dyn"], "--layer", "1", "--size", "16x16", "--json").output)
    assert [la["tensor"] for la in doc["layers"]] == ["y"]



@pytest.mark.parametrize("value, needle", [("-1", "--tolerance must be at least 0"), ("nan", "finite")])
def test_verify_refuses_a_tolerance_explain_refuses(models, value, needle):
    """verify ran with --tolerance -1 or nan and reported every layer as a MISMATCH (exit 1, "the torch copy
    disagrees"); explain refuses both as usage errors."""
    result = run("verify", models["two"], "--tolerance", value)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and needle in errors[0], result.output
    assert "MISMATCH" not in result.output

def test_verify_mismatch_names_the_first_bad_layer(models, monkeypatch):
    import onnx_kernelviz.measure.verify as verify

    real = verify.parity

    def broken(t_torch, t_ort):  # layer 1 (6 channels) disagrees, layer 0 agrees
        return (1.0, 0.5) if t_ort.shape[1] == 6 else real(t_torch, t_ort)

    monkeypatch.setattr(verify, "parity", broken)
    result = run("verify", models["two"])
    assert result.exit_code == 1
    assert "MISMATCH" in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "at layer 1 (y)" in errors[0] and "5.00e-01" in errors[0]


def test_explain_writes_every_contract_key(models, image, tmp_path):
    out = tmp_path / "out"
    result = ok("explain", models["two"], image, "--layer", "1", "--kernel", "0,3", "--out", out, *FAST)
    assert "2 explained, 0 inactive, 0 failed" in result.output
    doc = json.loads((out / "results.json").read_text())
    assert TOP_KEYS <= set(doc)
    assert doc["tensor"] == "y" and doc["method"] == "mask" and doc["device"] == "cpu"
    assert [r["kernel"] for r in doc["results"]] == [0, 3]
    for r in doc["results"]:
        assert RESULT_KEYS <= set(r), RESULT_KEYS - set(r)
        assert r["status"] == "ok" and r["image"] == str(image) and r["steps"] <= 5
        for name in ("modified", "mask", "overlay"):
            assert (out / r["files"][name]).is_file()
        assert not Path(r["files"]["modified"]).is_absolute()
    assert (out / "report.html").is_file()


def test_explain_pixel_method_has_null_mask(models, image, tmp_path):
    ok("explain", models["two"], image, "--layer", "0", "--kernel", "1", "--out", tmp_path / "o",
       "--method", "pixel", *FAST)
    r = json.loads((tmp_path / "o" / "results.json").read_text())["results"][0]
    assert r["mask_area"] is None and r["files"]["mask"] is None and r["status"] == "ok"


def test_explain_dynamic_size_model(models, image, tmp_path):
    ok("explain", models["dyn"], image, "--layer", "1", "--kernel", "top2", "--out", tmp_path / "o", "--size",
       "16x16", *FAST)
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["settings"]["input_size"] == [16, 16] and len(doc["results"]) == 2


def test_report_rebuilds_html(models, image, tmp_path):
    out = tmp_path / "out"
    ok("explain", models["two"], image, "--layer", "0", "--kernel", "1", "--out", out, *FAST)
    (out / "report.html").unlink()
    result = ok("report", out)
    assert "report.html" in result.output
    assert "<html" in (out / "report.html").read_text().lower()


def test_same_seed_gives_identical_metrics(models, image, tmp_path):
    def metrics(out):
        ok("explain", models["two"], image, "--layer", "1", "--kernel", "0,2", "--out", out, "--seed", "7", *FAST)
        results = json.loads((out / "results.json").read_text())["results"]
        return [{k: v for k, v in r.items() if k != "seconds"} for r in results]

    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")


def test_python_dash_m_help():
    proc = subprocess.run([sys.executable, "-m", "onnx_kernelviz", "--help"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage:" in proc.stdout and "explain" in proc.stdout and "inspect" in proc.stdout


def test_set_passes_typed_explain_settings_and_rejects_unknown_keys(tmp_path):
    from onnx_kernelviz.cli.options import parse_settings
    from onnx_kernelviz.errors import UsageError

    got = parse_settings(("resolution=112", "tv=0.05", "early_stop=false", "lr=0.3"))
    assert got == {"resolution": 112, "tv": 0.05, "early_stop": False, "lr": 0.3}
    for bad in ("bogus=1", "resolution", "resolution=1.5", "early_stop=maybe"):
        with pytest.raises(UsageError):
            parse_settings((bad,))


def test_compare_help_states_the_contrast_default_and_refuses_a_negative_one(tmp_path):
    from onnx_kernelviz.pipeline.compare import CONTRAST

    res = CliRunner().invoke(cli, ["compare", "--help"])
    assert f"[default: {CONTRAST:g}]" in " ".join(res.output.split())
    res = CliRunner().invoke(cli, ["compare", "m.onnx", "x.png", "--layer", "1", "--out", str(tmp_path / "o"),
                                   "--contrast", "-1"])
    assert res.exit_code == 2 and "--contrast" in res.output and not (tmp_path / "o").exists()


def test_compare_happy_path_records_the_contrast(tmp_path):
    from test_baselines import SIDE, halves_model

    model = halves_model(tmp_path / "halves.onnx")
    img = tmp_path / "photo.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(60, 255, (SIDE, SIDE, 3), dtype=np.uint8))
    out = tmp_path / "cmp"
    res = CliRunner().invoke(cli, ["compare", str(model), str(img), "--layer", "conv2", "--kernel", "0", "--kernel",
                                   "2", "--contrast", "3", "--steps", "4", "--set", "resolution=8", "--baselines",
                                   "activation", "--mean", "0,0,0", "--std", "1,1,1", "--out", str(out)])
    assert res.exit_code == 0, res.output
    # focus scope (the default): both explained and measured on the cells where both fire
    assert "kernels 0 and 2" in res.output and re.search(r"ours \(contrast 3, on the \d+ cells around row \d+, col "
                                                          r"\d+ where both fire\): under x'_a kept_a", res.output)
    doc = json.loads((out / "compare.json").read_text())
    assert doc["contrast"] == 3 and doc["kernels"] == [0, 2] and list(doc["baselines"]) == ["activation"]
    assert doc["scope"] == "focus" and list(doc["focus"]["baselines"]) == ["activation"]
    # weights [1, 1, 0, 0] and [1, 0.5, 0, 0]: near-copies, which a mask over the photo cannot tell apart
    assert doc["filter_cosine"] == pytest.approx(0.9487, abs=1e-4) and doc["method"] == "mask"
    assert "not told apart" in res.output and "near-copies (cosine 0.95)" in res.output and "--method pixel" \
        in res.output


def test_expose_names_each_tensor_once_and_which_were_outputs_already(models, tmp_path):
    """``--layer 0 --layer 0`` printed "r1, r1", and ``--layer 1`` (y, already a graph output) said y was added."""
    out = tmp_path / "exposed.onnx"
    result = ok("expose", models["two"], "--layer", "0", "--layer", "r1", "--layer", "1", "--output", out)
    assert "r1, r1" not in result.output
    assert re.search(r"extra outputs: r1\b", result.output)
    assert "(y is already an output)" in result.output
    assert [o.name for o in onnx.load(str(out)).graph.output] == ["y", "r1"]


def _option_help(command: str, option: str) -> str:
    """The help text of ``command``'s ``option``, whitespace collapsed."""
    from onnx_kernelviz.cli.app import cli as group

    ctx = click.Context(group.commands[command])
    record = next(p for p in group.commands[command].params if option in getattr(p, "opts", ()))
    got = record.get_help_record(ctx)
    return " ".join((got[1] if got else "").split())


@pytest.mark.parametrize("command, option, wanted, unwanted", [
    ("verify", "--device", "torch copy", "optimize"),  # verify optimizes nothing
    ("diff", "--device", "auto is CUDA", None),  # had no help at all
    ("atlas", "--method", "pixel", "map scope"),  # the method is used in focus scope too
    ("compare", "--kernel", "twice", None),
    ("demo", "--out", "Output folder", None),
])
def test_help_texts_say_what_the_option_does_there(command, option, wanted, unwanted):
    text = _option_help(command, option)
    assert wanted in text
    assert unwanted is None or unwanted not in text


def test_atlas_summary_counts_read_as_words(models, image, tmp_path):
    """The summary said "4 kernels in 1 layers over 1 images"."""
    out = ok("atlas", models["two"], image, "--layers", "0", "--explain", "0", "--out", tmp_path / "a").output
    assert "4 kernels in 1 layer over 1 image (0 skipped): 0 dead, 0 duplicate pairs" in out
