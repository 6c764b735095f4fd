"""Runs that lose nothing (issue #10, docs/RELIABILITY.md "Runs"): --resume merges and refuses other settings, a
lock on --out, SIGTERM like Ctrl-C, a failed start leaves --out as it was; a kernel whose own activation is NaN
fails alone; any file name works and none can forge a terminal line; damaged files are one clear error.

Each case asserts the exit status, the message, and that nothing was lost or written outside --out.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tiny_models
from click.testing import CliRunner
from onnx import numpy_helper
from test_reliability import error_line as one_error_line

from onnx_kernelviz.cli import cli
from onnx_kernelviz.io.outdir import LOCK_NAME

FAST = ["--steps", "3", "--device", "cpu"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    nan = tiny_models.two_conv()
    w2 = next(t for t in nan.graph.initializer if t.name == "w2")
    w = numpy_helper.to_array(w2).copy()
    w[2, 0, 0, 0] = np.nan  # one weight of kernel 2 of conv2
    w2.CopyFrom(numpy_helper.from_array(w, "w2"))
    evil = tiny_models.two_conv()
    bad = "\x1b[31mred\nError: forged"
    evil.graph.node[2].name = bad  # conv2
    evil.graph.node[1].output[0] = evil.graph.node[2].input[0] = bad  # r1: layer 0's activation tensor
    built = {"two": tiny_models.two_conv(), "nan": nan, "evil": evil, "shrink": tiny_models.unsupported_op()}
    return {name: tiny_models.save(proto, d / f"{name}.onnx") for name, proto in built.items()}


def _png(path: Path | bytes, seed: int = 0) -> Path | bytes:
    ok, data = cv2.imencode(".png", np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    with open(path, "wb") as f:
        f.write(data.tobytes())
    return path


@pytest.fixture()
def images(tmp_path) -> list[Path]:
    d = tmp_path / "imgs"
    d.mkdir()
    return [Path(_png(d / f"p{i}.png", i)) for i in range(2)]


def run(*args):
    return CliRunner().invoke(cli, [a if isinstance(a, str) else os.fsdecode(a) for a in map(_arg, args)])


def _arg(a: object) -> str | bytes:
    return a if isinstance(a, (str, bytes)) else str(a)


def error_line(result, code: int, *needles: str) -> str:
    """test_reliability's check (exit code, one ``Error:`` line holding ``needles``, no traceback), and never the
    generic "unexpected ... please report it" fallback."""
    line = one_error_line(result, code, *needles)
    assert "unexpected" not in result.output, result.output
    return line


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its content: compare before/after to show nothing was lost or changed."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def results(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["results"]


# --- --resume merges, and refuses other settings ------------------------------------------------------------------

def test_resume_merges_other_kernels_and_images(models, images, tmp_path):
    out = tmp_path / "o"
    assert run("explain", models["two"], images[0], "--layer", "1", "--kernel", "0", "--out", out, *FAST).exit_code == 0
    first = results(out)
    r = run("explain", models["two"], images[1], "--layer", "1", "--kernel", "1,2", "--out", out, *FAST, "--resume")
    assert r.exit_code == 0, r.output
    merged = results(out)
    assert {(Path(x["image"]).name, x["kernel"]) for x in merged} == {("p0.png", 0), ("p1.png", 1), ("p1.png", 2)}
    assert first[0] in merged  # the earlier entry, as it was
    html = (out / "report.html").read_text()
    assert 'id="kernel-0"' in html and 'id="kernel-1"' in html and 'id="kernel-2"' in html
    for x in merged:
        assert all((out / f).is_file() for f in x["files"].values() if f)



def test_resume_naming_the_images_by_another_path_redoes_and_duplicates_nothing(models, images, tmp_path,
                                                                                monkeypatch):
    """The first run names the image relative to its folder, the resume by its absolute path (a script, another
    shell): the same file, so its finished result is kept as it was and listed once."""
    monkeypatch.chdir(images[0].parent)
    out = tmp_path / "o"
    base = ("explain", models["two"], "--layer", "1", "--out", out, *FAST)
    assert run(*base[:2], images[0].name, *base[2:], "--kernel", "0").exit_code == 0
    first = results(out)
    r = run(*base[:2], images[0], *base[2:], "--kernel", "0,1", "--resume")
    assert r.exit_code == 0, r.output
    merged = results(out)
    assert [x["kernel"] for x in merged] == [0, 1] and merged[0] == first[0]

def test_resume_from_another_folder_redoes_and_duplicates_nothing(models, images, tmp_path, monkeypatch):
    """Relative image paths are relative to the run's working folder (results.json's ``cwd``): resumed from
    another folder, ``imgs/p0.png`` is the ``p0.png`` the first run named from inside ``imgs``, so its finished
    result is kept as it was (only its path now absolute) and listed once. It was redone and listed twice."""
    out = tmp_path / "o"
    base = ("explain", models["two"], "--layer", "1", "--out", out, *FAST)
    monkeypatch.chdir(images[0].parent)
    assert run(*base[:2], images[0].name, *base[2:], "--kernel", "0").exit_code == 0
    first = results(out)
    assert json.loads((out / "results.json").read_text())["cwd"] == str(images[0].parent)
    monkeypatch.chdir(tmp_path)
    r = run(*base[:2], Path("imgs") / images[0].name, *base[2:], "--kernel", "0,1", "--resume")
    assert r.exit_code == 0, r.output
    merged = results(out)
    assert [x["kernel"] for x in merged] == [0, 1]
    assert merged[0] == {**first[0], "image": str(images[0])}
    assert json.loads((out / "results.json").read_text())["cwd"] == str(tmp_path)
    # a third run, from a third folder, finds both (kernel 1's relative path is now the second folder's)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    r = run(*base[:2], images[0], *base[2:], "--kernel", "0,1", "--resume")
    assert r.exit_code == 0, r.output
    assert [x["kernel"] for x in results(out)] == [0, 1] and results(out)[0] == merged[0]


def test_resume_from_another_folder_keeps_a_same_named_other_image_apart(models, images, tmp_path, monkeypatch):
    """``p0.png`` from another folder is another file: explained for itself, the earlier result kept (it was taken
    for the new file's, unexplained)."""
    out = tmp_path / "o"
    base = ("explain", models["two"], "--layer", "1", "--kernel", "0", "--out", out, *FAST)
    monkeypatch.chdir(images[0].parent)
    assert run(*base[:2], "p0.png", *base[2:]).exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    _png(other / "p0.png", 7)
    monkeypatch.chdir(other)
    r = run(*base[:2], "p0.png", *base[2:], "--resume")
    assert r.exit_code == 0, r.output
    assert sorted(x["image"] for x in results(out)) == sorted(["p0.png", str(images[0])])


def test_resume_redoes_an_image_changed_in_place(models, images, tmp_path):
    """Same path, other content: its result was reused as finished, describing a picture that is no longer there.
    Each result records a digest of its model input (``input_sha256``); an unchanged image is still not redone."""
    out = tmp_path / "o"
    base = ("explain", models["two"], "--layer", "1", "--kernel", "0", "--out", out, *FAST)
    assert run(*base[:2], images[0], images[1], *base[2:]).exit_code == 0
    first = {Path(x["image"]).name: x for x in results(out)}
    assert all(len(x["input_sha256"]) == 16 for x in first.values())
    _png(images[0], 9)  # edited in place
    r = run(*base[:2], images[0], images[1], *base[2:], "--resume")
    assert r.exit_code == 0, r.output
    again = {Path(x["image"]).name: x for x in results(out)}
    assert len(again) == 2 and again["p1.png"] == first["p1.png"]
    assert again["p0.png"]["input_sha256"] != first["p0.png"]["input_sha256"]
    assert again["p0.png"]["specificity_before"] != first["p0.png"]["specificity_before"]


def test_resume_of_a_moved_project_reads_its_relative_paths_from_where_it_is(models, images, tmp_path,
                                                                             monkeypatch):
    """The folder holding the images and --out was moved: the recorded working folder is gone, so the relative
    paths are read from here, as before ``cwd`` was recorded, and nothing is redone."""
    proj = tmp_path / "proj"
    proj.mkdir()
    (tmp_path / "imgs").rename(proj / "imgs")
    monkeypatch.chdir(proj)
    base = ("explain", models["two"], "imgs/p0.png", "--layer", "1", "--kernel", "0", "--out", "o", *FAST)
    assert run(*base).exit_code == 0
    first = results(proj / "o")
    monkeypatch.chdir(tmp_path)
    proj.rename(tmp_path / "moved")
    monkeypatch.chdir(tmp_path / "moved")
    r = run(*base, "--resume")
    assert r.exit_code == 0, r.output
    assert results(Path("o")) == first


@pytest.mark.parametrize("change, needle", [
    (["--steps", "4"], "steps 3 -> 4"),
    (["--mean", "0.5,0.5,0.5"], "preprocess.mean"),
    (["--set", "tv=0.7"], "tv 0.5 -> 0.7"),
    (["--seed", "3"], "seed 0 -> 3"),
])
def test_resume_with_other_settings_is_refused_and_changes_nothing(models, images, tmp_path, change, needle):
    out = tmp_path / "o"
    base = ("explain", models["two"], images[0], "--layer", "1", "--kernel", "0", "--out", out, *FAST)
    assert run(*base).exit_code == 0
    before = tree(tmp_path)
    error_line(run(*base, *change, "--resume"), 2, "cannot resume", "other settings", needle, "--force")
    assert tree(tmp_path) == before
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["fingerprint"]) == 16


