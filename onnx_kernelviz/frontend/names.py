"""Generated names for the private copy: no string from the model file may become Python source.

Why: onnx2torch names each torch module after its node (``domain/name``), and torch.fx writes a module name that
is not an identifier into the generated ``forward`` as ``getattr(self, "NAME")`` without escaping. A Conv named
``", getattr(__import__("os"), "system")("...")) or ("`` ran that command when the torch copy was built.
So the normalized copy gets a generated identifier for every tensor (``kv_t<i>``), node (``kv_n<i>``) and
symbolic dimension (``kv_d<i>``); :class:`NameMap` keeps the way back, so users only ever see the file's names.
:func:`check_codegen_safe` is the last gate before onnx2torch: it refuses any node whose module name would not
be a plain identifier, whatever produced the graph.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

import onnx

from onnx_kernelviz.errors import ConversionError, UsageError
from onnx_kernelviz.frontend.graph import all_graphs

#: What a generated or accepted name looks like: an ASCII identifier that cannot be a dunder or a keyword.
_SAFE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}\Z")
#: A domain that can only ever form ``getattr(self, "domain/name")`` without quotes or escapes.
_SAFE_DOMAIN = re.compile(r"[A-Za-z0-9_.]{0,100}\Z")
_GENERATED = re.compile(r"'(kv_[tnd]\d+)'|(kv_[tnd]\d+)")


def is_safe(name: str) -> bool:
    """True for names that are plain ASCII identifiers (not keywords, not dunders: they start with a letter)."""
    return bool(_SAFE.match(name)) and not keyword.iskeyword(name)


@dataclass
class NameMap:
    """Original tensor names <-> generated ones, and each generated node name's original (for messages)."""

    tensors: dict[str, str] = field(default_factory=dict)  # original -> generated
    originals: dict[str, str] = field(default_factory=dict)  # generated (tensor, node, dim) -> original

    def safe(self, tensors: tuple[str, ...] | list[str]) -> list[str]:
        """The generated names of ``tensors`` (original names).

        Raises:
            UsageError: a name the model does not have.
        """
        missing = [t for t in tensors if t not in self.tensors]
        if missing:
            raise UsageError(f"the model has no tensor named {missing[0]!r}; run `kernelviz inspect MODEL` "
                             "to list layer tensors")
        return [self.tensors[t] for t in tensors]

    def restore(self, text: str) -> str:
        """``text`` (an error message about the copy) with each generated name replaced by the file's name.

        Quoted generated names (``'kv_n3'``, as messages write them with ``!r``) become the quoted original.
        """
        def original(m: re.Match) -> str:
            name = m.group(1) or m.group(2)
            return repr(self.originals[name]) if name in self.originals else m.group(0)

        # one pass, so a restored name that looks generated (a file may name a tensor kv_t0) is left alone
        return _GENERATED.sub(original, text)

    def _fresh(self, kind: str, original: str) -> str:
        new = f"kv_{kind}{len(self.originals)}"
        self.originals[new] = original
        return new


def rename_tensors(proto: onnx.ModelProto) -> NameMap:
    """Give every tensor name and symbolic dimension of ``proto`` (all graphs, subgraphs included) a generated
    identifier, in place; the same name gets the same identifier in every scope, so outer-scope references
    in subgraphs still resolve. Also drops what the copy never needs and that could carry names:
    ``training_info`` graphs and the names of tensors stored inside attributes."""
    names = NameMap()

    def tensor(name: str) -> str:
        if not name:  # an omitted optional input or output
            return name
        if name not in names.tensors:
            names.tensors[name] = names._fresh("t", name)
        return names.tensors[name]

    dims: dict[str, str] = {}
    proto.ClearField("training_info")
    for g in all_graphs(proto.graph):
        for vi in (*g.input, *g.output, *g.value_info):
            vi.name = tensor(vi.name)
            _rename_dims(vi.type, dims, names)
        for t in g.initializer:
            t.name = tensor(t.name)
        for st in g.sparse_initializer:
            st.values.name = tensor(st.values.name)
            st.indices.name = ""
        for qa in g.quantization_annotation:
            qa.tensor_name = tensor(qa.tensor_name)
            for kv in qa.quant_parameter_tensor_names:
                kv.value = tensor(kv.value)
        for node in g.node:
            node.input[:] = [tensor(i) for i in node.input]
            node.output[:] = [tensor(o) for o in node.output]
            for a in node.attribute:  # HasField first: touching an unset message field would set it
                if a.HasField("t"):
                    a.t.name = ""
                for t in a.tensors:
                    t.name = ""
    return names


