"""Hostile files lose nothing and exhaust nothing (issue 10, docs/RELIABILITY.md "Threat model").

Memory is measured with tracemalloc (numpy's and OpenCV's arrays are traced), never with wall clock: huge
images are fitted to the model input as they are read; special files (FIFO, devices, sockets) are refused
before they are opened; external data is read only as far as the tensor's shape needs.
"""

from __future__ import annotations

import os
import signal
import socket
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import cv2
import hostile
import numpy as np
import onnx
import pytest
import tiny_models
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from onnx_kernelviz.atlas.journal import Journal
from onnx_kernelviz.cli import cli
from onnx_kernelviz.errors import ImageError, ModelError, UsageError
from onnx_kernelviz.frontend.load import load_model
from onnx_kernelviz.io.decode import read_image
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.model import Model
from onnx_kernelviz.pipeline.demo import _holds_a_demo
from onnx_kernelviz.pipeline.explain import ExplainConfig, prepare

FAST = ["--steps", "2", "--device", "cpu"]


@contextmanager
def deadline(seconds: int = 60):
    """Fail instead of hanging (a FIFO opened for reading blocks until a writer comes). The alarm raises
    ``pytest.fail``'s BaseException, not a TimeoutError: that is an OSError, which readers catch (an atlas
    checkpoint's as "damaged, redo it"), so it would have hidden the hang."""
    def boom(*_):
        pytest.fail(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def run(*args):
    with deadline():
        return CliRunner().invoke(cli, [str(a) for a in args])


def one_error(result, code: int, *needles: str) -> str:
    """Exit ``code``, exactly one ``Error:`` line holding ``needles``; never a traceback or the fallback."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and "unexpected" not in result.output, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, result.output
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def peak_mib(fn) -> tuple[object, float]:
    tracemalloc.start()
    try:
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return tiny_models.save(tiny_models.two_conv(), tmp_path_factory.mktemp("m") / "two.onnx")


def _png(path: Path, h: int, w: int) -> Path:
    cv2.imwrite(str(path), np.zeros((h, w, 3), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return path


# --- images: memory bounded by the model input ------------------------------------------------------------

def test_huge_pngs_cost_one_decoded_file_however_many(model_path, tmp_path):
    """The attack in small: 3000x3000 zero PNGs (27 MB decoded, 108 MB as float each). Before, every image was
    held at full size as float32 before resizing: 3 images peaked above 324 MB."""
    paths = [_png(tmp_path / f"z{i}.png", 3000, 3000) for i in range(3)]
    m, pp, cfg = Model(model_path, device="cpu"), Preprocess(), ExplainConfig()
    _, one = peak_mib(lambda: prepare(m, paths[:1], m.layers[0], pp, cfg))
    prep, three = peak_mib(lambda: prepare(m, paths, m.layers[0], pp, cfg))
    assert prep.x.shape == (3, 3, 16, 16)
    decoded = 3000 * 3000 * 3 / 2**20
    assert three < 2 * decoded, three  # one decoded file and a band of float rows, not a float copy
    assert three < one * 1.25 + 1  # does not grow with the number of images


def test_large_jpeg_is_decoded_at_reduced_scale(tmp_path):
    """libjpeg decodes a 4000x6000 JPEG at 1/8 for a 224x224 input: under 1/8 of the full decode's memory."""
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    photo = cv2.resize(coarse, (6000, 4000), interpolation=cv2.INTER_LINEAR)
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 95])
    img, peak = peak_mib(lambda: read_image(path, size=(224, 224)))
    full = 4000 * 6000 * 3 / 2**20
    assert img.rgb.shape == (224, 224, 3) and img.original_size == (4000, 6000)
    assert peak < full / 8, peak
    # the same picture as a full decode fitted the same way (scaled IDCT vs area averaging: close, not equal)
    ref = cv2.resize(photo, (336, 224), interpolation=cv2.INTER_AREA)[:, 56:280, ::-1] / 255.0
    assert np.abs(img.rgb - ref).mean() < 2 / 255
    assert img.notes[-1] == "resized 4000x6000 -> 224x336 (HxW), centre-cropped to 224x224"


