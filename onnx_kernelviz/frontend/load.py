"""Stage 1: read an ONNX file safely and find its image input.

Models come from strangers. Nothing here executes the model; we read only a regular file of at most 2 GB (a FIFO
or device is refused before it is opened), parse the protobuf, refuse external-data references that leave the
model's folder (``..``, absolute paths, symbolic or hard links, special files), check each external tensor's size
against its shape and its file before onnx reads exactly that much, run the checker and pick the single 4-D
float image input.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, helper

from onnx_kernelviz.errors import ModelError, UsageError
from onnx_kernelviz.frontend.graph import GraphView, all_tensors
from onnx_kernelviz.options import Layout
from onnx_kernelviz.safefile import FileTooLarge, NotRegularFile, read_capped, special_kind

#: protobuf cannot parse a message over 2 GB; larger models keep their weights in external data files.
MAX_MODEL_BYTES = 2 << 30
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
    data = _read_model_file(p)
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
    nodes = list(g.node)
    known = {i.name for i in g.input} | {t.name for t in g.initializer} | {""}
    # Kahn's algorithm, level by level: level k holds the nodes whose inputs levels < k compute, in file order.
    # In linear time: rescanning every pending node once per level took a 30,000-node chain listed backwards
    # ~20 minutes.
    waiting: dict[str, list[int]] = {}  # tensor -> the nodes still waiting for it
    missing = [0] * len(nodes)  # how many distinct inputs each node still waits for
    for i, n in enumerate(nodes):
        for name in set(n.input) - known:
            waiting.setdefault(name, []).append(i)
            missing[i] += 1
    level, order = [i for i, m in enumerate(missing) if m == 0], []
    while level:
        order += level
        following = []
        for i in level:
            for out in nodes[i].output:
                for j in waiting.pop(out, ()):
                    missing[j] -= 1
                    if missing[j] == 0:
                        following.append(j)
        level = sorted(following)
    if len(order) < len(nodes):  # a cycle, or an input nothing computes
        return False
    sorted_nodes = [onnx.NodeProto() for _ in order]
    for dst, i in zip(sorted_nodes, order):
        dst.CopyFrom(nodes[i])
    del g.node[:]
    g.node.extend(sorted_nodes)
    return True


def _read_model_file(p: Path) -> bytes:
    """The model file's bytes: a regular file (a FIFO would block, /dev/zero never ends) of at most 2 GB."""
    if not p.exists():
        raise ModelError(f"model file {p} does not exist; check the path")
    try:
        return read_capped(p, MAX_MODEL_BYTES)
    except NotRegularFile as e:
        raise ModelError(f"{p} is {e.kind}, not a regular file; give the path of an .onnx model file") from None
    except IsADirectoryError:
        raise ModelError(f"{p} is not a file; give the path of an .onnx model file") from None
    except FileTooLarge as e:
        raise ModelError(f"{p} holds {e.size / 2**30:.1f} GB, more than the 2 GB an ONNX file can (protobuf's "
                         "limit); it is not an ONNX model, or re-export it with the weights as external data") from None
    except OSError as e:
        raise ModelError(f"cannot read {p}: {e.strerror or e}; check the file and its permissions") from None


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
    tensors = [t for t in all_tensors(proto) if external_data_helper.uses_external_data(t)]
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
        kind = special_kind(target)  # before is_file: a FIFO is "not a file", but not a missing one
        if kind:
            raise ModelError(f"{where}, which is {kind}, not a regular file; refusing it")
        if not target.is_file():
            raise ModelError(f"{where}, which is missing; put the data file next to the model")
        if not target.resolve().is_relative_to(base):
            raise ModelError(f"{where}, which resolves outside the model's folder; refusing it")
        if target.stat().st_nlink > 1:
            raise ModelError(f"{where}, a file with several hard links (it may be a file from elsewhere); "
                             "copy the data file next to the model instead")
    sizes = {t.name: _cap_external_length(p, base, t) for t in tensors}
    total, ram = sum(sizes.values()), physical_memory()
    if ram and total > ram:
        largest = max(sizes, key=lambda name: sizes[name])
        raise ModelError(f"the weights of {p} take {total / 1e9:.1f} GB (tensor {largest!r} alone "
                         f"{sizes[largest] / 1e9:.1f} GB), more than this machine's {ram / 1e9:.1f} GB of memory; "
                         "use a machine with more memory")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the same unknown-key warnings as above
            # tensor by tensor, not load_external_data_for_model: that one skips sparse tensors (all_tensors)
            for t in tensors:
                external_data_helper.load_external_data_for_tensor(t, str(base))
    except MemoryError:
        raise ModelError(f"not enough free memory to load the {total / 1e9:.1f} GB of weights of {p}; close other "
                         "programs or use a machine with more memory") from None
    except (OSError, ValueError, TypeError, onnx.checker.ValidationError) as e:
        # TypeError: onnx's C++ reader rejects a tensor name that protobuf handed back as bytes (bad UTF-8)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__  # one-line errors only
        raise ModelError(f"cannot read the external data of {p}: {first[:300]}; re-export the model") from e


#: Bits per element of the tensor types whose numpy stand-in is wider than their storage (packed types).
_PACKED_BITS = {getattr(onnx.TensorProto, n): b
                for n, b in (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2))
                if hasattr(onnx.TensorProto, n)}


def _cap_external_length(p: Path, base: Path, t: onnx.TensorProto) -> int:
    """Check one external tensor's data against its shape and its file, and make onnx read exactly that much.

    Without a ``length`` entry onnx's loader reads everything from ``offset`` to the end of the file (a sparse
    1 TB file in the model's folder would be read into memory); the declared length, the shape and the file's
    real size must agree. Returns the tensor's size in bytes.
    """
    info = {e.key: e.value for e in t.external_data}
    where = f"tensor {t.name!r} of {p}"
    try:
        bits = _PACKED_BITS.get(t.data_type) or 8 * helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        offset = int(info.get("offset") or 0)
        declared = int(info["length"]) if info.get("length") else None
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{where} has an element type or external data entry kernelviz cannot read ({e}); "
                         "re-export the model") from None
    if t.data_type == onnx.TensorProto.STRING:
        raise ModelError(f"{where} keeps strings in external data, which ONNX does not allow; re-export the model")
    needed = (math.prod(t.dims) * bits + 7) // 8
    if declared is not None and declared != needed:
        raise ModelError(f"{where} declares {declared} bytes of external data, but its shape "
                         f"{list(t.dims)} needs {needed}; re-export the model")
    size = (base / info["location"]).stat().st_size
    if offset + needed > size:
        raise ModelError(f"{where} needs {needed} bytes at offset {offset} of {info['location']!r}, which holds "
                         f"{size}; the data file is truncated or belongs to another model (re-download it)")
    for entry in t.external_data:
        if entry.key == "length":
            entry.value = str(needed)
            break
    else:
        t.external_data.add(key="length", value=str(needed))
    return needed


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


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
        candidates = [n for n in names if types[n].dtype in _FLOAT_TYPES and len(types[n].shape or ()) == 4]
    if not candidates:
        raise ModelError(f"{p} has no 4-D float image input (inputs: {described}); kernelviz explains CNNs "
                         "that take a float image tensor [N,C,H,W] or [N,H,W,C]")
    if len(candidates) > 1:
        raise ModelError(f"{p} has several image inputs ({', '.join(candidates)}); choose one with --input NAME")
    name = candidates[0]
    t = types[name]
    if t.dtype is None or t.dtype not in _FLOAT_TYPES or t.shape is None or len(t.shape) != 4:
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
