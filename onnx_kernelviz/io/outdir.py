"""The output folder: never overwrite a user's files by accident, never two runs at once, and a run that fails to
start leaves it exactly as it was.

:class:`OutDir` is a context manager around one run's use of ``--out``: on entry it checks the folder (a file in
the way, a non-empty folder without ``--force``/``--resume``), creates it and takes its lock; on exit it releases
the lock, and when the run failed before :meth:`OutDir.commit` (nothing of it was written yet) it removes what
it created. The lock is a file ``.kernelviz.lock`` holding the owner's pid, host and start time: a second run
fails fast naming the first; a lock left by a process that no longer exists on this host is taken over, also when
its pid now belongs to another process (the lock records the process's own start time too).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from onnx_kernelviz.errors import KernelvizError, UsageError

__all__ = ["OutDir", "LOCK_NAME", "OutDirBusy", "out_dir_error"]

LOCK_NAME = ".kernelviz.lock"


class OutDirBusy(KernelvizError):
    """Another run holds the output folder."""


def out_dir_error(path: Path, e: OSError, doing: str = "write",
                  advice: str = "choose another --out or fix the folder") -> KernelvizError:
    """One line for an OSError while writing into the output folder (read-only, full, a file in the way);
    ``advice`` for commands without an --out (``report``)."""
    reason = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
              errno.EROFS: "the file system is read-only", errno.ENOSPC: "the disk is full",
              errno.ENOTDIR: "a file is in the way of a folder there", errno.EEXIST: "a file is in the way there",
              errno.ENAMETOOLONG: "the name is too long for the file system"}.get(e.errno or 0, e.strerror or str(e))
    return KernelvizError(f"cannot {doing} {path}: {reason}; {advice}")


class OutDir:
    """One run's hold on ``--out`` (see the module docstring).

    Args:
        path: the folder. force: write over our own files in a non-empty folder. resume: continue a run there.
        resumable: whether the command has ``--resume`` at all (else the refusal of a non-empty folder does
            not suggest it).
        resume_file: the file of a run that ``resume`` continues (explain: results.json); a non-empty folder
            without it holds nothing to resume, only the user's files, and is refused as without ``resume``.
    """

    def __init__(self, path: str | os.PathLike[str], *, force: bool, resume: bool, resumable: bool = True,
                 resume_file: str | None = None) -> None:
        self.path = Path(path)
        self.force, self.resume, self.resumable, self.resume_file = force, resume, resumable, resume_file
        self.committed = False
        self._created: list[Path] = []
        self._lock = self.path / LOCK_NAME
        self._locked = False

    def __enter__(self) -> OutDir:
        p = self.path
        if p.exists() and not p.is_dir():
            raise UsageError(f"--out {p} is a file; give a folder")
        self._refuse_content()
        self._make_dirs()
        try:
            self._acquire()
            # again, holding the lock: a run that took the folder, wrote it and left between the first look and
            # our lock would otherwise have its results.json replaced by this run's
            self._refuse_content()
        except BaseException:
            self.release()
            self._undo()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
        if kind is not None and not self.committed:
            self._undo()

    def commit(self) -> None:
        """The run writes its first file now: from here on, a failure keeps what was written."""
        self.committed = True

    # -- the folder ------------------------------------------------------------------------------------------------
    def _refuse_content(self) -> None:
        """Without --force or --resume, a folder holding anything but our lock is refused; with --resume, one
        holding no run to continue (``resume_file``)."""
        p = self.path
        if p.is_dir() and self.resume and not self.force and self.resume_file is not None \
                and not (p / self.resume_file).exists() and self._has_content():
            # --resume let a run into any non-empty folder, where it wrote over the user's report.html
            raise UsageError(f"--resume: --out {p} holds no {self.resume_file}, so no run to continue; use --force "
                             "instead to write into it, or choose a new folder")
        if p.is_dir() and not (self.force or self.resume) and self._has_content():
            also = ", --resume to continue a run," if self.resumable else ""
            raise UsageError(f"--out {p} is not empty; use --force to overwrite{also} or choose a new folder")

    def _has_content(self) -> bool:
        try:
            return any(not e.name.startswith(LOCK_NAME) for e in os.scandir(self.path))
        except OSError as e:
            raise out_dir_error(self.path, e, "read") from None

    def _make_dirs(self) -> None:
        missing = []
        for q in (self.path, *self.path.parents):
            if q.exists() or q.is_symlink():
                if not q.is_dir():
                    raise UsageError(f"cannot create --out {self.path}: {q} is a file; choose another folder")
                break
            missing.append(q)
        for q in reversed(missing):
            try:
                q.mkdir()
            except FileExistsError:
                if not q.is_dir():
                    raise UsageError(f"cannot create --out {self.path}: {q} is a file; choose another folder") \
                        from None
                continue
            except OSError as e:
                self._undo()
                raise out_dir_error(q, e, "create") from None
            self._created.append(q)

    def _undo(self) -> None:
        """Remove the folders this run created, if they are still empty (a failed start leaves no trace)."""
        for q in reversed(self._created):
            with contextlib.suppress(OSError):
                q.rmdir()
        self._created.clear()

    # -- the lock --------------------------------------------------------------------------------------------------
    def _acquire(self) -> None:
        # The lock appears with its content in one step (a hard link to a finished temp file), so a reader never
        # takes a lock being written for a garbage (stale) one.
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "process": _process_id(os.getpid())}
        tmp = self._lock.with_name(f"{LOCK_NAME}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(me), encoding="utf-8")
        except OSError as e:
            raise out_dir_error(self.path, e) from None
        try:
            self._link(tmp)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _link(self, tmp: Path) -> None:
        for _ in range(3):
            try:
                os.link(tmp, self._lock)
            except FileExistsError:
                self._remove_if_stale()
                continue
            except OSError as e:
                raise out_dir_error(self.path, e) from None
            self._locked = True
            return
        raise OutDirBusy(f"--out {self.path}: could not take its lock {self._lock}; try again")

    def _remove_if_stale(self) -> None:
        """Remove the lock file there when its owner is gone; raise :class:`OutDirBusy` when it lives.

        Two runs may find the same stale lock at once. Judging it and removing it by name as two steps let the
        slower one remove the lock the faster one had just taken in its place (both then ran into one --out).
        So the stale file is judged and removed under an ``flock`` on it, and only while the name still points
        to that very file: whoever comes second finds the name replaced and looks again.
        """
        try:
            fd = os.open(self._lock, os.O_RDONLY)
        except FileNotFoundError:
            return  # released meanwhile: try again
        except OSError as e:
            raise out_dir_error(self.path, e, "read") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held only by others removing this same stale file, for a moment
            judged = os.fstat(fd)
            try:
                now = os.stat(self._lock)
            except FileNotFoundError:
                return
            if (now.st_dev, now.st_ino) != (judged.st_dev, judged.st_ino):
                return  # replaced since we opened it (another run took it over): look again
            owner = _owner(fd)
            if owner is not None and not _stale(owner):
                raise OutDirBusy(
                    f"--out {self.path} is in use by another kernelviz run (pid {owner.get('pid')} on "
                    f"{owner.get('host')}, started {owner.get('started')}); wait for it to finish or choose "
                    f"another --out (if that run is gone, delete {self._lock})")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._lock)
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._locked:
            with contextlib.suppress(OSError):
                self._lock.unlink()
            self._locked = False


def _owner(fd: int) -> dict[str, object] | None:
    """The content of the open lock file ``fd``; None when it is garbage (treated as stale: a lock appears with
    its content in one step, so it is never half-written)."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _process_id(pid: int) -> str | None:
    """``BOOT_ID:START`` of the live process ``pid`` (Linux: the boot and its start time in clock ticks), unique
    across pid reuse and reboots; ``"gone"`` when no such process exists; None where /proc cannot tell."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone" if Path("/proc/self/stat").exists() else None
    except OSError:
        return None
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    fields = stat_line.rsplit(")", 1)[-1].split()  # after the command name, which may hold spaces and ')'
    return f"{boot}:{fields[19]}" if len(fields) > 19 else None


def _stale(owner: dict[str, object]) -> bool:
    """A lock whose owner is gone: same host and no such process. Another host's lock is never presumed dead."""
    if not owner:
        return True  # ``{}``: garbage, as a lock that cannot be parsed
    pid, host = owner.get("pid"), owner.get("host")
    if host != socket.gethostname() or not isinstance(pid, int) or isinstance(pid, bool):
        return False
    # The pid alone is not enough: a container restarted after a kill runs kernelviz under the very pid (often 1)
    # that the lock names, and any pid is reused in time; the owner's start time tells that process from ours.
    recorded = owner.get("process")
    if isinstance(recorded, str) and _process_id(pid) not in (None, recorded):
        return True
    if pid == os.getpid():
        return False  # this process holds it (a nested use): busy
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by another user
    return False