def test_a_long_strip_is_cropped_before_it_is_resized(tmp_path):
    """A 1x10000 PNG for a 224x224 crop would be resized to 224x2240000 (6 GB as float) before cropping."""
    path = tmp_path / "strip.png"
    cv2.imwrite(str(path), np.full((1, 10000, 3), 90, np.uint8))
    img, peak = peak_mib(lambda: read_image(path, size=(224, 224)))
    assert img.rgb.shape == (224, 224, 3) and np.allclose(img.rgb, 90 / 255, atol=1e-6)
    assert peak < 16, peak


# --- special files: refused before they are opened ----------------------------------------------------------

@pytest.fixture
def fifo(tmp_path) -> Path:
    p = tmp_path / "pipe.png"
    os.mkfifo(p)
    return p


def _socket_file(folder: Path) -> tuple[Path, socket.socket]:
    s = socket.socket(socket.AF_UNIX)
    path = folder / "sock.png"
    s.bind(str(path))
    return path, s


@pytest.mark.parametrize("special", ["fifo", "dev_zero", "socket"])
@pytest.mark.parametrize("command", ["explain", "verify"])
def test_special_file_as_image_is_one_line_and_no_out(model_path, tmp_path, fifo, special, command):
    sock = None
    if special == "fifo":
        image, kind = fifo, "named pipe (FIFO)"
    elif special == "dev_zero":
        image, kind = Path("/dev/zero"), "character device"
    else:
        (image, sock) = _socket_file(tmp_path)
        kind = "socket"
    out = tmp_path / "out"
    try:
        args = (["explain", model_path, image, "--layer", "0", "--kernel", "0", "--out", out, *FAST]
                if command == "explain" else ["verify", model_path, image])
        one_error(run(*args), 1, str(image), kind, "not a regular file")
    finally:
        if sock is not None:
            sock.close()
    assert not out.exists()


def test_special_files_inside_a_folder_are_skipped(model_path, tmp_path, fifo):
    _png(tmp_path / "ok.png", 20, 20)
    r = run("explain", model_path, tmp_path, "--layer", "0", "--kernel", "0", "--out", tmp_path / "out", *FAST)
    assert r.exit_code == 0, r.output
    assert fifo.exists()  # untouched


def test_read_image_refuses_a_fifo_without_blocking(fifo):
    with deadline(), pytest.raises(ImageError, match="named pipe"):
        read_image(fifo)


@pytest.mark.parametrize("special", ["fifo", "dev_zero"])
def test_special_file_as_model(tmp_path, fifo, special):
    model = fifo if special == "fifo" else Path("/dev/zero")
    kind = "named pipe (FIFO)" if special == "fifo" else "character device"
    one_error(run("inspect", model), 1, kind, "not a regular file", ".onnx model file")


def test_fifo_as_external_data_file(tmp_path):
    path = tiny_models.save_external(tiny_models.two_conv(), tmp_path / "m")
    (tmp_path / "m" / "model.bin").unlink()
    os.mkfifo(tmp_path / "m" / "model.bin")
    with deadline(), pytest.raises(ModelError, match=r"named pipe \(FIFO\), not a regular file"):
        load_model(path)


