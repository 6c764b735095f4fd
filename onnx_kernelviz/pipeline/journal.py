"""results.json as a journal: the one object that saves a run's results and resumes it.

Saving is atomic (io/files.py) and throttled: rewriting results.json costs time linear in its length, and after
every result a layer of 1280 kernels spent longer serializing JSON than optimizing; so it is saved after a batch
at most every :data:`SAVE_EVERY` seconds, and always at the end (also on errors, Ctrl-C and SIGTERM), so
``--resume`` loses at most that much work.

Resuming merges: every earlier result stays (other kernels, other images), finished ones (ok, inactive) are not
redone unless their image's content changed (``input_sha256``: a digest of the model input), failed ones are tried
again when asked for. Results are listed in the order asked this time (image, then kernel), then the earlier ones
not asked again, in their earlier order. A folder whose results were made with other settings is refused: the
header's :func:`fingerprint` covers every setting that decides a result. Relative image paths are relative to the
run's working folder (the header's ``cwd``).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.io.files import JsonFileError, read_json_object, write_json
from onnx_kernelviz.io.outdir import out_dir_error
from onnx_kernelviz.results import KernelResult, RunHeader

__all__ = ["Journal", "fingerprint", "input_digest", "SAVE_EVERY", "RESULTS_NAME", "INPUT_KEY"]

#: seconds between saves of results.json while a run goes on
SAVE_EVERY = 5.0
RESULTS_NAME = "results.json"

#: a result's digest of the model input it was made on (:func:`input_digest`)
INPUT_KEY = "input_sha256"

#: settings that do not decide any one result: how work is batched or which items are picked
_NOT_DECISIVE = frozenset({"batch_size", "top_images", "kernels"})


def fingerprint(header: RunHeader) -> str:
    """A hash of what decides a result: the model's bytes, the layer's tensor, the method, and every setting
    except :data:`_NOT_DECISIVE` ones (batching, item selection)."""
    settings = {k: v for k, v in header.settings.items() if k not in _NOT_DECISIVE}
    doc = {"model_sha256": header.model_sha256, "tensor": header.tensor, "method": header.method,
           "settings": settings}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        if key in _NOT_DECISIVE and not prefix:
            continue
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _differences(a, b, f"{prefix}{key}.")
        elif json.dumps(a, default=str) != json.dumps(b, default=str):
            out.append(f"{prefix}{key} {json.dumps(a, default=str)} -> {json.dumps(b, default=str)}")
    return out


class Journal:
    """The header and results of one output folder, and their saving.

    Use :meth:`start` (a new run, or ``resume`` an earlier one there); :meth:`ask` the items of this run in
    order; :meth:`finished` tells what need not be redone; :meth:`add` each new result; :meth:`save`.
    """

    def __init__(self, out: Path, header: RunHeader, earlier: Iterable[KernelResult] = (), *,
                 every: float = SAVE_EVERY, earlier_cwd: str | None = None) -> None:
        self.path = out / RESULTS_NAME
        self.header = replace(header, fingerprint=fingerprint(header))
        if earlier_cwd is not None and header.cwd is not None and earlier_cwd != header.cwd:
            earlier = [replace(r, image=_anchored(r.image, earlier_cwd)) for r in earlier]
        self._results: dict[tuple[str, int], KernelResult] = {r.key: r for r in earlier}
        self._asked: dict[tuple[str, int], int] = {}
        self._alias: dict[str, str] = {}
        self._inputs: dict[str, str] = {}
        self.every = every
        self._last_save = 0.0

    @classmethod
    def start(cls, out: Path, header: RunHeader, *, resume: bool) -> Journal:
        """A journal for a run in ``out``; with ``resume``, holding the results already there.

        Raises:
            UsageError: resuming a folder whose results.json is malformed, or holds results of another model,
                layer, method or settings (the message lists the settings that differ).
        """
        path = out / RESULTS_NAME
        if not resume or not path.exists():
            return cls(out, header)
        todo = "use --force to start over, or a new --out"
        try:
            doc = read_json_object(path, todo)
            old = RunHeader.from_json(doc, RESULTS_NAME)
            raw = doc.get("results", [])
            if not isinstance(raw, list):
                raise ValueError("results is not a list")
            earlier = [KernelResult.from_json(r, f"results[{i}]") for i, r in enumerate(raw)]
        except JsonFileError as e:
            raise UsageError(f"cannot resume: {e}") from None
        except ValueError as e:
            raise UsageError(f"cannot resume: {path} is malformed ({str(e)[:200]}); {todo}") from None
        if old.model_sha256 != header.model_sha256:
            raise UsageError(f"{out} holds results of another model; use a new --out or --force")
        # finished results are keyed by (image, kernel): reusing them for another layer or method would be wrong
        if (old.tensor, old.method) != (header.tensor, header.method):
            raise UsageError(f"{out} holds results for layer {old.tensor!r} with method {old.method!r}; resume with "
                             "the same --layer and --method, or use a new --out or --force")
        if fingerprint(old) != fingerprint(header):
            diff = "; ".join(_differences(old.settings, header.settings)[:6]) or "settings"
            raise UsageError(f"cannot resume: {out} holds results made with other settings ({diff}); resume with "
                             "the same settings, or use a new --out or --force")
        return cls(out, header, earlier, earlier_cwd=old.cwd)

    # -- the items -----------------------------------------------------------------------------------------------
    def ask(self, keys: Iterable[tuple[str, int]], inputs: Mapping[str, str] | None = None) -> None:
        """This run's (image, kernel) items, in the order results.json should list them, and ``inputs``: a digest
        of each image's model input (:func:`input_digest`), stamped on its results (``input_sha256``) so that an
        image whose content changed at the same path is explained again rather than its old result reused."""
        keys = list(keys)
        self._alias = _same_images({image for image, _ in keys}, {image for image, _ in self._results})
        self._asked = {self._key(k): n for n, k in enumerate(keys)}
        self._inputs = {self._key((image, 0))[0]: d for image, d in (inputs or {}).items()}

    def _key(self, key: tuple[str, int]) -> tuple[str, int]:
        """``key`` with its image spelled as an earlier result spells the same file."""
        return self._alias.get(key[0], key[0]), key[1]

    def finished(self, key: tuple[str, int]) -> KernelResult | None:
        """The earlier result of ``key`` when it need not be redone (ok or inactive, made on the same input: a
        result without a digest, written before it was recorded, is taken as it is), else None."""
        key = self._key(key)
        r = self._results.get(key)
        if r is None or not r.finished:
            return None
        was, now = r.extra.get(INPUT_KEY), self._inputs.get(key[0])
        return None if was is not None and now is not None and was != now else r

    def add(self, result: KernelResult) -> None:
        key = self._key(result.key)
        if (digest := self._inputs.get(key[0])) is not None:
            result = replace(result, extra={**result.extra, INPUT_KEY: digest})
        self._results[key] = result

    @property
    def results(self) -> list[KernelResult]:
        """Asked items first, in the order asked, then the earlier results not asked again."""
        n = len(self._asked)
        earlier = {k: i for i, k in enumerate(self._results)}
        ordered = sorted(self._results.items(), key=lambda kr: (self._asked.get(kr[0], n), earlier[kr[0]]))
        return [r for _, r in ordered]

    # -- saving --------------------------------------------------------------------------------------------------
    def save(self, every: float = 0.0) -> None:
        """Write results.json, unless it was written less than ``every`` seconds ago."""
        if time.monotonic() - self._last_save < every:
            return
        try:
            write_json(self.path, {**self.header.to_json(), "results": [r.to_json() for r in self.results]})
        except OSError as e:
            raise out_dir_error(self.path, e) from None
        self._last_save = time.monotonic()


def input_digest(x: np.ndarray) -> str:
    """A short digest of one model input ``[C, H, W]``: what decides a result besides the settings (the image's
    content as fitted and normalized; a resume compares it, so an image edited in place is redone)."""
    a = np.ascontiguousarray(x)
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.tobytes()).hexdigest()[:16]


def _anchored(image: str, cwd: str) -> str:
    """An earlier run's image path as named from another working folder: a relative path joined to that run's
    folder ``cwd`` when a file is there. Relative paths name files relative to the run's own folder: from here
    they would name other files (or none), so its finished results were redone, or, where another file has the
    same relative path here, taken for that file's. A path whose file is gone from there (the project moved with
    its results) stays as it was, read from here as before."""
    if os.path.isabs(image):
        return image
    joined = os.path.join(cwd, image)
    return joined if os.path.exists(joined) else image


def _same_images(asked: set[str], earlier: set[str]) -> dict[str, str]:
    """Each asked image that an earlier result names by another path to the same file (``imgs/a.png`` and
    ``/home/me/imgs/a.png``, a symlink) -> the earlier path. Results are keyed by the path as given: without this,
    a resume naming the images another way explained each of them again and listed it twice."""
    def file_id(path: str) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        return st.st_dev, st.st_ino

    known: dict[tuple[int, int], str] = {}
    for e in sorted(earlier - asked):
        if (fid := file_id(e)) is not None:
            known.setdefault(fid, e)
    return {a: known[fid] for a in asked - earlier if (fid := file_id(a)) is not None and fid in known}
