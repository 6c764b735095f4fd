"""Step 1 of an explanation: images -> model inputs, references and onnxruntime activations, once per image set.

Everything here is computed once per (images, layer) and shared by every kernel explained on them (``explain``,
``compare``, the atlas and the benchmarks call :func:`prepare`, never a copy of it).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from onnx_kernelviz.frontend.layers import Layer
from onnx_kernelviz.io.decode import median_aspect, read_image
from onnx_kernelviz.io.modelinput import FitPlan, from_model_input, mean_colour, plan_fit, to_model_input
from onnx_kernelviz.io.preprocess import Preprocess, valid_range
from onnx_kernelviz.measure.metrics import kernel_energy
from onnx_kernelviz.method.config import ExplainConfig
from onnx_kernelviz.method.references import REFERENCES
from onnx_kernelviz.model import Model

__all__ = ["Prepared", "prepare", "image_folder", "input_size_for"]


@dataclass
class Prepared:
    """One layer on a set of images, ready to explain.

    Attributes:
        x: model inputs ``[N, C, H, W]``; b: their references (what a mask puts where it removes the photo), same
            shape; t_ort: onnxruntime activations of the layer ``[N, C', h, w]``; energy: ‖r_k(x)‖ ``[N, C']``;
            finite: whether kernel k's own activation on image i is free of NaN/Inf ``[N, C']``.
        photos: each input as the model saw it ``[H, W, 3]`` uint8; notes: how each image was converted.
        folders: each image's output folder name (:func:`image_folder`); fits: how each picture was fitted.
    """

    layer: Layer
    paths: list[Path]
    photos: list[np.ndarray]
    notes: list[tuple[str, ...]]
    x: np.ndarray
    b: np.ndarray
    t_ort: np.ndarray
    energy: np.ndarray
    finite: np.ndarray
    folders: list[str]
    #: how each picture was fitted to the input (io/modelinput.py)
    fits: list[FitPlan]

    def image(self, i: int) -> str:
        """Image i's name as results.json records it."""
        return str(self.paths[i])


def input_size_for(model: Model, paths: list[Path], pp: Preprocess) -> tuple[int, int]:
    """The (H, W) the images are fed at: the model's fixed sides, ``--size``, and a free side next to a fixed one
    following the images' median aspect ratio (read from their headers; frontend/inputsize.py)."""
    aspect = median_aspect(paths) if model.aspect_matters(pp.size) else None
    return model.input_size(pp.size, aspect)


def prepare(model: Model, paths: list[Path], layer: Layer, pp: Preprocess, config: ExplainConfig) -> Prepared:
    """Read and preprocess the images, build their references, and run them once through onnxruntime."""
    size = input_size_for(model, paths, pp)
    # each picture is fitted to the input as it is read, so only input-sized arrays are kept (io/decode.py)
    loaded = [read_image(p, size=size, fit=pp.fit, fill=mean_colour(pp)) for p in paths]
    x = np.stack([to_model_input(im, pp, size, model.channels) for im in loaded])
    photos = [from_model_input(xi, pp) for xi in x]
    lo, hi = (torch.from_numpy(v) for v in valid_range(pp, model.channels))
    gen = torch.Generator().manual_seed(config.seed)
    b = REFERENCES.get(config.reference)(torch.from_numpy(x), lo, hi, gen).numpy()
    t = model.run_ort(x, (layer.tensor,))[0]
    notes = [im.notes for im in loaded]
    finite = np.isfinite(t.reshape(*t.shape[:2], -1)).all(axis=2)
    energy = np.stack([kernel_energy(ti) for ti in t])
    return Prepared(layer, paths, photos, notes, x, b, t, energy, finite, [image_folder(p) for p in paths],
                    [plan_fit(im.original_size, size, pp.fit) for im in loaded])


#: the most bytes of an image's stem in its output folder's name (file systems allow 255 per name)
STEM_BYTES = 64


def image_folder(path: Path) -> str:
    """The output folder of an image: its stem, cut to :data:`STEM_BYTES` bytes, and a hash of the whole path.

    The hash keeps two images with the same stem (``a/cat.jpg``, ``b/cat.jpg``) or the same long prefix apart,
    also across runs merged by ``--resume``; the cut keeps a 250-byte file name from exceeding the file system's
    limit once ``_hash`` is added. A stem that is not valid UTF-8 stays as the bytes it was.
    """
    stem = path.stem
    while len(os.fsencode(stem)) > STEM_BYTES:
        stem = stem[:-1]
    digest = hashlib.sha1(os.fsencode(str(path))).hexdigest()[:8]
    return f"{stem}_{digest}"