def test_fifo_named_like_a_sidecar_is_ignored(model_path, tmp_path):
    p = tiny_models.save(tiny_models.two_conv(), tmp_path / "net.onnx")
    os.mkfifo(tmp_path / "net.kernelviz.json")
    r = run("verify", p)
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("special", ["fifo", "device", "sparse 3 GB"])
def test_report_reads_results_json_only_from_a_bounded_regular_file(tmp_path, special):
    """``kernelviz report DIR`` reads a folder that may come from elsewhere: a FIFO named results.json blocked
    forever, a link to /dev/zero read until memory ran out."""
    path = tmp_path / "results.json"
    if special == "fifo":
        os.mkfifo(path)
    elif special == "device":
        path.symlink_to("/dev/zero")
    else:
        with open(path, "wb") as f:
            f.truncate(3 << 30)  # sparse: nothing is written
    r, peak = peak_mib(lambda: run("report", tmp_path))
    needles = {"fifo": ("named pipe (FIFO), not a regular file",), "device": ("character device, not a regular file",),
               "sparse 3 GB": ("holds 3.0 GB, more than the 1 GB",)}[special]
    one_error(r, 1, "results.json", *needles)
    assert peak < 64, peak
    assert not (tmp_path / "report.html").exists()


def _gray_png_of_zeros(path: Path, h: int, w: int) -> Path:
    """A grey PNG of zeros written row by row (never held whole): 12000x12000 is ~300 KB on disk."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(9), b"\x00" * (w + 1)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def test_report_does_not_decode_pictures_larger_than_an_input_image(tmp_path):
    """A results folder may come from elsewhere: its 300 KB 12000x12000 PNG named as a mask was decoded and made
    float (720 MB), once per result that names it (a 20000x20000 one: 3.5 GB and 7 s a result), and a .npy mask
    was read whole whatever its header said. Pictures over the input-image limit are skipped like missing ones."""
    from onnx_kernelviz.report.html_base import Folder

    _gray_png_of_zeros(tmp_path / "bomb.png", 12000, 12000)
    with open(tmp_path / "bomb.npy", "wb") as f:  # a sparse file: the header, then 576 MB of nothing
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (12000, 12000)})
        f.truncate(f.tell() + 12000 * 12000 * 4)
    folder = Folder(tmp_path)
    for rel in ("bomb.png", "bomb.npy"):
        got, peak = peak_mib(lambda: (folder.size(rel), folder.mask(rel), folder.img(rel, "a")))  # noqa: B023
        assert got == (None, None, ""), got
        assert peak < 64, (rel, peak)
    _gray_png_of_zeros(tmp_path / "small.png", 30, 40)  # a picture of the usual size still shows
    np.save(tmp_path / "small.npy", np.ones((30, 40), np.float32))
    assert folder.size("small.png") == (40, 30) and folder.mask("small.png").shape == (30, 40)
    assert folder.mask("small.npy").shape == (30, 40)


def test_unsorted_graph_is_sorted_in_linear_time(tmp_path):
    """Nodes out of order are sorted as onnxruntime does; the sort rescanned every pending node once per node, so a
    700 KB model (30,000 Identity nodes listed last to first) took ~20 minutes to load, and 200,000 days."""
    n = 30000
    m = tiny_models.two_conv()
    chain = [helper.make_node("Identity", [m.graph.input[0].name if i == 0 else f"i{i - 1}"], [f"i{i}"])
             for i in range(n)]
    m.graph.node[0].input[0] = f"i{n - 1}"
    convs = list(m.graph.node)
    del m.graph.node[:]
    m.graph.node.extend([*reversed(chain), *convs])
    path = tmp_path / "unsorted.onnx"
    path.write_bytes(m.SerializeToString())
    with deadline(60):
        loaded = load_model(path)
    names = [node.output[0] for node in loaded.proto.graph.node]
    assert names[:n] == [f"i{i}" for i in range(n)] and len(names) == n + len(convs)


def test_model_file_over_two_gb_is_refused_unread(tmp_path):
    p = tmp_path / "huge.onnx"
    with open(p, "wb") as f:
        f.truncate(3 << 30)  # sparse: nothing is written
    _, peak = peak_mib(lambda: one_error(run("inspect", p), 1, "3.0 GB", "2 GB"))
    assert peak < 64, peak


# --- external data: read only what the shapes need ----------------------------------------------------------

def _strip_lengths(model_path: Path) -> None:
    m = onnx.load(str(model_path), load_external_data=False)
    for t in m.graph.initializer:
        keep = [(e.key, e.value) for e in t.external_data if e.key != "length"]
        del t.external_data[:]
        for k, v in keep:
            t.external_data.add(key=k, value=v)
    model_path.write_bytes(m.SerializeToString())


def test_sparse_terabyte_data_file_without_lengths_is_not_read(tmp_path):
    """No length entry: onnx's loader reads from the offset to the end of the file (1 TB here)."""
    path = tiny_models.save_external(tiny_models.two_conv(), tmp_path / "m")
    _strip_lengths(path)
    os.truncate(tmp_path / "m" / "model.bin", 1 << 40)
    loaded, peak = peak_mib(lambda: load_model(path))
    assert peak < 16, peak
    m = Model(path, device="cpu")
    x = m.synthetic_input(2)
    t = (m.layers[1].tensor,)
    np.testing.assert_allclose(m.run_torch(x, t)[0], m.run_ort(x, t)[0], rtol=1e-4, atol=1e-5)


