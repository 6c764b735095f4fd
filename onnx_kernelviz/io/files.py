"""Files written atomically and JSON read defensively: the one writer every stage uses.

A crash, Ctrl-C or ``kill`` never leaves a half-written file under its final name (temp file in the same folder,
then ``os.replace``), and a JSON file that a person or another program damaged is one clear error, never a
traceback: whatever ``json`` raises (bad syntax, bad UTF-8, a 5,000-digit number beyond Python's integer limit,
nesting too deep for the parser) is caught here.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from onnx_kernelviz.errors import KernelvizError
from onnx_kernelviz.safefile import FileTooLarge, NotRegularFile, read_capped

__all__ = ["atomic_file", "write_bytes", "write_text", "write_json", "read_json_object", "JsonFileError"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(path: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """Yield a temp file in ``path``'s folder (same file system, so ``os.replace`` is atomic), then rename it.

    The rename alone means a reader never sees a half-written file, even if the process dies; ``durable`` also
    flushes it to disk first (fsync), which survives a power cut but cost ~5 ms a file where thousands of
    pictures are written: pictures, which a rerun rebuilds, are written with ``durable=False``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600 and the mode survives the rename: give it the usual umask-based mode
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: Path, data: bytes, *, durable: bool = True) -> Path:
    with atomic_file(path, durable=durable) as f:
        f.write(data)
    return path


def write_text(path: Path, text: str, *, durable: bool = True) -> Path:
    """UTF-8 text; a file name that is not valid UTF-8 inside ``text`` is written with backslash escapes."""
    return write_bytes(path, text.encode("utf-8", "backslashreplace"), durable=durable)


def write_json(path: Path, obj: Any) -> None:
    """Atomic JSON write; NaN/Inf become null so the file is valid JSON for every reader.

    ``json`` writes non-ASCII as ``\\u`` escapes, so names that are not valid UTF-8 (kept by Python as lone
    surrogates) survive too, and read back to the same file name.
    """
    write_bytes(path, json.dumps(_finite(obj), indent=1).encode("ascii"))


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


#: the most bytes :func:`read_json_object` reads (a results.json of 10^5 explanations with baselines is ~1 GB)
MAX_JSON_BYTES = 1 << 30


class JsonFileError(KernelvizError):
    """A JSON file that cannot be read or is not a JSON object."""


def read_json_object(path: Path, what: str = "") -> dict[str, Any]:
    """The JSON object in ``path``.

    Raises:
        JsonFileError: unreadable, not JSON, not an object; the message names the file and the reason in one
            line. ``what`` ends the message with what to do (default: re-run the command that wrote it).
    """
    todo = what or "re-run the command that wrote it"
    try:
        # read_capped: a results folder may come from elsewhere (``kernelviz report DIR``), and a FIFO named
        # results.json blocked forever, a link to /dev/zero read until memory ran out
        data = json.loads(read_capped(path, MAX_JSON_BYTES).decode("utf-8"))
    except NotRegularFile as e:
        raise JsonFileError(f"{path} is {e.kind}, not a regular file; {todo}") from None
    except FileTooLarge as e:
        raise JsonFileError(f"{path} holds {e.size / 2**30:.1f} GB, more than the {MAX_JSON_BYTES >> 30} GB a "
                            f"kernelviz JSON file can; {todo}") from None
    except OSError as e:
        raise JsonFileError(f"cannot read {path}: {e.strerror or e}; {todo}") from None
    except UnicodeDecodeError:
        raise JsonFileError(f"{path} is not UTF-8 text; {todo}") from None
    except json.JSONDecodeError as e:
        raise JsonFileError(f"{path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}); {todo}") \
            from None
    except ValueError as e:  # e.g. an integer of more than 4,300 digits (Python's int conversion limit)
        raise JsonFileError(f"{path} holds a value Python cannot read ({str(e).splitlines()[0][:120]}); {todo}") \
            from None
    except RecursionError:
        raise JsonFileError(f"{path} is nested too deeply to read; {todo}") from None
    if not isinstance(data, dict):
        raise JsonFileError(f"{path} is not a JSON object; {todo}")
    return data
