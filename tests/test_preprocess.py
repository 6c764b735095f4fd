"""Tests for onnx_kernelviz.io.preprocess: settings, presets, CLI parsing, the sidecar file and precedence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.io.images import to_model_input
from onnx_kernelviz.io.preprocess import (
    Preprocess,
    channel_stats,
    get_preset,
    list_presets,
    load_sidecar,
    parse_layout,
    parse_size,
    parse_triplet,
    register_preset,
    resolve_preprocess,
    sidecar_path,
    valid_range,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------------------
# Preprocess

def test_defaults_and_normalization() -> None:
    pp = Preprocess(size=[224, 160], mean=[0, 1, 2], std=0.5, layout="NHWC")  # type: ignore[arg-type]
    assert pp.size == (224, 160) and pp.mean == (0.0, 1.0, 2.0) and pp.std == (0.5,) and pp.layout == "nhwc"
    assert Preprocess() == Preprocess(None, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), True, False, None)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"std": (0.2, 0.0, 0.2)}, "must be > 0"),
        ({"mean": (0.1, 0.2)}, "got 2 values"),
        ({"mean": "abc"}, "give 1 or 3 numbers"),
        ({"mean": (float("nan"),)}, "finite"),
        ({"size": (0, 10)}, "between 1 and"),
        ({"size": (224,)}, "[height, width]"),
        ({"layout": "chw"}, "nchw, nhwc"),
        ({"scale": "yes"}, "use true or false"),
    ],
)
def test_invalid_values(kwargs: dict, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        Preprocess(**kwargs)
    assert fragment in str(info.value)


def test_to_dict_is_json_and_round_trips() -> None:
    pp = Preprocess(size=(32, 48), mean=IMAGENET_MEAN, std=IMAGENET_STD, bgr=True, layout="nchw")
    d = json.loads(json.dumps(pp.to_dict()))
    assert d == {"size": [32, 48], "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                 "scale": True, "bgr": True, "layout": "nchw", "fit": "crop"}
    assert Preprocess(**d) == pp
    assert Preprocess().to_dict()["size"] is None


# ---------------------------------------------------------------------------------------------------------
# Presets

def test_required_presets() -> None:
    assert {"imagenet", "raw", "unit", "tf", "inception", "caffe"} <= set(list_presets())
    imagenet = get_preset("imagenet")
    assert imagenet.mean == IMAGENET_MEAN and imagenet.std == IMAGENET_STD and imagenet.scale and not imagenet.bgr
    raw = get_preset("raw")
    assert not raw.scale and set(raw.mean) == {0.0} and set(raw.std) == {1.0}
    unit = get_preset("unit")
    assert unit.scale and set(unit.mean) == {0.0} and set(unit.std) == {1.0}
    assert get_preset("tf") == get_preset("inception")
    assert set(get_preset("tf").mean) == {0.5} and set(get_preset("tf").std) == {0.5}
    caffe = get_preset("caffe")
    assert caffe.bgr and not caffe.scale and caffe.mean == (103.939, 116.779, 123.68) and set(caffe.std) == {1.0}
    assert all(get_preset(n).size is None and get_preset(n).layout is None for n in list_presets())
    assert all(isinstance(d, str) and d for d in list_presets().values())


def test_preset_lookup_is_case_insensitive() -> None:
    assert get_preset(" ImageNet ") == get_preset("imagenet")


def test_unknown_preset_lists_known_names() -> None:
    with pytest.raises(UsageError) as info:
        get_preset("imagenett")
    message = str(info.value)
    assert "'imagenett'" in message and "imagenet" in message and "caffe" in message and "raw" in message


def test_register_preset() -> None:
    custom = Preprocess(mean=(0.1,), std=(0.3,))
    register_preset("test-custom", custom, "a test preset")
    try:
        assert get_preset("TEST-CUSTOM") == custom and list_presets()["test-custom"] == "a test preset"
        with pytest.raises(ValueError, match="already registered"):
            register_preset("test-custom", custom, "again")
        register_preset("test-custom", get_preset("raw"), "replaced", replace_existing=True)
        assert get_preset("test-custom") == get_preset("raw")
    finally:
        from onnx_kernelviz.io import presets

        presets._PRESETS.pop("test-custom", None)
    with pytest.raises(ValueError, match="must be letters"):
        register_preset("bad name!", custom, "x")


# ---------------------------------------------------------------------------------------------------------
# Parsing

@pytest.mark.parametrize(
    "text, expected",
    [("224x224", (224, 224)), ("224", (224, 224)), ("128X96", (128, 96)), (" 32 x 48 ", (32, 48)), ("7×9", (7, 9))],
)
def test_parse_size(text: str, expected: tuple[int, int]) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "x", "224x", "a x b", "-3", "22.5", "1x2x3", "224,224"])
def test_parse_size_errors(text: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_size(text)
    message = str(info.value)
    assert f"--size {text!r}" in message and "HxW like 224x224" in message


@pytest.mark.parametrize("text", ["0x5", "5x0", "20000"])
def test_parse_size_out_of_range(text: str) -> None:
    with pytest.raises(UsageError, match="between 1 and 16384"):
        parse_size(text)


def test_parse_triplet() -> None:
    assert parse_triplet("0.485, 0.456,0.406", "mean") == IMAGENET_MEAN
    assert parse_triplet("0.5", "std") == (0.5,)
    assert parse_triplet("-1,0,1e2", "mean") == (-1.0, 0.0, 100.0)


@pytest.mark.parametrize(
    "text, name, fragments",
    [
        ("1,2", "mean", ["--mean '1,2'", "got 2 values", "give 1 (all channels) or 3"]),
        ("a,b,c", "mean", ["--mean 'a,b,c'", "comma-separated numbers"]),
        ("0.2,0,0.3", "std", ["--std '0.2,0,0.3'", "must be > 0"]),
        ("-1", "std", ["must be > 0"]),
        ("nan", "mean", ["finite"]),
        ("", "std", ["--std ''", "comma-separated numbers"]),
        ("1,2,3,4", "std", ["got 4 values"]),
    ],
)
def test_parse_triplet_errors(text: str, name: str, fragments: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        parse_triplet(text, name)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_parse_layout() -> None:
    assert parse_layout("NCHW") == "nchw" and parse_layout(" nhwc") == "nhwc"
    with pytest.raises(UsageError, match="invalid layout 'hwc'"):
        parse_layout("hwc")


# ---------------------------------------------------------------------------------------------------------
# Sidecar

def write_sidecar(model: Path, content: object, *, raw: bool = False) -> Path:
    path = sidecar_path(model)
    path.write_text(content if raw else json.dumps(content), encoding="utf-8")  # type: ignore[arg-type]
    return path


def test_sidecar_path() -> None:
    assert sidecar_path(Path("models/net.onnx")) == Path("models/net.kernelviz.json")
    assert sidecar_path("a.b/net") == Path("a.b/net.kernelviz.json")


def test_missing_sidecar_is_empty(tmp_path: Path) -> None:
    assert load_sidecar(tmp_path / "net.onnx") == {}


def test_valid_sidecar(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    write_sidecar(model, {"size": [96, 128], "mean": [0.5, 0.5, 0.5], "std": 0.25, "scale": False,
                          "bgr": True, "layout": "NHWC", "preset": "Caffe"})
    assert load_sidecar(model) == {"size": (96, 128), "mean": (0.5, 0.5, 0.5), "std": (0.25,), "scale": False,
                                   "bgr": True, "layout": "nhwc", "preset": "caffe"}


def test_sidecar_square_size_and_nulls(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    write_sidecar(model, {"size": 64, "layout": None})
    assert load_sidecar(model) == {"size": (64, 64)}


def test_sidecar_alternative_name(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    (tmp_path / "net.onnx.kernelviz.json").write_text('{"preset": "raw"}')
    assert load_sidecar(model) == {"preset": "raw"}
    write_sidecar(model, {"preset": "tf"})
    with pytest.raises(UsageError, match="keep one sidecar file per model"):
        load_sidecar(model)


def test_sidecar_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    path = write_sidecar(model, '{\n  "preset": "raw",\n}', raw=True)
    with pytest.raises(UsageError) as info:
        load_sidecar(model)
    message = str(info.value)
    assert str(path) in message and "line 3" in message and "fix it or delete the file" in message


@pytest.mark.parametrize(
    "content, fragments",
    [
        ({"mena": [0, 0, 0]}, ["unknown key(s) 'mena'", "allowed keys: size, mean, std"]),
        ([1, 2, 3], ["expected a JSON object"]),
        ({"scale": "yes"}, ["invalid scale 'yes'", "true or false"]),
        ({"bgr": 1}, ["invalid bgr 1"]),
        ({"size": [224]}, ["invalid size [224]"]),
        ({"size": [224.0, 224]}, ["invalid size"]),
        ({"size": [True, 3]}, ["invalid size"]),
        ({"mean": "0.5"}, ["invalid mean"]),
        ({"std": [1, 0, 1]}, ["must be > 0"]),
        ({"layout": "chw"}, ["invalid layout 'chw'"]),
        ({"layout": 4}, ["invalid layout 4"]),
        ({"preset": "nope"}, ["unknown preset 'nope'"]),
        ({"preset": 3}, ["invalid preset 3"]),
    ],
)
def test_sidecar_bad_content_names_file(tmp_path: Path, content: object, fragments: list[str]) -> None:
    model = tmp_path / "net.onnx"
    path = write_sidecar(model, content)
    with pytest.raises(UsageError) as info:
        load_sidecar(model)
    message = str(info.value)
    assert message.startswith(f"invalid sidecar file {path}")
    for fragment in fragments:
        assert fragment in message


def test_sidecar_not_utf8(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    sidecar_path(model).write_bytes(b'{"preset": "\xff"}')
    with pytest.raises(UsageError, match="not UTF-8"):
        load_sidecar(model)


# ---------------------------------------------------------------------------------------------------------
# resolve_preprocess: overrides > CLI preset > sidecar (explicit > its preset) > imagenet

def test_defaults_are_imagenet(tmp_path: Path) -> None:
    assert resolve_preprocess(tmp_path / "net.onnx") == get_preset("imagenet")
    assert resolve_preprocess(None) == get_preset("imagenet")


def test_sidecar_preset_then_its_explicit_values(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    write_sidecar(model, {"preset": "caffe", "mean": [1, 2, 3], "size": [64, 64], "layout": "nhwc"})
    pp = resolve_preprocess(model)
    assert pp.mean == (1.0, 2.0, 3.0)  # sidecar value over the sidecar's preset
    assert pp.bgr and not pp.scale  # the rest of the sidecar's preset
    assert pp.size == (64, 64) and pp.layout == "nhwc"


def test_cli_preset_beats_sidecar_but_keeps_its_size(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    write_sidecar(model, {"preset": "caffe", "mean": [1, 2, 3], "size": [64, 64]})
    pp = resolve_preprocess(model, preset="tf")
    assert pp.mean == (0.5,) and pp.std == (0.5,) and pp.scale and not pp.bgr
    assert pp.size == (64, 64)  # presets say nothing about the input size


def test_overrides_beat_everything(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    write_sidecar(model, {"preset": "caffe", "size": [64, 64], "layout": "nchw"})
    pp = resolve_preprocess(
        model,
        preset="raw",
        overrides={"size": "32x16", "mean": "0.1,0.2,0.3", "std": (2.0,), "scale": True, "bgr": None,
                   "layout": "NHWC"},
    )
    assert pp == Preprocess(size=(32, 16), mean=(0.1, 0.2, 0.3), std=(2.0,), scale=True, bgr=False, layout="nhwc")


def test_none_overrides_are_ignored(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    write_sidecar(model, {"scale": False, "bgr": True})
    pp = resolve_preprocess(model, overrides={k: None for k in ("size", "mean", "std", "scale", "bgr", "layout")})
    assert not pp.scale and pp.bgr and pp.mean == IMAGENET_MEAN


def test_bad_overrides(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown preprocessing option 'colour'"):
        resolve_preprocess(tmp_path / "net.onnx", overrides={"colour": "red"})
    with pytest.raises(UsageError, match="--std '0'"):
        resolve_preprocess(tmp_path / "net.onnx", overrides={"std": "0"})
    with pytest.raises(UsageError, match="unknown preset 'nope'"):
        resolve_preprocess(tmp_path / "net.onnx", preset="nope")


def test_bad_sidecar_surfaces_through_resolve(tmp_path: Path) -> None:
    model = tmp_path / "net.onnx"
    path = write_sidecar(model, "{", raw=True)
    with pytest.raises(UsageError, match=str(path)):
        resolve_preprocess(model, preset="raw")


# ---------------------------------------------------------------------------------------------------------
# channel_stats / valid_range

def test_valid_range_imagenet() -> None:
    low, high = valid_range(get_preset("imagenet"))
    assert low.shape == (3,) and high.shape == (3,) and low.dtype == np.float32
    assert np.allclose(low, -np.array(IMAGENET_MEAN) / IMAGENET_STD)
    assert np.allclose(high, (1 - np.array(IMAGENET_MEAN)) / IMAGENET_STD)


def test_valid_range_raw_caffe_tf() -> None:
    low, high = valid_range(get_preset("raw"))
    assert np.allclose(low, 0) and np.allclose(high, 255)
    low, high = valid_range(get_preset("caffe"))  # model order is B, G, R and so is the mean
    assert np.allclose(low, [-103.939, -116.779, -123.68]) and np.allclose(high, [151.061, 138.221, 131.32])
    low, high = valid_range(get_preset("tf"))
    assert np.allclose(low, -1) and np.allclose(high, 1)


def test_valid_range_gray_model() -> None:
    low, high = valid_range(get_preset("unit"), channels=1)
    assert low.shape == (1,) and low[0] == 0 and high[0] == 1
    mean, std = channel_stats(get_preset("imagenet"), 1)
    assert np.allclose(mean, np.mean(IMAGENET_MEAN)) and np.allclose(std, np.mean(IMAGENET_STD))


def test_channel_stats_mismatch() -> None:
    with pytest.raises(UsageError, match="--std has 3 values but the model input has 4 channels"):
        channel_stats(Preprocess(mean=(0.0,)), 4)


@settings(max_examples=50, deadline=None)
@given(
    mean=st.tuples(*[st.floats(-200, 200)] * 3),
    std=st.tuples(*[st.floats(0.01, 100)] * 3),
    scale=st.booleans(),
    bgr=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_real_images_stay_in_valid_range(mean: tuple, std: tuple, scale: bool, bgr: bool, seed: int) -> None:
    pp = Preprocess(mean=mean, std=std, scale=scale, bgr=bgr)
    rgb = np.random.default_rng(seed).random((4, 5, 3), dtype=np.float32)
    rgb[0, 0], rgb[0, 1] = 0.0, 1.0  # black and white pixels reach the bounds
    x = to_model_input(rgb, pp, (4, 5))
    low, high = valid_range(pp)
    tol = 1e-4 * np.maximum(1.0, np.abs(np.concatenate([low, high])).max())
    assert np.all(x >= low[:, None, None] - tol) and np.all(x <= high[:, None, None] + tol)
    assert np.allclose(x[:, 0, 0], low, atol=tol) and np.allclose(x[:, 0, 1], high, atol=tol)
