"""The atlas's output folder: a lock, the run's identity, and checkpoints that ``--resume`` continues from.

``DIR/checkpoint/`` holds ``run.json`` (what the run is: model, images, layers, settings — a resume must match),
``stats.npz`` (the merged statistics of the finished shards and which shards they are), ``rf.json`` (receptive
fields), ``explained/L<layer>/k<kernel>.json`` (one per explained kernel, written after its pictures) and
``time.json`` (the wall time and number of the runs so far, for atlas.json's ``seconds``). Every
file is written atomically, so Ctrl-C or a lost worker leaves the last complete state. A second run on the same
folder is refused while the first holds ``DIR/.kernelviz-atlas.lock``. (Own helpers until ``core``'s results
journal lands in main.)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onnx_kernelviz.atlas.stream import ShardStats
from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.io.files import JsonFileError, atomic_file, read_json_object, write_json
from onnx_kernelviz.io.outdir import OutDirBusy, out_dir_error
from onnx_kernelviz.safefile import NotRegularFile, open_regular

#: what an atlas writes into DIR (``--force`` removes these and nothing else)
OWN = ("atlas.json", "atlas.html", "kernels.parquet", "pages", "tiles", "checkpoint")
#: held for the whole run, taken before the folder is judged or cleared (so ``--force`` never clears a running atlas)
LOCK = ".kernelviz-atlas.lock"


#: the checkpoint file of the runs' wall time (:meth:`Journal.timed`)
TIME = "time.json"


@dataclass
class RunTime:
    """The wall time of one atlas over its runs: ``earlier`` seconds in ``runs`` - 1 earlier runs, and this one's
    since ``start`` (``time.perf_counter``)."""

    start: float
    earlier: float
    runs: int

    def header(self) -> dict:
        """atlas.json's ``seconds`` (the total over the runs), ``seconds_this_run`` and ``runs``."""
        now = time.perf_counter() - self.start
        return {"seconds": round(self.earlier + now, 3), "seconds_this_run": round(now, 3), "runs": self.runs}


#: explanation settings that decide no result, only how the work is batched: a resume may change them (as
#: ``explain --resume`` may), e.g. a smaller --batch-size after running out of memory
_NOT_DECISIVE = frozenset({"batch_size"})


def _differences(previous: dict, identity: dict) -> list[str]:
    """What differs between the run.json there and this run, in words: the keys, and for the explanation settings
    each one that decides a result, with both values (a bare "other method" left the user guessing which)."""
    out = []
    for key in identity.keys() | previous.keys():
        old, new = previous.get(key), identity.get(key)
        if key == "method" and isinstance(old, dict) and isinstance(new, dict):
            out += [f"{k} ({json.dumps(old.get(k))} -> {json.dumps(new.get(k))})"
                    for k in sorted(old.keys() | new.keys()) if k not in _NOT_DECISIVE and old.get(k) != new.get(k)]
        elif old != new:
            out.append(key)
    return sorted(out)


