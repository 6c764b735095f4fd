"""``kernelviz atlas`` end to end on a tiny model with planted answers (dead kernels, exact duplicates), its files
(kernels.parquet read by pyarrow, DuckDB, pandas and polars; atlas.json), resume, bad images and the CLI."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import tiny_models
from click.testing import CliRunner

from onnx_kernelviz.atlas import AtlasSettings, run_atlas
from onnx_kernelviz.cli import cli
from onnx_kernelviz.io.preprocess import resolve_preprocess
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.model import Model

#: the planted answers of tiny_models.planted()
DEAD = [[0, 2], [1, 5]]
DUPLICATES = {(0, 1, 4), (1, 3, 6)}
FAST = ExplainConfig(steps=8, batch_size=4, oracle_steps=8, min_steps=2, patience=2)


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path]:
    """The planted model and a folder of 6 smooth random 16x16 photos."""
    d = tmp_path_factory.mktemp("atlas")
    model = tiny_models.save(tiny_models.planted(), d / "planted.onnx")
    images = d / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        cv2.imwrite(str(images / f"p{i}.png"), cv2.resize(small, (16, 16), interpolation=cv2.INTER_LINEAR))
    return model, images


def run(model: Path, images, out: Path, **kw):
    settings = kw.pop("settings", AtlasSettings(top=3, explain=1, shard_size=2, batch_size=2))
    return run_atlas(Model(model, device="cpu"), [images] if isinstance(images, Path) else images, out,
                     preprocess=resolve_preprocess(model), settings=settings, config=kw.pop("config", FAST),
                     device="cpu", **kw)


def check_consistent(out: Path) -> dict:
    """atlas.json and kernels.parquet say the same, in every reader; returns atlas.json."""
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.parquet as pq

    head = json.loads((out / "atlas.json").read_text())
    table = pq.read_table(out / "kernels.parquet")
    rows = table.to_pylist()
    assert len(rows) == sum(la["channels"] for la in head["layers"])
    assert sorted([r["layer"], r["kernel"]] for r in rows if r["dead"]) == sorted(head["dead"])
    dups = {(d[0], d[1], d[2]) for d in head["duplicates"]}
    for r in rows:
        if r["duplicate_of"] >= 0:
            assert (r["layer"], r["duplicate_of"], r["kernel"]) in dups
        if r["dead"]:
            assert r["firing_rate"] == 0 and r["max"] == 0 and r["exemplars"] == [] and r["explanations"] == []
    assert all(any(r["layer"] == a[0] and r["kernel"] == a[2] and r["duplicate_of"] <= a[1] for r in rows)
               for a in head["duplicates"])
    # the same table through DuckDB, pandas and polars
    con = duckdb.connect()
    dead_db = con.execute(f"select layer, kernel from '{out / 'kernels.parquet'}' where dead order by 1, 2").fetchall()
    assert [list(t) for t in dead_db] == sorted(head["dead"])
    assert len(pd.read_parquet(out / "kernels.parquet")) == len(rows)
    assert pl.read_parquet(out / "kernels.parquet").filter(pl.col("dead")).height == len(head["dead"])
    return head


def test_atlas_reports_exactly_the_planted_answers(planted, tmp_path):
    model, images = planted
    result = run(model, images, tmp_path / "a")
    head = check_consistent(tmp_path / "a")
    assert head["dead"] == DEAD
    assert {(a, b, c) for a, b, c, _ in head["duplicates"]} == DUPLICATES
    assert all(d[3] == pytest.approx(1.0, abs=1e-5) for d in head["duplicates"])
    # the contract's keys
    assert {"model", "model_sha256", "images", "engine", "seconds", "layers", "dead", "duplicates"} <= set(head)
    assert head["images"] == 6 and head["engine"] == "local"
    assert [{k: la[k] for k in ("index", "tensor", "channels")} for la in head["layers"]] == \
        [{"index": 0, "tensor": "r1", "channels": 6}, {"index": 1, "tensor": "y", "channels": 8}]
    rows = {(r["layer"], r["kernel"]): r for r in result.kernels}
    live = rows[(0, 0)]
    assert {"layer", "tensor", "kernel", "firing_rate", "mean", "max", "dead", "duplicate_of", "exemplars"} <= set(live)
    assert len(live["exemplars"]) == 3 and set(live["exemplars"][0]) >= {"image", "row", "col", "value"}
    e = live["explanations"][0]
    assert e["status"] == "ok" and e["kept"] is not None and e["parity_ok"]
    # focus scope: explained at the exemplar cell (the peak of F), with the contract's focus block
    assert e["focus"]["peak"] == [e["row"], e["col"]] == [live["exemplars"][0]["row"], live["exemplars"][0]["col"]]
    assert e["focus"]["cells"] >= 1 and e["focus"]["oracle_gain"] is not None and e["rf_box"] == e["focus"]["rf_box"]
    # ... and how much of it k keeps on the reference alone, kept in kernels.parquet too
    import pandas as pd
    saved = pd.read_parquet(tmp_path / "a" / "kernels.parquet")
    focus = saved[(saved.layer == 0) & (saved.kernel == 0)].iloc[0]["explanations"][0]["focus"]
    assert e["focus"]["kept_on_reference"] >= 0 and focus["kept_on_reference"] == e["focus"]["kept_on_reference"]
    # the duplicate's exemplars are the original's (same activations everywhere)
    assert [e["value"] for e in rows[(0, 4)]["exemplars"]] == [e["value"] for e in rows[(0, 1)]["exemplars"]]
    # a strip of crops for every kernel that fires and every explanation; the html links pages that exist
    for r in result.kernels:
        assert (r["exemplar_strip"] is None) == r["dead"]
        if r["exemplar_strip"]:
            strip = cv2.imread(str(tmp_path / "a" / r["exemplar_strip"]))
            assert strip.shape[1] == strip.shape[0] * len(r["exemplars"])  # one square per exemplar
        for e in r["explanations"]:
            assert cv2.imread(str(tmp_path / "a" / e["strip"])).shape[1] == 2 * 80
    assert (tmp_path / "a" / "atlas.html").is_file() and (tmp_path / "a" / "pages" / "L001" / "k0005.html").is_file()


def test_map_scope_explains_the_whole_map(planted, tmp_path):
    model, images = planted
    res = run(model, images, tmp_path / "m", settings=AtlasSettings(layers="1", top=2, explain=1, scope="map"))
    e = next(r for r in res.kernels if not r["dead"])["explanations"][0]
    assert e["status"] == "ok" and e["focus"] is None and e["mask_area"] is not None


def test_receptive_fields_translate_exactly(tmp_path):
    """Every cell's box from the two corner cells equals the graph's own box for that cell (strides, pads)."""
    from onnx_kernelviz.atlas.rf import receptive_fields
    from onnx_kernelviz.frontend.receptive import receptive_field, tensor_shapes

    root = Path(__file__).resolve().parent.parent
    m = Model(root / "models" / "efficientnet_lite0.onnx", device="cpu")
    layers = [m.layers[i] for i in (0, 4, 10, 20, 34, 48)]  # strides 2 to 32, depthwise and pointwise
    fields = receptive_fields(m, layers, (224, 224))
    shapes = tensor_shapes(m.loaded.proto, m.loaded.input.name, (1, 3, 224, 224))
    for la in layers:
        h, w = shapes[la.tensor][2:]
        for r in range(0, h, max(1, h // 9)):
            for c in range(0, w, max(1, w // 9)):
                want = receptive_field(m.graph, shapes, la.tensor, (r, c, r + 1, c + 1), m.loaded.input.name,
                                       "nchw", (224, 224)).box
                assert fields[la.index].box(r, c) == want, (la.index, r, c)


def test_statistics_only_and_a_changed_threshold_on_resume(planted, tmp_path):
    model, images = planted
    settings = AtlasSettings(top=2, explain=0, shard_size=4)
    run(model, images, tmp_path / "s", settings=settings)
    assert not (tmp_path / "s" / "checkpoint" / "explained").exists()
    # --dup-corr is applied at the end: a resume may change it without redoing the statistics
    low = run(model, images, tmp_path / "s", settings=replace(settings, dup_corr=0.2), resume=True)
    assert len(low.header["duplicates"]) > len(DUPLICATES)


def test_bad_images_are_skipped_and_counted(planted, tmp_path):
    model, images = planted
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    head = run(model, [images, bad], tmp_path / "b",
               settings=AtlasSettings(top=2, explain=0, shard_size=3)).header
    assert head["images"] == 6 and head["images_skipped"] == 1
    assert head["skipped"][0]["image"].endswith("broken.png") and "cannot read image" in head["skipped"][0]["reason"]
    assert head["dead"] == DEAD


def test_resume_after_ctrl_c_in_each_pass_gives_the_same_atlas(planted, tmp_path):
    model, images = planted
    whole = run(model, images, tmp_path / "whole")
    calls = {"statistics": 0, "explanations": 0}

    def stop_in(name: str, after: int):
        def progress(which: str, advance: int, total: int) -> None:
            if which == name and advance:
                calls[name] += 1
                if calls[name] > after:
                    raise KeyboardInterrupt

        return progress

    out = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        run(model, images, out, progress=stop_in("statistics", 1))
    assert (out / "checkpoint" / "stats.npz").is_file() and not (out / "atlas.json").exists()
    with pytest.raises(KeyboardInterrupt):
        run(model, images, out, resume=True, progress=stop_in("explanations", 1))
    saved = sorted((out / "checkpoint" / "explained").rglob("*.json"))
    assert 0 < len(saved) < 12  # some kernels explained before the cut, not all
    first = {p: p.stat().st_mtime_ns for p in saved}
    resumed = run(model, images, out, resume=True)
    assert all(p.stat().st_mtime_ns == t for p, t in first.items())  # finished kernels were not redone
    assert resumed.header["dead"] == whole.header["dead"]
    assert resumed.header["duplicates"] == whole.header["duplicates"]
    a, b = whole.kernels, resumed.kernels
    assert [r["exemplars"] for r in a] == [r["exemplars"] for r in b]
    assert [r["firing_rate"] for r in a] == [r["firing_rate"] for r in b]
    assert np.allclose([r["mean"] for r in a], [r["mean"] for r in b])
    kept = lambda rows: [e["kept"] for r in rows for e in r["explanations"]]  # noqa: E731
    assert np.allclose(kept(a), kept(b), atol=1e-5)


def test_refusals(planted, tmp_path):
    model, images = planted
    out = tmp_path / "r"
    run(model, images, out, settings=AtlasSettings(top=2, explain=0))
    with pytest.raises(Exception, match="not empty"):
        run(model, images, out, settings=AtlasSettings(top=2, explain=0))
    with pytest.raises(Exception, match="other layers"):
        run(model, images, out, settings=AtlasSettings(layers="1", top=2, explain=0), resume=True)
    run(model, images, out, settings=AtlasSettings(layers="1", top=2, explain=0), force=True)
    assert json.loads((out / "atlas.json").read_text())["layers"][0]["index"] == 1
    assert not (out / "tiles" / "L000").exists()  # --force removed the earlier atlas's files
    # a running atlas holds the folder: a second one (even with --force) is refused and removes nothing
    from onnx_kernelviz.atlas.journal import Journal

    with Journal(out).locked():
        with pytest.raises(Exception, match="another kernelviz atlas is writing"):
            run(model, images, out, settings=AtlasSettings(layers="1", top=2, explain=0), force=True)
    assert (out / "atlas.json").is_file()
    # no usable image at all: one clear error
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.png").write_bytes(b"broken")
    with pytest.raises(Exception, match="none of the 1 images could be used"):
        run(model, bad, tmp_path / "none", settings=AtlasSettings(top=2, explain=0))



def test_force_starts_over_from_a_damaged_checkpoint(planted, tmp_path):
    """A damaged checkpoint refused --force itself (it said "cannot resume ...; use --force to start over")."""
    model, images = planted
    out = tmp_path / "o"
    run(model, images, out, settings=AtlasSettings(top=1, explain=0))
    (out / "checkpoint" / "run.json").write_text("garbage")
    run(model, images, out, settings=AtlasSettings(top=2, explain=0), force=True)
    assert json.loads((out / "checkpoint" / "run.json").read_text())["top"] == 2



@pytest.mark.parametrize("existing", [True, False])
def test_a_read_only_out_is_one_line_with_advice(planted, tmp_path, monkeypatch, existing):
    """Simulated (tests run as root, which ignores permission bits). An existing read-only --out failed on the lock
    file with "unexpected OSError ... please report it"; a new one was a usage error (exit 2) without advice."""
    import builtins
    import errno

    from onnx_kernelviz.atlas import journal

    model, images = planted
    out = tmp_path / "ro"
    if existing:
        out.mkdir()

    def refuse(path, *a, **k):
        if str(path).startswith(str(out)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return builtins.open(path, *a, **k)

    real_mkdir = Path.mkdir

    def refuse_mkdir(self, *a, **k):
        if str(self).startswith(str(out)) and not self.exists():
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(journal, "open", refuse, raising=False)
    monkeypatch.setattr(Path, "mkdir", refuse_mkdir)
    res = CliRunner().invoke(cli, ["atlas", str(model), str(images), "--out", str(out), "--explain", "0"])
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert res.exit_code == 1 and len(errors) == 1, res.output
    assert "read-only" in errors[0] and "choose another --out" in errors[0] and "unexpected" not in errors[0]

def test_missing_extras_are_named(planted, tmp_path, monkeypatch):
    import sys

    model, images = planted
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    monkeypatch.delitem(sys.modules, "onnx_kernelviz.atlas.ray_engine", raising=False)
    from onnx_kernelviz.atlas import engines

    monkeypatch.setattr(engines.ENGINES, "_items", {k: v for k, v in engines.ENGINES._items.items() if k != "ray"})
    res = CliRunner().invoke(cli, ["atlas", str(model), str(images), "--out", str(tmp_path / "x"), "--engine", "ray"])
    assert res.exit_code == 1 and "pip install 'onnx-kernelviz[ray]'" in res.output, res.output
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    res = CliRunner().invoke(cli, ["atlas", str(model), str(images), "--out", str(tmp_path / "y")])
    assert res.exit_code == 1 and "pip install 'onnx-kernelviz[atlas]'" in res.output, res.output
    assert not (tmp_path / "y").exists()  # refused before any file was written


@pytest.mark.slow
def test_default_model_with_planted_answers(tmp_path):
    """A copy of the bundled EfficientNet-Lite0 with a dead kernel (zero filter, bias -1) and an exact duplicate
    planted in layers 5 and 20 (where the four photos show neither): the atlas reports exactly those."""
    import onnx
    from onnx import numpy_helper

    root = Path(__file__).resolve().parent.parent
    proto = onnx.load(str(root / "models" / "efficientnet_lite0.onnx"))
    plant = {5: (7, 3, 11), 20: (5, 3, 40)}  # layer: (dead kernel, a, b = copy of a)
    names = {la.index: la.name for la in Model(root / "models" / "efficientnet_lite0.onnx").layers}
    inits = {t.name: t for t in proto.graph.initializer}
    for node in proto.graph.node:
        for layer, (dead, a, b) in plant.items():
            if node.name == names[layer]:
                w, bias = (numpy_helper.to_array(inits[n]).copy() for n in node.input[1:3])
                w[dead], bias[dead] = 0.0, -1.0
                w[b], bias[b] = w[a], bias[a]
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(w, node.input[1]))
                inits[node.input[2]].CopyFrom(numpy_helper.from_array(bias, node.input[2]))
    model = tmp_path / "planted.onnx"
    onnx.save(proto, str(model))
    (tmp_path / "planted.kernelviz.json").write_text((root / "models" / "efficientnet_lite0.kernelviz.json")
                                                    .read_text())
    photos = root / "onnx_kernelviz" / "data" / "photos"
    run(model, photos, tmp_path / "a", settings=AtlasSettings(layers="5,20", top=3, explain=0))
    head = check_consistent(tmp_path / "a")
    assert head["images"] == 4
    assert head["dead"] == [[layer, dead] for layer, (dead, _, _) in plant.items()]
    assert [d[:3] for d in head["duplicates"]] == [[layer, a, b] for layer, (_, a, b) in plant.items()]
    assert all(d[3] == pytest.approx(1.0, abs=1e-5) for d in head["duplicates"])
    assert all(d["filter_cosine"] == pytest.approx(1.0) for d in head["duplicate_details"])


@pytest.fixture(scope="module")
def edge_and_bias_atlas(tmp_path_factory):
    """An atlas of tiny_models.edge_and_bias on two 16x16 step images, one explanation per kernel: (its folder,
    the run's result). Kernel 1 is bias-driven (fires on the flat reference), kernel 0 an edge detector."""
    tmp = tmp_path_factory.mktemp("eb")
    model = tiny_models.save(tiny_models.edge_and_bias(), tmp / "eb.onnx")
    images = tmp / "images"
    images.mkdir()
    for i, col in enumerate((6, 9)):
        step = np.zeros((16, 16, 3), np.uint8)
        step[:, col:] = 200
        cv2.imwrite(str(images / f"s{i}.png"), step)
    out = tmp / "a"
    # a stronger binary area weight than the default, so that one of the two kernels' binary masks shows less of its
    # box than its soft masks (the row that takes it; tests/test_small_box.py does the same)
    return out, run(model, images, out, settings=AtlasSettings(top=1, explain=1, shard_size=2, batch_size=2),
                    config=ExplainConfig(focus_small_area=40))


def test_the_atlas_keeps_and_shows_which_explanations_are_binary(edge_and_bias_atlas):
    """The focus block's binary_mask (a small rf_box's binary candidate shown) survives into kernels.parquet, and
    the kernel page's x' caption says the picture is binary exactly where it is (it was dropped by the parquet
    schema, and no page said so)."""
    import pyarrow.parquet as pq

    out, result = edge_and_bias_atlas
    shown = {r["kernel"]: r["explanations"][0]["focus"]["binary_mask"] for r in result.kernels}
    assert sorted(shown.values()) == [False, True]  # a 16x16 image: every box is small, one row takes it
    saved = {r["kernel"]: r["explanations"][0]["focus"]["binary_mask"]
             for r in pq.read_table(out / "kernels.parquet").to_pylist()}
    assert saved == shown
    for k, binary in shown.items():
        page = (out / "pages" / "L000" / f"k{k:04d}.html").read_text()
        assert ("x′: what is kept (binary: the photo's pixels or the reference)" in page) == binary


def test_the_atlas_says_when_a_kernel_fires_on_the_reference_alone(edge_and_bias_atlas):
    """The bias-driven kernel of tiny_models.edge_and_bias keeps its activation on the flat reference: its page says
    it needs no detail of the photo; the edge detector's does not."""
    out, result = edge_and_bias_atlas
    on_ref = {r["kernel"]: r["explanations"][0]["focus"]["kept_on_reference"] for r in result.kernels}
    assert on_ref[1] >= 0.9 and on_ref[0] < 0.1
    pages = {k: (out / "pages" / "L000" / f"k{k:04d}.html").read_text() for k in (0, 1)}
    assert "needs no detail of the photo to fire here" in pages[1]
    assert "needs no detail of the photo" not in pages[0]
    # the filter page lists it alone, and its tile has the badge
    flat = (out / "pages" / "flat.html").read_text()
    assert "L000/k0001.html" in flat and "L000/k0000.html" not in flat and "no photo needed" in flat
    assert "pages/flat.html" in (out / "atlas.html").read_text()


def test_force_removes_only_an_earlier_atlas(tmp_path):
    """``--force`` removed every entry named like an atlas's (pages/, tiles/, checkpoint/…) whether or not an atlas
    wrote them: ``--out ~/site --force`` deleted the site's own pages/ folder."""
    from onnx_kernelviz.atlas.journal import Journal
    from onnx_kernelviz.errors import UsageError

    out = tmp_path / "site"
    (out / "pages").mkdir(parents=True)
    (out / "pages" / "index.html").write_text("mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.jpg").write_text("mine too")
    (out / "tiles").symlink_to(elsewhere)
    with pytest.raises(UsageError, match="holds no atlas"):
        Journal(out).prepare({"model": "m"}, force=True, resume=False)
    assert (out / "pages" / "index.html").read_text() == "mine" and (elsewhere / "keep.jpg").exists()
    # an earlier atlas's folders go (a link among them is removed, not what it points to)
    (out / "pages" / "index.html").unlink()
    (out / "checkpoint").mkdir()
    (out / "checkpoint" / "run.json").write_text('{"model": "old"}')
    assert Journal(out).prepare({"model": "new"}, force=True, resume=False) is False
    assert not (out / "pages").exists() and not (out / "tiles").exists() and (elsewhere / "keep.jpg").exists()


def test_a_full_disk_is_one_clear_line_and_resume_then_finishes(planted, tmp_path, monkeypatch):
    """The disk fills while a kernel's checkpoint is written: one ``Error:`` line saying so and how to go on (not
    "unexpected ... please report it"); the checkpoints written before are intact and --resume finishes."""
    import errno
    import tempfile

    model, images = planted
    out = tmp_path / "full"
    args = ["atlas", str(model), str(images), "--out", str(out), "--top", "2", "--explain", "1", "--steps", "4",
            "--batch-size", "1", "--device", "cpu"]
    real = tempfile.mkstemp

    def full(*a, **k):
        if str(k.get("prefix", "")).startswith(".k0003"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    with monkeypatch.context() as mp:
        mp.setattr(tempfile, "mkstemp", full)
        res = CliRunner().invoke(cli, args)
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert res.exit_code == 1 and len(errors) == 1 and "Traceback" not in res.output, res.output
    assert "the disk is full" in errors[0] and "--resume" in errors[0] and "unexpected" not in errors[0]
    assert (out / "checkpoint" / "stats.npz").is_file() and not (out / "atlas.json").exists()
    saved = sorted((out / "checkpoint" / "explained").rglob("*.json"))
    assert saved and all(json.loads(p.read_text())["explanations"] for p in saved)
    res = CliRunner().invoke(cli, [*args, "--resume"])
    assert res.exit_code == 0, res.output
    check_consistent(out)


def test_resume_may_change_the_batch_size_and_names_a_changed_explanation_setting(planted, tmp_path):
    """--batch-size decides no result (as in ``explain --resume``): a resume may change it, e.g. after running out
    of memory. Another explanation setting is refused naming it and both values, not as "other method"."""
    model, images = planted
    out = tmp_path / "b"
    whole = run(model, images, out)
    resumed = run(model, images, out, config=replace(FAST, batch_size=1), resume=True)
    assert resumed.kernels == whole.kernels
    with pytest.raises(Exception, match=r"other steps \(8 -> 9\)"):
        run(model, images, out, config=replace(FAST, steps=9), resume=True)


def test_a_second_atlas_on_a_busy_folder_exits_1_like_explain(planted, tmp_path):
    """A running atlas holds --out: the second one is one ``Error:`` line with exit status 1 (a busy folder, as in
    ``explain``), not 2, which says the command line was wrong."""
    from onnx_kernelviz.atlas.journal import Journal

    model, images = planted
    out = tmp_path / "busy"
    with Journal(out).locked():
        res = CliRunner().invoke(cli, ["atlas", str(model), str(images), "--out", str(out), "--explain", "0",
                                       "--top", "2", "--resume"])
    errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert res.exit_code == 1 and len(errors) == 1 and "another kernelviz atlas is writing" in errors[0], res.output


def test_seconds_after_a_resume_count_every_run(planted, tmp_path):
    """After --resume atlas.json's and atlas.html's ``seconds`` were the last run's alone (0.05 s after a no-op
    resume of an atlas that took minutes); now the total over the runs, with this run's own beside it."""
    model, images = planted
    settings = AtlasSettings(top=2, explain=0, shard_size=4)
    first = run(model, images, tmp_path / "s", settings=settings).header
    assert first["runs"] == 1 and first["seconds"] == first["seconds_this_run"] > 0
    again = run(model, images, tmp_path / "s", settings=settings, resume=True).header
    assert again["runs"] == 2 and 0 < again["seconds_this_run"] < again["seconds"]
    assert again["seconds"] >= first["seconds"] + again["seconds_this_run"] - 0.002  # rounding
    page = (tmp_path / "s" / "atlas.html").read_text()
    assert "over 2 runs" in page and "this run" in page


@pytest.mark.parametrize("model, image", [("-m.onnx", "--out=elsewhere.jpg"), ("a b.onnx", "-h.jpg"),
                                          ("/abs/m.onnx", "photos/cat.jpg")])
def test_the_suggested_compare_command_reads_every_path_as_a_path(tmp_path, monkeypatch, model, image):
    """The kernel pages' ``kernelviz compare …`` line is pasted into a shell: ``shlex.quote`` kept a file named
    ``--out=elsewhere.jpg`` one word, but Click then read it as ``--out`` (and ``-h.jpg`` as ``-h``)."""
    from types import SimpleNamespace

    from onnx_kernelviz.atlas.html import _Writer

    line = _Writer.compare(SimpleNamespace(model=model), image, 3, 1, 2)  # type: ignore[arg-type]
    words = shlex.split(line)
    assert words[:2] == ["kernelviz", "compare"]
    ctx = cli.commands["compare"].make_context("compare", words[2:])
    assert Path(ctx.params["model"]) == Path(model) and Path(ctx.params["image"]) == Path(image)
    assert ctx.params["out"] == "compare_L3_1_2" and ctx.params["kernels"] == (1, 2)
