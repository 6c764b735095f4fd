"""The model corpus the front end must handle: real torch exports and tiny graphs that reproduce each trap.

Two kinds of entries:

* :data:`TORCHVISION` — torchvision architectures with random weights (``torch.manual_seed``), exported by
  the legacy TorchScript exporter (``dynamo=False``) and by the dynamo exporter. Exports take seconds, so
  tests cache them per session (``tests/conftest.py``); ``scripts/bench_convert.py`` reuses the same builders.
* :data:`TRAPS` — graphs built with ``onnx.helper`` in milliseconds, each reproducing one thing real exporters
  emit that once broke loading, layer finding or conversion (PaddlePaddle ``Constant`` weights, TensorFlow
  NHWC inputs, opset 7 ops, fp16, hard-coded batch 1, opset 18+ ops, ...). Each says how many convs
  ``inspect`` must list and the activation chain of some of them.

:data:`UNCONVERTIBLE` holds graphs that truly cannot be converted: the error must name the op and its opset.

The models people deploy (int8 and fp16 builds made with onnxruntime's tools, text-recognizer shapes, SAME pads,
Caffe2-era graphs) are in ``tests/corpus_deployed.py``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "models" / "efficientnet_lite0.onnx"

F32, F16 = TensorProto.FLOAT, TensorProto.FLOAT16


# Torch exports ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TorchvisionSpec:
    """One torchvision architecture: constructor kwargs, input side, expected conv count and a chain check.

    ``chains`` maps a layer index to the op chain ``inspect`` must report for it (identical for both
    exporters: the legacy exporter folds eval-mode BatchNorm into the conv, and dynamo does the same).
    """

    name: str
    size: int
    convs: int
    chains: dict[int, tuple[str, ...]]
    kwargs: dict = field(default_factory=dict)
    shrink_classifier: bool = False


TORCHVISION: dict[str, TorchvisionSpec] = {s.name: s for s in [
    TorchvisionSpec("resnet18", 64, 20, {0: ("Relu",), 2: ()}),
    TorchvisionSpec("mobilenet_v3_small", 64, 52, {0: ("HardSwish",), 1: ("Relu",), 2: ("Relu",), 3: ("HardSigmoid",)}),
    TorchvisionSpec("squeezenet1_1", 64, 26, {0: ("Relu",)}),
    TorchvisionSpec("densenet121", 64, 120, {0: ("Relu",), 1: ("Relu",), 2: ()}),
    # The legacy exporter refuses adaptive_avg_pool2d to 7x7 unless 7 divides the feature map: 224 input.
    # VGG's 25088x4096 classifier alone is 400 MB; a narrower head keeps the file small, the convs are VGG's.
    TorchvisionSpec("vgg11_bn", 224, 8, {0: ("Relu",), 7: ("Relu",)}, shrink_classifier=True),
    TorchvisionSpec("convnext_tiny", 64, 22, {0: (), 1: ()}),
    TorchvisionSpec("regnet_y_400mf", 64, 85,
                    {0: ("Relu",), 1: (), 2: ("Relu",), 3: ("Relu",), 4: ("Relu",), 5: ("Sigmoid",)}),
    TorchvisionSpec("shufflenet_v2_x0_5", 64, 56, {0: ("Relu",)}),
    TorchvisionSpec("googlenet", 64, 57, {0: ("Relu",)}, kwargs={"aux_logits": False, "init_weights": True}),
    TorchvisionSpec("efficientnet_b0", 64, 81,
                    {0: ("Sigmoid*Mul",), 1: ("Sigmoid*Mul",), 2: ("Sigmoid*Mul",), 3: ("Sigmoid",)}),
]}
EXPORTERS = ("legacy", "dynamo")
#: Old exports are common too: the legacy exporter at opset 11 (upgraded to 13 by normalize) writes HardSwish as
#: x * HardSigmoid(x) and ShuffleNet's channel shuffle through Reshapes at opset 11.
LEGACY_OPSET11 = {"mobilenet_v3_small": {0: ("HardSigmoid*Mul",), 3: ("HardSigmoid",)},
                  "shufflenet_v2_x0_5": {0: ("Relu",)}}
#: Every (architecture, exporter) pair of the corpus.
TORCHVISION_RUNS = [(n, e) for n in TORCHVISION for e in EXPORTERS] + [(n, "legacy11") for n in LEGACY_OPSET11]


def expected_chains(name: str, exporter: str) -> dict[int, tuple[str, ...]]:
    return LEGACY_OPSET11[name] if exporter == "legacy11" else TORCHVISION[name].chains


def build_torchvision(name: str, seed: int = 0):
    """The eval-mode torchvision module with seeded random weights, and its example input ``[1, 3, S, S]``."""
    import torch
    import torchvision.models as tvm

    spec = TORCHVISION[name]
    torch.manual_seed(seed)
    module = getattr(tvm, name)(weights=None, **spec.kwargs).eval()
    if spec.shrink_classifier:
        module.classifier[0] = torch.nn.Linear(module.classifier[0].in_features, 64)
        module.classifier[3] = torch.nn.Linear(64, 64)
        module.classifier[6] = torch.nn.Linear(64, 10)
        module.eval()
    return module, torch.randn(1, 3, spec.size, spec.size)


def export_torchvision(name: str, exporter: str, out_dir: str | os.PathLike[str]) -> Path:
    """Export ``name`` with ``exporter`` (``legacy``, ``legacy11`` or ``dynamo``) into ``out_dir``; reuse a file.

    Both exporters run with their defaults (batch fixed at 1, no dynamic axes), as most users call them.
    """
    import contextlib
    import io
    import logging
    import warnings

    import torch

    path = Path(out_dir) / f"{name}-{exporter}.onnx"
    if path.exists():
        return path
    module, x = build_torchvision(name)
    tmp = path.with_suffix(".tmp.onnx")
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        if exporter == "legacy":
            torch.onnx.export(module, (x,), str(tmp), dynamo=False)
        elif exporter == "legacy11":
            torch.onnx.export(module, (x,), str(tmp), dynamo=False, opset_version=11)
        elif exporter == "dynamo":
            torch.onnx.export(module, (x,), str(tmp), dynamo=True, external_data=False, verbose=False)
        else:
            raise ValueError(f"unknown exporter {exporter!r}")
    tmp.replace(path)
    return path


# Tiny graphs --------------------------------------------------------------------------------------------------

class GraphBuilder:
    """Collects nodes and weights for a small CNN; names are unique, weights are seeded and well scaled.

    ``weights`` chooses how constants are stored, reproducing exporters: ``"init"`` (initializers, the norm),
    ``"constant"`` (``Constant`` nodes, PaddlePaddle / old model zoo), ``"identity"`` (an initializer read
    through ``Identity``, torch's weight deduplication).
    """

    def __init__(self, seed: int = 0, weights: str = "init", dtype: int = F32) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.rng = np.random.default_rng(seed)
        self.weights = weights
        self.dtype = dtype
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, value: np.ndarray, prefix: str = "w", how: str | None = None) -> str:
        how = how or self.weights
        if value.dtype == np.float32 and self.dtype == F16:
            value = value.astype(np.float16)
        name = self.name(prefix)
        if how == "init":
            self.inits.append(numpy_helper.from_array(value, name))
        elif how == "constant":
            self.nodes.append(helper.make_node("Constant", [], [name], name=self.name("Constant"),
                                               value=numpy_helper.from_array(value, name)))
        elif how == "identity":
            self.inits.append(numpy_helper.from_array(value, name + "_raw"))
            self.nodes.append(helper.make_node("Identity", [name + "_raw"], [name], name=self.name("Identity")))
        else:
            raise ValueError(how)
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, domain: str = "", **attrs) -> str | list[str]:
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), domain=domain, **attrs))
        return outs[0] if n_out == 1 else outs

    def conv_weight(self, cin: int, cout: int, k: int = 3, group: int = 1) -> np.ndarray:
        fan_in = cin // group * k * k
        return (self.rng.standard_normal((cout, cin // group, k, k)) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, group: int = 1, bias: bool | str = True,
             weight: str | None = None) -> str:
        """A Conv; ``bias`` may be the name of a bias tensor; ``weight`` reuses an existing weight tensor."""
        w = weight or self.const(self.conv_weight(cin, cout, k, group), "conv_w")
        inputs = [x, w]
        if isinstance(bias, str):
            inputs.append(bias)
        elif bias:
            inputs.append(self.const((0.1 * self.rng.standard_normal(cout)).astype(np.float32), "conv_b"))
        return self.op("Conv", inputs, kernel_shape=[k, k], strides=[stride, stride], group=group,
                       pads=[k // 2] * 4)

    def bn(self, x: str, c: int, **attrs) -> str:
        r = self.rng
        params = [1 + 0.1 * r.standard_normal(c), 0.1 * r.standard_normal(c), 0.1 * r.standard_normal(c),
                  1 + 0.2 * r.random(c)]
        names = [self.const(p.astype(np.float32), n) for p, n in zip(params, ("bn_s", "bn_b", "bn_m", "bn_v"))]
        return self.op("BatchNormalization", [x, *names], epsilon=1e-5, **attrs)

    def silu(self, x: str) -> str:
        return self.op("Mul", [x, self.op("Sigmoid", [x])])

    def model(self, inputs: list[onnx.ValueInfoProto], outputs: list[str], opset: int,
              ir_version: int | None = None, extra_opsets: dict[str, int] | None = None,
              producer: str = "kernelviz-tests") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "trap", inputs,
                                  [helper.make_tensor_value_info(o, self.dtype, None) for o in outputs],
                                  initializer=self.inits)
        opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (extra_opsets or {}).items()]
        m = helper.make_model(graph, opset_imports=opsets, producer_name=producer)
        m.ir_version = ir_version or min(m.ir_version, 10)
        # Exporters write the shapes they know (batch 1 included) as value_info, and the checker wants a shape
        # on graph outputs: take inference's, else [?, ?] (every head here is 2-D).
        inferred = onnx.shape_inference.infer_shapes(m).graph
        m.graph.value_info.extend(inferred.value_info)
        for o, io in zip(m.graph.output, inferred.output):
            if io.type.tensor_type.HasField("shape"):
                o.CopyFrom(io)
            else:
                o.type.tensor_type.shape.dim.add()
                o.type.tensor_type.shape.dim.add()
        if m.ir_version < 4:  # before IR 4 every initializer had to be listed among the graph inputs too
            for t in self.inits:
                m.graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        return m


def image(name: str = "input", shape=(1, 3, 32, 32), dtype: int = F32) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, dtype, list(shape))


def head(g: GraphBuilder, x: str, c: int, classes: int = 5) -> str:
    """GlobalAveragePool -> Flatten -> Gemm, the classifier most exporters emit."""
    w = g.const((0.1 * g.rng.standard_normal((classes, c))).astype(np.float32), "fc_w")
    b = g.const(np.zeros(classes, np.float32), "fc_b")
    return g.op("Gemm", [g.op("Flatten", [g.op("GlobalAveragePool", [x])]), w, b], transB=1)


@dataclass(frozen=True)
class Trap:
    """A tiny graph reproducing one exporter quirk, and what ``inspect`` must say about it.

    ``tolerance`` is the worst parity_rel verify may report (1e-4; fp16 graphs compute in fp16 on
    onnxruntime, whose own rounding is 2^-11 ~ 4.9e-4 relative).
    """

    build: Callable[[], onnx.ModelProto]
    convs: int
    chains: dict[int, tuple[str, ...]]
    why: str
    tolerance: float = 1e-4


def paddle_constants() -> onnx.ModelProto:
    g = GraphBuilder(weights="constant")
    x = g.op("Relu", [g.bn(g.conv("input", 3, 8), 8)])
    x = g.silu(g.conv(x, 8, 8))
    # Paddle and TF emit the conv bias as a separate Add of a [1, C, 1, 1] constant.
    bias = g.const((0.1 * g.rng.standard_normal((1, 8, 1, 1))).astype(np.float32), "add_b")
    x = g.op("Relu", [g.op("Add", [g.conv(x, 8, 8, bias=False), bias])])
    return g.model([image()], [head(g, x, 8)], opset=11, producer="PaddlePaddle")


def identity_shared() -> onnx.ModelProto:
    g = GraphBuilder()
    w = g.const(g.conv_weight(8, 8), "shared_w", how="identity")
    x = g.op("Relu", [g.conv("input", 3, 8)])
    a = g.op("Relu", [g.conv(x, 8, 8, weight=w)])
    b = g.op("Relu", [g.conv(a, 8, 8, weight=g.op("Identity", [w]))])
    return g.model([image()], [head(g, b, 8)], opset=17, producer="pytorch")


def constant_of_shape_bias() -> onnx.ModelProto:
    g = GraphBuilder()
    w = g.const(g.conv_weight(3, 8), "conv_w")
    # A zero bias sized from the weight: Shape -> Slice -> ConstantOfShape.
    c = g.op("Slice", [g.op("Shape", [w]), g.const(np.array([0], np.int64), "s"),
                       g.const(np.array([1], np.int64), "e")])
    zero = g.op("ConstantOfShape", [c], value=numpy_helper.from_array(np.zeros(1, np.float32)))
    x = g.op("Relu", [g.conv("input", 3, 8, weight=w, bias=zero)])
    fixed = g.op("ConstantOfShape", [g.const(np.array([8], np.int64), "shape")],
                 value=numpy_helper.from_array(np.array([0.0], np.float32)))
    x = g.op("Clip", [g.conv(x, 8, 8, bias=fixed), g.const(np.array(0, np.float32), "lo"),
                      g.const(np.array(6, np.float32), "hi")])
    return g.model([image()], [head(g, x, 8)], opset=13)


def old_opset(opset: int) -> Callable[[], onnx.ModelProto]:
    def build() -> onnx.ModelProto:
        g = GraphBuilder()
        bn_attrs = {"spatial": 1} if opset < 9 else {}
        x = g.op("Relu", [g.bn(g.conv("input", 3, 8), 8, **bn_attrs)])
        x = g.op("Dropout", [x], ratio=0.5)
        x = g.op("Relu", [g.bn(g.conv(x, 8, 8, stride=2), 8, **bn_attrs)])
        x = g.op("Relu", [g.conv(x, 8, 8, group=8)])
        w = g.const((0.1 * g.rng.standard_normal((5, 8))).astype(np.float32), "fc_w")
        b = g.const(np.zeros(5, np.float32), "fc_b")
        gemm_attrs = {"broadcast": 1} if opset < 7 else {}
        y = g.op("Gemm", [g.op("Flatten", [g.op("GlobalAveragePool", [x])]), w, b], transB=1, **gemm_attrs)
        return g.model([image()], [y], opset=opset, ir_version=3)
    return build


def nhwc_transpose() -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.op("Transpose", ["input"], perm=[0, 3, 1, 2])
    bias = g.const((0.1 * g.rng.standard_normal(8)).astype(np.float32), "tf_bias")
    x = g.op("Relu", [g.conv(x, 3, 8, bias=bias)])
    x = g.op("Clip", [g.conv(x, 8, 8, group=8), g.const(np.array(0, np.float32), "lo"),
                      g.const(np.array(6, np.float32), "hi")])
    x = g.op("Relu", [g.conv(x, 8, 16, k=1)])
    out = g.op("Transpose", [x], perm=[0, 2, 3, 1])
    return g.model([image(shape=(1, 32, 32, 3))], [out, head(g, x, 16)], opset=13, producer="tf2onnx")


def fp16(keep_io_types: bool) -> Callable[[], onnx.ModelProto]:
    """onnxconverter-common's float16 conversion: fp16 weights and compute, fp32 or fp16 at the boundary."""

    def build() -> onnx.ModelProto:
        g = GraphBuilder(dtype=F16)
        x = g.op("Cast", ["input"], to=F16) if keep_io_types else "input"
        x = g.op("Relu", [g.bn(g.conv(x, 3, 8), 8)])
        x = g.silu(g.conv(x, 8, 8, stride=2))
        x = g.op("Relu", [g.conv(x, 8, 8, group=8)])
        y = head(g, x, 8)
        if keep_io_types:
            y = g.op("Cast", [y], to=F32)
            g.dtype = F32
        return g.model([image(dtype=F32 if keep_io_types else F16)], [y], opset=13)

    return build


def fp16_storage() -> onnx.ModelProto:
    """Weights stored in fp16 and cast to fp32 before use (halves the file; compute stays fp32)."""
    g = GraphBuilder()
    x = "input"
    for cin, cout in ((3, 8), (8, 8)):
        w = g.op("Cast", [g.const(g.conv_weight(cin, cout).astype(np.float16), "w16")], to=F32)
        x = g.op("Relu", [g.conv(x, cin, cout, weight=w)])
    return g.model([image()], [head(g, x, 8)], opset=13)


def dynamic_hw() -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.op("Relu", [g.conv("input", 3, 8, stride=2)])
    x = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("LeakyRelu", [g.conv(x, 8, 16)], alpha=0.1)
    return g.model([image(shape=("N", 3, "H", "W"))], [head(g, x, 16)], opset=13)


def batch1_reshape() -> onnx.ModelProto:
    """ShuffleNet's channel shuffle as the legacy exporter writes it without dynamic axes: batch 1 baked in."""
    g = GraphBuilder()
    x = g.op("Relu", [g.conv("input", 3, 8)])
    x = g.op("Reshape", [x, g.const(np.array([1, 2, 4, 32, 32], np.int64), "shape")])
    x = g.op("Transpose", [x], perm=[0, 2, 1, 3, 4])
    x = g.op("Reshape", [x, g.const(np.array([1, 8, 32, 32], np.int64), "shape")])
    x = g.op("Relu", [g.conv(x, 8, 8)])
    x = g.op("Reshape", [g.op("GlobalAveragePool", [x]), g.const(np.array([1, 8], np.int64), "flat")])
    w = g.const((0.1 * g.rng.standard_normal((5, 8))).astype(np.float32), "fc_w")
    return g.model([image()], [g.op("Gemm", [x, w], transB=1)], opset=13)


def zeros_like_concat() -> onnx.ModelProto:
    """CIFAR ResNets' option-A shortcut, ``torch.cat([x, torch.zeros_like(x)], 1)``: the legacy exporter writes
    ``ConstantOfShape(Shape(x))``, and value_info says x has batch 1."""
    g = GraphBuilder()
    x = g.op("Relu", [g.conv("input", 3, 4)])
    zeros = g.op("ConstantOfShape", [g.op("Shape", [x])], value=numpy_helper.from_array(np.zeros(1, np.float32)))
    x = g.op("Concat", [x, zeros], axis=1)
    x = g.op("Relu", [g.conv(x, 8, 8)])
    return g.model([image()], [head(g, x, 8)], opset=13)


def new_opset(opset: int) -> Callable[[], onnx.ModelProto]:
    """Ops whose inputs/attributes changed at opset 18+: Pad, ReduceMean (SE block), Split, Resize."""

    def build() -> onnx.ModelProto:
        g = GraphBuilder()
        i64 = lambda v, n: g.const(np.array(v, np.int64), n)  # noqa: E731
        x = g.op("Pad", ["input", i64([0, 0, 1, 1, 0, 0, 1, 1], "pads")], mode="reflect")
        x = g.op("Relu", [g.conv(x, 3, 8)])                                       # 34x34
        # Squeeze-and-excitation with ReduceMean-18 (axes as an input).
        s = g.op("ReduceMean", [x, i64([2, 3], "axes")], keepdims=1)
        s = g.op("Relu", [g.conv(s, 8, 4, k=1)])
        s = g.op("Sigmoid", [g.conv(s, 4, 8, k=1)])
        x = g.op("Mul", [x, s])
        a, b = g.op("Split", [x], n_out=2, axis=1, num_outputs=2)               # Split-18
        a = g.op("Relu", [g.conv(a, 4, 4)])
        b = g.op("Relu", [g.conv(b, 4, 4, group=4)])
        x = g.op("Concat", [a, b], axis=1)
        x = g.op("Resize", [x, "", g.const(np.array([1, 1, 2, 2], np.float32), "scales")], mode="linear",
                 coordinate_transformation_mode="half_pixel")
        x = g.op("Relu", [g.conv(x, 8, 8, stride=2)])
        x = g.op("Resize", [x, "", "", i64([1, 8, 16, 16], "sizes")], mode="nearest",
                 coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        x = g.op("Sigmoid", [g.conv(x, 8, 8)])
        return g.model([image()], [head(g, x, 8)], opset=opset)

    return build


def ort_fused_conv() -> onnx.ModelProto:
    """A model saved after onnxruntime's graph optimizations (ORT_ENABLE_EXTENDED): Conv + activation fused into
    com.microsoft::FusedConv, one per activation it supports, and a plain Conv."""
    g = GraphBuilder()
    x, cin = "input", 3
    for act, params in (("Relu", []), ("Clip", [0.0, 6.0]), ("LeakyRelu", [0.2]), ("Sigmoid", []),
                        ("HardSigmoid", [0.25, 0.5]), ("Tanh", [])):
        w = g.const(g.conv_weight(cin, 8), "conv_w")
        b = g.const((0.1 * g.rng.standard_normal(8)).astype(np.float32), "conv_b")
        extra = {"activation_params": params} if params else {}
        x = g.op("FusedConv", [x, w, b], domain="com.microsoft", activation=act, kernel_shape=[3, 3],
                 strides=[1, 1], pads=[1, 1, 1, 1], group=1, **extra)
        cin = 8
    x = g.conv(x, 8, 8)
    return g.model([image()], [head(g, x, 8)], opset=13, extra_opsets={"com.microsoft": 1})


TRAPS: dict[str, Trap] = {
    "paddle_constant_weights": Trap(paddle_constants, 3, {0: ("BatchNormalization", "Relu"), 1: ("Sigmoid*Mul",),
                                                          2: ("Add", "Relu")},
                                    "PaddlePaddle keeps weights in Constant nodes"),
    "identity_shared_weights": Trap(identity_shared, 3, {1: ("Relu",), 2: ("Relu",)},
                                    "torch deduplicates equal weights through Identity"),
    "constant_of_shape_bias": Trap(constant_of_shape_bias, 2, {0: ("Relu",), 1: ("Clip",)},
                                   "zero biases built with ConstantOfShape"),
    **{f"opset{v}": Trap(old_opset(v), 3, {0: ("BatchNormalization", "Relu", "Dropout"),
                                           1: ("BatchNormalization", "Relu"), 2: ("Relu",)},
                         f"opset {v}: BatchNormalization-7/9, Dropout-7, Gemm-7") for v in (7, 8, 9)},
    "nhwc_transpose": Trap(nhwc_transpose, 3, {0: ("Relu",), 1: ("Clip",), 2: ("Relu",)},
                           "TensorFlow NHWC input behind a Transpose"),
    "fp16_keep_io": Trap(fp16(True), 3, {0: ("BatchNormalization", "Relu"), 1: ("Sigmoid*Mul",)},
                         "fp16 weights and compute, fp32 input", tolerance=2e-3),
    "fp16_input": Trap(fp16(False), 3, {0: ("BatchNormalization", "Relu"), 1: ("Sigmoid*Mul",)},
                       "fp16 input, weights and compute", tolerance=2e-3),
    "fp16_storage": Trap(fp16_storage, 2, {0: ("Relu",), 1: ("Relu",)}, "fp16 weights cast to fp32"),
    "dynamic_hw": Trap(dynamic_hw, 2, {0: ("Relu",), 1: ("LeakyRelu",)}, "symbolic N, H and W"),
    "batch1_reshape": Trap(batch1_reshape, 2, {0: ("Relu",), 1: ("Relu",)},
                           "channel shuffle Reshape [1, 2, C/2, H, W] hard-codes batch 1"),
    "zeros_like_concat": Trap(zeros_like_concat, 2, {0: ("Relu",), 1: ("Relu",)},
                              "ConstantOfShape(Shape(x)) must not freeze batch 1"),
    **{f"opset{v}_ops": Trap(new_opset(v), 7, {0: ("Relu",), 1: ("Relu",), 2: ("Sigmoid",), 5: ("Relu",),
                                               6: ("Sigmoid",)},
                             f"opset {v}: Pad-18, ReduceMean-18, Split-18, Resize-{min(v, 19)}")
       for v in (18, 19, 21)},
    "ort_fused_conv": Trap(ort_fused_conv, 7, {0: ("Relu (fused)",), 1: ("Clip (fused)",), 2: ("LeakyRelu (fused)",),
                                               4: ("HardSigmoid (fused)",), 5: ("Tanh (fused)",), 6: ()},
                           "onnxruntime-optimized: com.microsoft::FusedConv"),
}


# Graphs that cannot be converted ------------------------------------------------------------------------------

def custom_op_before_conv() -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.op("Relu", [g.conv("input", 3, 8)])
    x = g.op("MyActivation", [x], domain="com.example")
    x = g.op("Relu", [g.conv(x, 8, 8)])
    return g.model([image()], [head(g, x, 8)], opset=13, extra_opsets={"com.example": 1})


def contrib_op_before_conv() -> onnx.ModelProto:
    """onnxruntime's own com.microsoft ops (left by its graph optimizer) run there but not in torch."""
    g = GraphBuilder()
    x = g.op("Gelu", [g.conv("input", 3, 8)], domain="com.microsoft")
    x = g.op("Relu", [g.conv(x, 8, 8)])
    return g.model([image()], [head(g, x, 8)], opset=13, extra_opsets={"com.microsoft": 1})


def contrib_op_after_convs() -> onnx.ModelProto:
    """The same op past the last conv: truncation drops it, so the model converts."""
    g = GraphBuilder()
    x = g.op("Relu", [g.conv("input", 3, 8)])
    x = g.op("Relu", [g.conv(x, 8, 8)])
    x = g.op("Gelu", [x], domain="com.microsoft")
    return g.model([image()], [head(g, x, 8)], opset=13, extra_opsets={"com.microsoft": 1})


def no_converter_before_conv() -> onnx.ModelProto:
    g = GraphBuilder()
    x = g.op("Relu", [g.conv("input", 3, 8)])
    x = g.op("LpPool", [x], kernel_shape=[2, 2], strides=[2, 2], p=2)
    x = g.op("Relu", [g.conv(x, 8, 8)])
    return g.model([image()], [head(g, x, 8)], opset=13)


def resize_channels() -> onnx.ModelProto:
    """A Resize that also resizes channels: onnxruntime runs it, torch's interpolate cannot (found at run time)."""
    g = GraphBuilder()
    x = g.op("Relu", [g.conv("input", 3, 8)])
    x = g.op("Resize", [x, "", "", g.const(np.array([1, 4, 32, 32], np.int64), "sizes")], mode="nearest")
    x = g.op("Relu", [g.conv(x, 4, 8)])
    return g.model([image()], [head(g, x, 8)], opset=13)


#: name -> (builder, words the ConversionError must contain)
UNCONVERTIBLE: dict[str, tuple[Callable[[], onnx.ModelProto], tuple[str, ...]]] = {
    "custom_domain_op": (custom_op_before_conv, ("MyActivation", "com.example", "opset 1")),
    "contrib_op": (contrib_op_before_conv, ("Gelu", "com.microsoft", "opset 1")),
    "no_converter": (no_converter_before_conv, ("LpPool", "opset 13", "add_converter")),
    "fails_at_run_time": (resize_channels, ("fails at batch", "channel", "add_converter")),
}


def save(proto: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Write a built graph after checking it is valid ONNX (a broken builder must not pass as a trap)."""
    onnx.checker.check_model(proto)
    p = Path(path)
    onnx.save(proto, str(p))
    return p
