"""Checks that need a CUDA GPU (run by scripts/gpu_check.sh on a lent card; skipped elsewhere)."""

import numpy as np
import pytest
import torch

from onnx_kernelviz import ExplainConfig, Model, explain, resolve_preprocess
from onnx_kernelviz.demo import PHOTOS, default_model_path

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_auto_uses_cuda_on_both_runtimes():
    m = Model(default_model_path(), device="auto")
    assert m.devices.torch.type == "cuda"
    assert m.ort((m.layers[20].tensor,)).providers[0] == "CUDAExecutionProvider"


def test_gpu_results_match_cpu(tmp_path):
    path = default_model_path()
    pp = resolve_preprocess(path)
    cfg = ExplainConfig(steps=30, early_stop=False)
    res = {}
    for dev in ("cpu", "cuda"):
        run = explain(Model(path, device=dev), [PHOTOS / "chelsea.jpg"], 20, "top2", tmp_path / dev,
                      preprocess=pp, config=cfg)
        res[dev] = [(r["kernel"], r["kept"], r["others_kept"]) for r in run.results]
    for (ka, kept_a, oth_a), (kb, kept_b, oth_b) in zip(res["cpu"], res["cuda"]):
        assert ka == kb
        assert kept_a == pytest.approx(kept_b, abs=2e-2)
        assert oth_a == pytest.approx(oth_b, abs=2e-2)