def test_resume_with_other_kernels_but_same_settings_is_not_refused(models, images, tmp_path):
    out = tmp_path / "o"
    base = ("explain", models["two"], images[0], "--layer", "1", "--out", out, *FAST)
    assert run(*base, "--kernel", "0", "--batch-size", "1").exit_code == 0
    assert run(*base, "--kernel", "3", "--batch-size", "2", "--resume").exit_code == 0  # batching decides nothing




def test_resume_into_a_folder_with_no_run_is_refused_and_changes_nothing(models, images, tmp_path):
    """--resume let explain into any non-empty folder, as --force does, and it wrote its report.html and
    results.json over the user's own files there; with no run to continue it is refused (an empty or new folder
    is still fine: a script may always pass --resume)."""
    out = tmp_path / "o"
    out.mkdir()
    (out / "report.html").write_text("my own report")
    before = tree(tmp_path)
    base = ("explain", models["two"], images[0], "--layer", "1", "--kernel", "0", *FAST, "--resume")
    error_line(run(*base, "--out", out), 2, "--resume", "results.json", "--force")
    assert tree(tmp_path) == before
    assert run(*base, "--out", tmp_path / "new").exit_code == 0

@pytest.mark.parametrize("command", ["explain", "atlas"])
def test_resume_with_force_is_refused_before_anything_runs(models, images, tmp_path, command):
    """--resume continues the run in --out and --force starts over: together, --force was ignored, and a refused
    resume then told the user to add the --force they had given."""
    out = tmp_path / "o"
    base = (command, models["two"], images[0], "--out", out, *FAST) + (("--layer", "1", "--kernel", "0")
                                                                      if command == "explain" else ())
    assert run(*base).exit_code == 0
    before = tree(tmp_path)
    error_line(run(*base, "--steps", "4", "--resume", "--force"), 2, "--resume", "--force", "give one")
    assert tree(tmp_path) == before

