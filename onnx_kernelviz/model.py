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

from onnx_kernelviz.errors import ConversionError, ModelError
from onnx_kernelviz.frontend.convert import CONVERSION_REMEDY, TorchGraph, to_torch
from onnx_kernelviz.frontend.expose import expose, truncate
from onnx_kernelviz.frontend.graph import GraphView
from onnx_kernelviz.frontend.layers import Layer, find_layers, resolve_layer
from onnx_kernelviz.frontend.load import LoadedModel, load_model
from onnx_kernelviz.frontend.normalize import NormalizedModel, normalize
from onnx_kernelviz.io.preprocess import MAX_SIDE
from onnx_kernelviz.options import Layout
from onnx_kernelviz.runtime import Devices, OrtRunner, resolve_devices

DEFAULT_SIZE = (224, 224)


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

    @property
    def path(self) -> Path:
        return self.loaded.path

    def layer(self, spec: str | int) -> Layer:
        """Resolve ``--layer`` (index, Conv node name or tensor name)."""
        return resolve_layer(self.layers, spec)

    @property
    def channels(self) -> int:
        return self.loaded.input.channels or 3

    def input_size(self, size: tuple[int, int] | None = None) -> tuple[int, int]:
        """The (H, W) to feed: fixed by the model, else ``size``, else 224×224."""
        info = self.loaded.input
        if info.height and info.width:
            if max(info.height, info.width) > MAX_SIDE:  # before anything is allocated at that size
                raise ModelError(f"{self.path} takes a fixed {info.height}x{info.width} (HxW) input, more than the "
                                 f"{MAX_SIDE} pixels per side kernelviz handles; re-export the model with a smaller "
                                 "or dynamic input size (then choose one with --size)")
            return info.height, info.width
        return size or DEFAULT_SIZE

    @cached_property
    def normalized(self) -> NormalizedModel:
        keep = [t for la in self.layers for t in (la.conv_output, la.tensor)]
        return normalize(self.loaded, keep=keep)

    def ort(self, tensors: tuple[str, ...]) -> OrtRunner:
        """onnxruntime over the ORIGINAL graph with ``tensors`` exposed as extra outputs (cached)."""
        key = tuple(dict.fromkeys(tensors))
        if key not in self._ort:
            info = self.loaded.input
            self._ort[key] = OrtRunner(expose(self.loaded.proto, list(key)), input_name=info.name,
                                       layout=info.layout, dtype=info.dtype, fixed_batch=info.fixed_batch,
                                       providers=self.devices.ort_providers, threads=self.ort_threads)
        return self._ort[key]

    def run_ort(self, x: np.ndarray, tensors: tuple[str, ...]) -> list[np.ndarray]:
        """Activations of ``tensors`` on the deployed graph for ``x`` ``[B, C, H, W]`` (normalized, NCHW)."""
        return self.ort(tensors).run(x, list(tensors))

    def torch_graph(self, tensors: tuple[str, ...]) -> TorchGraph:
        """The normalized graph truncated at ``tensors``, as a frozen torch module on the run's device (cached)."""
        key = tuple(dict.fromkeys(tensors))
        if key not in self._torch:
            norm = self.normalized
            # The copy's names are generated (frontend/names.py); messages about it get the file's names back.
            sub = truncate(norm.proto, norm.input_name, norm.names.safe(key))
            try:
                tg = to_torch(sub, list(key))
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

    def synthetic_input(self, batch: int = 2, size: tuple[int, int] | None = None, seed: int = 0) -> np.ndarray:
        """A deterministic input ``[batch, C, H, W]``: smooth random images, roughly unit-normalized."""
        h, w = self.input_size(size)
        rng = np.random.default_rng(seed)
        coarse = rng.standard_normal((batch, self.channels, max(h // 8, 1), max(w // 8, 1))).astype(np.float32)
        x = torch.nn.functional.interpolate(torch.from_numpy(coarse), size=(h, w), mode="bilinear",
                                            align_corners=False)
        return (x + 0.25 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).numpy()
