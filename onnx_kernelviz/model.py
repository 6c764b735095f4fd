"""An opened model: the front-end stages chained once, with per-run caches.

``Model`` is what the API and CLI hold: the loaded graph, its layers, the normalized copy, and — created
on first use and reused within a run — onnxruntime sessions over the exposed original graph and torch modules
of the graph truncated at a layer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn

from onnx_kernelviz.errors import ConversionError, ImageError, ModelError
from onnx_kernelviz.frontend.computed import check_computed_sizes
from onnx_kernelviz.frontend.convert import CONVERSION_REMEDY, TorchGraph, to_torch
from onnx_kernelviz.frontend.expose import expose, truncate
from onnx_kernelviz.frontend.graph import GraphView
from onnx_kernelviz.frontend.inputsize import DEFAULT_SIZE, input_size, size_multiple  # noqa: F401 (re-exported)
from onnx_kernelviz.frontend.layers import Layer, find_layers, resolve_layer
from onnx_kernelviz.frontend.load import LoadedModel, load_model
from onnx_kernelviz.frontend.normalize import NormalizedModel, normalize
from onnx_kernelviz.io.preprocess import MAX_SIDE, Preprocess
from onnx_kernelviz.options import Layout
from onnx_kernelviz.runtime import Devices, OrtRunner, resolve_devices


@dataclass(frozen=True)
class LayerForward:
    """The torch copy truncated at one tensor: ``x [B, C, H, W] -> activation [B, C', h, w]`` (not rectified),
    and the ``nn.Module`` it runs (baselines that hook its layers get it from here, explicitly)."""

    graph: TorchGraph

    @property
    def module(self) -> nn.Module:
        return self.graph.module

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)[0]


def zero_nonfinite_weights(module: nn.Module) -> int:
    """Replace NaN/Inf in the parameters of convs and BatchNorms by 0; returns how many tensors had them.

    Such a value makes its channel NaN on onnxruntime on every image (that kernel is reported failed), but in the
    torch copy it also makes the gradient through that layer NaN for every input pixel, which would fail every
    other kernel too: the copy, used only for gradients and checked against onnxruntime where onnxruntime is
    finite, gets zeros there instead.
    """
    fixed = 0
    for m in module.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm)):
            for t in (*m.parameters(recurse=False), *m.buffers(recurse=False)):
                if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                    with torch.no_grad():
                        t.nan_to_num_(0.0, 0.0, 0.0)
                    fixed += 1
    return fixed


class Model:
    """A CNN opened for explanation.

    Args:
        path: the ``.onnx`` file (never modified).
        device: ``auto`` (CUDA when a GPU is really there), ``cpu`` or ``cuda``.
        input_name: the image input, for models with several candidates.
        layout: override the detected input layout.
        ort_threads: onnxruntime's intra-op threads (default: onnxruntime's, one per core); a worker that shares
            the machine with others (a Ray actor) takes its own share.
    """

    def __init__(self, path: str | os.PathLike[str], *, device: str = "auto", input_name: str | None = None,
                 layout: Layout | None = None, ort_threads: int | None = None) -> None:
        self.loaded: LoadedModel = load_model(path, input_name=input_name, layout=layout)
        self.graph = GraphView(self.loaded.proto)
        self.layers: list[Layer] = find_layers(self.graph)
        self.devices: Devices = resolve_devices(device)
        self.ort_threads = ort_threads
        self._ort: dict[tuple[str, ...], OrtRunner] = {}
        self._torch: dict[tuple[str, ...], TorchGraph] = {}
        # the checks of computed tensor sizes done so far: None for the input's fixed sides alone, (H, W) for a
        # size given to its free sides
        self._sizes_checked: set[tuple[int, int] | None] = set()

    @property
    def path(self) -> Path:
        return self.loaded.path

    def layer(self, spec: str | int) -> Layer:
        """Resolve ``--layer`` (index, Conv node name or tensor name)."""
        return resolve_layer(self.layers, spec)

    @property
    def channels(self) -> int:
        return self.loaded.input.channels or 3

    def input_size(self, size: tuple[int, int] | None = None, aspect: float | None = None) -> tuple[int, int]:
        """The (H, W) to feed: the model's fixed sides; free sides from ``size``, else from the image's ``aspect``
        (width / height) next to a fixed side, rounded to a multiple of the network's stride, else 224
        (``frontend/inputsize.py``)."""
        info = self.loaded.input
        # before anything is allocated at that size; one fixed side is enough (a free side next to it follows
        # the image, or copies it without one)
        if max(info.height or 0, info.width or 0) > MAX_SIDE:
            raise ModelError(f"{self.path} takes a fixed {info.height or '?'}x{info.width or '?'} (HxW) input, more "
                             f"than the {MAX_SIDE} pixels per side kernelviz handles; re-export the model with a "
                             "smaller or dynamic input size (then choose one with --size)")
        h, w = input_size(info, self.size_multiple, size, aspect)
        if max(h, w) > MAX_SIDE:  # a free side that followed the proportions of a very long image
            raise ImageError(f"the images' proportions make the input of {self.path} {h}x{w} (HxW), more than the "
                             f"{MAX_SIDE} pixels per side kernelviz handles; choose the input size with --size HxW")
        if not (info.height and info.width):
            # a tensor whose size follows a free input side (Shape -> Mul -> ConstantOfShape) is known only now,
            # before anything runs at this size: one image per run (a batch multiplies it by at most its size)
            self._check_sizes_at((h, w))
        return h, w

    def aspect_matters(self, size: tuple[int, int] | None = None) -> bool:
        """Whether :meth:`input_size` follows the images' aspect ratio: one side fixed, the other free, no ``size``."""
        info = self.loaded.input
        return size is None and bool(info.height) != bool(info.width)

    @cached_property
    def size_multiple(self) -> tuple[int, int]:
        """(H, W) multiples that every downsampling of the network divides evenly."""
        return size_multiple(self.graph)

    def check_computed_sizes(self) -> None:
        """Refuse a graph that computes a tensor too large for this machine (``frontend/computed.py``), once per
        model, before anything computes one: constant folding and onnxruntime allocate such tensors before any
        size limit of theirs applies. ``inspect`` does neither, and still lists the layers.

        Raises:
            ModelError: one line naming the node.
        """
        self._check_sizes_at(None)

    def _check_sizes_at(self, size: tuple[int, int] | None) -> None:
        """:func:`check_computed_sizes` once per ``size`` (H, W) fed to the input's free sides, or None: the fixed
        sides and constants alone."""
        if size in self._sizes_checked:
            return
        info = self.loaded.input
        inputs: dict[str, tuple[int, ...]] | None = None
        if size is not None:
            h, w = size
            inputs = {info.name: (1, self.channels, h, w) if info.layout == "nchw" else (1, h, w, self.channels)}
        check_computed_sizes(self.loaded.proto, self.path, inputs)
        self._sizes_checked.add(size)

    @cached_property
    def normalized(self) -> NormalizedModel:
        # A QDQ conv's float output disappears when its group is fused into a QLinearConv (as onnxruntime does):
        # any conv whose chain starts by quantizing, whether the layer's tensor stays int8 or is dequantized again
        # (MTCNN's PRelu after Q/DQ); asking to keep it left a graph output no node produces
        keep = [t for la in self.layers for t in (la.conv_output, la.tensor)
                if t == la.tensor or la.chain[:1] != ("QuantizeLinear",)]
        self.check_computed_sizes()  # normalize's constant folding computes them
        return normalize(self.loaded, keep=keep)

    @cached_property
    def readouts(self) -> dict[str, tuple[float, int]]:
        """``tensor -> (scale, zero_point)`` of the layers whose activation tensor holds integers (quantized graphs)."""
        return {la.tensor: (float(la.quant.scale), int(la.quant.zero_point or 0)) for la in self.layers
                if la.quant is not None and la.quant.scale is not None}

    @cached_property
    def dynamic_quantization(self) -> bool:
        """The graph quantizes with ranges computed from each input (DynamicQuantizeLinear): a batch's images would
        share one range, so onnxruntime runs them one at a time."""
        return any(n.op_type == "DynamicQuantizeLinear" for n in self.graph.nodes)

    def ort(self, tensors: tuple[str, ...]) -> OrtRunner:
        """onnxruntime over the ORIGINAL graph with ``tensors`` exposed as extra outputs (cached); integer tensors of
        a quantized graph come back as real values."""
        key = tuple(dict.fromkeys(tensors))
        if key not in self._ort:
            self._ort[key] = self.ort_session(key)
        return self._ort[key]

    def ort_session(self, tensors: tuple[str, ...]) -> OrtRunner:
        """A new (uncached) onnxruntime session over the original graph with ``tensors`` exposed."""
        self.check_computed_sizes()  # onnxruntime folds constants when the session starts, and runs the rest
        info = self.loaded.input
        return OrtRunner(expose(self.loaded.proto, list(tensors)), input_name=info.name,
                         layout=info.layout, dtype=info.dtype, fixed_batch=info.fixed_batch,
                         providers=self.devices.ort_providers,
                         readouts={t: self.readouts[t] for t in tensors if t in self.readouts},
                         per_sample=self.dynamic_quantization, threads=self.ort_threads)

    def run_ort(self, x: np.ndarray, tensors: tuple[str, ...]) -> list[np.ndarray]:
        """Activations of ``tensors`` on the deployed graph for ``x`` ``[B, C, H, W]`` (normalized, NCHW)."""
        return self.ort(tensors).run(x, list(tensors))

    def run_ort_each(self, x: np.ndarray, tensors: tuple[str, ...], *, cache: bool = True) -> list[np.ndarray]:
        """Each of ``tensors`` as onnxruntime computes it in the graph that exposes it alone (as ``explain`` runs).

        Exposing a tensor can change what onnxruntime computes in an fp16 graph: it runs on the CPU through Casts to
        fp32 and drops the Cast pairs between nodes, except around a graph output, which is rounded to fp16 and read
        rounded by the layers after it (with every layer of the default model's fp16 build exposed at once, layer 3
        moved by 5e-2 relative). So fp16 graphs get one session per tensor (``cache``: kept for the run); fp32 and
        int8 tensors are exposed exactly as computed, all in one session.
        """
        if not self.normalized.fp16_compute:
            return self.run_ort(x, tensors)
        if cache:
            return [self.run_ort(x, (t,))[0] for t in tensors]
        return [self.ort_session((t,)).run(x, [t])[0] for t in tensors]

    def torch_graph(self, tensors: tuple[str, ...]) -> TorchGraph:
        """The normalized graph truncated at ``tensors``, as a frozen torch module on the run's device (cached)."""
        key = tuple(dict.fromkeys(tensors))
        if key not in self._torch:
            norm = self.normalized
            # The copy's names are generated (frontend/names.py); messages about it get the file's names back.
            sub = truncate(norm.proto, norm.input_name, norm.names.safe(key))
            try:
                tg = to_torch(sub, list(key), readouts={t: self.readouts[t] for t in key if t in self.readouts})
            except ConversionError as e:
                raise ConversionError(norm.names.restore(str(e))) from e
            zero_nonfinite_weights(tg.module)
            tg.module.to(self.devices.torch)
            self._torch[key] = tg
        return self._torch[key]

    def layer_forward(self, tensor: str) -> LayerForward:
        """The torch copy truncated at ``tensor``, as one callable (cached with :meth:`torch_graph`)."""
        return LayerForward(self.torch_graph((tensor,)))

    def run_torch(self, x: np.ndarray, tensors: tuple[str, ...]) -> list[np.ndarray]:
        """Activations from the torch copy (no grad), as float32 numpy arrays."""
        tg = self.torch_graph(tensors)
        try:
            with torch.no_grad():
                outs = tg(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.devices.torch))
        except (RuntimeError, NotImplementedError, ValueError) as e:
            # onnx2torch checks some attributes only when the module runs (Resize of the channel dim, ...).
            raise ConversionError(f"the torch copy of the model fails at batch {len(x)} ({type(e).__name__}: "
                                  f"{self.normalized.names.restore(str(e))[:300]}); {CONVERSION_REMEDY}") from e
        return [o.float().cpu().numpy() for o in outs]

    def synthetic_input(self, batch: int = 2, size: tuple[int, int] | None = None, seed: int = 0,
                        preprocess: Preprocess | None = None) -> np.ndarray:
        """A deterministic input ``[batch, C, H, W]``: smooth synthetic pictures through ``preprocess`` (default: the
        model's own, from its sidecar file or ImageNet's), so it has the range a real image has."""
        from onnx_kernelviz.io.modelinput import to_model_input
        from onnx_kernelviz.io.preprocess import resolve_preprocess
        from onnx_kernelviz.io.synthetic import smooth_pictures

        pp = preprocess or resolve_preprocess(self.path, preset=None, overrides={})
        h, w = self.input_size(size or pp.size)
        return np.stack([to_model_input(p, pp, (h, w), self.channels) for p in smooth_pictures(batch, (h, w), seed)])
