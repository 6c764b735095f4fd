"""The input size to feed a model: its fixed sides as they are, its free sides from the image.

Text recognizers fix the height (32 or 48) and leave the width free; feeding them 224×224 gives a height the
network cannot reduce to 1 and onnxruntime fails deep inside. So fixed sides are kept, a free side follows the
image's aspect ratio, and it is rounded to a multiple of the network's total stride along that axis (the product
of the conv and pooling strides on the way down), so every downsampling divides evenly.
"""

from __future__ import annotations

from onnx_kernelviz.frontend.graph import GraphView
from onnx_kernelviz.frontend.load import InputInfo

DEFAULT_SIZE = (224, 224)
#: strided ops; their ``strides`` attribute lists the spatial axes (H, W)
_STRIDED = frozenset({"Conv", "QLinearConv", "ConvInteger", "FusedConv", "MaxPool", "AveragePool",
                      "LpPool", "QLinearAveragePool"})
#: the largest multiple asked for (deeper strides than this are rare, and the rounding would distort the image)
MAX_MULTIPLE = 32


def size_multiple(graph: GraphView) -> tuple[int, int]:
    """(along H, along W): the largest total stride of any tensor, the product of the strides on its way from the
    input (the most over a node's inputs), capped at :data:`MAX_MULTIPLE`."""
    stride: dict[str, tuple[int, int]] = {}
    best = (1, 1)
    for node in graph.nodes:
        into = [stride[i] for i in node.inputs if i in stride] or [(1, 1)]
        h, w = max(s[0] for s in into), max(s[1] for s in into)
        if node.op_type in _STRIDED:
            st = list(node.attrs.get("strides", [1, 1]))[-2:]
            if len(st) == 2:
                h, w = h * int(st[0]), w * int(st[1])
        for out in node.outputs:
            stride[out] = (h, w)
        best = (max(best[0], h), max(best[1], w))
    return min(best[0], MAX_MULTIPLE), min(best[1], MAX_MULTIPLE)


def input_size(info: InputInfo, multiple: tuple[int, int], size: tuple[int, int] | None = None,
               aspect: float | None = None) -> tuple[int, int]:
    """The (H, W) to feed.

    Args:
        info: the model's image input (fixed sides are ints).
        multiple: :func:`size_multiple` of the graph.
        size: ``--size`` for the free sides (fixed sides win).
        aspect: the image's width / height; a free side opposite a fixed one follows it (square without it).
    """
    h, w = info.height, info.width
    if h and w:
        return h, w
    if size is not None:
        return h or size[0], w or size[1]
    if h:
        return h, _round_to(h * (aspect or 1.0), multiple[1])
    if w:
        return _round_to(w / (aspect or 1.0), multiple[0]), w
    return DEFAULT_SIZE


def _round_to(value: float, m: int) -> int:
    return max(m, int(round(value / m)) * m)