# --- one run at a time --------------------------------------------------------------------------------------------

def test_a_held_lock_refuses_a_second_run_naming_the_first(models, images, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        owner = {"pid": sleeper.pid, "host": socket.gethostname(), "started": "2026-01-01 10:00:00"}
        (out / LOCK_NAME).write_text(json.dumps(owner))
        before = tree(tmp_path)
        line = error_line(run("explain", models["two"], images[0], "--layer", "1", "--kernel", "0", "--out", out,
                              *FAST, "--force"), 1, "in use by another kernelviz run", f"pid {sleeper.pid}",
                          socket.gethostname(), "2026-01-01 10:00:00")
        assert LOCK_NAME in line  # says how to clear it if that run is gone
        assert tree(tmp_path) == before
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(models, images, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (out / LOCK_NAME).write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "started": "x"}))
    r = run("explain", models["two"], images[0], "--layer", "1", "--kernel", "0", "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    assert not (out / LOCK_NAME).exists() and len(results(out)) == 1




@pytest.mark.parametrize("whose", ["ours", "another live process"])
def test_a_stale_lock_whose_pid_was_reused_is_taken_over(models, images, tmp_path, whose):
    """A container restarted after a kill runs kernelviz under the pid its lock names (often 1), and pids are reused:
    a lock whose pid is alive but whose process started at another time is stale, not "in use by pid N"."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc to tell processes apart")
    out = tmp_path / "o"
    out.mkdir()
    pid = os.getpid() if whose == "ours" else os.getppid()
    (out / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "x",
                                             "process": "an-earlier-boot:12345"}))
    r = run("explain", models["two"], images[0], "--layer", "1", "--kernel", "0", "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    assert not (out / LOCK_NAME).exists() and len(results(out)) == 1

def test_two_runs_taking_over_one_stale_lock_never_both_hold_it(tmp_path, monkeypatch):
    """Run B judges the lock of a dead process stale; run A takes it over right then (what a second run started
    after a kill does). B must not remove A's fresh lock and run alongside it: exactly one of them holds --out."""
    import fcntl

    import onnx_kernelviz.io.outdir as outdir

    out = tmp_path / "o"
    out.mkdir()
    lock = out / LOCK_NAME
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock.write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname(), "started": "x"}))
    a_holds: list[bool] = []
    real = outdir._stale

    def judged_then_a_takes_over(owner):
        stale = real(owner)
        if stale and not a_holds:  # A removes the stale lock as B would (under its flock, when it can get it)
            fd = os.open(lock, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                a_holds.append(False)  # B is removing it: A would wait, then find B's lock
            else:
                lock.unlink()
                mine = tmp_path / "a.lock"  # A's own lock: a live process on this host
                mine.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "started": "y"}))
                os.link(mine, lock)
                a_holds.append(True)
            finally:
                os.close(fd)
        return stale

    monkeypatch.setattr(outdir, "_stale", judged_then_a_takes_over)
    try:
        with outdir.OutDir(out, force=False, resume=True):
            b_holds = True
    except outdir.OutDirBusy:
        b_holds = False
    assert len(a_holds) == 1 and a_holds[0] + b_holds == 1, (a_holds, b_holds)


