"""scripts/evaluate.py end to end on the known-answer model (tiny, seconds): its tables and evaluation.json."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_baselines import SIDE, halves_model

ROOT = Path(__file__).resolve().parents[1]


def _evaluate():
    spec = importlib.util.spec_from_file_location("evaluate_script", ROOT / "scripts" / "evaluate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_evaluate_prints_both_tables_with_plain_and_contrastive_pairs(tmp_path, capsys):
    model = halves_model(tmp_path / "halves.onnx")
    (tmp_path / "halves.kernelviz.json").write_text(json.dumps({"size": [SIDE, SIDE], "mean": [0, 0, 0],
                                                                 "std": [1, 1, 1], "scale": True}))
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("one", "two"):
        cv2.imwrite(str(photos / f"{name}.png"), rng.integers(60, 255, (SIDE, SIDE, 3), dtype=np.uint8))
    out = tmp_path / "eval"
    ev = _evaluate()
    assert ev.main(["--model", str(model), "--images", str(photos), "--layers", "conv2", "--steps", "4",
                    "--min-corr", "0", "--out", str(out), "--device", "cpu", "--pictures", str(tmp_path / "img")]) == 0
    text = capsys.readouterr().out
    assert "| **ours** (mask) |" in text and "filter cos." in text and "contrast 12: x′_a keeps a / b" in text
    assert "- plain explanations" in text and "- contrastive explanations" in text
    assert "- contrastive pixel explanations" in text and "pixel, contrast 12: x′_a" in text
    # focus scope (the default): issue #11's quality table, one row for the layer, from explain's own folders
    row = next(line for line in text.splitlines() if line.startswith("| halves | 1 |"))
    assert "| kept | others_kept | gain | bound | gain/bound |" in text and "activation " in row
    # --tables reprints every table from evaluation.json, the focus one from the runs' folders
    assert ev.main(["--tables", str(out / "evaluation.json")]) == 0
    assert row in capsys.readouterr().out
    saved = json.loads((out / "evaluation.json").read_text())
    assert len(saved["pairs"]) == 2 and any(p["kernels"] == [0, 2] for p in saved["pairs"])
    for p in saved["pairs"]:
        assert set(p["ours_contrast"]) == {"a", "b"} and "activation" in p["baselines_contrast"]
        assert set(p["ours_pixel"]) == {"a", "b"} and "activation" in p["baselines_pixel"]
        assert (Path(p["compare_dir"]) / "compare.json").is_file()
        if p["kernels"] == [0, 2]:  # weights [1, 1, 0, 0] and [1, 0.5, 0, 0]
            assert p["filter_cosine"] == pytest.approx(1.5 / (2**0.5 * 1.25**0.5), abs=1e-6)
    assert (tmp_path / "img" / "eval_pair.png").is_file() and (tmp_path / "img" / "eval_baselines.png").is_file()


def _focus_quality():
    spec = importlib.util.spec_from_file_location("focus_quality_script", ROOT / "scripts" / "focus_quality.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("others, shown, missed", [(0.403, "0.403", True), (0.398, "0.398", False),
                                                   (0.35, "0.35", False), (0.4, "0.40", False)])
def test_the_quality_table_prints_a_median_beside_the_line_to_3_decimals(others, shown, missed):
    """RNet 2's others_kept 0.403 printed as 0.40 beside "misses others": a median that 2 decimals would print as
    the bar's line is printed to 3. The table also counts the rows showing the binary mask."""
    fq = _focus_quality()
    mask = np.zeros((8, 8))
    mask[2:4, 2:4] = 1.0
    case = {"model": "m", "layer": 1, "image": "a.png", "kernel": 0, "kept": 0.95, "others_kept": others,
            "gain": 3.5, "oracle_gain": 4.0, "ratio": 3.5 / 4.0, "seconds": 1.0, "on_reference": False,
            "binary": True, "wins": {"activation": True}, "mask": mask,
            "top3_share": 1.0, "regions": 1, "inside": 1.0, "box_area": 0.2, "image_area": 0.06, "hidden": 0.0,
            "box_shown": 0.2}
    row = fq.quality_table([case, {**case, "kernel": 1, "binary": False}]).splitlines()[-1]
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == shown and ("others" in cells[-1]) is missed
    assert cells[13] == "1"  # binary rows
