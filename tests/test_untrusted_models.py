"""A model file must never run code (issue 10, docs/RELIABILITY.md "Threat model").

onnx2torch names torch modules after ONNX nodes and torch.fx writes those names into generated Python without
escaping. The normalized copy therefore renames everything (frontend/names.py); these tests build the payload,
show it is live against the libraries themselves, and check that kernelviz runs none of it while the torch copy
still matches onnxruntime under the file's own names.
"""

from __future__ import annotations

import json
import keyword
import os
from pathlib import Path

import hostile
import numpy as np
import onnx
import pytest
import tiny_models
import torch
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx2torch import convert as o2t_convert

from onnx_kernelviz.cli import cli
from onnx_kernelviz.errors import ConversionError, KernelvizError
from onnx_kernelviz.frontend.convert import to_torch
from onnx_kernelviz.frontend.names import is_safe
from onnx_kernelviz.model import Model

FAST = ["--steps", "3", "--device", "cpu"]


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    """The file the payload creates if it ever runs."""
    m = tmp_path / "payload-ran"
    monkeypatch.setenv(hostile.MARKER_ENV, str(m))
    return m


@pytest.fixture
def evil(tmp_path) -> Path:
    """two_conv whose first Conv is named with the payload."""
    return tiny_models.save(hostile.named_two_conv(nodes=(hostile.payload(), "relu1", "conv2", "relu2")),
                            tmp_path / "evil.onnx")


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # Python's comment on the injected source
def test_the_payload_is_live_in_onnx2torch_and_fx(evil, marker):
    """The control: converted by onnx2torch directly, running the module runs the file's code."""
    module = o2t_convert(onnx.load(str(evil)))
    with pytest.raises(TypeError):  # after the payload ran, the rest of the broken expression fails
        module(torch.zeros(1, 3, 16, 16))
    assert marker.exists()


@pytest.mark.parametrize("command", ["verify", "explain", "compare"])
def test_payload_node_name_runs_nothing_and_the_run_works(evil, marker, tmp_path, command):
    img = tmp_path / "img.png"
    import cv2
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    args = {"verify": ["verify", evil],
            "explain": ["explain", evil, img, "--layer", "0", "--kernel", "0", "--out", tmp_path / "o", *FAST],
            "compare": ["compare", evil, img, "--layer", "0", "--kernel", "0", "--kernel", "1", "--out", tmp_path / "c",
                        *FAST]}
    r = CliRunner().invoke(cli, [str(a) for a in args[command]])
    assert not marker.exists()
    assert r.exit_code == 0, r.output
    if command == "verify":
        assert "all layers agree" in r.output
    if command == "explain":  # users see the file's names, not the generated ones
        doc = json.loads((tmp_path / "o" / "results.json").read_text())
        assert "kv_" not in json.dumps(doc)


def test_to_torch_refuses_names_that_are_not_identifiers(evil, marker):
    """The last gate holds even for a graph that did not come through normalize."""
    with pytest.raises(ConversionError, match="not a plain identifier"):
        to_torch(onnx.load(str(evil)), ["y"])
    assert not marker.exists()


def test_names_that_are_module_attributes_or_collide_convert(tmp_path):
    """Node names equal to nn.Module attributes made add_module fail; onnx2torch's de-duplication (a.b and a/b
    both become a/b, then a/b_1) collided with a node really named a/b_1 and broke the conversion."""
    for nodes in (("forward", "training", "_modules", "__class__"), ("a.b", "a/b", "a/b_1", "r")):
        p = tiny_models.save(hostile.named_two_conv(nodes=nodes), tmp_path / "m.onnx")
        m = Model(p, device="cpu")
        x = m.synthetic_input(2)
        tensors = (m.layers[0].tensor, m.layers[1].tensor)
        for got, want in zip(m.run_torch(x, tensors), m.run_ort(x, tensors)):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _copy_strings(proto: onnx.ModelProto) -> list[str]:
    """Every node name, tensor name, domain and symbolic dim of the (top-level) graph."""
    g = proto.graph
    out = [n.name for n in g.node] + [s for n in g.node for s in (*n.input, *n.output) if s]
    out += [v.name for v in (*g.input, *g.output, *g.value_info)] + [t.name for t in g.initializer]
    out += [d.dim_param for v in (*g.input, *g.output, *g.value_info) for d in v.type.tensor_type.shape.dim
            if d.dim_param]
    return out


