"""Read-only views over an ONNX graph, so stages after ``normalize`` never touch raw protobufs.

The views answer the questions the pipeline asks of a graph: who produces and who consumes a tensor, what a
node's attributes are, which tensors are constant, what shape and element type a tensor has.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


@dataclass(frozen=True)
class NodeView:
    """One node: op type, name, inputs, outputs and decoded attributes."""

    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_proto(cls, node: onnx.NodeProto, index: int) -> NodeView:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
        return cls(node.name or f"{node.op_type}_{index}", node.op_type, node.domain or "",
                   tuple(node.input), tuple(node.output), attrs)


@dataclass(frozen=True)
class TensorType:
    """Element type (numpy dtype) and shape (ints for fixed dims, strings for symbolic, None for unknown)."""

    dtype: np.dtype | None
    shape: tuple[int | str | None, ...] | None


def tensor_type(vi: onnx.ValueInfoProto) -> TensorType:
    """The element type and shape a value_info records."""
    tt = vi.type.tensor_type
    dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type) if tt.elem_type else None
    if not tt.HasField("shape"):
        return TensorType(dtype, None)
    dims: list[int | str | None] = []
    for d in tt.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return TensorType(dtype, tuple(dims))


#: initializers with more elements than this are given to the derived shape inference as shapes only: inference
#: reads values only of small tensors (shapes, axes, pads), and copying the weights would double their memory
_SHAPE_ONLY_ABOVE = 1 << 16


def all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph inside its nodes' attributes (If/Loop/Scan bodies), depth first."""
    yield graph
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("g"):
                yield from all_graphs(a.g)
            for sub in a.graphs:
                yield from all_graphs(sub)


def derived_types(model: onnx.ModelProto, *, data_prop: bool = False,
                  inputs: dict[str, tuple[int, ...]] | None = None) -> dict[str, TensorType]:
    """The types onnx's shape inference derives from the graph's inputs, constants and ops alone, ignoring every
    shape the file declares for intermediate tensors (``value_info``) and outputs; ``{}`` if inference fails.
    ``data_prop``: also follow the values of shape tensors (``Shape`` -> ``Concat`` -> ``ConstantOfShape``).
    ``inputs``: concrete shapes for graph inputs (by name) in place of their declared, possibly free, dims."""
    inferred = derived_graph(model, data_prop=data_prop, inputs=inputs)
    return {} if inferred is None else recorded_types(inferred)


def recorded_types(graph: onnx.GraphProto) -> dict[str, TensorType]:
    """The types recorded in ``graph`` itself (its value_info and outputs; a subgraph's own, not its parent's)."""
    return {vi.name: tensor_type(vi) for vi in (*graph.value_info, *graph.output)}


def derived_graph(model: onnx.ModelProto, *, data_prop: bool = False,
                  inputs: dict[str, tuple[int, ...]] | None = None) -> onnx.GraphProto | None:
    """:func:`derived_types`' inferred graph, subgraphs included: each subgraph (If/Loop/Scan body) holds the types
    inferred for its own tensors in its ``value_info`` and ``output``, what the file declared there cleared first.
    None if inference fails."""
    g = model.graph
    bare = onnx.ModelProto(ir_version=model.ir_version, opset_import=model.opset_import, functions=model.functions)
    bg = bare.graph
    bg.node.extend(g.node)
    bg.input.extend(g.input)
    for vi in bg.input:
        if inputs and vi.name in inputs:
            shape = vi.type.tensor_type.shape
            shape.ClearField("dim")
            for d in inputs[vi.name]:
                shape.dim.add(dim_value=int(d))
    bg.sparse_initializer.extend(g.sparse_initializer)
    for t in g.initializer:
        if int(np.prod(t.dims, dtype=np.float64)) > _SHAPE_ONLY_ABOVE:
            bg.initializer.add(name=t.name, data_type=t.data_type, dims=t.dims)
        else:
            bg.initializer.append(t)
    for o in g.output:  # the name and element type only: a declared output shape is a claim too
        bg.output.add(name=o.name).type.tensor_type.elem_type = o.type.tensor_type.elem_type
    for sub in list(all_graphs(bg))[1:]:  # subgraphs' declared shapes are claims as well
        sub.ClearField("value_info")
        for o in sub.output:
            o.type.tensor_type.ClearField("shape")
    try:
        return onnx.shape_inference.infer_shapes(bare, strict_mode=False, data_prop=data_prop).graph
    except Exception:  # noqa: BLE001 - as in GraphView._types: unknown shapes are allowed everywhere
        return None


def _merged(derived: TensorType, declared: TensorType | None) -> TensorType:
    """``derived`` with its unknown dims (symbolic or None) filled from ``declared`` where both have one rank."""
    if declared is None:
        return derived
    dtype = derived.dtype or declared.dtype
    if derived.shape is None or declared.shape is None or len(derived.shape) != len(declared.shape):
        return TensorType(dtype, derived.shape if derived.shape is not None else declared.shape)
    dims = tuple(d if isinstance(d, int) else (c if isinstance(c, int) else (d or c))
                 for d, c in zip(derived.shape, declared.shape, strict=True))
    return TensorType(dtype, dims)