def test_weights_larger_than_the_machine_are_refused_unread(tmp_path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "w.bin").touch()
    os.truncate(folder / "w.bin", 1 << 40)
    big = TensorProto(name="w1", data_type=TensorProto.FLOAT, dims=[1 << 38])
    big.data_location = TensorProto.EXTERNAL
    big.external_data.add(key="location", value="w.bin")
    proto = tiny_models.two_conv()
    proto.graph.initializer.append(big)
    path = folder / "model.onnx"
    path.write_bytes(proto.SerializeToString())
    r, peak = peak_mib(lambda: run("inspect", path))
    one_error(r, 1, "'w1'", "1099.5 GB", "more than this machine's")
    assert peak < 64, peak


def test_declared_length_must_match_the_shape(tmp_path):
    path = tiny_models.save_external(tiny_models.two_conv(), tmp_path / "m")
    m = onnx.load(str(path), load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "length":
            e.value = str(int(e.value) * 1000)
    path.write_bytes(m.SerializeToString())
    one_error(run("inspect", path), 1, "declares", "needs", "re-export the model")


def test_truncated_data_file_is_named(tmp_path):
    path = tiny_models.save_external(tiny_models.two_conv(), tmp_path / "m")
    os.truncate(tmp_path / "m" / "model.bin", 100)
    one_error(run("inspect", path), 1, "'model.bin'", "truncated")


# --- a model's own fixed input size ---------------------------------------------------------------------------

def _huge_input_model(path: Path, width: int | str = 100000, height: int = 100000) -> Path:
    w = numpy_helper.from_array(np.ones((2, 3, 3, 3), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="conv")], "huge",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, height, width])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, "h", "w"])], [w])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return tiny_models.save(m, path)


@pytest.mark.parametrize("command", ["verify", "explain"])
def test_huge_fixed_input_is_one_line_before_any_allocation(tmp_path, command):
    model = _huge_input_model(tmp_path / "huge.onnx")
    _png(tmp_path / "a.png", 20, 20)
    out = tmp_path / "out"
    args = (["verify", model] if command == "verify" else
            ["explain", model, tmp_path / "a.png", "--layer", "0", "--kernel", "0", "--out", out, *FAST])
    r, peak = peak_mib(lambda: run(*args))
    one_error(r, 1, "100000x100000", "re-export the model with a smaller or dynamic input size")
    assert peak < 64, peak
    assert not out.exists()
    assert run("inspect", model).exit_code == 0  # nothing is allocated to list the layers


@pytest.mark.parametrize("image", [False, True])
def test_one_huge_fixed_side_is_one_line_before_any_allocation(tmp_path, image):
    """Only a model fixing both sides was checked: one fixed side of 100000 and a free width (which follows the
    image, or stays square without one) went on to allocate 100000x100000 (120 GB) and failed in OpenCV's
    allocator with the 'unexpected error' fallback, or took the machine's memory."""
    model = _huge_input_model(tmp_path / "huge.onnx", width="w")
    args = ["verify", model, _png(tmp_path / "a.png", 20, 20)] if image else ["verify", model]
    r, peak = peak_mib(lambda: run(*args))
    one_error(r, 1, "100000x? (HxW) input", "re-export the model with a smaller or dynamic input size")
    assert peak < 64, peak


