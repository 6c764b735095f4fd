"""The front end's contract on small graphs: safe loading, clear errors, expose/truncate, layer resolution."""

from __future__ import annotations

import os
from pathlib import Path

import corpus
import numpy as np
import onnx
import pytest
from onnx import TensorProto
from tiny_models import set_external_location

from onnx_kernelviz.errors import ModelError, UsageError
from onnx_kernelviz.frontend.expose import expose, truncate
from onnx_kernelviz.frontend.graph import GraphView
from onnx_kernelviz.frontend.layers import resolve_layer
from onnx_kernelviz.frontend.load import load_model
from onnx_kernelviz.model import Model


def three_convs() -> onnx.ModelProto:
    g = corpus.GraphBuilder()
    x = g.op("Relu", [g.conv("input", 3, 8)])
    x = g.op("Relu", [g.conv(x, 8, 8)])
    x = g.op("Relu", [g.conv(x, 8, 8)])
    return g.model([corpus.image()], [corpus.head(g, x, 8)], opset=13)


@pytest.fixture
def model_path(tmp_path) -> Path:
    return corpus.save(three_convs(), tmp_path / "m.onnx")


# Loading ------------------------------------------------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        Model(tmp_path / "nope.onnx")


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelError, match="not a file"):
        load_model(tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "e.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="empty"):
        Model(tmp_path / "e.onnx")


def test_text_file_is_not_onnx(tmp_path):
    p = tmp_path / "t.onnx"
    p.write_text("this is a README, not a model\n" * 20)
    with pytest.raises(ModelError, match="not (a readable )?(an )?ONNX model"):
        Model(p)


def test_truncated_file(model_path):
    data = model_path.read_bytes()
    model_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as err:
        Model(model_path)
    assert str(model_path) in str(err.value) and ("ONNX" in str(err.value) or "re-export" in str(err.value))


def _external(tmp_path: Path) -> tuple[Path, Path]:
    """A model folder whose weights live in ``weights.bin`` next to the model."""
    folder = tmp_path / "model"
    folder.mkdir()
    p = folder / "m.onnx"
    onnx.save(three_convs(), str(p), save_as_external_data=True, all_tensors_to_one_file=True,
              location="weights.bin", size_threshold=0)
    return p, folder / "weights.bin"


def test_external_data_inside_the_folder_loads(tmp_path):
    p, _ = _external(tmp_path)
    assert len(Model(p).layers) == 3


def test_external_data_with_dotdot_is_refused(tmp_path):
    p, data = _external(tmp_path)
    data.rename(tmp_path / "weights.bin")
    set_external_location(p, "../weights.bin")
    with pytest.raises(ModelError, match="leaves the model's folder"):
        Model(p)


def test_external_data_with_absolute_path_is_refused(tmp_path):
    p, data = _external(tmp_path)
    set_external_location(p, str(data.resolve()))
    with pytest.raises(ModelError, match="absolute path"):
        Model(p)


def test_external_data_through_symlink_is_refused(tmp_path):
    p, data = _external(tmp_path)
    outside = tmp_path / "outside.bin"
    data.rename(outside)
    (p.parent / "link.bin").symlink_to(outside)
    set_external_location(p, "link.bin")
    with pytest.raises(ModelError, match="symbolic link"):
        Model(p)


def test_external_data_through_hard_link_is_refused(tmp_path):
    p, data = _external(tmp_path)
    outside = tmp_path / "outside.bin"
    data.rename(outside)
    os.link(outside, p.parent / "hard.bin")
    set_external_location(p, "hard.bin")
    with pytest.raises(ModelError, match="hard links"):
        Model(p)


def test_missing_external_data(tmp_path):
    p, data = _external(tmp_path)
    data.unlink()
    with pytest.raises(ModelError, match="missing"):
        Model(p)


def test_no_conv_at_all(tmp_path):
    g = corpus.GraphBuilder()
    p = corpus.save(g.model([corpus.image()], [g.op("Relu", ["input"])], opset=13), tmp_path / "m.onnx")
    m = Model(p)
    assert m.layers == []
    with pytest.raises(UsageError, match="no Conv layers"):
        m.layer(0)


def test_several_image_inputs(tmp_path):
    g = corpus.GraphBuilder()
    y = g.op("Add", [g.conv("a", 3, 4), g.conv("b", 3, 4)])
    p = corpus.save(g.model([corpus.image("a"), corpus.image("b")], [y], opset=13), tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="several image inputs.*--input"):
        Model(p)


def test_integer_input(tmp_path):
    g = corpus.GraphBuilder()
    x = g.op("Cast", ["input"], to=TensorProto.FLOAT)
    y = g.op("Relu", [g.conv(x, 3, 4)])
    p = corpus.save(g.model([corpus.image(dtype=TensorProto.UINT8)], [y], opset=13), tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="no 4-D float image input.*uint8"):
        Model(p)


def test_model_file_is_never_modified(model_path):
    before = model_path.read_bytes()
    m = Model(model_path)
    m.normalized  # noqa: B018 - runs every rewrite
    m.run_ort(m.synthetic_input(batch=1), (m.layers[0].tensor,))
    assert model_path.read_bytes() == before


# expose / truncate --------------------------------------------------------------------------------------------

def test_expose_only_adds_outputs(model_path):
    original = onnx.load(str(model_path))
    snapshot = original.SerializeToString()
    m = Model(model_path)
    tensors = [m.layers[0].tensor, m.layers[2].conv_output, m.layers[2].tensor]
    out = expose(original, tensors)
    assert original.SerializeToString() == snapshot  # the input proto is untouched
    assert list(out.graph.node) == list(original.graph.node)
    assert list(out.graph.initializer) == list(original.graph.initializer)
    assert list(out.graph.input) == list(original.graph.input)
    assert [o.name for o in out.graph.output] == [o.name for o in original.graph.output] + tensors
    assert out.graph.output[-1].type.tensor_type.elem_type == TensorProto.FLOAT


def test_expose_unknown_tensor(model_path):
    with pytest.raises(UsageError, match="no tensor named"):
        expose(onnx.load(str(model_path)), ["nope"])


def test_truncate_keeps_only_the_needed_nodes(model_path):
    m = Model(model_path)
    first = m.layers[0]
    norm = m.normalized
    (t0,) = norm.names.safe([first.tensor])  # the copy's names are generated
    sub = truncate(norm.proto, norm.input_name, [t0])
    assert [n.op_type for n in sub.graph.node] == ["Conv", "Relu"]
    conv = sub.graph.node[0]
    assert {t.name for t in sub.graph.initializer} == set(conv.input[1:])
    assert [o.name for o in sub.graph.output] == [t0]
    assert [i.name for i in sub.graph.input] == [norm.input_name]
    t1 = norm.names.safe([m.layers[1].tensor])[0]
    two = truncate(norm.proto, norm.input_name, [t1, t0])
    assert [o.name for o in two.graph.output] == [t1, t0]
    assert [n.op_type for n in two.graph.node] == ["Conv", "Relu", "Conv", "Relu"]


def test_truncated_graph_matches_onnxruntime(model_path):
    m = Model(model_path)
    x = m.synthetic_input(batch=2, size=(32, 32))
    tensors = (m.layers[1].tensor,)
    np.testing.assert_allclose(m.run_torch(x, tensors)[0], m.run_ort(x, tensors)[0], rtol=1e-4, atol=1e-5)


# Layer resolution ---------------------------------------------------------------------------------------------

def test_resolve_layer_by_index_name_and_tensor(model_path):
    m = Model(model_path)
    second = m.layers[1]
    assert m.layer(1) is second and m.layer("1") is second and m.layer(" 1 ") is second
    assert m.layer(-1) is m.layers[-1]
    assert m.layer(second.name) is second
    assert m.layer(second.tensor) is second
    assert m.layer(second.conv_output) is second


@pytest.mark.parametrize("spec,message", [(3, "out of range.*0..2"), (-4, "out of range"),
                                          ("nope", "no conv layer matches 'nope'")])
def test_resolve_layer_errors(model_path, spec, message):
    m = Model(model_path)
    with pytest.raises(UsageError, match=message):
        resolve_layer(m.layers, spec)


def test_layers_of_the_original_graph(model_path):
    m = Model(model_path)
    graph = GraphView(m.loaded.proto)
    assert [la.name for la in m.layers] == [n.name for n in graph.nodes if n.op_type == "Conv"]
    assert [la.index for la in m.layers] == [0, 1, 2]
    assert all(la.chain == ("Relu",) and la.channels == 8 and la.group == 1 for la in m.layers)
    assert m.layers[0].shape == (1, 8, 32, 32)
    assert m.layers[0].to_dict()["op"] == "Conv"


def test_external_tensor_name_that_is_not_utf8(tmp_path):
    # found by the loader fuzz test: protobuf hands such a name back as bytes and onnx's reader raised TypeError
    p, _ = _external(tmp_path)
    data = p.read_bytes()
    assert b"conv_w_1" in data
    p.write_bytes(data.replace(b"conv_w_1", b"conv_w_\xff"))
    with pytest.raises(ModelError):
        Model(p)


def test_external_data_error_is_one_line(tmp_path):
    # the non-UTF-8 name makes onnx's reader raise a multi-line pybind TypeError; users get one line
    p, _ = _external(tmp_path)
    p.write_bytes(p.read_bytes().replace(b"conv_w_1", b"conv_w_\xff"))
    with pytest.raises(ModelError) as err:
        Model(p)
    assert "\n" not in str(err.value)