def test_no_string_from_the_file_reaches_the_copy(tmp_path):
    nasty = ('x"', "w1\\", "b1\n", "c1.a", "r1 é", "__init__", "class", "c2'", "y\x1b[2J")
    p = tiny_models.save(hostile.named_two_conv(nasty, nodes=("a.b", "", "import", "x" * 5000),
                                                dim="__import__('os')"), tmp_path / "m.onnx")
    m = Model(p, device="cpu")
    norm = m.normalized
    strings = _copy_strings(norm.proto)
    assert strings and all(is_safe(s) or s == "batch" for s in strings), [s for s in strings if not is_safe(s)]
    assert not any(s in nasty for s in strings)
    # the way back: layers keep the file's names, and the torch copy answers to them
    assert [la.tensor for la in m.layers] == ["r1 é", "y\x1b[2J"]
    assert m.torch_graph((m.layers[0].tensor,)).outputs == ("r1 é",)


def test_conversion_errors_name_the_files_nodes(tmp_path):
    proto = tiny_models.unsupported_op()
    proto.graph.node[0].name = "my odd\nnode"
    m = Model(tiny_models.save(proto, tmp_path / "m.onnx"), device="cpu")
    with pytest.raises(ConversionError) as e:
        m.torch_graph((m.layers[0].tensor,))
    assert repr("my odd\nnode") in str(e.value) and "kv_" not in str(e.value)


# Names as an attacker would pick them: any text, and the special cases (payloads, keywords, dunders, nn.Module
# attributes, names equal to the ones kernelviz generates, very long ones).
_SPECIAL = [hostile.payload(), '"', "'", "\\", "\n", "\r\n", "\x00", ".", "..", "a.b", "/", "x" * 5000, "None",
            "class", "lambda", "__init__", "__class__", "forward", "training", "_modules", "_parameters",
            "initializers", "input_1", "kv_t0", "kv_n1", "kv_d0", "batch", "é", "日本", "\u202e", "\x1b[31m"]
_NAME = st.one_of(st.sampled_from(_SPECIAL),
                  st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40))


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tensors=st.lists(_NAME, min_size=9, max_size=9, unique=True),
       nodes=st.lists(st.one_of(st.just(""), _NAME), min_size=4, max_size=4, unique=True),
       dim=_NAME)
