"""The models people deploy (issue #13): int8 and fp16 builds, odd input shapes, old graphs.

A second part of the corpus (``tests/corpus.py`` holds the exporter traps). Every entry is built in code:

* :func:`tiny_float` — a small conv net (ReLU, ReLU6, depthwise, a residual Add, SiLU), the float model that the
  builds start from.
* :data:`BUILDS` — what deployment tools make of it, with the tools themselves: onnxruntime.quantization's static
  QDQ (``Conv`` between QuantizeLinear/DequantizeLinear) and QOperator (``QLinearConv``) formats, its dynamic
  quantization (``ConvInteger``), and onnxruntime's float16 converter (fp16 weights and compute, fp32 at the
  boundary). Builds take a fraction of a second and are cached per session (``tests/conftest.py``).
* :data:`SHAPES` — graphs with the shapes and quirks of models found in pip packages: a text recognizer (fixed
  height 48, free width), SAME_UPPER/SAME_LOWER convs, a Caffe2-era IR 3 graph whose weights come from
  ConstantOfShape of initializers listed as inputs, a BatchNormalization whose input rank inference cannot find.

:func:`quantize_model` also quantizes the shipped default model for the slow tests and docs/QUANTIZED.md.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from corpus import F32, GraphBuilder, head, image
from onnx import helper, numpy_helper

#: The kinds of build :func:`build` makes from a float model.
KINDS = ("qdq", "qoperator", "dynamic", "fp16")


def tiny_float(size: int = 32) -> onnx.ModelProto:
    """Conv-ReLU, Conv-ReLU6, depthwise Conv-ReLU6, a residual Add, Conv-SiLU, head; batch symbolic, fixed HxW."""
    g = GraphBuilder(seed=3)
    relu6 = lambda x: g.op("Clip", [x, g.const(np.array(0, np.float32), "lo"),  # noqa: E731
                                    g.const(np.array(6, np.float32), "hi")])
    x = g.op("Relu", [g.conv("input", 3, 8, stride=2)])
    x = relu6(g.conv(x, 8, 16, k=1))
    y = relu6(g.conv(x, 16, 16, group=16))
    y = g.conv(y, 16, 16, k=1)
    x = g.op("Add", [x, y])
    x = g.silu(g.conv(x, 16, 16))
    return g.model([image(shape=("N", 3, size, size))], [head(g, x, 16)], opset=13)


#: convs per tiny build, and what inspect must call them
TINY_CONVS = 5


def smooth_images(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """``n`` smooth RGB pictures ``[n, H, W, 3]`` in [0, 1] (the package's own, which verify uses without an image):
    calibration data must look like what the model sees, not noise."""
    from onnx_kernelviz.io.synthetic import smooth_pictures

    return smooth_pictures(n, size, seed)


def imagenet_inputs(n: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """:func:`smooth_images` through ImageNet preprocessing, ``[n, 3, H, W]`` float32 (calibration data)."""
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return ((smooth_images(n, size, seed) - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)


def quantize_model(src: str | os.PathLike[str], dst: str | os.PathLike[str], kind: str,
                   size: tuple[int, int] = (32, 32), calibration: int | np.ndarray = 4) -> Path:
    """``src`` -> ``dst`` with onnxruntime's own tools: ``qdq``/``qoperator`` (static, calibrated on
    ``calibration``: model inputs ``[N, 3, H, W]``, or that many :func:`imagenet_inputs`), ``dynamic`` (ConvInteger)
    or ``fp16`` (onnxruntime's float16 converter, keep_io_types: fp32 input and output). Reuses ``dst`` when it
    exists."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    dst = Path(dst)
    if dst.exists():
        return dst
    tmp = dst.with_suffix(".tmp.onnx")
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            data = imagenet_inputs(calibration, size) if isinstance(calibration, int) else calibration
            self.data = iter([{name: x[None]} for x in data])

        def get_next(self):
            return next(self.data, None)

    logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs advice about pre-processing
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if kind in ("qdq", "qoperator"):
            fmt = QuantFormat.QDQ if kind == "qdq" else QuantFormat.QOperator
            quantize_static(str(src), str(tmp), Reader(), quant_format=fmt, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, per_channel=kind == "qoperator")
        elif kind == "dynamic":
            quantize_dynamic(str(src), str(tmp), weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv"])
        elif kind == "fp16":
            from onnxruntime.transformers.float16 import convert_float_to_float16

            onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=True), str(tmp))
        else:
            raise ValueError(f"unknown build {kind!r}; one of {KINDS}")
    tmp.replace(dst)
    return dst