def test_a_free_side_that_follows_an_extreme_image_is_refused(tmp_path):
    """A text recognizer's free width follows the image's proportions: a 2x20000 strip made it 320000 wide."""
    model = _huge_input_model(tmp_path / "rec.onnx", width="w", height=32)
    out = tmp_path / "out"
    r = run("explain", model, _png(tmp_path / "strip.png", 2, 20000), "--layer", "0", "--kernel", "0", "--out", out,
            *FAST)
    one_error(r, 1, "32x320000 (HxW)", "--size")
    assert not out.exists()
    assert run("verify", model, _png(tmp_path / "wide.png", 20, 200)).exit_code == 0  # 32x320: fine


def test_atlas_refuses_layers_whose_duplicate_search_exceeds_memory(tmp_path, monkeypatch):
    """The duplicate search keeps a CxC float64 matrix per layer, several alive at once: a valid 480 KB model (one
    1x1 conv with 40,000 output channels) had the atlas ask for 5 x 12.8 GB. Here a 600-channel layer against a
    machine of 20 MB, so the check shows without the allocation."""
    from onnx_kernelviz.atlas import AtlasSettings, run_atlas
    from onnx_kernelviz.io.preprocess import resolve_preprocess
    from onnx_kernelviz.method.config import ExplainConfig

    w = numpy_helper.from_array(np.ones((600, 3, 1, 1), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="wide")], "wide",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 600, 4, 4])], [w])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    model = Model(tiny_models.save(m, tmp_path / "wide.onnx"), device="cpu")
    monkeypatch.setattr("onnx_kernelviz.atlas.run.physical_memory", lambda: 20 << 20)
    out = tmp_path / "atlas"
    with pytest.raises(ModelError, match=r"layer 0 has 600 kernels.*choose fewer or narrower layers with --layers"):
        run_atlas(model, [_png(tmp_path / "a.png", 4, 4)], out, settings=AtlasSettings(top=1, explain=0),
                  preprocess=resolve_preprocess(None), config=ExplainConfig(steps=2))
    assert not out.exists()


def test_compare_picks_its_pair_among_a_bounded_number_of_kernels(monkeypatch):
    """``compare`` without --kernel correlated every firing kernel with every other: three CxC float64 matrices,
    38 GB for that 480 KB model of one 40,000-channel conv. The pick now looks at the strongest
    MAX_PAIR_CANDIDATES kernels (here 64 of 3000, so the bound shows without the allocation)."""
    from onnx_kernelviz.pipeline import compare

    monkeypatch.setattr(compare, "MAX_PAIR_CANDIDATES", 64)
    t = np.random.default_rng(0).uniform(0.5, 1, (3000, 2, 2)).astype(np.float32)
    t *= np.linspace(0.2, 1, 3000, dtype=np.float32)[:, None, None]
    strongest = set(np.argsort(-np.linalg.norm(t.reshape(3000, -1), axis=1))[:64].tolist())
    (a, b, _, why), peak = peak_mib(lambda: compare.pick_pair(t))
    assert why["candidates"] == 64 and {a, b} <= strongest, (a, b, why)
    assert peak < 16, peak  # before: 3 x 72 MB
    (a2, b2, _), peak = peak_mib(lambda: compare.most_correlated_pair(t))
    assert {a2, b2} <= strongest and peak < 16, peak


def test_out_of_memory_advice_fits_the_command(model_path, monkeypatch):
    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr("onnx_kernelviz.model.load_model", no_memory)
    line = one_error(run("inspect", model_path), 1, "out of memory")
    assert "--batch-size" not in line and "--size" not in line
    monkeypatch.setattr("onnx_kernelviz.model.load_model", no_memory)
    assert "--size" not in one_error(run("verify", model_path), 1, "out of memory", "close other programs")


