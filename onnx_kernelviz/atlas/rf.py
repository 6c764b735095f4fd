"""Receptive fields of activation cells, so an atlas tile can show the pixels that made a kernel fire.

Until the ``focus`` work's rf_box (computed from the graph) is in main, the box is measured on the torch copy:
the input pixels where the gradient of the layer's conv output at its centre cell is non-zero, united over two
random inputs (a ReLU that is off on one input can hide a path; on the other it is on). Convolutions are
translation equivariant, so the centre cell's span ``[a, b)`` gives every cell's: cell r spans
``[a + (r − c)·s, b + (r − c)·s)`` with s = H / h, clipped to the image. A centre span cut by the image border on
one side only (deep layers) is completed by symmetry about the cell's centre. One backward pass per layer
(the two corner cells would need two, for the same boxes away from the borders).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from onnx_kernelviz.frontend.layers import Layer
from onnx_kernelviz.model import Model


@dataclass(frozen=True)
class Span:
    """One axis of a layer's receptive fields: input size ``n``, map size ``m``, and the input span
    ``[start, end)`` of map cell ``cell`` (unclipped: it may reach past the image)."""

    n: int
    m: int
    cell: int
    start: float
    end: float

    @classmethod
    def measured(cls, n: int, m: int, cell: int, start: int, end: int) -> Span:
        """From the observed (clipped) span of ``cell``; a side cut by the border is mirrored from the other."""
        mid, a, b = (cell + 0.5) * n / m, float(start), float(end)
        if start <= 0 < end < n:
            a = min(0.0, 2 * mid - end)
        elif end >= n > start > 0:
            b = max(float(n), 2 * mid - start)
        return cls(n, m, cell, a, b)

    def box(self, cell: int) -> tuple[int, int]:
        """The input span ``[start, end)`` of cell ``cell``, clipped to the image."""
        shift = (cell - self.cell) * self.n / self.m
        start, end = max(0, round(self.start + shift)), min(self.n, round(self.end + shift))
        return (start, end) if end > start else (0, self.n)


@dataclass(frozen=True)
class ReceptiveField:
    """Rows and columns of one layer's receptive fields."""

    rows: Span
    cols: Span

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``[top, left, bottom, right)`` of cell (row, col), in model-input pixels."""
        (t, b), (lft, r) = self.rows.box(row), self.cols.box(col)
        return t, lft, b, r


def receptive_fields(model: Model, layers: list[Layer], size: tuple[int, int], seeds: int = 2) \
        -> dict[int, ReceptiveField]:
    """Every layer's :class:`ReceptiveField` at input ``size`` (H, W), from one torch graph over all their convs."""
    tensors = tuple(la.conv_output for la in layers)
    tg = model.torch_graph(tensors)
    x = torch.from_numpy(model.synthetic_input(seeds, size=size)).to(model.devices.torch).requires_grad_(True)
    outs = tg(x)
    fields = {}
    for n, (la, t) in enumerate(zip(layers, outs)):
        h, w = (int(v) for v in t.shape[-2:])
        ch, cw = h // 2, w // 2
        (g,) = torch.autograd.grad(t[:, :, ch, cw].sum(), x, retain_graph=n < len(layers) - 1)
        support = (g.abs().amax(dim=(0, 1)) > 0).cpu().numpy()  # [H, W], united over seeds and channels
        top, left, bottom, right = _extent(support)
        fields[la.index] = ReceptiveField(Span.measured(size[0], h, ch, top, bottom),
                                          Span.measured(size[1], w, cw, left, right))
    return fields


def _extent(support: np.ndarray) -> tuple[int, int, int, int]:
    """Bounding box ``[top, left, bottom, right)`` of a boolean ``[H, W]`` map (the whole map when empty)."""
    rows, cols = np.nonzero(support.any(axis=1))[0], np.nonzero(support.any(axis=0))[0]
    if not len(rows):
        return 0, 0, support.shape[0], support.shape[1]
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def fallback_fields(layers: list[Layer], size: tuple[int, int], shapes: dict[int, tuple[int, int]]) \
        -> dict[int, ReceptiveField]:
    """Boxes three cells' stride wide around each cell, for models whose torch copy cannot be built."""
    out = {}
    for la in layers:
        h, w = shapes[la.index]
        sh, sw = size[0] / h, size[1] / w
        out[la.index] = ReceptiveField(Span(size[0], h, 0, -sh, 2 * sh), Span(size[1], w, 0, -sw, 2 * sw))
    return out
