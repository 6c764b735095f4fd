"""The models people deploy (issue #13): every corpus entry inspects, verifies and explains from the CLI.

The int8 and fp16 builds are made in the tests with onnxruntime's own tools (``tests/corpus_deployed.py``); the
shipped default model's builds run in the slow tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import corpus_deployed as cd
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from onnx_kernelviz.cli import cli

QUANTIZED = {"qdq": "qdq", "qoperator": "qoperator", "dynamic": "dynamic"}


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    """A smooth 60x150 picture (wide, like a line of text)."""
    p = tmp_path_factory.mktemp("photos") / "wide.png"
    rgb = cd.smooth_images(1, (60, 150), seed=1)[0]
    cv2.imwrite(str(p), (rgb[:, :, ::-1] * 255).astype(np.uint8))
    return p


def cli_run(*args) -> tuple[int, str]:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert "Traceback" not in res.output, res.output
    return res.exit_code, res.output


def inspect_verify_explain(model: Path, photo: Path, out: Path, layer: int = 1) -> tuple[dict, dict, dict]:
    """inspect --json, verify --json (synthetic input) and a 3-step explain of the top kernel; all must succeed."""
    code, text = cli_run("inspect", model, "--json")
    assert code == 0, text
    inspected = json.loads(text)
    code, text = cli_run("verify", model, "--json")
    assert code == 0, text
    verified = json.loads(text[text.index("{"):text.rindex("}") + 1])
    code, text = cli_run("explain", model, photo, "--layer", layer, "--kernel", "top1", "--steps", 3,
                         "--device", "cpu", "--out", out)
    assert code == 0, text
    results = json.loads((out / "results.json").read_text())
    for r in results["results"]:
        assert r["status"] in ("ok", "inactive"), r
        if r["status"] == "ok":
            assert r["parity_ok"], r
    return inspected, verified, results


@pytest.mark.parametrize("kind", cd.KINDS)
def test_build(kind, deployed_build, photo, tmp_path):
    build = cd.BUILDS[kind]
    inspected, verified, _ = inspect_verify_explain(deployed_build(kind), photo, tmp_path / "out")
    layers = inspected["layers"]
    assert len(layers) == cd.TINY_CONVS and {la["op"] for la in layers} == {build.op}
    assert verified["ok"] and len(verified["layers"]) == cd.TINY_CONVS


@pytest.mark.parametrize("name", list(cd.SHAPES))
def test_shapes_and_old_graphs(name, photo, tmp_path):
    entry = cd.SHAPES[name]
    model = cd.save(entry.build(), tmp_path / f"{name}.onnx")
    inspected, verified, _ = inspect_verify_explain(model, photo, tmp_path / "out")
    assert len(inspected["layers"]) == entry.convs
    assert verified["ok"]


@pytest.mark.slow
@pytest.mark.parametrize("kind,op", [("qdq", "QLinearConv"), ("qoperator", "QLinearConv"), ("dynamic", "ConvInteger")])
def test_default_model_int8_builds(kind, op, default_build, tmp_path):
    """The shipped model quantized with onnxruntime's tools: 49 int8 layers, each exposed without losing its int8
    kernel, and a torch copy within the int8 rule on every layer."""
    from test_quantized import optimized_ops

    from onnx_kernelviz.frontend.expose import expose
    from onnx_kernelviz.measure.verify import verify_model
    from onnx_kernelviz.model import Model

    m = Model(default_build(kind))
    assert len(m.layers) == 49 and all(la.quant is not None for la in m.layers)
    exposed = expose(m.loaded.proto, [la.tensor for la in m.layers])
    assert optimized_ops(exposed, tmp_path)[op] == 49
    report = verify_model(m)
    assert report.ok, report.first_failure
    # the first layers agree exactly; rounding flips compound with depth (measure/tolerance.py)
    assert all(la.parity_steps == 0 for la in report.layers[:6])


# Shapes and graphs, one property each ---------------------------------------------------------------------------

def test_free_width_follows_the_photo_and_the_fixed_height_stays(photo, tmp_path):
    from onnx_kernelviz.model import Model

    m = Model(cd.save(cd.text_recognizer(), tmp_path / "rec.onnx"))
    assert m.size_multiple[1] == 4  # two 2x2 poolings along the width; the (2, 1) and (6, 1) ones keep it
    assert m.input_size(aspect=150 / 60) == (48, 120) and m.input_size(aspect=0.1) == (48, 4)
    assert m.input_size() == (48, 48) and m.input_size((32, 200)) == (48, 200)  # fixed sides win over --size
    code, text = cli_run("explain", m.path, photo, "--layer", "3", "--kernel", "0", "--steps", 2, "--device", "cpu",
                         "--out", tmp_path / "out")
    assert code == 0, text
    assert json.loads((tmp_path / "out" / "results.json").read_text())["settings"]["input_size"] == [48, 120]


def test_onnxruntime_failing_on_an_input_size_is_one_error_line(tmp_path):
    """A graph that only runs at the size it was exported for (a constant Reshape), fed another: one Error line
    naming the shape and --size, not "unexpected ... please report it"."""
    from corpus import GraphBuilder, head, image

    g = GraphBuilder()
    x = g.op("Relu", [g.conv("input", 3, 8)])
    x = g.op("Reshape", [x, g.const(np.array([-1, 8, 32, 32], np.int64), "shape")])
    model = cd.save(g.model([image(shape=("N", 3, "H", "W"))], [head(g, g.conv(x, 8, 8), 8)], opset=13),
                    tmp_path / "m.onnx")
    code, text = cli_run("verify", model, "--size", "16x16")
    assert code == 1 and text.startswith("Error: onnxruntime cannot run this model on an input of shape [2, 3, 16, 16]")
    assert "--size" in text and "report" not in text


def test_same_pads_are_explicit_and_match_at_odd_sizes(tmp_path):
    from onnx_kernelviz.measure.verify import verify_model
    from onnx_kernelviz.model import Model

    fixed = Model(cd.save(cd.same_padding(), tmp_path / "fixed.onnx"))
    assert fixed.normalized.notes[-1] == "made auto_pad SAME explicit on 4 ops"
    free = Model(cd.save(cd.same_padding(fixed=False), tmp_path / "free.onnx"))
    assert "2 computed from the input size at run time" in free.normalized.notes[-1]
    for size in ((33, 31), (32, 32), (17, 40)):
        report = verify_model(free, free.synthetic_input(batch=2, size=size))
        assert report.ok and max(la.parity_rel for la in report.layers) < 1e-5, size


def test_ir3_initializers_listed_as_inputs_are_constants(tmp_path):
    from onnx_kernelviz.model import Model

    m = Model(cd.save(cd.caffe2_era(), tmp_path / "c2.onnx"))
    assert m.loaded.proto.ir_version == 3 and len(m.loaded.proto.graph.input) > 1
    graph = m.normalized.proto.graph
    assert [i.name for i in graph.input] == [m.normalized.input_name]
    assert not any(n.op_type == "ConstantOfShape" for n in graph.node)


def test_batchnorm_of_unknown_rank_gets_it_from_the_tensor_it_normalizes(tmp_path):
    from onnx_kernelviz.model import Model

    m = Model(cd.save(cd.unknown_rank_batchnorm(), tmp_path / "bn.onnx"))
    assert m.layers[1].shape is None  # inference does not know it
    tg = m.torch_graph((m.layers[1].tensor,))
    assert any(type(mod).__name__ == "BatchNorm2d" for mod in tg.module.modules())


def test_synthetic_verify_input_follows_the_preprocessing(tmp_path):
    """A model that takes sqrt of its 0-255 input: N(0, 1) gave NaN and "results would not hold"; smooth pictures
    through the raw preprocessing verify, and so does a real image."""
    import tiny_models

    from onnx_kernelviz.io.preprocess import get_preset
    from onnx_kernelviz.model import Model

    model = tiny_models.save(tiny_models.two_conv(pre=("Sqrt",)), tmp_path / "sqrt.onnx")
    raw = Model(model).synthetic_input(batch=2, preprocess=get_preset("raw"))
    assert raw.min() >= 0 and raw.max() > 100 and np.isfinite(raw).all()
    imagenet = Model(model).synthetic_input(batch=2, preprocess=get_preset("imagenet"))
    assert imagenet.min() < 0 < imagenet.max() and np.abs(imagenet).max() < 2.7
    code, text = cli_run("verify", model, "--preset", "raw")
    assert code == 0, text
