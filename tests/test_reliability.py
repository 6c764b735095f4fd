"""What the tool does when things go wrong (docs/RELIABILITY.md): bad models, bad arguments, odd images, output
folder safety, interruption, resume and numerical failures. Every error is one ``Error:`` line with exit status
1 (2 for usage errors) and no traceback unless ``--debug``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import cv2
import numpy as np
import pytest
import tiny_models
import torch
from click.testing import CliRunner
from PIL import Image

from onnx_kernelviz.cli import cli
from onnx_kernelviz.errors import ModelError
from onnx_kernelviz.method.focus import FreePixels

FAST = ["--steps", "5", "--device", "cpu"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    built = {"two": tiny_models.two_conv(), "halves": tiny_models.halves(), "dead": tiny_models.dead_kernel(),
             "noconv": tiny_models.no_conv(), "twoimg": tiny_models.two_images(), "u8": tiny_models.uint8_input(),
             "shrink": tiny_models.unsupported_op(), "sqrt": tiny_models.two_conv(pre=("Sqrt",))}
    return {name: tiny_models.save(proto, d / f"{name}.onnx") for name, proto in built.items()}


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("images") / "photo.png"
    cv2.imwrite(str(p), np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8))
    return p


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(result, code: int, *needles: str) -> str:
    """Assert exit ``code``, exactly one ``Error:`` line containing ``needles``, and no traceback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def explain_args(model, img, out, *extra):
    return ("explain", model, img, "--out", out, *FAST, *extra)


# --- 1. bad models ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, needle", [
    (b"this is a text file, not a model\n", "not a readable ONNX model"),
    (b"", "is empty"),
    (b"\x08\x07\x12\x00", "not an ONNX model"),  # parses as a protobuf, but holds no graph
])
def test_not_a_model(tmp_path, content, needle):
    p = tmp_path / "m.onnx"
    p.write_bytes(content)
    for cmd in (["inspect", p], ["verify", p], ["expose", p, "--layer", "0", "--output", tmp_path / "e.onnx"]):
        error_line(run(*cmd), 1, needle, str(p))


