"""The models people deploy (issue #13): every corpus entry inspects, verifies and explains from the CLI.

The int8 and fp16 builds are made in the tests with onnxruntime's own tools (``tests/corpus_deployed.py``); the
shipped default model's builds run in the slow tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import corpus_deployed as cd
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


#: entries that still fail, and why (removed as each is fixed; strict: a fixed entry must leave this list)
XFAIL = {"text_recognizer": "fed 224x224 whatever the fixed height", "same_padding": "auto_pad SAME not converted",
         "same_padding_dynamic": "auto_pad SAME not converted", "caffe2_ir3": "KeyError on the ConstantOfShape weight",
         "unknown_rank_bn": "BatchNormalization spatial rank -2"}


def _marks(names):
    return [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=XFAIL[n])) if n in XFAIL else n
            for n in names]


@pytest.mark.parametrize("kind", _marks(cd.KINDS))
def test_build(kind, deployed_build, photo, tmp_path):
    build = cd.BUILDS[kind]
    inspected, verified, _ = inspect_verify_explain(deployed_build(kind), photo, tmp_path / "out")
    layers = inspected["layers"]
    assert len(layers) == cd.TINY_CONVS and {la["op"] for la in layers} == {build.op}
    assert verified["ok"] and len(verified["layers"]) == cd.TINY_CONVS


@pytest.mark.parametrize("name", _marks(cd.SHAPES))
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
