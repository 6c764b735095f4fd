"""Stage 1b: refuse graphs that compute tensors too large for this machine, before anything computes them.

A model is a program, and a 1 KB file can ask for any amount of memory: ``ConstantOfShape`` of a constant shape
``[5e9]`` (or Expand, Tile, Range, Resize with constant arguments). onnxscript's constant folding, which
``normalize`` runs (and forces for ``ConstantOfShape``), computes such a tensor before it checks its size limit,
and onnxruntime allocates it when a session starts or runs, even in a branch no output uses. Both come after
:func:`check_computed_sizes`, which sizes every node's output from what shape inference knows statically (the
constants and the fixed sides of the input) and refuses the graph with one line naming the node.
"""

from __future__ import annotations

import math
from pathlib import Path

import onnx

from onnx_kernelviz.errors import ModelError
from onnx_kernelviz.frontend.graph import GraphView, NodeView, TensorType, all_graphs, derived_graph, recorded_types
from onnx_kernelviz.frontend.load import physical_memory

#: the largest share of this machine's memory one computed tensor may take: onnxscript's folder and onnxruntime
#: each hold a copy, and a run needs room for the activations and the torch copy besides; a real CNN's largest
#: activation at a fixed input that kernelviz can explain is far below it
MEMORY_SHARE = 4
#: the bound where the OS does not say how much memory there is (a quarter of 64 GB)
FALLBACK_BYTES = 16 << 30


def max_computed_bytes() -> int:
    """The most bytes one tensor the graph computes may take on this machine."""
    ram = physical_memory()
    return ram // MEMORY_SHARE if ram else FALLBACK_BYTES


def check_computed_sizes(proto: onnx.ModelProto, path: Path, inputs: dict[str, tuple[int, ...]] | None = None,
                         ) -> None:
    """Refuse ``proto`` when a node's statically known output is larger than :func:`max_computed_bytes`.

    Sizes come from onnx's shape inference with data propagation over the inputs and constants (never the
    shapes the file declares) and, where inference gives up, from a constant shape argument directly. Outputs
    whose size depends on a free input side are known only with ``inputs`` (the concrete input shapes a run will
    feed, by input name: ``Model.input_size`` checks each size it picks). Subgraphs (If/Loop/Scan bodies) too,
    from the types inferred inside them.

    Raises:
        ModelError: one line naming the node, its output's shape and size, and what to do.
    """
    limit = max_computed_bytes()
    graph = GraphView(proto, infer_shapes=False)
    inferred = derived_graph(proto, data_prop=True, inputs=inputs)
    types = {} if inferred is None else recorded_types(inferred)
    for node in graph.nodes:
        for out in (o for o in node.outputs if o):
            t = types.get(out, TensorType(None, None))
            _refuse(node.name, node.op_type, _static(t.shape) or _from_shape_argument(graph, node), t, limit, path,
                    inputs)
    # If/Loop/Scan bodies: onnxscript's folding inlines a branch whose condition is constant, and onnxruntime
    # runs it, so a body's tensors are sized too, each from the types inferred in its own graph
    for sub in list(all_graphs(inferred))[1:] if inferred is not None else []:
        own = recorded_types(sub)
        for i, n in enumerate(sub.node):
            for out in (o for o in n.output if o):
                t = own.get(out, TensorType(None, None))
                _refuse(n.name or f"{n.op_type}_{i}", n.op_type, _static(t.shape), t, limit, path, inputs)


def _refuse(name: str, op_type: str, dims: tuple[int, ...] | None, t: TensorType, limit: int, path: Path,
            inputs: dict[str, tuple[int, ...]] | None) -> None:
    """Raise the one-line ModelError when a node's output of shape ``dims`` (None: unknown) exceeds ``limit``."""
    if dims is None:
        return
    # float: a product of crafted dims would overflow int64 silently
    nbytes = math.prod(float(max(d, 0)) for d in dims) * (t.dtype.itemsize if t.dtype is not None else 4)
    if nbytes > limit:
        raise ModelError(
            f"node {name!r} ({op_type}) of {path} computes a tensor of shape "
            f"[{', '.join(str(d) for d in dims)}] ({nbytes / 1e9:.1f} GB), more than the {limit / 1e9:.1f} GB "
            "one computed tensor may take here (a quarter of this machine's memory)"
            + (f" at the input shape {list(next(iter(inputs.values())))}" if inputs else "")
            + "; the file may be crafted: use the model from its source, or re-export it without that node")


def _static(shape: tuple[int | str | None, ...] | None) -> tuple[int, ...] | None:
    """``shape`` when every dim is a number, else None (it depends on a free input side, or is unknown)."""
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return tuple(int(d) for d in shape if d is not None)


def _from_shape_argument(graph: GraphView, node: NodeView) -> tuple[int, ...] | None:
    """Where inference gives up (e.g. on an input it cannot type), a constant shape argument still gives at least
    the output's element count: ConstantOfShape's input 0, Expand's input 1."""
    index = {"ConstantOfShape": 0, "Expand": 1}.get(node.op_type)
    if index is None or node.domain not in ("", "ai.onnx") or len(node.inputs) <= index:
        return None
    shape = graph.constant(node.inputs[index])
    return tuple(int(d) for d in shape.ravel()) if shape is not None and shape.size <= 64 else None
