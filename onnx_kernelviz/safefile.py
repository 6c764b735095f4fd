"""Reading files that strangers name: regular files only, never blocking, never more than a cap.

A FIFO given as an image used to hang forever and ``/dev/zero`` read until memory ran out. Every file kernelviz
reads on a user's say-so (model, external data, images) goes through :func:`special_kind` before it is opened and
through :func:`read_capped` to read it: ``os.stat`` first (no open, so a FIFO cannot block), then ``O_NONBLOCK``
and ``fstat`` on the open descriptor (the path may have been swapped in between), then at most ``limit`` bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class NotRegularFile(ValueError):
    """The path is a FIFO, device or socket; ``kind`` says which, in words."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class FileTooLarge(ValueError):
    """The file holds more than the cap allows; ``size`` is what it holds (at least ``limit + 1``)."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes > {limit}")
        self.size, self.limit = size, limit


def special_kind(path: str | os.PathLike[str]) -> str | None:
    """``"a named pipe (FIFO)"`` etc. for a FIFO, device or socket; None for anything else (a regular file, a
    folder, a missing path). Uses ``os.stat`` only: nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return _kind(mode)


def _kind(mode: int) -> str | None:
    return next((words for test, words in _KINDS if test(mode)), None)


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """``path`` opened for binary reading, refusing anything but a regular file, without ever blocking.

    For readers that need a file object rather than bytes (``np.load`` of an ``.npz`` reads only the members it
    is asked for); :func:`read_capped` is this plus a cap.

    Raises:
        NotRegularFile: a FIFO, device or socket (checked before opening and on the open descriptor).
        IsADirectoryError, FileNotFoundError, PermissionError, OSError: as ``open`` raises them.
    """
    kind = special_kind(path)
    if kind:
        raise NotRegularFile(kind)
    # O_NONBLOCK: the path may have become a FIFO since the stat, and opening a FIFO for reading blocks
    fd = os.open(Path(path), os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "Is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(_kind(st.st_mode) or "not a regular file")
        return os.fdopen(fd, "rb", closefd=True)
    except BaseException:
        os.close(fd)
        raise


def read_capped(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file ``path``, refusing more than ``limit`` of them.

    Raises:
        NotRegularFile: a FIFO, device or socket (checked before opening and on the open descriptor).
        FileTooLarge: the file is (or grows) larger than ``limit``.
        IsADirectoryError, FileNotFoundError, PermissionError, OSError: as ``open`` raises them.
    """
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise FileTooLarge(size, limit)
        chunks, total, want = [], 0, size + 1  # +1 to see growth; read(n) allocates n bytes up front
        while chunk := f.read(min(want, limit + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileTooLarge(total, limit)
            want = 1 << 20  # files in /proc and friends report size 0 yet hold data
        return b"".join(chunks)