def rename_nodes(proto: onnx.ModelProto, names: NameMap) -> None:
    """Name every node ``kv_n<i>`` (all graphs), remembering its current name for messages, and write the
    standard domain as ``""`` (onnx2torch knows it only so); any straggler tensor name that is not a safe
    identifier (one a rewrite library invented) gets a generated one too."""
    strays: dict[str, str] = {}

    def tensor(name: str) -> str:
        if not name or is_safe(name):
            return name
        if name not in strays:
            strays[name] = names._fresh("t", name)
        return strays[name]

    for op in proto.opset_import:
        if op.domain == "ai.onnx":
            op.domain = ""
    seen: dict[str, onnx.OperatorSetIdProto] = {}
    for op in list(proto.opset_import):
        if op.domain in seen:  # "" and "ai.onnx" both listed: keep the higher version
            seen[op.domain].version = max(seen[op.domain].version, op.version)
            proto.opset_import.remove(op)
        else:
            seen[op.domain] = op
    for g in all_graphs(proto.graph):
        for node in g.node:
            node.name = names._fresh("n", node.name or node.op_type)
            if node.domain == "ai.onnx":
                node.domain = ""
            node.input[:] = [tensor(i) for i in node.input]
            node.output[:] = [tensor(o) for o in node.output]
        for vi in (*g.input, *g.output, *g.value_info):
            vi.name = tensor(vi.name)
        for t in g.initializer:
            t.name = tensor(t.name)


def check_codegen_safe(proto: onnx.ModelProto) -> None:
    """Refuse a graph in which a node would give torch.fx a module name that is not a plain identifier.

    onnx2torch's module name is ``domain/name`` (dots in the name become ``/``); fx quotes it without escaping.

    Raises:
        ConversionError: a node name or domain that could become code (the graph did not come from normalize).
    """
    for node in (n for g in all_graphs(proto.graph) for n in g.node):
        if not is_safe(node.name):
            raise ConversionError(f"node {node.name!r} has a name that is not a plain identifier; kernelviz only "
                                  "converts its own normalized copy of a model (Model.torch_graph)")
        if not _SAFE_DOMAIN.match(node.domain):
            raise ConversionError(f"node {node.name!r} has the domain {node.domain!r}, which is not a valid ONNX "
                                  "domain; re-export the model")


def _rename_dims(tp: onnx.TypeProto, dims: dict[str, str], names: NameMap) -> None:
    """Symbolic dimensions become ``kv_d<i>`` (onnx-ir parses them as expressions; keep file text out of it)."""
    kind = tp.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        inner = getattr(tp, kind)
        for d in inner.shape.dim:
            if d.HasField("dim_param"):
                if d.dim_param not in dims:
                    dims[d.dim_param] = names._fresh("d", d.dim_param)
                d.dim_param = dims[d.dim_param]
            if d.HasField("denotation"):
                d.denotation = ""
    elif kind == "sequence_type":
        _rename_dims(tp.sequence_type.elem_type, dims, names)
    elif kind == "optional_type":
        _rename_dims(tp.optional_type.elem_type, dims, names)
    elif kind == "map_type":
        _rename_dims(tp.map_type.value_type, dims, names)
