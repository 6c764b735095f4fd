"""Stage 1: read an ONNX file safely and find its image input.

Models come from strangers. Nothing here executes the model; we parse the protobuf, refuse external-data
references that leave the model's folder (``..``, absolute paths, symbolic or hard links), run the checker and
pick the single 4-D float image input.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from onnx_kernelviz.errors import ModelError, UsageError
from onnx_kernelviz.frontend.graph import GraphView

Layout = Literal["nchw", "nhwc"]
_FLOAT_TYPES = {np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)}


@dataclass(frozen=True)
class InputInfo:
    """The model's image input as the deployed graph sees it.

    ``shape`` is in the model's own layout; ``channels``/``height``/``width`` are ints when fixed, else None.
    """

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype
    layout: Layout
    channels: int | None
    height: int | None
    width: int | None

    @property
    def fixed_batch(self) -> int | None:
        """The batch size the graph hard-codes (usually 1), or None when it is symbolic."""
        b = self.shape[0]
        return b if isinstance(b, int) and b > 0 else None


@dataclass(frozen=True)
class LoadedModel:
    """A parsed, checked model. ``proto`` is the user's graph, unchanged (external data loaded in memory)."""

    path: Path
    proto: onnx.ModelProto
    sha256: str
    input: InputInfo
    opset: int
    producer: str