@dataclass(frozen=True)
class Build:
    """One deployment build of :func:`tiny_float`: the op inspect must report for its layers."""

    kind: str
    op: str
    why: str


BUILDS: dict[str, Build] = {b.kind: b for b in [
    Build("qdq", "Conv", "onnxruntime.quantization static QDQ: Conv between QuantizeLinear/DequantizeLinear"),
    Build("qoperator", "QLinearConv", "onnxruntime.quantization static QOperator: QLinearConv, QLinearAdd"),
    Build("dynamic", "ConvInteger", "onnxruntime.quantization dynamic: DynamicQuantizeLinear + ConvInteger"),
    Build("fp16", "Conv", "onnxruntime's float16 converter (keep_io_types): fp16 weights and compute"),
]}


def build(kind: str, out_dir: str | os.PathLike[str]) -> Path:
    """The ``kind`` build of :func:`tiny_float` in ``out_dir`` (made once)."""
    out = Path(out_dir)
    src = out / "tiny_float.onnx"
    if not src.exists():
        onnx.save(tiny_float(), str(src))
    return quantize_model(src, out / f"tiny_{kind}.onnx", kind)


# Shapes and graphs ---------------------------------------------------------------------------------------------

def text_recognizer() -> onnx.ModelProto:
    """A CRNN-style recognizer: input [N, 3, 48, W]; convs and poolings bring the height to 1 (pools of (2, 1)
    keep the width), Squeeze(2) -> [N, C, W/4] -> Transpose -> MatMul: per-column class scores for CTC."""
    g = GraphBuilder(seed=5)
    x = g.op("Relu", [g.conv("input", 3, 8)])                                            # 48 x W
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])                        # 24 x W/2
    x = g.op("Relu", [g.bn(g.conv(x, 8, 16), 16)])
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])                        # 12 x W/4
    x = g.op("Relu", [g.conv(x, 16, 16)])
    x = g.op("MaxPool", [x], kernel_shape=[2, 1], strides=[2, 1])                        # 6 x W/4
    x = g.op("Relu", [g.conv(x, 16, 16)])
    x = g.op("MaxPool", [x], kernel_shape=[6, 1], strides=[6, 1])                        # 1 x W/4
    x = g.op("Squeeze", [x, g.const(np.array([2], np.int64), "axis")])                  # [N, 16, W/4]
    x = g.op("Transpose", [x], perm=[0, 2, 1])
    w = g.const((0.1 * g.rng.standard_normal((16, 11))).astype(np.float32), "ctc_w")
    y = g.op("MatMul", [x, w])
    m = g.model([image(shape=("N", 3, 48, "W"))], [y], opset=13)
    return m


def same_padding(fixed: bool = True) -> onnx.ModelProto:
    """TensorFlow-style convs: auto_pad SAME_UPPER and SAME_LOWER, stride 1 and 2 (asymmetric pads)."""
    g = GraphBuilder(seed=6)
    x = "input"
    for cin, cout, k, stride, pad in ((3, 8, 3, 2, "SAME_UPPER"), (8, 8, 3, 1, "SAME_LOWER"),
                                      (8, 16, 2, 2, "SAME_LOWER"), (16, 16, 4, 1, "SAME_UPPER")):
        w = g.const(g.conv_weight(cin, cout, k), "conv_w")
        b = g.const((0.1 * g.rng.standard_normal(cout)).astype(np.float32), "conv_b")
        x = g.op("Relu", [g.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], auto_pad=pad)])
    shape = ("N", 3, 33, 31) if fixed else ("N", 3, "H", "W")
    return g.model([image(shape=shape)], [head(g, x, 16)], opset=13, producer="tf2onnx")