class GraphView:
    """A read-only index over ``model.graph`` (top-level graph only; subgraphs are not needed for CNN layers)."""

    def __init__(self, model: onnx.ModelProto, *, infer_shapes: bool = True) -> None:
        self._model = model
        self.nodes: tuple[NodeView, ...] = tuple(NodeView.from_proto(n, i) for i, n in enumerate(model.graph.node))
        self.initializer_names = frozenset(t.name for t in model.graph.initializer)
        self.input_names = tuple(i.name for i in model.graph.input if i.name not in self.initializer_names)
        self.output_names = tuple(o.name for o in model.graph.output)
        self._infer = infer_shapes

    @cached_property
    def producer(self) -> dict[str, NodeView]:
        return {out: n for n in self.nodes for out in n.outputs if out}

    @cached_property
    def consumers(self) -> dict[str, list[NodeView]]:
        result: dict[str, list[NodeView]] = {}
        for n in self.nodes:
            for name in dict.fromkeys(n.inputs):  # a node reading a tensor twice (x*x) is one consumer
                if name:
                    result.setdefault(name, []).append(n)
        return result

    @cached_property
    def _constants(self) -> dict[str, onnx.TensorProto]:
        consts = {t.name: t for t in self._model.graph.initializer}
        for n in self._model.graph.node:
            if n.op_type == "Constant" and len(n.output) == 1:
                for a in n.attribute:
                    if a.name == "value":
                        consts[n.output[0]] = a.t
        return consts

    def is_constant(self, name: str) -> bool:
        """True for initializers and outputs of ``Constant`` nodes."""
        return name in self._constants

    def constant(self, name: str) -> np.ndarray | None:
        """The value of an initializer or ``Constant`` output, or None when the tensor is computed."""
        t = self._constants.get(name)
        return None if t is None else numpy_helper.to_array(t)

    def constant_shape(self, name: str) -> tuple[int, ...] | None:
        """Shape of a constant without materialising it (weights can be large)."""
        t = self._constants.get(name)
        return None if t is None else tuple(t.dims)

    @cached_property
    def _types(self) -> dict[str, TensorType]:
        model = self._model
        if self._infer:
            try:
                model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
            except Exception:  # noqa: BLE001 - inference is a nicety: unknown shapes are allowed everywhere
                model = self._model
        g = model.graph
        types = {vi.name: tensor_type(vi) for vi in (*g.input, *g.value_info, *g.output)}
        if not self._infer:
            return types
        # A declared shape (value_info, an output's type) is what the file claims, and onnx's inference keeps it
        # where it contradicts the graph: a conv weight reached through an Identity, declared [10^12, 3, 3, 3],
        # made inspect show 10^12 kernels and diff run out of memory. Dims that follow from the inputs and
        # constants alone win; a declared dim fills in only where inference cannot tell.
        for name, t in self._derived.items():
            types[name] = _merged(t, types.get(name))
        return types

    @cached_property
    def _derived(self) -> dict[str, TensorType]:
        return derived_types(self._model) if self._infer else {}

    def tensor_type(self, name: str) -> TensorType:
        """Element type and shape of a tensor, as far as shape inference knows them."""
        return self._types.get(name, TensorType(None, None))

    def computed_type(self, name: str) -> TensorType:
        """Element type and shape of a computed tensor as far as inference derives them from the inputs and
        constants alone: never a shape the file declares (which :meth:`tensor_type` uses where inference cannot
        tell, and which a crafted file can set to anything)."""
        return self._derived.get(name, TensorType(None, None))

    def has_tensor(self, name: str) -> bool:
        return name in self.producer or name in self.input_names or name in self.initializer_names

    @property
    def opset(self) -> int:
        return opset_version(self._model)


def opset_versions(model: onnx.ModelProto) -> dict[str, int]:
    """``{domain: version}`` of the model's opset imports; the default domain (``""`` or ``"ai.onnx"``) is ``""``.
    The one place the opset is read (load, normalize, convert)."""
    return {("" if o.domain in ("", "ai.onnx") else o.domain): int(o.version) for o in model.opset_import}


def opset_version(model: onnx.ModelProto, domain: str = "") -> int:
    """The opset of ``domain`` (default: the standard ops), 1 when the model does not import it."""
    return opset_versions(model).get("" if domain == "ai.onnx" else domain, 1)


def all_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every tensor stored in the model: initializers and tensors in node attributes, in subgraphs and functions
    too (what external data can back). Beyond the set onnx's own external-data loader visits, also the values and
    indices of sparse tensors: onnx skips them, while its checker and onnxruntime read their external data
    relative to the working directory, outside the model's folder."""

    def sparse(tensors: Iterable[onnx.SparseTensorProto]) -> Iterator[onnx.TensorProto]:
        for st in tensors:
            yield from (st.values, st.indices)

    def graph_tensors(graph: onnx.GraphProto | onnx.FunctionProto) -> Iterator[onnx.TensorProto]:
        if isinstance(graph, onnx.GraphProto):
            yield from graph.initializer
            yield from sparse(graph.sparse_initializer)
        for node in graph.node:
            for a in node.attribute:
                if a.HasField("t"):
                    yield a.t
                yield from a.tensors
                if a.HasField("sparse_tensor"):
                    yield from sparse([a.sparse_tensor])
                yield from sparse(a.sparse_tensors)
                if a.type == onnx.AttributeProto.GRAPH:
                    yield from graph_tensors(a.g)
                yield from (t for g in a.graphs for t in graph_tensors(g))

    yield from graph_tensors(model.graph)
    for function in model.functions:
        yield from graph_tensors(function)