def test_fuzz_names_run_nothing_and_parity_holds(tmp_path_factory, marker, tensors, nodes, dim):
    d = tmp_path_factory.mktemp("fuzz")
    p = tiny_models.save(hostile.named_two_conv(tuple(tensors), tuple(nodes), dim), d / "m.onnx")
    m = Model(p, device="cpu")
    assert [la.tensor for la in m.layers] == [tensors[4], tensors[8]]
    x = m.synthetic_input(2)
    layer_tensors = (tensors[4], tensors[8])
    for got, want in zip(m.run_torch(x, layer_tensors), m.run_ort(x, layer_tensors)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert not marker.exists()
    assert all(is_safe(s) or s == "batch" for s in _copy_strings(m.normalized.proto))
    assert not keyword.iskeyword(m.normalized.input_name)
    assert os.listdir(d) == ["m.onnx"]


def test_onnxruntime_python_ops_are_refused(tmp_path):
    """Standard onnxruntime builds have no ops that run Python (PythonOp is a training-build op, PyOp needs
    onnxruntime-extensions): a model using one is refused in one line, before a conv is reached."""
    proto = hostile.named_two_conv()
    proto.graph.node.insert(0, onnx.helper.make_node("PythonOp", ["x"], ["x2"], domain="com.microsoft",
                                                     name="py", func_name="os.system"))
    proto.graph.node[1].input[0] = "x2"
    proto.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    p = tiny_models.save(proto, tmp_path / "py.onnx")
    r = CliRunner().invoke(cli, ["verify", str(p)])
    assert r.exit_code == 1 and r.output.count("Error:") == 1 and "unexpected" not in r.output, r.output
    assert "PythonOp" in r.output and "not a standard ONNX op" in r.output
    m = Model(p, device="cpu")
    with pytest.raises(KernelvizError, match="onnxruntime cannot run this model"):
        m.run_ort(m.synthetic_input(1), (m.layers[0].tensor,))


def test_restore_puts_back_file_names_in_one_pass():
    """A file may itself name a tensor like a generated name; restoring must not substitute twice."""
    from onnx_kernelviz.frontend.names import NameMap

    n = NameMap(originals={"kv_t5": "kv_n1", "kv_n1": "conv 1", "kv_t7": "a\nb"})
    assert n.restore("node 'kv_t5', kv_t7__conv, 'kv_n1', kv_t99") == "node 'kv_n1', 'a\\nb'__conv, 'conv 1', kv_t99"


@pytest.mark.parametrize("where", ["initializer", "attribute"])
def test_sparse_tensors_read_external_data_only_from_the_models_folder(tmp_path, monkeypatch, where):
    """A sparse tensor's values can live in external data too. onnx's loader skips sparse tensors, and both its
    checker and onnxruntime (given the model as bytes) then read the location relative to the working directory:
    a file there, outside the model's folder, became the model's weights."""
    monkeypatch.chdir(tmp_path)
    bias = np.array([1000, 2000, 3000, 4000], np.float32)
    (tmp_path / "secret.bin").write_bytes(bias.tobytes())
    (tmp_path / "m").mkdir()
    p = tiny_models.save(hostile.sparse_external_bias("secret.bin", where), tmp_path / "m" / "net.onnx")
    r = CliRunner().invoke(cli, ["inspect", str(p)])
    assert r.exit_code == 1 and r.output.startswith("Error:") and r.output.count("\n") == 1, r.output
    assert "'secret.bin'" in r.output and "missing; put the data file next to the model" in r.output, r.output
    # next to the model it is read from there, and onnxruntime computes with those values
    (tmp_path / "m" / "secret.bin").write_bytes((bias / 1000).tobytes())
    m = Model(p, device="cpu")
    act = m.run_ort(m.synthetic_input(1), (m.layers[0].tensor,))[0]
    assert np.all(act.max(axis=(0, 2, 3)) < 100), act.max(axis=(0, 2, 3))


@pytest.mark.parametrize("outputs", [False, True])
def test_kernel_counts_come_from_the_weights_not_declared_shapes(tmp_path, outputs):
    """A conv weight reached through an Identity, declared [10^12, 3, 3, 3] in value_info: onnx's shape inference
    kept the claim, so ``inspect`` showed 10^12 kernels and ``diff`` ran out of memory. The weight holds 4."""
    import cv2

    path = tiny_models.save(hostile.declared_weight_shape(outputs=outputs), tmp_path / "m.onnx")
    r = CliRunner().invoke(cli, ["inspect", str(path), "--json"])
    assert r.exit_code == 0, r.output
    layers = json.loads(r.output)["layers"]
    assert [(la["channels"], la["shape"][1:]) for la in layers] == [(4, [4, 16, 16]), (6, [6, 16, 16])]
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    r = CliRunner().invoke(cli, ["diff", str(path), str(path), str(img), "--out", str(tmp_path / "d"), "--explain",
                                 "0", "--device", "cpu"])
    assert r.exit_code == 0, r.output


def test_a_kernel_count_known_only_from_a_declared_shape_is_not_trusted(tmp_path):
    """A weight reshaped at run time, declared with 10^12 kernels: the count is unknown (0) rather than the claim,
    and the commands that size statistics by it (diff, atlas) refuse the layer in one line before allocating."""
    import cv2

    path = tiny_models.save(hostile.runtime_weight(), tmp_path / "m.onnx")
    assert [la.channels for la in Model(path, device="cpu").layers] == [0]
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), np.zeros((16, 16, 3), np.uint8))
    for args in (["diff", path, path, tmp_path / "img", "--out", tmp_path / "d", "--explain", "0"],
                 ["atlas", path, tmp_path / "img", "--out", tmp_path / "a", "--explain", "0"]):
        r = CliRunner().invoke(cli, [str(a) for a in (*args, "--size", "16", "--device", "cpu")])
        assert r.exit_code == 1, r.output
        assert [ln for ln in r.output.splitlines() if ln.startswith("Error:")] == [
            f"Error: the kernel count of conv layer 0 ('conv') of {path} is not known before running: its weight is "
            "computed at run time, and kernelviz explains convs whose weights are constants; re-export the model "
            "with constant weights"], r.output