def caffe2_era() -> onnx.ModelProto:
    """IR 3, opset 9, every initializer also a graph input (as IR 3 required); the conv biases are
    ConstantOfShape of a shape initializer, and a BatchNormalization's scale is ConstantOfShape too."""
    g = GraphBuilder(seed=7)
    shape8 = g.const(np.array([8], np.int64), "bias_shape")
    zeros = g.op("ConstantOfShape", [shape8], value=numpy_helper.from_array(np.array([0.05], np.float32)))
    ones = g.op("ConstantOfShape", [shape8], value=numpy_helper.from_array(np.array([1.0], np.float32)))
    x = g.op("Relu", [g.conv("input", 3, 8, bias=zeros)])
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    beta, mean = (g.const((0.1 * g.rng.standard_normal(8)).astype(np.float32), n) for n in ("bn_b", "bn_m"))
    var = g.const((1 + 0.2 * g.rng.random(8)).astype(np.float32), "bn_v")
    x = g.op("Relu", [g.op("BatchNormalization", [g.conv(x, 8, 8, bias=False), ones, beta, mean, var],
                           epsilon=1e-5)])
    x = g.op("Relu", [g.conv(x, 8, 8, bias=zeros)])
    w = g.const((0.1 * g.rng.standard_normal((5, 8))).astype(np.float32), "fc_w")
    b = g.const(np.zeros(5, np.float32), "fc_b")
    y = g.op("Gemm", [g.op("Flatten", [g.op("GlobalAveragePool", [x])]), w, b], transB=1)
    return g.model([image()], [y], opset=9, ir_version=3, producer="pytorch 0.4 via caffe2")


def unknown_rank_batchnorm() -> onnx.ModelProto:
    """A BatchNormalization after a Reshape whose target shape is computed by an op shape inference cannot see
    through (Max of two shapes), so the normalized input's rank is unknown; onnxruntime runs it fine."""
    g = GraphBuilder(seed=8)
    x = g.op("Relu", [g.conv("input", 3, 8)])
    shape = g.op("Shape", [x])
    x = g.op("Reshape", [x, g.op("Max", [shape, shape])])
    x = g.op("Relu", [g.bn(g.conv(x, 8, 8, bias=False), 8)])
    return g.model([image(shape=("N", 3, 32, 32))], [head(g, x, 8)], opset=13)


@dataclass(frozen=True)
class Shaped:
    """A graph with an odd shape or an old quirk, and how many convs inspect must list."""

    build: Callable[[], onnx.ModelProto]
    convs: int
    why: str


SHAPES: dict[str, Shaped] = {
    "text_recognizer": Shaped(text_recognizer, 4, "fixed height 48, free width (every text recognizer)"),
    "same_padding": Shaped(same_padding, 4, "auto_pad SAME_UPPER/SAME_LOWER at a fixed input size"),
    "same_padding_dynamic": Shaped(lambda: same_padding(fixed=False), 4, "auto_pad SAME at a free input size"),
    "caffe2_ir3": Shaped(caffe2_era, 3, "IR 3 opset 9: initializers as inputs, ConstantOfShape weights"),
    "unknown_rank_bn": Shaped(unknown_rank_batchnorm, 2, "BatchNormalization whose input rank is not inferred"),
}


def save(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write a built graph after the checker (a broken builder must not pass as a corpus entry)."""
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return Path(path)


__all__ = ["BUILDS", "KINDS", "SHAPES", "TINY_CONVS", "build", "imagenet_inputs", "quantize_model", "save",
           "smooth_images", "tiny_float", "F32", "helper"]
