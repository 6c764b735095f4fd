"""Speed features must not change results: batching, early stopping, truncation (issue: speed at scale)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from onnx_kernelviz import ExplainConfig, Model, resolve_preprocess
from onnx_kernelviz import explain as run_explain

from tiny_models import save, two_conv

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
                       config=ExplainConfig(steps=25, **cfg)).results


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
    res = _run(path, imgs, pp, tmp_path / "n", early_stop=False)
    assert all(r["steps"] == 25 for r in res if r["status"] == "ok")


def test_truncated_module_stops_at_the_layer(setup):
    path, _, _ = setup
    m = Model(path, device="cpu")
    first = m.layers[0]
    tg = m.torch_graph((first.tensor,))
    ops = [type(mod).__name__ for name, mod in tg.module.named_children() if name != "initializers"]
    assert len(ops) == 2, ops  # conv1 + relu1 only; nothing of the second conv is computed
    x = m.synthetic_input(batch=1, size=(16, 16))
    assert tg(__import__("torch").from_numpy(x))[0].shape[1] == first.channels
