"""Speed features must not change results: batching, early stopping, truncation (issue: speed at scale)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from tiny_models import save, two_conv

from onnx_kernelviz import ExplainConfig, Model, resolve_preprocess
from onnx_kernelviz import explain as run_explain

KEYS = ("kept", "fidelity", "others_kept", "specificity_after", "mask_area")


@pytest.fixture()
def setup(tmp_path):
    path = save(two_conv(), tmp_path / "net.onnx")
    rng = np.random.default_rng(1)
    imgs = []
    for i in range(2):
        p = tmp_path / f"img{i}.png"
        cv2.imwrite(str(p), (rng.uniform(0, 255, (16, 16, 3))).astype(np.uint8))
        imgs.append(p)
    return path, imgs, resolve_preprocess(path)


def _run(path, imgs, pp, out, **cfg):
    return run_explain(Model(path, device="cpu"), imgs, 1, "all", out, preprocess=pp,
                       config=ExplainConfig(steps=25, **cfg)).results_json()


def test_batched_equals_one_by_one(setup, tmp_path):
    path, imgs, pp = setup
    one = _run(path, imgs, pp, tmp_path / "one", batch_size=1)
    many = _run(path, imgs, pp, tmp_path / "many", batch_size=12)
    assert [(r["image"], r["kernel"], r["status"]) for r in one] == \
        [(r["image"], r["kernel"], r["status"]) for r in many]
    for a, b in zip(one, many):
        if a["status"] != "ok":
            continue
        assert a["steps"] == b["steps"]
        for key in KEYS:
            assert a[key] == pytest.approx(b[key], abs=1e-4), key


def test_no_early_stop_runs_exactly_steps(setup, tmp_path):
    path, imgs, pp = setup
    res = _run(path, imgs, pp, tmp_path / "n", early_stop=False, focus_small_box=0)
    assert all(r["steps"] == 25 for r in res if r["status"] == "ok")


def test_a_small_box_runs_the_binary_mask_as_well_within_steps(setup, tmp_path, monkeypatch):
    """The 16x16 images' boxes are small: each row runs the soft stages and the binary mask, each at most
    ``steps``; a row reports the steps of the one its x' shows, and says which one that is. (Which rows take the
    binary mask is tests/test_small_box.py's; here every other row does, so that both kinds are counted.)"""
    import onnx_kernelviz.pipeline.batch as batch

    monkeypatch.setattr(batch, "small_takes", lambda small, *a, **k: torch.arange(len(small[0])) % 2 == 0)
    path, imgs, pp = setup
    res = [r for r in _run(path, imgs, pp, tmp_path / "n", early_stop=False) if r["status"] == "ok"]
    assert res and all(r["steps"] == 25 for r in res)
    assert any(r["focus"]["binary_mask"] for r in res) and not all(r["focus"]["binary_mask"] for r in res)
    assert all(isinstance(r["focus"]["binary_mask"], bool) for r in res)


def test_truncated_module_stops_at_the_layer(setup):
    path, _, _ = setup
    m = Model(path, device="cpu")
    first = m.layers[0]
    tg = m.torch_graph((first.tensor,))
    ops = [type(mod).__name__ for name, mod in tg.module.named_children() if name != "initializers"]
    assert len(ops) == 2, ops  # conv1 + relu1 only; nothing of the second conv is computed
    x = m.synthetic_input(batch=1, size=(16, 16))
    assert tg(__import__("torch").from_numpy(x))[0].shape[1] == first.channels


def test_results_json_is_not_rewritten_after_every_result(setup, tmp_path, monkeypatch):
    """Rewriting results.json per result made a 1280-kernel layer spend longer in JSON than in optimizing."""
    import onnx_kernelviz.pipeline.explain as explainer
    import onnx_kernelviz.pipeline.journal as journal

    path, imgs, pp = setup
    writes = []
    real = journal.write_json
    monkeypatch.setattr(journal, "write_json", lambda p, obj: (writes.append(len(obj["results"])), real(p, obj)))
    monkeypatch.setattr(explainer, "SAVE_EVERY", 1e9)  # no clock in the test: only the first and the final save
    res = _run(path, imgs, pp, tmp_path / "w", batch_size=2)
    n_ok = sum(r["status"] == "ok" for r in res)
    assert n_ok >= 4  # several batches ran
    # the empty start, then only the final save, which holds everything (not one save per result)
    assert writes == [sum(r["status"] != "ok" for r in res), len(res)]


def test_results_json_is_saved_after_each_batch_when_due(setup, tmp_path, monkeypatch):
    import onnx_kernelviz.pipeline.explain as explainer
    import onnx_kernelviz.pipeline.journal as journal

    path, imgs, pp = setup
    writes = []
    real = journal.write_json
    monkeypatch.setattr(journal, "write_json", lambda p, obj: (writes.append(len(obj["results"])), real(p, obj)))
    monkeypatch.setattr(explainer, "SAVE_EVERY", 0.0)
    res = _run(path, imgs, pp, tmp_path / "w", batch_size=2)
    skipped = sum(r["status"] != "ok" for r in res)
    n_ok = len(res) - skipped
    # start, one save per batch of 2, and the final save
    assert writes == [skipped] + [skipped + min(2 * (i + 1), n_ok) for i in range((n_ok + 1) // 2)] + [len(res)]


def test_results_json_is_saved_when_a_run_is_interrupted(setup, tmp_path, monkeypatch):
    import json

    import onnx_kernelviz.pipeline.explain as explainer

    path, imgs, pp = setup
    real, calls = explainer._explain_bounded, []

    def interrupted(*a, **k):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(explainer, "_explain_bounded", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _run(path, imgs, pp, tmp_path / "i", batch_size=2)
    saved = json.loads((tmp_path / "i" / "results.json").read_text())["results"]
    assert sum(r["status"] == "ok" for r in saved) == 2  # the finished batch survives for --resume


def test_fit_batch_fills_half_the_free_memory_within_bounds():
    from onnx_kernelviz.runtime import CUDA_MAX_BATCH, fit_batch

    gib = 2**30
    assert fit_batch(1000, 80 * gib, gib) == 40  # half of 80 GiB at 1 GiB a row
    assert fit_batch(10, 80 * gib, gib) == 10  # never more rows than there is work
    assert fit_batch(10_000, 10_000 * gib, gib) == CUDA_MAX_BATCH
    assert fit_batch(1000, gib, 4 * gib) == 1  # even a row that does not fit is tried (then reported if OOM)


def test_exact_fp32_turns_tensorfloat32_off():
    """TF32 moved CUDA activations 2-3e-3 from onnxruntime's (H200), failing the parity check."""
    import torch

    from onnx_kernelviz.runtime import exact_fp32

    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        exact_fp32()
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def test_a_batch_that_runs_out_of_gpu_memory_is_halved_until_it_fits():
    import torch

    from onnx_kernelviz.errors import KernelvizError
    from onnx_kernelviz.runtime import halve_on_oom

    tried = []

    def run(lo: int, hi: int) -> list[int]:
        tried.append((lo, hi))
        if hi - lo > 2:  # only two rows fit at once
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return list(range(lo, hi))

    assert halve_on_oom(run, 7) == list(range(7))  # every row once, in order
    assert tried == [(0, 7), (0, 3), (0, 1), (1, 3), (3, 7), (3, 5), (5, 7)]

    def never(lo: int, hi: int) -> list[int]:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(KernelvizError, match="single explanation"):
        halve_on_oom(never, 3)
