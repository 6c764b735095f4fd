"""Receptive fields of every cell of a layer, so an atlas tile can show the pixels that made a kernel fire.

The box of one cell comes from the graph (``frontend.receptive``, the focus work's rf_box: the input pixels that
can influence the cell). The atlas needs boxes for ~10^5 exemplar cells, so it asks the graph for two cells per
layer, the first (0, 0) and the last (h−1, w−1), and translates: convolutions are translation equivariant, so cell
r of h spans ``[a_last − (h−1−r)·s, b_0 + r·s)`` with s = H / h, clipped to the image — ``b_0`` the end of cell 0's
span and ``a_last`` the start of the last cell's. The corners' clipping is harmless: a span that reaches past the
image at the corner cell reaches past it from every cell on that side too. (tests/test_atlas.py checks the
translated boxes against the graph's own for every cell of a strided, padded model.)
"""

from __future__ import annotations

from dataclasses import dataclass

from onnx_kernelviz.frontend.layers import Layer
from onnx_kernelviz.frontend.receptive import receptive_field, tensor_shapes
from onnx_kernelviz.model import Model


@dataclass(frozen=True)
class Span:
    """One axis of a layer's receptive fields: input size ``n``, map size ``m``, the end of cell 0's span and the
    start of the last cell's."""

    n: int
    m: int
    first_end: int
    last_start: int

    def box(self, cell: int) -> tuple[int, int]:
        """The input span ``[start, end)`` of cell ``cell``, clipped to the image."""
        s = self.n / self.m
        start = max(0, self.last_start - round((self.m - 1 - cell) * s))
        end = min(self.n, self.first_end + round(cell * s))
        return (start, end) if end > start else (0, self.n)


@dataclass(frozen=True)
class LayerField:
    """Rows and columns of one layer's receptive fields."""

    rows: Span
    cols: Span

    def box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``[top, left, bottom, right)`` of cell (row, col), in model-input pixels."""
        (t, b), (lft, r) = self.rows.box(row), self.cols.box(col)
        return t, lft, b, r


def receptive_fields(model: Model, layers: list[Layer], size: tuple[int, int]) -> dict[int, LayerField]:
    """Every layer's :class:`LayerField` at input ``size`` (H, W), from the graph (no torch, no image)."""
    info = model.loaded.input
    shape = (1, model.channels, *size) if info.layout == "nchw" else (1, *size, model.channels)
    shapes = tensor_shapes(model.loaded.proto, info.name, shape)
    out = {}
    for la in layers:
        dims = shapes.get(la.tensor) or la.shape or ()
        h, w = (dims[2], dims[3]) if len(dims) == 4 else (None, None)
        if not isinstance(h, int) or not isinstance(w, int):
            # no static map size: a box over the whole image for every cell (still true, only less tight)
            out[la.index] = LayerField(Span(size[0], 1, size[0], 0), Span(size[1], 1, size[1], 0))
            continue

        first, last = (receptive_field(model.graph, shapes, la.tensor, (r, c, r + 1, c + 1), info.name,
                                       info.layout, size).box for r, c in ((0, 0), (h - 1, w - 1)))
        out[la.index] = LayerField(Span(size[0], h, first[2], last[0]), Span(size[1], w, first[3], last[1]))
    return out