def test_a_run_that_finished_while_this_one_started_is_not_overwritten(tmp_path, monkeypatch):
    """Another run takes the new folder, writes its results and leaves between this run's look at the folder
    (empty) and its lock: this run, without --force or --resume, must then refuse, not replace them."""
    from onnx_kernelviz.errors import UsageError
    from onnx_kernelviz.io.outdir import OutDir

    out = tmp_path / "o"
    real = OutDir._acquire

    def another_run_first(self):
        (self.path / "results.json").write_text('{"theirs": 1}')
        real(self)

    monkeypatch.setattr(OutDir, "_acquire", another_run_first)
    with pytest.raises(UsageError, match="is not empty"), OutDir(out, force=False, resume=False):
        pass
    assert tree(out) == {"results.json": b'{"theirs": 1}'}  # theirs kept, our lock gone

def test_sigterm_keeps_finished_work_and_a_second_run_is_refused_meanwhile(models, images, tmp_path):
    """A real second process: while it runs, another run into the same --out fails fast; SIGTERM then exits 143
    keeping every finished explanation (that --resume then skips: test_reliability's Ctrl-C test)."""
    out = tmp_path / "o"
    # 2 images x 6 kernels, one at a time: plenty of work left once the first explanation is written
    args = [str(models["two"]), str(images[0].parent), "--layer", "1", "--kernel", "all", "--out", str(out), "--device",
            "cpu", "--steps", "200", "--no-early-stop", "--batch-size", "1"]
    # one OpenMP thread: on a loaded machine spinning threads make each tiny step ~10x slower
    proc = subprocess.Popen([sys.executable, "-m", "onnx_kernelviz", "explain", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*/k*"))) < 2:  # the second explanation is being written: the first is done
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        error_line(run("explain", *args[:8], *FAST, "--resume"), 1, "in use by another kernelviz run",
                   f"pid {proc.pid}")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "Terminated: finished results were kept" in err and "Traceback" not in err
    kept = [x for x in results(out) if x["status"] == "ok"]
    assert kept and len(results(out)) < 12 and not (out / LOCK_NAME).exists()
    assert all((out / f).is_file() for x in kept for f in x["files"].values() if f)


# --- a failed start leaves --out as it was ---------------------------------------------------------------------------

def test_a_conversion_failure_leaves_out_as_it_was(models, images, tmp_path):
    out = tmp_path / "o"
    cmd = ("explain", models["shrink"], images[0], "--layer", "0", "--kernel", "0", "--out", out, *FAST)
    error_line(run(*cmd), 1, "Shrink")
    assert not out.exists()
    error_line(run(*cmd), 1, "Shrink")  # the same command: the same message, not "--out is not empty"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    before = tree(tmp_path)
    error_line(run(*cmd, "--force"), 1, "Shrink")
    assert tree(tmp_path) == before


# --- numerics ---------------------------------------------------------------------------------------------------

def test_nan_weights_fail_their_kernel_alone_and_name_the_weights(models, images, tmp_path):
    out = tmp_path / "o"
    r = run("explain", models["nan"], images[0], "--layer", "1", "--kernel", "all", "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    by_kernel = {x["kernel"]: x for x in results(out)}
    assert by_kernel[2]["status"] == "failed"
    assert "kernel 2's weights in conv layer 1 (conv2) hold NaN/Inf" in by_kernel[2]["reason"]
    others = [x for k, x in by_kernel.items() if k != 2]
    assert all(x["status"] in ("ok", "inactive") for x in others) and any(x["status"] == "ok" for x in others)
    for x in others:
        if x["status"] == "ok":
            assert x["parity_ok"] is True and np.isfinite(x["others_kept"])


# --- names ------------------------------------------------------------------------------------------------------

def test_a_file_name_that_is_not_utf8_works_end_to_end(models, tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9 \xff.png"
    _png(raw)
    out = tmp_path / "o"
    r = run("explain", models["two"], os.fsdecode(raw), "--layer", "1", "--kernel", "0", "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    (entry,) = results(out)
    assert os.fsencode(entry["image"]) == raw  # kept exactly, as escapes in the JSON text
    assert "\\udce9" in (out / "results.json").read_text()
    html = (out / "report.html").read_bytes().decode("utf-8")  # valid UTF-8
    assert "caf\\xe9 \\xff.png" in html
    assert all((out / f).is_file() for f in entry["files"].values() if f)


def test_long_stems_are_shortened_without_collisions(models, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    names = ["a" * 246 + "x", "a" * 246 + "y"]  # 250-byte file names that differ only at the end
    paths = [Path(_png(d / f"{n}.png", i)) for i, n in enumerate(names)]
    out = tmp_path / "o"
    r = run("explain", models["two"], *paths, "--layer", "1", "--kernel", "0", "--out", out, *FAST)
    assert r.exit_code == 0, r.output
    folders = {Path(x["files"]["modified"]).parts[0] for x in results(out)}
    assert len(folders) == 2 and all(len(f.encode()) <= 80 for f in folders)


def test_a_name_cannot_forge_an_error_line(models, tmp_path):
    bad = tmp_path / "a\nError: forged\x1b[2J.png"
    bad.write_bytes(b"not an image")
    line = error_line(run("explain", models["two"], bad, "--layer", "1", "--kernel", "0", "--out", tmp_path / "o",
                          *FAST), 1, "cannot read image", "\\nError: forged\\x1b[2J")
    assert "\x1b" not in line and not (tmp_path / "o").exists()


def test_inspect_escapes_node_names(models):
    r = run("inspect", models["evil"])
    assert r.exit_code == 0, r.output
    assert "\x1b" not in r.output and not any(line.startswith("Error:") for line in r.output.splitlines())
    r = run("verify", models["evil"], "--layer", "0")
    assert r.exit_code == 0 and "\x1b" not in r.output, r.output


# --- damaged files and folders: each its own message -----------------------------------------------------------------

_HEADER = {"model": "m", "model_sha256": "x", "layer": "l", "tensor": "t", "method": "mask"}


@pytest.mark.parametrize("content, needle", [
    ("{not json", "is not valid JSON"),
    ('{"results": [' + "1" * 5000 + "]}", "a value Python cannot read"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('["a list"]', "is not a JSON object"),
    (json.dumps({**_HEADER, "results": [{"image": 3, "kernel": 0, "status": "ok"}]}), "is malformed (results[0].image"),
    (json.dumps({"model": "m", "results": []}), "is malformed (results.json.model_sha256"),
])
def test_damaged_results_json_on_resume_and_report(models, images, tmp_path, content, needle):
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text(content)
    before = tree(tmp_path)
    error_line(run("explain", models["two"], images[0], "--layer", "1", "--kernel", "0", "--out", out, *FAST,
                   "--resume"), 2, "cannot resume", "results.json", needle)
    assert tree(tmp_path) == before
    if "malformed" not in needle:  # the report reads whatever JSON object is there
        error_line(run("report", out), 1, "results.json", needle)
        assert tree(tmp_path) == before


def test_a_file_where_a_folder_goes(models, images, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("mine")
    error_line(run("explain", models["two"], images[0], "--layer", "1", "--kernel", "0", "--out",
                   blocker / "sub", *FAST), 2, "file.txt is a file")
    out = tmp_path / "o"
    assert run("explain", models["two"], images[0], "--layer", "1", "--kernel", "0", "--out", out, *FAST).exit_code \
        == 0
    folder = Path(results(out)[0]["files"]["modified"]).parts[0]
    import shutil

    shutil.rmtree(out / folder)
    (out / folder).write_text("in the way")
    error_line(run("explain", models["two"], images[0], "--layer", "1", "--kernel", "1", "--out", out, *FAST,
                   "--resume"), 1, "a file is in the way")
    assert (out / folder).read_text() == "in the way" and len(results(out)) == 1  # the earlier result kept


@pytest.mark.parametrize("fail_at", ["lock", "results"])
def test_read_only_out(models, images, tmp_path, monkeypatch, fail_at):
    """Simulated (tests run as root, which ignores permission bits): the file system refuses writes in --out."""
    import errno

    out = tmp_path / "o"
    out.mkdir()
    target = LOCK_NAME if fail_at == "lock" else "results.json"
    real_write_text, real_mkstemp = Path.write_text, __import__("tempfile").mkstemp

    def refuse(path: str) -> None:
        if target in str(path):
            raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (refuse(self), real_write_text(self, *a, **k))[1])
    monkeypatch.setattr("tempfile.mkstemp", lambda *a, **k: (refuse(k.get("prefix", "")), real_mkstemp(*a, **k))[1])
    error_line(run("explain", models["two"], images[0], "--layer", "1", "--kernel", "0", "--out", out, *FAST), 1,
               "read-only")
    assert not (out / LOCK_NAME).exists()


def test_force_over_an_earlier_run_of_a_changed_image_shows_the_new_photo(models, tmp_path):
    """The same image path with new content (or new preprocessing), explained again with --force: original.png
    must be this run's photo, not the earlier run's kept beside this run's x' (it was kept when it existed)."""
    photo = tmp_path / "imgs" / "a.png"
    photo.parent.mkdir()
    cmd = ("explain", models["two"], photo, "--layer", "1", "--kernel", "0", *FAST)
    _png(photo, 0)
    assert run(*cmd, "--out", tmp_path / "o").exit_code == 0
    _png(photo, 1)
    assert run(*cmd, "--out", tmp_path / "o", "--force").exit_code == 0
    assert run(*cmd, "--out", tmp_path / "fresh").exit_code == 0
    folder = Path(results(tmp_path / "o")[0]["files"]["original"]).parent
    assert (tmp_path / "o" / folder / "original.png").read_bytes() == \
        (tmp_path / "fresh" / folder / "original.png").read_bytes()
