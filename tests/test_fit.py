"""--fit crop|squash|pad (issue 11 item 5): photos keep their proportions by default, as torchvision's
Resize(shorter side) + CenterCrop do; squash stretches; pad letterboxes with the mean colour."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import tiny_models
from click.testing import CliRunner

from onnx_kernelviz.cli import cli
from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.io.decode import read_image
from onnx_kernelviz.io.modelinput import fit_summary, mean_colour, plan_fit, to_model_input
from onnx_kernelviz.io.preprocess import Preprocess
from onnx_kernelviz.io.presets import get_preset
from onnx_kernelviz.io.sidecar import resolve_preprocess

FAST = ["--steps", "2", "--device", "cpu"]


@pytest.mark.parametrize("fit, scaled, top, left, note", [
    ("crop", (224, 336), 0, 56, "resized 2000x3000 -> 224x336 (HxW), centre-cropped to 224x224"),
    ("pad", (149, 224), 38, 0, "resized 2000x3000 -> 149x224 (HxW), padded to 224x224 with the mean colour"),
    ("squash", (224, 224), 0, 0, "resized 2000x3000 -> 224x224 (HxW), proportions not kept (--fit squash)"),
])
def test_plan_known_answers(fit, scaled, top, left, note):
    plan = plan_fit((2000, 3000), (224, 224), fit)
    assert (plan.scaled, plan.top, plan.left, plan.note) == (scaled, top, left, note)


def test_plan_of_a_picture_that_already_fits():
    assert plan_fit((224, 224), (224, 224), "crop").note is None
    assert plan_fit((448, 448), (224, 224), "crop").note == "resized 448x448 -> 224x224 (HxW)"
    assert plan_fit((448, 448), (224, 224), "crop").kind == "resized"


def test_crop_keeps_the_same_columns_as_torchvision():
    """Known answer without any resize: a 224x448 picture whose pixel values are their column index; the centre
    crop keeps columns 112..335, where torchvision's CenterCrop (int(round((448 - 224) / 2))) puts them."""
    torchvision = pytest.importorskip("torchvision.transforms.functional")
    import torch

    cols = np.tile(np.arange(448, dtype=np.float32) / 448, (224, 1))
    rgb = np.repeat(cols[:, :, None], 3, axis=2)
    x = to_model_input(rgb, Preprocess(mean=(0.0,), std=(1.0,)), (224, 224))
    ref = torchvision.center_crop(torch.from_numpy(rgb.transpose(2, 0, 1)), [224, 224]).numpy()
    np.testing.assert_array_equal(x, ref)
    assert x[0, 0, 0] == pytest.approx(112 / 448)


def test_pad_bands_are_the_mean_colour_zero_after_normalization():
    rgb = np.full((10, 40, 3), 0.9, np.float32)
    pp = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), fit="pad")
    x = to_model_input(rgb, pp, (20, 20))
    # 5 rows of photo at rows 8..12 (top = int(round(15 / 2)) = 8, as torchvision rounds)
    assert np.allclose(x[:, :8], 0, atol=1e-6) and np.allclose(x[:, 13:], 0, atol=1e-6)
    imagenet_mean, imagenet_std = np.array([0.485, 0.456, 0.406])[:, None], np.array([0.229, 0.224, 0.225])[:, None]
    assert np.allclose(x[:, 10], (0.9 - imagenet_mean) / imagenet_std, atol=1e-5)
    caffe = get_preset("caffe")
    assert np.allclose(mean_colour(caffe), np.array([123.68, 116.779, 103.939]) / 255)  # bgr mean -> RGB


def _thirds(path: Path, h: int = 16, w: int = 48) -> Path:
    """Red | green | blue thirds, side by side."""
    bgr = np.zeros((h, w, 3), np.uint8)
    third = w // 3
    bgr[:, :third, 2] = bgr[:, third:2 * third, 1] = bgr[:, 2 * third:, 0] = 255
    cv2.imwrite(str(path), bgr)
    return path


@pytest.mark.parametrize("size", [None, "16x32"])
def test_the_fit_line_says_that_size_sets_a_size_kernelviz_chose(tmp_path, size):
    """A model with free sides and no --size: the images were fitted to an input size kernelviz chose (224x224),
    and the line naming it did not say that --size sets it. With --size given, it has nothing to add."""
    model = tiny_models.save(tiny_models.two_conv(dynamic=True), tmp_path / "dyn.onnx")
    img = _thirds(tmp_path / "thirds.png")
    args = ["explain", model, img, "--layer", "0", "--kernel", "top1", "--out", tmp_path / "out", *FAST]
    r = CliRunner().invoke(cli, [str(a) for a in args] + ([] if size is None else ["--size", size]))
    assert r.exit_code == 0, r.output
    line = next(line for line in r.output.splitlines() if "to fit the" in line)
    assert ("--size HxW sets the input size" in line) == (size is None), line