def test_out_of_memory_advice_names_size_only_where_it_sets_the_input(model_path, tmp_path, monkeypatch):
    """--size was suggested for models whose input size is fixed (where the fixed sides override it) and for a
    model that ran out of memory while loading; it is suggested once a model with a free side is open."""
    dynamic = tiny_models.save(tiny_models.two_conv(dynamic=True), tmp_path / "dyn.onnx")

    def no_memory(*a, **k):
        raise MemoryError

    monkeypatch.setattr("onnx_kernelviz.measure.verify.verify_model", no_memory)
    assert "--size" not in one_error(run("verify", model_path), 1, "out of memory", "close other programs")
    one_error(run("verify", dynamic, "--size", "16x16"), 1, "out of memory", "use a smaller --size")
    monkeypatch.setattr("onnx_kernelviz.model.load_model", no_memory)
    assert "--size" not in one_error(run("verify", dynamic), 1, "out of memory")


# --- every case: one line, its own message, nothing written, never the fallback -----------------------------

def _case(tmp: Path, name: str) -> tuple[Path, Path, int, tuple[str, ...]]:
    """(model, image, exit status, needles) for one hostile input, built in ``tmp``."""
    model = tiny_models.save(tiny_models.two_conv(), tmp / "net.onnx")
    image = _png(tmp / "a.png", 20, 20)
    if name == "fifo image":
        os.mkfifo(tmp / "p.png")
        return model, tmp / "p.png", 1, ("named pipe (FIFO), not a regular file; give an image file",)
    if name == "device image":
        return model, Path("/dev/zero"), 1, ("character device, not a regular file",)
    if name == "fifo model":
        os.mkfifo(tmp / "p.onnx")
        return tmp / "p.onnx", image, 1, ("named pipe (FIFO), not a regular file; give the path of an .onnx",)
    if name == "model over 2 GB":
        with open(tmp / "big.onnx", "wb") as f:
            f.truncate(3 << 30)
        return tmp / "big.onnx", image, 1, ("more than the 2 GB an ONNX file can",)
    if name in ("fifo data", "truncated data", "length mismatch", "sparse weights over memory"):
        model = tiny_models.save_external(tiny_models.two_conv(), tmp / "m")
        data = tmp / "m" / "model.bin"
        if name == "fifo data":
            data.unlink()
            os.mkfifo(data)
            return model, image, 1, ("named pipe (FIFO), not a regular file; refusing it",)
        if name == "truncated data":
            os.truncate(data, 100)
            return model, image, 1, ("the data file is truncated or belongs to another model",)
        m = onnx.load(str(model), load_external_data=False)
        t = m.graph.initializer[0]
        if name == "length mismatch":
            next(e for e in t.external_data if e.key == "length").value = "7"
            needles = ("declares 7 bytes of external data",)
        else:
            del t.dims[:]
            t.dims.extend([1 << 38])
            keep = [(e.key, e.value) for e in t.external_data if e.key != "length"]
            del t.external_data[:]
            for k, v in keep:
                t.external_data.add(key=k, value=v)
            os.truncate(data, (1 << 40) + 4096)
            needles = ("more than this machine's", "use a machine with more memory")
        model.write_bytes(m.SerializeToString())
        return model, image, 1, needles
    if name == "huge fixed input":
        return _huge_input_model(tmp / "huge.onnx"), image, 1, ("100000x100000 (HxW) input",)
    if name == "sidecar over 1 MB":
        (tmp / "net.kernelviz.json").write_bytes(b" " * (2 << 20))
        return model, image, 2, ("larger than 1 MB",)
    if name == "sidecar bad fit":
        (tmp / "net.kernelviz.json").write_text('{"fit": 3}')
        return model, image, 2, ("invalid fit 3",)
    raise AssertionError(name)


def _listing(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.lstat().st_mtime for p in root.rglob("*")}