class Journal:
    """The checkpoint folder of one atlas run in ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.dir = out / "checkpoint"

    # -- the folder ----------------------------------------------------------------------------------------------

    def prepare(self, identity: dict, *, force: bool, resume: bool) -> bool:
        """Create or accept ``out``; returns whether earlier work is resumed.

        Raises:
            UsageError: ``out`` is a file, non-empty without ``--force``/``--resume``, or holds another run.
        """
        out = self.out
        identity = json.loads(json.dumps(identity))  # as it reads back from run.json (tuples become lists)
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is a file; give a folder")
        # read only to resume: a damaged checkpoint must not refuse the --force that its message advises
        previous = self._read("run.json") if resume else None
        if out.is_dir() and any(p.name != LOCK for p in out.iterdir()):
            if resume and previous is not None:
                what = _differences(previous, identity)
                if what:
                    raise UsageError(f"{out} holds an atlas with other {', '.join(what)}; resume with the same "
                                     "model, images, --layers, --top, --explain, preprocessing and explanation "
                                     "settings, or use --force to start over")
                return True
            if resume:
                raise UsageError(f"--resume: {out} holds no atlas checkpoint; run without --resume (and with "
                                 "--force if the folder is not empty)")
            if not force:
                raise UsageError(f"--out {out} is not empty; use --force to overwrite, --resume to continue an "
                                 "atlas, or choose a new folder")
            present = [name for name in OWN if (out / name).exists() or (out / name).is_symlink()]
            # --force replaces an earlier atlas (its checkpoint, even a damaged one, or its atlas.json): entries with
            # an atlas's names in a folder no atlas wrote (a web site's pages/) are the user's, and were deleted
            earlier = (self.dir / "run.json").exists() or (out / "atlas.json").is_file()
            if present and not earlier:
                raise UsageError(f"--out {out} holds no atlas, but has {', '.join(present)}, which an atlas would "
                                 "replace; --force only replaces an earlier atlas: choose a new folder")
            for name in present:
                p = out / name
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p)
                else:  # a file, or a link: the link goes, never what it points to
                    p.unlink()
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise out_dir_error(self.dir, e, "create") from None
        write_json(self.dir / "run.json", identity)
        return False

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``DIR/.kernelviz-atlas.lock`` for the run (released by the OS if the process dies)."""
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"--out {self.out} is a file; give a folder")
        # a read-only, full or unwritable --out is the folder's problem (exit 1, explain's own words), not a usage
        # error, and never "unexpected ... please report it"
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise out_dir_error(self.out, e, "create") from None
        try:
            lock = open(self.out / LOCK, "w")  # noqa: SIM115 - closed by the with below
        except OSError as e:
            raise out_dir_error(self.out, e) from None
        with lock as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # exit 1 like explain's busy --out (OutDirBusy): nothing is wrong with the command line
                raise OutDirBusy(f"another kernelviz atlas is writing to {self.out}; wait for it or use another "
                                 "--out") from None
            f.write(str(os.getpid()))
            f.flush()
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self, name: str) -> dict | None:
        """The JSON object ``checkpoint/name``, or None when there is none.

        Raises:
            UsageError: it is unreadable, not a JSON object, a FIFO or device, or over the JSON size cap.
        """
        p = self.dir / name
        if not p.exists():
            return None
        # read_json_object, not read_text: an atlas folder may come from elsewhere, and a FIFO named run.json
        # blocked --resume forever (a link to /dev/zero read until memory ran out)
        try:
            return read_json_object(p, "use --force to start over")
        except JsonFileError as e:
            raise UsageError(f"cannot resume: {e}") from None

    @contextlib.contextmanager
    def timed(self, resumed: bool, start: float) -> Iterator[RunTime]:
        """This run's :class:`RunTime`, after the earlier runs' (recorded in ``time.json``) when resuming. Recorded
        on the way out however the run ends (Ctrl-C, an error), so the next ``--resume`` adds it; a run killed
        outright (SIGKILL), or one before kernelviz recorded it, is not counted."""
        earlier, runs = 0.0, 0
        try:
            recorded = self._read(TIME) if resumed else None
            if recorded is not None:
                earlier, runs = float(recorded["seconds"]), int(recorded["runs"])
        except (UsageError, KeyError, TypeError, ValueError):
            pass  # a damaged record costs the earlier runs' time, not the resume
        clock = RunTime(start, earlier, runs + 1)
        try:
            yield clock
        finally:
            with contextlib.suppress(OSError):  # never hide why the run stopped
                write_json(self.dir / TIME, {"seconds": clock.header()["seconds"], "runs": clock.runs})

    # -- statistics ----------------------------------------------------------------------------------------------

    def save_stats(self, stats: ShardStats, shards: list[int]) -> None:
        with atomic_file(self.dir / "stats.npz") as f:
            np.savez(f, shards=np.array(sorted(shards), np.int64), **stats.to_arrays())  # type: ignore[arg-type]

    def load_stats(self) -> tuple[ShardStats, list[int]] | None:
        p = self.dir / "stats.npz"
        if not p.exists():
            return None
        # open_regular: a FIFO named stats.npz blocked --resume forever (np.load opens whatever it is given)
        try:
            with open_regular(p) as f, np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except NotRegularFile as e:
            raise UsageError(f"cannot resume: {p} is {e.kind}, not a regular file; use --force to start over") \
                from None
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise UsageError(f"cannot resume: {p} is unreadable ({e}); use --force to start over") from None
        return ShardStats.from_arrays(arrays), [int(s) for s in arrays["shards"]]

    # -- receptive fields and explanations -------------------------------------------------------------------------

    def save_json(self, name: str, obj: dict) -> None:
        write_json(self.dir / name, obj)

    def load_json(self, name: str) -> dict | None:
        return self._read(name)

    def kernel_path(self, layer: int, kernel: int) -> Path:
        return self.dir / "explained" / f"L{layer:03d}" / f"k{kernel:04d}.json"

    def explained(self, layer: int, kernel: int) -> list[dict] | None:
        p = self.kernel_path(layer, kernel)
        if not p.exists():
            return None
        try:
            # read_json_object: a FIFO named like a kernel's checkpoint blocked --resume forever
            saved = read_json_object(p)["explanations"]
        except (JsonFileError, KeyError):
            return None  # a damaged checkpoint is redone, not trusted
        return saved if isinstance(saved, list) else None

    def save_kernel(self, layer: int, kernel: int, explanations: list[dict]) -> None:
        write_json(self.kernel_path(layer, kernel), {"layer": layer, "kernel": kernel,
                                                     "explanations": explanations})
