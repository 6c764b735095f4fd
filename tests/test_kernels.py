"""--kernel SPEC and --top-images: which (image, kernel) pairs get explained."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import save, two_conv

from onnx_kernelviz.cli import cli
from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.method.kernels import parse_kernel_spec, select_items

ENERGY = np.array([[5.0, 0.0, 1.0],
                   [1.0, 3.0, 2.0],
                   [0.5, 4.0, 6.0]])


def test_specs():
    assert parse_kernel_spec("7", 10) == ("list", [7])
    assert parse_kernel_spec(" 3,7,3 ", 10) == ("list", [3, 7])
    assert parse_kernel_spec("TOP5", 3) == ("top", 3)
    assert parse_kernel_spec("all", 3) == ("all", None)
    for bad, msg in (("12", "0..9"), ("x", "kernel spec"), ("top0", "N >= 1"), (",", "empty")):
        with pytest.raises(UsageError, match=msg):
            parse_kernel_spec(bad, 10)


def test_topn_is_per_image():
    assert select_items("top1", ENERGY) == [(0, 0), (1, 1), (2, 2)]
    assert select_items("1", ENERGY) == [(0, 1), (1, 1), (2, 1)]


def test_top_images_picks_where_each_kernel_fires_most():
    assert select_items("0,2", ENERGY, top_images=2) == [(0, 0), (1, 0), (1, 2), (2, 2)]
    # topN with --top-images: the N kernels with the highest peak over the images
    assert select_items("top1", ENERGY, top_images=1) == [(2, 2)]


def test_cli_top_images_over_a_folder(tmp_path):
    model = save(two_conv(), tmp_path / "net.onnx")
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(4):
        cv2.imwrite(str(folder / f"p{i}.png"), rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["explain", str(model), str(folder), "--layer", "1", "--kernel", "0,1",
                                 "--top-images", "2", "--steps", "3", "--out", str(out)])
    assert r.exit_code == 0, r.output
    results = json.loads((out / "results.json").read_text())["results"]
    assert [res["kernel"] for res in results] == [0, 0, 1, 1]
    assert len({res["image"] for res in results if res["kernel"] == 0}) == 2