@pytest.mark.parametrize("name", ["fifo image", "device image", "fifo model", "model over 2 GB", "fifo data",
                                  "truncated data", "length mismatch", "sparse weights over memory",
                                  "huge fixed input", "sidecar over 1 MB", "sidecar bad fit"])
def test_every_case_is_its_own_line_writes_nothing_and_never_the_fallback(tmp_path, name):
    model, image, code, needles = _case(tmp_path, name)
    before = _listing(tmp_path)
    out = tmp_path / "out"
    r = run("explain", model, image, "--layer", "0", "--kernel", "0", "--out", out, *FAST)
    one_error(r, code, *needles)
    assert not out.exists()
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("kind", ["progressive", "gray", "exif6"])
def test_reduced_jpeg_decode_matches_the_full_decode(tmp_path, kind, monkeypatch):
    """Scaled decoding keeps orientation, gray and progressive JPEGs right (within JPEG's own noise)."""
    from test_images import jpeg_with_exif

    from onnx_kernelviz.io import decode

    rng = np.random.default_rng(0)
    photo = cv2.resize(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (1600, 1200))
    if kind == "progressive":
        data = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    elif kind == "gray":
        data = cv2.imencode(".jpg", cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))[1].tobytes()
    else:
        data = jpeg_with_exif(photo, 6)
    path = tmp_path / "p.jpg"
    path.write_bytes(data)
    scales = []
    real = decode._decode
    monkeypatch.setattr(decode, "_decode", lambda p, d, h, s=1: scales.append(s) or real(p, d, h, s))
    reduced = read_image(path, size=(100, 100))
    monkeypatch.setattr(decode, "_jpeg_scale", lambda *a: 1)
    full = read_image(path, size=(100, 100))
    assert scales == [8, 1]
    assert reduced.notes == full.notes and reduced.original_size == full.original_size
    assert np.abs(reduced.rgb - full.rgb).mean() < 2 / 255


# --- files of an existing output folder: the same guard as results.json -------------------------------------

@pytest.mark.parametrize("name", ["run.json", "stats.npz", "explained"])
def test_atlas_resume_reads_its_checkpoint_only_from_regular_files(tmp_path, name):
    """An atlas folder may come from elsewhere: a FIFO named like a checkpoint file blocked ``--resume`` forever
    (the journal read them with ``read_text`` / ``np.load``, without read_capped's guard)."""
    journal = Journal(tmp_path / "atlas")
    identity = {"model": "m"}
    journal.prepare(identity, force=False, resume=False)
    if name == "explained":
        journal.kernel_path(0, 0).parent.mkdir(parents=True)
        os.mkfifo(journal.kernel_path(0, 0))
        with deadline(20):
            assert journal.explained(0, 0) is None  # redone, like any damaged kernel checkpoint
        return
    (journal.dir / name).unlink(missing_ok=True)
    os.mkfifo(journal.dir / name)
    with deadline(20), pytest.raises(UsageError, match=r"cannot resume: .*named pipe \(FIFO\), not a regular file"):
        if name == "run.json":
            journal.prepare(identity, force=False, resume=True)
        else:
            journal.load_stats()


def test_demo_reads_an_earlier_results_json_only_from_a_regular_file(tmp_path):
    """``kernelviz demo --out D`` looks at D/results.json to see whether D holds an earlier demo: a FIFO there
    hung the demo before it said anything."""
    model = tiny_models.save(tiny_models.two_conv(), tmp_path / "m.onnx")
    os.mkfifo(tmp_path / "results.json")
    with deadline(20):
        assert _holds_a_demo(tmp_path, model) is False


# --- tensors the graph computes: refused before constant folding or onnxruntime allocate them ---------------

@pytest.mark.parametrize("kind", hostile.HUGE_KINDS)
def test_a_huge_computed_tensor_is_refused_by_name(tmp_path, kind):
    """Sizes come from shape inference over the constants (and the fixed input), before anything computes."""
    path = tiny_models.save(hostile.computes_huge(kind), tmp_path / "m.onnx")
    model = Model(path, device="cpu")
    with pytest.raises(ModelError, match=r"node 'huge' \(.*\) of .* computes a tensor of shape \[.*GB\), more than"):
        model.check_computed_sizes()


