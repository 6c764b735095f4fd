"""The front end on every kind of model users bring: inspect lists the convs, verify agrees with onnxruntime.

Tiny graphs built in code reproduce one exporter quirk each (fast); torchvision architectures exported by both
torch exporters and the shipped default model are marked ``slow`` (they still run in CI).
"""

from __future__ import annotations

import corpus
import numpy as np
import pytest

from onnx_kernelviz.errors import ConversionError
from onnx_kernelviz.measure.verify import DEFAULT_TOLERANCE, FP16_TOLERANCE, verify_model
from onnx_kernelviz.model import Model

#: Every layer of every corpus model must agree with onnxruntime this closely (fp32).
PARITY = 1e-4


def check_model(m: Model, convs: int, chains: dict[int, tuple[str, ...]], tolerance: float = PARITY) -> None:
    """``inspect`` finds ``convs`` layers with the given chains; ``verify`` passes on all of them at batch 2 and 1."""
    assert len(m.layers) == convs, [la.name for la in m.layers]
    for i, chain in chains.items():
        assert m.layers[i].chain == chain, (i, m.layers[i])
    for la in m.layers:
        assert la.channels > 0, la
        if not la.chain:
            assert la.tensor == la.conv_output
    report = verify_model(m)
    worst = max(m.layers, key=lambda la: report.layers[la.index].parity_rel)
    assert report.ok, report.first_failure
    assert report.layers[worst.index].parity_rel <= tolerance, (worst, report.layers[worst.index])
    # verify fed a batch of 2; the torch copy's outputs must really have batch 2 (not broadcast from 1).
    x = m.synthetic_input(batch=2)
    for out in m.run_torch(x, (m.layers[0].tensor, m.layers[-1].tensor)):
        assert out.shape[0] == 2


@pytest.mark.parametrize("name", list(corpus.TRAPS))
def test_trap(name, tmp_path):
    trap = corpus.TRAPS[name]
    m = Model(corpus.save(trap.build(), tmp_path / f"{name}.onnx"))
    check_model(m, trap.convs, trap.chains, trap.tolerance)


def test_activation_chains_end_where_the_contract_says(tmp_path):
    m = Model(corpus.save(corpus.paddle_constants(), tmp_path / "m.onnx"))
    bn_relu, silu, bias_relu = m.layers
    assert m.graph.producer[bn_relu.tensor].op_type == "Relu"          # Conv -> BN -> Relu: the Relu output
    assert m.graph.producer[silu.tensor].op_type == "Mul"              # SiLU as Sigmoid * Mul: the Mul output
    assert m.graph.producer[bias_relu.tensor].op_type == "Relu"        # Conv -> Add(bias) -> Relu


def test_nhwc_input_is_detected(tmp_path):
    m = Model(corpus.save(corpus.nhwc_transpose(), tmp_path / "m.onnx"))
    assert m.loaded.input.layout == "nhwc" and m.channels == 3 and m.input_size() == (32, 32)


def test_old_opset_graphs_are_upgraded(tmp_path):
    m = Model(corpus.save(corpus.old_opset(7)(), tmp_path / "m.onnx"))
    assert m.loaded.opset == 7
    assert m.normalized.opset == 13 and m.normalized.proto.ir_version >= 7


def test_fp16_models_get_the_fp16_tolerance(tmp_path):
    fp16 = verify_model(Model(corpus.save(corpus.fp16(False)(), tmp_path / "a.onnx")))
    storage = verify_model(Model(corpus.save(corpus.fp16_storage(), tmp_path / "b.onnx")))
    assert fp16.tolerance == FP16_TOLERANCE and fp16.ok
    assert storage.tolerance == DEFAULT_TOLERANCE and storage.ok  # fp16 storage, fp32 compute


def test_resize_with_constant_batch_1_sizes_runs_at_batch_2(tmp_path):
    m = Model(corpus.save(corpus.new_opset(18)(), tmp_path / "m.onnx"))
    assert any("Resize" in n for n in m.normalized.notes)
    assert verify_model(m).ok


@pytest.mark.parametrize("name", list(corpus.UNCONVERTIBLE))
def test_unconvertible_model_names_the_op(name, tmp_path):
    build, words = corpus.UNCONVERTIBLE[name]
    m = Model(corpus.save(build(), tmp_path / f"{name}.onnx"))
    assert len(m.layers) == 2
    with pytest.raises(ConversionError) as err:
        verify_model(m)
    for w in words:
        assert w in str(err.value), (w, str(err.value))


def test_unconvertible_op_after_the_last_conv_is_cut_away(tmp_path):
    m = Model(corpus.save(corpus.contrib_op_after_convs(), tmp_path / "m.onnx"))
    report = verify_model(m)
    assert report.ok and max(la.parity_rel for la in report.layers) <= PARITY


@pytest.mark.slow
@pytest.mark.parametrize("name,exporter", corpus.TORCHVISION_RUNS,
                         ids=[f"{n}-{e}" for n, e in corpus.TORCHVISION_RUNS])
def test_torchvision(name, exporter, torchvision_export):
    path = torchvision_export(name, exporter)
    spec = corpus.TORCHVISION[name]
    check_model(Model(path), spec.convs, corpus.expected_chains(name, exporter))


@pytest.mark.slow
def test_default_model():
    m = Model(corpus.DEFAULT_MODEL)
    # EfficientNet-Lite0: ReLU6 (Clip) everywhere, no SE blocks; 16 MBConv blocks + stem + head conv.
    check_model(m, 49, {0: ("Clip",), 1: ("Clip",), 2: (), 48: ("Clip",)})
    assert np.all([la.shape is not None for la in m.layers])


def _ort_optimized(level: str, path) -> str:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    so.optimized_model_filepath = str(path)
    so.log_severity_level = 3
    ort.InferenceSession(str(corpus.DEFAULT_MODEL), so, providers=["CPUExecutionProvider"])
    return str(path)


@pytest.mark.slow
def test_default_model_saved_after_onnxruntime_optimizations(tmp_path):
    """The "deployed" file is sometimes the one onnxruntime saved: 33 of its 49 convs become FusedConv + Clip."""
    m = Model(_ort_optimized("ORT_ENABLE_EXTENDED", tmp_path / "extended.onnx"))
    assert sum(la.op == "FusedConv" for la in m.layers) == 33
    check_model(m, 49, {0: ("Clip (fused)",), 2: (), 48: ("Clip (fused)",)})


@pytest.mark.slow
def test_cpu_specific_onnxruntime_layout_is_refused_with_a_remedy(tmp_path):
    from click.testing import CliRunner

    from onnx_kernelviz.cli import cli

    path = _ort_optimized("ORT_ENABLE_ALL", tmp_path / "all.onnx")
    res = CliRunner().invoke(cli, ["inspect", path])
    assert res.exit_code == 1 and "com.microsoft.nchwc" in res.output and "ORT_ENABLE_EXTENDED" in res.output