@pytest.mark.parametrize("fit, expect_line", [
    ("crop", "1 image centre-cropped to fit the 16x16 input (--fit pad keeps the whole photo"),
    ("squash", "1 image squashed to fit the 16x16 input (proportions not kept; --fit crop keeps them)"),
    ("pad", "1 image padded with the mean colour to fit the 16x16 input"),
])
def test_explain_records_and_says_what_was_done(tmp_path, fit, expect_line):
    model = tiny_models.save(tiny_models.two_conv(), tmp_path / "two.onnx")
    img = _thirds(tmp_path / "thirds.png")
    out = tmp_path / "out"
    args = ["explain", model, img, "--layer", "0", "--kernel", "top1", "--out", out, *FAST]
    r = CliRunner().invoke(cli, [str(a) for a in args] + ([] if fit == "crop" else ["--fit", fit]))
    assert r.exit_code == 0, r.output
    assert sum(expect_line in line for line in r.output.splitlines()) == 1, r.output  # one line per run
    doc = json.loads((out / "results.json").read_text())
    assert doc["settings"]["preprocess"]["fit"] == fit
    assert doc["results"][0]["image_notes"][-1] == plan_fit((16, 48), (16, 16), fit).note
    # the picture shows what the model saw
    seen = cv2.imread(str(next(out.rglob("original.png"))))[:, :, ::-1]
    assert seen.shape == (16, 16, 3)
    if fit == "crop":
        assert (seen == [0, 255, 0]).all()  # only the green third
    elif fit == "squash":
        assert (seen[:, 0] == [255, 0, 0]).all() and (seen[:, -1] == [0, 0, 255]).all()
    else:
        band = np.rint(mean_colour(Preprocess(mean=(0.485, 0.456, 0.406))) * 255)
        assert np.abs(seen[0].astype(int) - band).max() <= 1 and (seen[8, 0] == [255, 0, 0]).all()


def test_sidecar_fit_and_precedence(tmp_path):
    model = tiny_models.save(tiny_models.two_conv(), tmp_path / "net.onnx")
    (tmp_path / "net.kernelviz.json").write_text('{"fit": "pad", "preset": "raw"}')
    assert resolve_preprocess(model).fit == "pad"
    assert resolve_preprocess(model, preset="imagenet").fit == "pad"  # a preset never sets fit
    assert resolve_preprocess(model, overrides={"fit": "squash"}).fit == "squash"
    (tmp_path / "net.kernelviz.json").write_text('{"fit": "stretch"}')
    with pytest.raises(UsageError, match="invalid sidecar file .*invalid fit 'stretch': use one of crop, squash, pad"):
        resolve_preprocess(model)
    r = CliRunner().invoke(cli, ["verify", str(model)])
    assert r.exit_code == 2 and r.output.count("Error:") == 1 and "unexpected" not in r.output


def test_bad_fit_option_is_a_usage_error(tmp_path):
    model = tiny_models.save(tiny_models.two_conv(), tmp_path / "two.onnx")
    r = CliRunner().invoke(cli, ["verify", str(model), "--fit", "zoom"])
    assert r.exit_code == 2 and "'zoom' is not one of 'crop', 'squash', 'pad'" in r.output


def test_verify_reads_images_with_the_fit(tmp_path):
    model = tiny_models.save(tiny_models.two_conv(), tmp_path / "two.onnx")
    img = _thirds(tmp_path / "thirds.png", 40, 120)
    for fit in ("crop", "squash", "pad"):
        r = CliRunner().invoke(cli, ["verify", str(model), str(img), "--fit", fit])
        assert r.exit_code == 0, r.output


def test_summary_counts_each_kind():
    plans = [plan_fit((20, 40), (16, 16), "crop"), plan_fit((32, 32), (16, 16), "crop"),
             plan_fit((16, 16), (16, 16), "crop")]
    assert fit_summary(plans) == ("1 image centre-cropped, 1 image resized to fit the 16x16 input "
                                  "(--fit pad keeps the whole photo, --fit squash stretches it)")
    assert fit_summary([plan_fit((16, 16), (16, 16), "pad")]) is None


def test_read_image_fits_like_to_model_input(tmp_path):
    """Fitting on read (bounded memory) gives the model input that fitting the full picture gives."""
    rng = np.random.default_rng(1)
    path = tmp_path / "r.png"
    cv2.imwrite(str(path), rng.integers(0, 256, (60, 100, 4), dtype=np.uint8))  # with alpha
    for fit in ("crop", "squash", "pad"):
        pp = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), fit=fit)
        a = to_model_input(read_image(path, size=(20, 30), fit=fit, fill=mean_colour(pp)), pp, (20, 30))
        b = to_model_input(read_image(path), pp, (20, 30))
        np.testing.assert_allclose(a, b, atol=2e-5)