def load_model(path: str | os.PathLike[str], *, input_name: str | None = None,
               layout: Layout | None = None) -> LoadedModel:
    """Read and check an ONNX model, refusing anything unsafe or unusable.

    Args:
        path: the ``.onnx`` file.
        input_name: which input is the image, for models with several 4-D float inputs.
        layout: force ``"nchw"`` or ``"nhwc"`` when auto-detection guesses wrong.

    Raises:
        ModelError: not a readable ONNX model, unsafe external data, no usable image input.
    """
    p = Path(path)
    if not p.exists():
        raise ModelError(f"model file {p} does not exist; check the path")
    if not p.is_file():
        raise ModelError(f"{p} is not a file; give the path of an .onnx model file")
    data = p.read_bytes()
    if not data:
        raise ModelError(f"{p} is empty; it is not an ONNX model (re-export or re-download it)")
    proto = _parse(p, data)
    _load_external_data(p, proto)
    try:
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as e:
            # onnxruntime's float16 converter (keep_io_types) appends the input Casts after the nodes that read
            # them; onnxruntime sorts the graph itself and runs such files, so sort them the same way.
            if "topologically sorted" not in str(e) or not _toposort(proto):
                raise
            onnx.checker.check_model(proto)
    except (onnx.checker.ValidationError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{p} fails the ONNX checker ({first[:300]}); re-export the model") from e
    graph = GraphView(proto)
    info = _image_input(p, graph, input_name, layout)
    return LoadedModel(p, proto, hashlib.sha256(data).hexdigest(), info, graph.opset, proto.producer_name or "")


def _toposort(proto: onnx.ModelProto) -> bool:
    """Put the top-level nodes in an order where every input is computed before it is read (stable: nodes keep
    their relative order where they can). Returns False when the graph has a cycle or reads a missing tensor."""
    g = proto.graph
    known = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    pending, order = list(g.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            return False
        for n in ready:
            known.update(n.output)
        order += ready
        pending = [n for n in pending if all(n is not r for r in ready)]
    sorted_nodes = [onnx.NodeProto() for _ in order]
    for dst, src in zip(sorted_nodes, order):
        dst.CopyFrom(src)
    del g.node[:]
    g.node.extend(sorted_nodes)
    return True


def _parse(p: Path, data: bytes) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError) as e:
        raise ModelError(f"{p} is not a readable ONNX model (protobuf parse failed: {e}); "
                         "check that the file is a complete .onnx export") from e
    # Protobuf is lenient: many non-ONNX byte strings parse into an almost empty message.
    if proto.ir_version <= 0 or not proto.HasField("graph") or len(proto.graph.node) == 0:
        raise ModelError(f"{p} is not an ONNX model (no graph found); check that the file is a complete .onnx export")
    return proto


def _load_external_data(p: Path, proto: onnx.ModelProto) -> None:
    """Load external tensor data, but only from regular files inside the model's own folder."""
    tensors = [t for t in external_data_helper._get_all_tensors(proto)
               if external_data_helper.uses_external_data(t)]
    if not tensors:
        return
    base = p.parent.resolve()
    for t in tensors:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # onnx warns about unknown keys; the checks below decide
                info = external_data_helper.ExternalDataInfo(t)
        except (ValueError, TypeError) as e:  # e.g. a non-numeric offset or length
            raise ModelError(f"tensor {t.name!r} of {p} has invalid external data information ({e}); "
                             "re-export the model") from e
        loc = info.location
        if not isinstance(loc, str):  # protobuf hands back bytes for a location that is not valid UTF-8
            raise ModelError(f"tensor {t.name!r} of {p} stores its data in {loc!r}, which is not a valid file "
                             "name; re-export the model")
        where = f"tensor {t.name!r} of {p} stores its data in {loc!r}"
        if not loc or os.path.isabs(loc) or Path(loc).is_absolute() or loc.startswith(("/", "\\")) or ":" in loc:
            raise ModelError(f"{where}, an absolute path; refusing to read files outside the model's folder")
        parts = Path(loc.replace("\\", "/")).parts
        if ".." in parts:
            raise ModelError(f"{where}, which leaves the model's folder; refusing it")
        target = base / loc
        if target.is_symlink() or any((base / Path(*parts[:i])).is_symlink() for i in range(1, len(parts))):
            raise ModelError(f"{where}, a symbolic link; copy the data file next to the model instead")
        if not target.is_file():
            raise ModelError(f"{where}, which is missing; put the data file next to the model")
        if not target.resolve().is_relative_to(base):
            raise ModelError(f"{where}, which resolves outside the model's folder; refusing it")
        if target.stat().st_nlink > 1:
            raise ModelError(f"{where}, a file with several hard links (it may be a file from elsewhere); "
                             "copy the data file next to the model instead")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same unknown-key warnings as above
            external_data_helper.load_external_data_for_model(proto, str(base))
    except (OSError, ValueError, TypeError, onnx.checker.ValidationError) as e:
        # TypeError: onnx's C++ reader rejects a tensor name that protobuf handed back as bytes (bad UTF-8)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__  # one-line errors only
        raise ModelError(f"cannot read the external data of {p}: {first[:300]}; re-export the model") from e


def _image_input(p: Path, graph: GraphView, input_name: str | None, layout: Layout | None) -> InputInfo:
    names = graph.input_names
    if not names:
        raise ModelError(f"{p} has no inputs; kernelviz needs a model with an image input")
    types = {n: graph.tensor_type(n) for n in names}
    described = ", ".join(f"{n} {_describe(types[n].dtype, types[n].shape)}" for n in names)
    if input_name is not None:
        if input_name not in names:
            raise UsageError(f"the model has no input {input_name!r}; its inputs are: {described}")
        candidates = [input_name]
    else:
        candidates = [n for n in names if types[n].dtype in _FLOAT_TYPES and types[n].shape is not None
                      and len(types[n].shape) == 4]
    if not candidates:
        raise ModelError(f"{p} has no 4-D float image input (inputs: {described}); kernelviz explains CNNs "
                         "that take a float image tensor [N,C,H,W] or [N,H,W,C]")
    if len(candidates) > 1:
        raise ModelError(f"{p} has several image inputs ({', '.join(candidates)}); choose one with --input NAME")
    name = candidates[0]
    t = types[name]
    if t.dtype not in _FLOAT_TYPES or t.shape is None or len(t.shape) != 4:
        raise ModelError(f"input {name!r} is {_describe(t.dtype, t.shape)}; kernelviz needs a 4-D float image "
                         "input (integer inputs cannot carry gradients)")
    others = [n for n in names if n != name]
    if others:
        raise ModelError(f"{p} needs inputs besides the image ({', '.join(others)}); kernelviz supports models "
                         "whose only input is the image")
    lay = layout or _detect_layout(graph, name, t.shape)
    c, h, w = (t.shape[1], t.shape[2], t.shape[3]) if lay == "nchw" else (t.shape[3], t.shape[1], t.shape[2])
    as_int = lambda d: d if isinstance(d, int) and d > 0 else None  # noqa: E731
    return InputInfo(name, t.shape, t.dtype, lay, as_int(c), as_int(h), as_int(w))


def _detect_layout(graph: GraphView, name: str, shape: tuple[int | str | None, ...]) -> Layout:
    """NCHW unless the data says NHWC: channels-last dims, or a Transpose to NCHW right after the input."""
    for n in graph.consumers.get(name, []):
        if n.op_type == "Transpose" and list(n.attrs.get("perm", [])) == [0, 3, 1, 2]:
            return "nhwc"
        if n.op_type == "Conv":
            return "nchw"
    c1, c3 = shape[1], shape[3]
    if isinstance(c3, int) and c3 in (1, 3, 4) and not (isinstance(c1, int) and c1 in (1, 3, 4)):
        return "nhwc"
    return "nchw"


def _describe(dtype: np.dtype | None, shape: tuple | None) -> str:
    dims = "?" if shape is None else "[" + ",".join("?" if d is None else str(d) for d in shape) + "]"
    return f"{dtype if dtype is not None else 'unknown type'}{dims}"
