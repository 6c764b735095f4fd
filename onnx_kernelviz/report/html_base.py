"""Building blocks of report.html: escaping and number formatting, tables, and images that exist in the folder.

Every string from the JSON goes through :func:`esc` or :func:`fmt` before it reaches the page; a path in
``files`` that is missing, empty, outside the folder, unreadable or larger than an input image may be (a picture
over :data:`MAX_PIXELS`) is skipped rather than shown broken.
"""

from __future__ import annotations

import html
import math
import os
import re
import statistics
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from onnx_kernelviz.io.imageheader import MAX_PIXELS, exif_orientation, peek_header

__all__ = ["esc", "num", "fmt", "median", "best", "anchor", "as_dict", "table", "Folder"]


def esc(value: Any) -> str:
    """HTML-escaped text; a file name that is not valid UTF-8 shows its bytes as backslash escapes (``\\xe9``)."""
    text = str(value)
    if any("\udc80" <= ch <= "\udcff" for ch in text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return html.escape(text, quote=True)


def num(value: Any) -> float | None:
    """A finite number from the JSON, or None (missing, NaN, a string, a boolean)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def fmt(value: Any) -> str:
    """Escaped display text: 3 significant digits for numbers, yes/no for booleans, — for missing/NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return esc(value)


def median(values: Iterable[Any]) -> float | None:
    nums = [v for v in map(num, values) if v is not None]
    return statistics.median(nums) if nums else None


def best(values: Iterable[Any]) -> float | None:
    return max((v for v in map(num, values) if v is not None), default=None)


def anchor(kernel: str) -> str:
    return "kernel-" + re.sub(r"[^A-Za-z0-9_-]", "_", kernel)


def as_dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


#: the bytes read to find a picture's size (a JPEG's frame header comes after its EXIF and other APPn blocks)
_HEAD_BYTES = 1 << 20


def _image_size(path: Path) -> tuple[int, int] | None:
    """(width, height) as displayed, from the file's header: nothing is decoded. None when the header says no
    size, or more than :data:`MAX_PIXELS` (a results folder may come from elsewhere, and a 300 KB PNG of zeros
    can hold 20000x20000: decoded, 3.5 GB and seconds for each result naming it)."""
    with path.open("rb") as fh:
        head = peek_header(fh.read(_HEAD_BYTES))
    if head is None or not head.width or not head.height or head.width * head.height > MAX_PIXELS:
        return None
    turned = not head.decoder_orients and exif_orientation(head.exif) in (5, 6, 7, 8)  # browsers apply it too
    return (head.height, head.width) if turned else (head.width, head.height)


def table(header: list[str], rows: list[tuple[list[str], bool]]) -> str:
    """Rows are (already-escaped cells, highlighted?)."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join(('<tr class="win">' if win else "<tr>") + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
                   for cells, win in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


class Folder:
    """The output folder as the page sees it: images and files referenced by relative, escaped paths."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.root = out_dir.resolve()

    def local(self, rel: Any) -> Path | None:
        """The file ``rel`` names inside the folder, or None (missing, empty, elsewhere) to skip it."""
        try:
            path = (self.out_dir / rel).resolve() if isinstance(rel, str) and rel.strip() else None
        except (OSError, ValueError):
            return None
        return path if path and path.is_file() and path.is_relative_to(self.root) else None

    def _href(self, path: Path) -> str:
        # the file name's own bytes, percent-encoded: also names that are not valid UTF-8 resolve
        return esc(quote(os.fsencode(path.relative_to(self.root).as_posix())))

    def size(self, rel: Any) -> tuple[int, int] | None:
        """(width, height) of the picture ``rel`` names, or None when it is not there or unreadable."""
        path = self.local(rel)
        try:
            return _image_size(path) if path else None
        except (OSError, struct.error):
            return None

    def img(self, rel: Any, alt: str, pixel: bool = False) -> str:
        path, size = self.local(rel), self.size(rel)
        if path is None or not size:
            return ""
        cls = ' class="px"' if pixel else ""
        return (f'<img src="{self._href(path)}" alt="{esc(alt)}" width="{size[0]}" height="{size[1]}" '
                f'loading="lazy"{cls}>')

    def figure(self, rel: Any, caption: str, alt: str, pixel: bool = False, cls: str = "") -> str:
        """An image with its caption (plain text, escaped here); empty when the image is not in the folder."""
        tag = self.img(rel, alt, pixel)
        attr = f' class="{cls}"' if cls else ""
        return f"<figure{attr}>{tag}<figcaption>{esc(caption)}</figcaption></figure>" if tag else ""

    def link(self, rel: Any, text: str) -> str:
        path = self.local(rel)
        return f'<a href="{self._href(path)}">{esc(text)}</a>' if path else ""

    def mask(self, rel: Any) -> np.ndarray | None:
        """A mask saved as ``.npy`` (``[H, W]`` float) or as a grey PNG (scaled to [0, 1]); None when unreadable."""
        path = self.local(rel)
        if path is None:
            return None
        m: np.ndarray | None
        try:
            if path.suffix == ".npy":
                # mapped first: its header's shape is checked before any of it is read (nor a sparse file)
                mapped = np.load(path, mmap_mode="r", allow_pickle=False)
                if mapped.size > MAX_PIXELS:
                    return None
                m = np.array(mapped)
            else:
                if self.size(rel) is None:  # no size in its header, or too many pixels to decode
                    return None
                import cv2

                m = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
                m = None if m is None else m.astype(np.float32) / 255.0
        except (OSError, ValueError):
            return None
        return m if isinstance(m, np.ndarray) and m.ndim == 2 and m.size else None