@pytest.mark.parametrize("declared", [False, True])
def test_a_huge_tensor_inside_an_if_branch_is_refused_by_name(tmp_path, declared):
    """The size check read the top-level graph only: ``ConstantOfShape`` of [5e9] inside the then branch of an If on
    a constant condition passed it (onnxscript's folding inlines such a branch; onnxruntime runs it). Bodies are
    sized from the types inferred inside them, not from what the branch declares."""
    path = tiny_models.save(hostile.computes_huge_in_branch(declared), tmp_path / "m.onnx")
    with pytest.raises(ModelError, match=r"node 'huge' \(ConstantOfShape\) of .* \[5000000000\] \(20.0 GB\)"):
        Model(path, device="cpu").check_computed_sizes()
    # a branch of a reasonable size passes (and runs: verify agrees with onnxruntime)
    small = tiny_models.save(hostile.computes_huge_in_branch(declared, n=1000), tmp_path / "small.onnx")
    Model(small, device="cpu").check_computed_sizes()
    assert run("verify", small).exit_code == 0


def test_a_2_kb_file_with_20_gb_in_an_if_branch_is_one_line_before_any_allocation(tmp_path):
    path = tiny_models.save(hostile.computes_huge_in_branch(), tmp_path / "m.onnx")
    assert path.stat().st_size < 2048
    r, peak = peak_mib(lambda: run("verify", path))
    one_error(r, 1, "node 'huge' (ConstantOfShape)", "[5000000000] (20.0 GB)", "re-export it without that node")
    assert peak < 256, peak


def test_a_huge_tensor_that_follows_a_free_input_side_is_refused_at_the_chosen_size(tmp_path):
    """``Shape(x) * 100000 -> ConstantOfShape`` on a model with free sides: nothing is known when the model is
    opened, and onnxruntime (or the torch copy) allocated it at the first run. Checked when the input size is
    chosen, before anything runs at it."""
    path = tiny_models.save(hostile.computes_huge("Shape->ConstantOfShape", free=True), tmp_path / "m.onnx")
    Model(path, device="cpu").check_computed_sizes()  # unknown until the size is chosen
    _png(tmp_path / "a.png", 16, 16)
    out = tmp_path / "out"
    r, peak = peak_mib(lambda: run("explain", path, tmp_path / "a.png", "--layer", "0", "--kernel", "0", "--out",
                                   out, "--size", "16x16", *FAST))
    one_error(r, 1, "node 'huge' (ConstantOfShape)", "at the input shape [1, 3, 16, 16]")
    assert peak < 256, peak
    assert not out.exists()


@pytest.mark.parametrize("command", ["verify", "explain"])
def test_a_2_kb_file_asking_for_20_gb_is_one_line_before_any_allocation(tmp_path, command):
    """``ConstantOfShape`` of a constant [5e9] in a branch no output uses: onnxscript's constant folding (forced for
    ConstantOfShape in normalize) computed all 20 GB before checking its size limit, and onnxruntime's session
    allocated it again. ``inspect`` computes nothing and still lists the layers."""
    path = tiny_models.save(hostile.computes_huge(), tmp_path / "m.onnx")
    assert path.stat().st_size < 2048
    _png(tmp_path / "a.png", 16, 16)
    out = tmp_path / "out"
    args = (["explain", path, tmp_path / "a.png", "--layer", "0", "--kernel", "0", "--out", out, *FAST]
            if command == "explain" else ["verify", path])
    r, peak = peak_mib(lambda: run(*args))
    one_error(r, 1, "node 'huge' (ConstantOfShape)", "[5000000000] (20.0 GB)", "re-export it without that node")
    assert peak < 256, peak
    assert not out.exists()
    assert run("inspect", path).exit_code == 0