def test_truncated_model(models, tmp_path):
    data = models["two"].read_bytes()
    for cut in (len(data) // 3, len(data) - 7):
        p = tmp_path / f"cut{cut}.onnx"
        p.write_bytes(data[:cut])
        error_line(run("inspect", p), 1, str(p))


def test_missing_model(tmp_path, image):
    p = tmp_path / "nope.onnx"
    error_line(run("inspect", p), 1, "does not exist")
    error_line(run(*explain_args(p, image, tmp_path / "o", "--layer", "0")), 1, "does not exist")
    assert not (tmp_path / "o").exists()


def test_model_path_is_a_folder(tmp_path):
    error_line(run("inspect", tmp_path), 2, "is a directory")


@pytest.fixture
def external(tmp_path) -> Path:
    """A valid model whose weights live in model.bin next to it."""
    return tiny_models.save_external(tiny_models.two_conv(), tmp_path / "m")


def test_external_data_inside_the_folder_is_fine(external):
    assert run("inspect", external).exit_code == 0


def test_external_data_relative_outside(external):
    outside = external.parent.parent / "outside.bin"
    os.replace(external.parent / "model.bin", outside)
    tiny_models.set_external_location(external, "../outside.bin")
    error_line(run("inspect", external), 1, "leaves the model's folder", "../outside.bin")


def test_external_data_absolute(external):
    outside = external.parent.parent / "outside.bin"
    os.replace(external.parent / "model.bin", outside)
    tiny_models.set_external_location(external, str(outside))
    error_line(run("inspect", external), 1, "absolute path")


def test_external_data_symlink(external):
    outside = external.parent.parent / "outside.bin"
    os.replace(external.parent / "model.bin", outside)
    (external.parent / "model.bin").symlink_to(outside)
    error_line(run("inspect", external), 1, "symbolic link")


def test_external_data_hard_link(external):
    outside = external.parent.parent / "outside.bin"
    os.link(external.parent / "model.bin", outside)
    error_line(run("inspect", external), 1, "hard links")


def test_no_conv(models, image, tmp_path):
    for cmd in (["inspect", models["noconv"]], ["verify", models["noconv"]],
                explain_args(models["noconv"], image, tmp_path / "o", "--layer", "0")):
        error_line(run(*cmd), 1, "has no Conv layers")


def test_several_image_inputs(models):
    error_line(run("inspect", models["twoimg"]), 1, "several image inputs (a, b)", "--input")
    # choosing one is not enough when the graph also needs the other
    error_line(run("verify", models["twoimg"], "--input", "a"), 1, "needs inputs besides the image (b)")
    error_line(run("verify", models["twoimg"], "--input", "zz"), 2, "no input 'zz'")


def test_integer_input(models):
    error_line(run("inspect", models["u8"]), 1, "no 4-D float image input", "uint8")


def test_unsupported_op(models, image, tmp_path):
    line = error_line(run(*explain_args(models["shrink"], image, tmp_path / "o", "--layer", "1")), 1)
    # names the op, its opset and what to do (another export, or a converter to register)
    assert "Shrink" in line and "opset 17" in line and "add_converter" in line
    error_line(run("verify", models["shrink"]), 1, "Shrink", "opset 17")


def test_debug_shows_the_traceback(tmp_path):
    p = tmp_path / "m.onnx"
    p.write_bytes(b"garbage")
    result = run("--debug", "inspect", p)
    assert result.exit_code == 1 and isinstance(result.exception, ModelError)
    assert "load.py" in "".join(traceback.format_exception(*result.exc_info))
    # --debug is per invocation: the next one is back to one line
    error_line(run("inspect", p), 1, "not a readable ONNX model")
    # and in a real process the traceback reaches stderr
    proc = subprocess.run([sys.executable, "-m", "onnx_kernelviz", "inspect", "--debug", str(p)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ModelError" in proc.stderr


def test_unexpected_exception_is_one_line(models, monkeypatch):
    import onnx_kernelviz.model as model

    def boom(*a, **k):
        raise RuntimeError("something internal")

    monkeypatch.setattr(model, "find_layers", boom)
    error_line(run("inspect", models["two"]), 1, "unexpected RuntimeError", "--debug")


# --- 2. bad arguments ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, code, needles", [
    (["--layer", "foo", "--kernel", "0"], 2, ["no conv layer matches 'foo'", "kernelviz inspect"]),
    (["--layer", "7", "--kernel", "0"], 2, ["layer index 7 is out of range", "0..1", "kernelviz inspect"]),
    (["--layer", "1", "--kernel", "6"], 2, ["kernel 6 is out of range", "0..5"]),
    (["--layer", "1", "--kernel", "x"], 2, ["not a kernel spec"]),
    (["--layer", "1", "--kernel", "top0"], 2, ["N >= 1"]),
    (["--layer", "1", "--kernel", "0", "--size", "abc"], 2, ["invalid --size 'abc'", "HxW"]),
    (["--layer", "1", "--kernel", "0", "--size", "0x16"], 2, ["invalid --size"]),
    (["--layer", "1", "--kernel", "0", "--mean", "1,2"], 2, ["invalid --mean '1,2'"]),
    (["--layer", "1", "--kernel", "0", "--mean", "a,b,c"], 2, ["invalid --mean"]),
    (["--layer", "1", "--kernel", "0", "--std", "1,0,1"], 2, ["invalid --std", "> 0"]),
    (["--layer", "1", "--kernel", "0", "--preset", "nope"], 2, ["unknown preset 'nope'", "imagenet"]),
    (["--layer", "1", "--kernel", "0", "--method", "magic"], 2, ["Invalid value for '--method'"]),
    (["--layer", "1", "--kernel", "0", "--steps", "0"], 2, ["--steps must be at least 1"]),
    (["--layer", "1", "--kernel", "0", "--baselines", "nope"], 2, ["nope"]),
    (["--kernel", "0"], 2, ["Missing option '--layer'"]),
])
def test_bad_arguments(models, image, tmp_path, extra, code, needles):
    out = tmp_path / "o"
    error_line(run(*explain_args(models["two"], image, out, *extra)), code, *needles)
    assert not out.exists() or not any(out.iterdir())


def test_a_size_the_fixed_input_overrides_is_said(models, image, tmp_path):
    """The model's input is fixed at 16x16: ``--size 32x32`` was dropped without a word. The run goes on at the
    fixed size (scripts that pass one --size to many models keep working) and stderr says so."""
    res = CliRunner().invoke(cli, [str(a) for a in explain_args(
        models["two"], image, tmp_path / "o", "--layer", "1", "--kernel", "0", "--size", "32x32")])
    assert res.exit_code == 0, res.output + res.stderr
    assert "Note: --size 32x32 does not fit" in res.stderr and "fixed at 16x16" in res.stderr
    res = CliRunner().invoke(cli, [str(a) for a in explain_args(
        models["two"], image, tmp_path / "p", "--layer", "1", "--kernel", "0", "--size", "16x16")])
    assert res.exit_code == 0 and "Note:" not in res.stderr


@pytest.mark.parametrize("where", ["--out", "image", "expose", "report"])
def test_an_empty_path_is_a_usage_error_not_the_current_folder(models, image, tmp_path, monkeypatch, where):
    """``--out "$OUT"`` with OUT unset: pathlib reads "" as ".", so explain wrote into the current folder (with
    --force over its report.html and results.json), report rebuilt it, and an empty IMAGE read its images."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.html").write_text("mine")
    args = {"--out": ("explain", models["two"], image, "--layer", "1", "--kernel", "0", *FAST, "--force", "--out", ""),
            "image": ("explain", models["two"], "", "--layer", "1", "--kernel", "0", *FAST, "--out", tmp_path / "o"),
            "expose": ("expose", models["two"], "--layer", "0", "--output", ""),
            "report": ("report", "")}[where]
    error_line(run(*args), 2, "empty path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert (tmp_path / "report.html").read_text() == "mine"

# --- 3. images -------------------------------------------------------------------------------------------------

def _odd_images(d: Path) -> dict[str, Path]:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    files = {}

    def put(name, write):
        files[name] = d / name
        write(files[name])

    put("gray.png", lambda p: cv2.imwrite(str(p), rgb[:, :, 0]))
    put("rgba.png", lambda p: cv2.imwrite(str(p), np.dstack([rgb, rgb[:, :, 0]])))
    put("deep16.png", lambda p: cv2.imwrite(str(p), rgb.astype(np.uint16) * 257))
    put("palette.png", lambda p: Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(p))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    put("rotated.jpg", lambda p: Image.fromarray(rgb).save(p, exif=exif))
    put("huge.jpg", lambda p: cv2.imwrite(str(p), cv2.resize(rgb, (3000, 2000), interpolation=cv2.INTER_NEAREST)))
    put("tiny.png", lambda p: cv2.imwrite(str(p), rgb[:1, :1]))
    put("thin.bmp", lambda p: cv2.imwrite(str(p), rgb[:2, :]))
    return files


def test_odd_images_all_work_and_are_noted(models, tmp_path):
    imgs = _odd_images(tmp_path)
    out = tmp_path / "out"
    result = run(*explain_args(models["two"], tmp_path, out, "--layer", "0", "--kernel", "1", "--steps", "2"))
    assert result.exit_code == 0, result.output
    assert f"{len(imgs)} explained" in result.output
    notes = {Path(r["image"]).name: " | ".join(r["image_notes"])
             for r in json.loads((out / "results.json").read_text())["results"]}
    assert set(notes) == set(imgs)
    expected = {"gray.png": "grayscale -> RGB", "rgba.png": "RGBA composited on white",
                "deep16.png": "16-bit", "palette.png": "palette -> RGB", "rotated.jpg": "EXIF orientation 6",
                "huge.jpg": "2000x3000 -> 16x24 (HxW), centre-cropped to 16x16", "tiny.png": "1x1 -> 16x16",
                "thin.bmp": "2x40 -> 16x320 (HxW), centre-cropped to 16x16"}
    for name, needle in expected.items():
        assert needle in notes[name], (name, notes[name])
    assert "40x30 -> 21x16" in notes["rotated.jpg"]  # rotated before resizing: 40 high, 30 wide


@pytest.mark.parametrize("content, needle", [
    (b"hello, not an image", "not a recognised image format"),
    (None, "damaged or truncated"),
    (b"", "empty"),
])
def test_unreadable_image_is_named(models, tmp_path, content, needle):
    p = tmp_path / "bad.png"
    if content is None:  # a truncated PNG
        ok_, data = cv2.imencode(".png", np.full((20, 20, 3), 7, np.uint8))
        content = data.tobytes()[:60]
    p.write_bytes(content)
    out = tmp_path / "o"
    error_line(run(*explain_args(models["two"], p, out, "--layer", "0", "--kernel", "0")), 1, str(p), needle)
    assert not out.exists()  # no empty folder left behind


def test_missing_image_and_empty_folder(models, tmp_path):
    (tmp_path / "empty").mkdir()
    error_line(run(*explain_args(models["two"], tmp_path / "nope.jpg", tmp_path / "o", "--layer", "0")), 1,
               "no such file or folder", "nope.jpg")
    error_line(run(*explain_args(models["two"], tmp_path / "empty", tmp_path / "o", "--layer", "0")), 1,
               "has no image files")
    assert not (tmp_path / "o").exists()


# --- 4. files --------------------------------------------------------------------------------------------------

def _temp_files(out: Path, running: bool = False) -> list[Path]:
    """Temp files (and, once no run holds ``out``, its lock)."""
    from onnx_kernelviz.io.outdir import LOCK_NAME

    return [p for p in out.rglob("*") if (p.name.startswith(".") or p.name.endswith(".tmp"))
            and not (running and p.name == LOCK_NAME)]


def test_non_empty_out_is_refused_and_untouched(models, image, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    error_line(run(*explain_args(models["two"], image, out, "--layer", "0", "--kernel", "0")), 2,
               "is not empty", "--force", "--resume")
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "mine"
    error_line(run(*explain_args(models["two"], image, tmp_path / "o" / "notes.txt", "--layer", "0")), 2,
               "is a file")
    # with --force it writes, and leaves the user's file alone
    assert run(*explain_args(models["two"], image, out, "--layer", "0", "--kernel", "0", "--force")).exit_code == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "results.json").is_file()



@pytest.mark.parametrize("command", ["compare", "diff"])
def test_non_empty_out_advice_names_only_the_commands_own_options(models, image, tmp_path, command):
    """compare and diff have --force but no --resume: their refusal told the user to use --resume."""
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ((command, models["two"], image, "--layer", "1") if command == "compare"
            else (command, models["two"], models["two"], image))
    line = error_line(run(*args, "--out", out, *FAST), 2, "is not empty", "--force")
    assert "--resume" not in line
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

@pytest.fixture()
def tiny_demo(models, image, tmp_path, monkeypatch):
    """``kernelviz demo`` on the tiny model (as the default model) and ``image`` (as the bundled photo)."""
    import shutil

    from onnx_kernelviz.pipeline import demo

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(image, photos / demo.DEMO_PHOTO)
    monkeypatch.setattr(demo, "MODEL_CANDIDATES", (models["two"],))
    monkeypatch.setattr(demo, "PHOTOS", photos)
    monkeypatch.setattr(demo, "DEMO_LAYER", 1)
    return ["demo", *FAST]


def test_demo_replaces_only_an_earlier_demo_not_a_users_run(models, image, tmp_path, tiny_demo):
    """The demo took any folder with a kernelviz results.json for an earlier demo and wrote over the user's own
    run there; its refusal also told the user to use --force or --resume, which ``demo`` does not have."""
    out = tmp_path / "mine"
    assert run(*explain_args(models["two"], image, out, "--layer", "1", "--kernel", "0")).exit_code == 0
    before = (out / "results.json").read_bytes()
    line = error_line(run(*tiny_demo, "--out", out), 2, "not empty", "choose a new folder")
    assert "--force" not in line and "--resume" not in line
    assert (out / "results.json").read_bytes() == before
    # an earlier demo is replaced
    assert run(*tiny_demo, "--out", tmp_path / "demo").exit_code == 0
    assert run(*tiny_demo, "--out", tmp_path / "demo").exit_code == 0

def test_results_json_valid_after_every_explanation_and_no_temp_files(models, image, tmp_path):
    from onnx_kernelviz.io.preprocess import resolve_preprocess
    from onnx_kernelviz.model import Model
    from onnx_kernelviz.pipeline.explain import ExplainConfig, explain

    out = tmp_path / "o"
    seen = []

    def progress(done, total, result):
        doc = json.loads((out / "results.json").read_text())  # must parse at every call
        assert len(doc["results"]) <= done  # saved per batch, at most every SAVE_EVERY seconds
        assert not _temp_files(out, running=True)
        seen.append((done, total))

    m = Model(models["two"], device="cpu")
    pp = resolve_preprocess(models["two"])
    explain(m, [image], 1, "0,1,2", out, preprocess=pp, config=ExplainConfig(steps=5, batch_size=1),
            progress=progress)
    assert seen == [(0, 3), (1, 3), (2, 3), (3, 3)]
    assert len(json.loads((out / "results.json").read_text())["results"]) == 3
    assert not _temp_files(out)
    mode = (out / "results.json").stat().st_mode & 0o777
    assert mode & 0o044 == 0o044, oct(mode)  # readable like the other files, not mkstemp's 0600


def _interrupt_after_first(monkeypatch):
    import onnx_kernelviz.cli.explain as cli_module

    def bar(desc):
        def progress(done, total, result):
            if result is not None:
                raise KeyboardInterrupt
        return progress, None

    monkeypatch.setattr(cli_module, "progress_bar", bar)


def _count_optimize(monkeypatch) -> list:
    """The kernels of every explanation optimized (in focus scope the bound, the explanation and its fine stage of
    a batch are one entry: only the explanation's first run is counted)."""
    from onnx_kernelviz.method.focus import SupportBoxMask
    calls = []
    for name in ("onnx_kernelviz.pipeline.batch", "onnx_kernelviz.pipeline.focus"):
        ex = sys.modules[name]

        def counting(forward, param, objective, ref, k, cfg, *a, real=ex.optimize, **kw):
            if not isinstance(param, (FreePixels, SupportBoxMask)):  # the bound's search, coarse to fine's 2nd stage
                calls.append(k.tolist())
            return real(forward, param, objective, ref, k, cfg, *a, **kw)

        monkeypatch.setattr(ex, "optimize", counting)
    return calls


def test_ctrl_c_keeps_finished_work_then_resume_skips_it(models, image, tmp_path, monkeypatch):
    out = tmp_path / "o"
    args = explain_args(models["two"], image, out, "--layer", "1", "--kernel", "0,1,2", "--batch-size", "1")
    with monkeypatch.context() as mp:
        _interrupt_after_first(mp)
        result = run(*args)
    assert result.exit_code == 130, result.output
    assert "Interrupted" in result.output and "--resume" in result.output and "Traceback" not in result.output
    first = json.loads((out / "results.json").read_text())["results"]
    assert [(r["kernel"], r["status"]) for r in first] == [(0, "ok")]
    assert not _temp_files(out)

    calls = _count_optimize(monkeypatch)
    result = run(*args, "--resume")
    assert result.exit_code == 0, result.output
    # kernel 0 was not recomputed (a small box runs two candidates: the soft masks and the binary one)
    assert sorted({tuple(c) for c in calls}) == [(1,), (2,)]
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["kernel"] for r in results] == [0, 1, 2]
    assert results[0] == first[0]  # the very same entry, seconds included

    calls.clear()
    assert run(*args, "--resume").exit_code == 0
    assert calls == []
    # resuming with another layer would mix results: refused
    other = explain_args(models["two"], image, out, "--layer", "0", "--kernel", "0", "--resume")
    error_line(run(*other), 2, "resume with the same --layer")


# --- 5. numerics -----------------------------------------------------------------------------------------------

def test_nan_loss_fails_one_explanation_and_the_run_goes_on(models, image, tmp_path, monkeypatch):
    from onnx_kernelviz.method.objectives import Objective

    real = Objective.__call__

    def nan_for_kernel_1(self, s):
        loss = real(self, s)
        return torch.where(s.k == 1, torch.full_like(loss, float("nan")), loss)

    monkeypatch.setattr(Objective, "__call__", nan_for_kernel_1)
    out = tmp_path / "o"
    result = run(*explain_args(models["two"], image, out, "--layer", "1", "--kernel", "0,1,2", "--batch-size", "3"))
    assert result.exit_code == 0, result.output
    assert "2 explained, 0 inactive, 1 failed" in result.output
    results = json.loads((out / "results.json").read_text())["results"]
    assert [r["status"] for r in results] == ["ok", "failed", "ok"]
    assert "NaN/Inf at step 1" in results[1]["reason"] and results[1]["kept"] is None


def test_nan_activation_on_the_original_image_is_a_failure_with_reason(models, image, tmp_path):
    # Sqrt of imagenet-normalized (partly negative) pixels: NaN before any optimization
    out = tmp_path / "o"
    result = run(*explain_args(models["sqrt"], image, out, "--layer", "0", "--kernel", "0"))
    assert result.exit_code == 0, result.output
    r = json.loads((out / "results.json").read_text())["results"][0]
    assert r["status"] == "failed" and "NaN/Inf on this image before any change" in r["reason"]
    assert "--preset" in r["reason"]


def test_zero_activation_is_inactive(models, image, tmp_path):
    out = tmp_path / "o"
    result = run(*explain_args(models["dead"], image, out, "--layer", "0", "--kernel", "all"))
    assert result.exit_code == 0, result.output
    assert "1 explained, 1 inactive, 0 failed" in result.output
    ok_, inactive = json.loads((out / "results.json").read_text())["results"]
    assert ok_["status"] == "ok" and inactive["status"] == "inactive" and inactive["kernel"] == 1
    assert "does not fire" in inactive["reason"]
    assert inactive["kept"] is None and inactive["steps"] == 0 and inactive["files"] == {}


def test_known_answer_mask_covers_the_kernels_half(models, tmp_path):
    # kernel 0 sees only columns 0-7, kernel 1 only 8-15: the mask of each should sit on its own half
    p = tmp_path / "img.png"
    cv2.imwrite(str(p), np.random.default_rng(5).integers(128, 256, (16, 16, 3), dtype=np.uint8))
    out = tmp_path / "o"
    # blur keeps a half's mean (all these kernels see), so the zeros reference is the one that can remove a half
    result = run("explain", models["halves"], p, "--out", out, "--layer", "0", "--kernel", "all", "--steps", "40",
                 "--reference", "zeros", "--device", "cpu", "--set", "mask=region", "--scope", "map")
    assert result.exit_code == 0, result.output
    for r in json.loads((out / "results.json").read_text())["results"]:
        mask = np.load(out / r["files"]["mask_npy"])
        own, other = (mask[:, :8], mask[:, 8:]) if r["kernel"] == 0 else (mask[:, 8:], mask[:, :8])
        # the default preserve term tolerates a 0.2 relative error, so the own half need not be fully kept
        assert own.mean() > 0.75 and other.mean() < 0.05, (r["kernel"], own.mean(), other.mean())
        assert r["kept"] > 0.8 and r["others_kept"] < 0.1, (r["kept"], r["others_kept"])
