"""Checks that need a CUDA GPU (run by scripts/gpu_check.sh on a lent card; skipped elsewhere)."""

import pytest
import torch

from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess
from onnx_kernelviz.pipeline.demo import PHOTOS, default_model_path

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_auto_uses_cuda_for_torch():
    m = Model(default_model_path(), device="auto")
    assert m.devices.torch.type == "cuda"
    # onnxruntime gets exactly what it really ran with, CUDA or (a CPU-only onnxruntime) the CPU
    assert m.ort((m.layers[20].tensor,)).providers[0] in m.devices.ort_providers[:1]


def test_auto_uses_cuda_for_onnxruntime():
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip(f"this onnxruntime ({onnxruntime.__version__}) has no CUDAExecutionProvider; "
                    "install onnxruntime-gpu")
    m = Model(default_model_path(), device="auto")
    assert m.ort((m.layers[20].tensor,)).providers[0] == "CUDAExecutionProvider"


def test_auto_batch_size_uses_the_card(tmp_path):
    from onnx_kernelviz.runtime import cuda_free_bytes, fit_batch, probe_row_bytes

    m = Model(default_model_path(), device="cuda")
    la = m.layers[-1]
    tg = m.torch_graph((la.tensor,))
    row = probe_row_bytes(lambda t: tg(t)[0], torch.zeros(1, 3, 224, 224, device="cuda"))
    # EfficientNet-Lite0 at 224x224 keeps tens of MiB of activations per image for the backward pass
    assert 2**20 < row < 2**30
    assert fit_batch(1280, cuda_free_bytes(torch.device("cuda")), row) > 16


def test_gpu_results_match_cpu(tmp_path):
    path = default_model_path()
    pp = resolve_preprocess(path)
    cfg = ExplainConfig(steps=30, early_stop=False)
    res = {}
    for dev in ("cpu", "cuda"):
        run = explain(Model(path, device=dev), [PHOTOS / "chelsea.jpg"], 20, "top2", tmp_path / dev,
                      preprocess=pp, config=cfg)
        res[dev] = [(r.kernel, r.metrics.kept, r.metrics.others_kept) for r in run.results]
    for (ka, kept_a, oth_a), (kb, kept_b, oth_b) in zip(res["cpu"], res["cuda"]):
        assert ka == kb
        assert kept_a == pytest.approx(kept_b, abs=2e-2)
        assert oth_a == pytest.approx(oth_b, abs=2e-2)
