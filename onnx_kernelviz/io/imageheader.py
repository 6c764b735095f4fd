"""What an image file's header says before it is decoded: its format and size (for the decompression-bomb
check) and the facts OpenCV hides (palette, gray+alpha, frame count, EXIF orientation). Used by ``images``."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: The most pixels an image's header may promise before anything decodes it (input images, io/decode.py; the
#: pictures of a results folder, report/html_base.py): eight 9999x9999 PNGs of zeros are 2 MB on disk.
MAX_PIXELS = 100_000_000


@dataclass
class Header:
    format: str
    height: int | None = None
    width: int | None = None
    palette: bool = False
    gray_alpha: bool = False
    frames: int = 1            # 2 means "more than one"
    channels: int | None = None  # colour components, where the header says (JPEG)
    baseline: bool = False     # a baseline/progressive 8-bit JPEG (decodable at 1/2, 1/4, 1/8 scale)
    decoder_orients: bool = False  # the decoder applies the orientation tag itself (TIFF)
    exif: bytes = b""           # the EXIF TIFF structure, if the file has one


def _u16be(d: bytes, i: int) -> int:
    return struct.unpack_from(">H", d, i)[0]


def peek_header(data: bytes) -> Header | None:
    """The format and what its header says, or ``None`` for an unknown format. Never raises."""
    parse: Callable[[bytes], Header] | None = None
    for sig, peeker in _PEEKERS:
        if data.startswith(sig):
            parse = peeker
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        parse = _peek_webp
    elif len(data) >= 3 and data[0:1] == b"P" and data[1:2] in b"123456" and data[2:3].isspace():
        parse = _peek_pnm
    if parse is None:
        return None
    try:
        return parse(data)
    except (struct.error, IndexError, ValueError):
        # Known signature, damaged header: no size to check; the decoder gives the verdict.
        return Header(parse.__name__.removeprefix("_peek_"))


def _peek_png(d: bytes) -> Header:
    h = Header("png")
    if d[12:16] == b"IHDR":
        h.width, h.height = struct.unpack_from(">II", d, 16)
        color_type = d[25]
        h.palette = color_type == 3
        h.gray_alpha = color_type == 4
    i = 8
    while i + 8 <= len(d):  # walk the chunks (skipping their data): acTL = animated, eXIf = EXIF block
        length, kind = struct.unpack_from(">I4s", d, i)
        if kind == b"acTL":
            h.frames = 2
        elif kind == b"eXIf" and not h.exif:
            h.exif = d[i + 8: i + 8 + length]
        elif kind == b"IEND":
            break
        i += 12 + length
    return h


def _peek_jpeg(d: bytes) -> Header:
    h = Header("jpeg")
    i = 2
    while i + 4 <= len(d):
        if d[i] != 0xFF:
            break
        marker = d[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan: no frame header after this
            break
        length = _u16be(d, i + 2)
        if marker == 0xE1 and d[i + 4: i + 10] == b"Exif\x00\x00" and not h.exif:  # APP1, precedes the frame
            h.exif = d[i + 10: i + 2 + length]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= len(d):
            h.height, h.width = _u16be(d, i + 5), _u16be(d, i + 7)
            h.channels = d[i + 9] if i + 9 < len(d) else None
            h.baseline = marker in (0xC0, 0xC1, 0xC2) and d[i + 4] == 8  # 8-bit Huffman: libjpeg scales it
            break
        i += 2 + length
    return h


def _peek_gif(d: bytes) -> Header:
    h = Header("gif", palette=True)
    h.width, h.height = struct.unpack_from("<HH", d, 6)
    i = 13 + (3 << ((d[10] & 7) + 1) if d[10] & 0x80 else 0)
    images = 0

    def skip_sub_blocks(j: int) -> int:
        while j < len(d) and d[j] != 0:
            j += d[j] + 1
        return j + 1

    while i < len(d) and images < 2:
        block = d[i]
        if block == 0x2C:  # image descriptor (+ local colour table, LZW code size, data)
            images += 1
            flags = d[i + 9]
            i += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
            i = skip_sub_blocks(i)
        elif block == 0x21:  # extension: label, then sub-blocks
            i = skip_sub_blocks(i + 2)
        else:  # trailer or garbage
            break
    h.frames = images
    return h


def _peek_bmp(d: bytes) -> Header:
    h = Header("bmp")
    if struct.unpack_from("<I", d, 14)[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        h.width, h.height = struct.unpack_from("<HH", d, 18)
    else:
        w, ht = struct.unpack_from("<ii", d, 18)
        h.width, h.height = abs(w), abs(ht)  # negative height = top-down rows
    return h


def _peek_webp(d: bytes) -> Header:
    h = Header("webp")
    chunk = d[12:16]
    if chunk == b"VP8X":
        h.frames = 2 if d[20] & 0x02 else 1
        h.width = 1 + int.from_bytes(d[24:27], "little")
        h.height = 1 + int.from_bytes(d[27:30], "little")
    elif chunk == b"VP8L" and d[20] == 0x2F:
        bits = struct.unpack_from("<I", d, 21)[0]
        h.width, h.height = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    elif chunk == b"VP8 " and d[23:26] == b"\x9d\x01\x2a":
        w, ht = struct.unpack_from("<HH", d, 26)
        h.width, h.height = w & 0x3FFF, ht & 0x3FFF
    i = 12
    while chunk == b"VP8X" and i + 8 <= len(d):  # the extended format may carry an EXIF chunk (usually last)
        kind, length = struct.unpack_from("<4sI", d, i)
        if kind == b"EXIF":
            h.exif = d[i + 8: i + 8 + length]
            break
        i += 8 + length + (length & 1)  # chunks are padded to an even size
    return h


def _peek_tiff(d: bytes) -> Header:
    h = Header("tiff", decoder_orients=True)
    e = "<" if d[:2] == b"II" else ">"
    tags, next_ifd = _read_ifd(d, struct.unpack_from(e + "I", d, 4)[0], d[:2])
    h.width, h.height = tags.get(256), tags.get(257)
    h.frames = 2 if next_ifd else 1
    return h


def _peek_pnm(d: bytes) -> Header:
    tokens: list[bytes] = []
    for line in d[2:1024].splitlines():
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            break
    h = Header("pnm")
    if len(tokens) >= 2 and tokens[0].isdigit() and tokens[1].isdigit():
        h.width, h.height = int(tokens[0]), int(tokens[1])
    return h


_PEEKERS: tuple[tuple[bytes, Callable[[bytes], Header]], ...] = (
    (b"\x89PNG\r\n\x1a\n", _peek_png),
    (b"\xff\xd8\xff", _peek_jpeg),
    (b"GIF87a", _peek_gif),
    (b"GIF89a", _peek_gif),
    (b"BM", _peek_bmp),
    (b"II*\x00", _peek_tiff),
    (b"MM\x00*", _peek_tiff),
)


def _read_ifd(d: bytes, offset: int, byte_order: bytes) -> tuple[dict[int, int], int]:
    """First value of each SHORT/LONG entry of the TIFF IFD at ``offset``, and the next IFD's offset.

    Used for TIFF files and for EXIF blocks, which are TIFF structures too.
    """
    e = "<" if byte_order == b"II" else ">"
    (count,) = struct.unpack_from(e + "H", d, offset)
    tags: dict[int, int] = {}
    for k in range(count):
        tag, kind, _n = struct.unpack_from(e + "HHI", d, offset + 2 + 12 * k)
        if kind == 3:  # SHORT, stored left-justified in the 4-byte value field
            tags[tag] = struct.unpack_from(e + "H", d, offset + 10 + 12 * k)[0]
        elif kind == 4:  # LONG
            tags[tag] = struct.unpack_from(e + "I", d, offset + 10 + 12 * k)[0]
    next_at = offset + 2 + 12 * count
    next_ifd = struct.unpack_from(e + "I", d, next_at)[0] if next_at + 4 <= len(d) else 0
    return tags, next_ifd


def exif_orientation(blob: bytes) -> int:
    """The EXIF orientation (1..8) in an EXIF block, 1 when absent or unreadable."""
    if blob.startswith(b"Exif\x00\x00"):
        blob = blob[6:]
    if blob[:4] not in (b"II*\x00", b"MM\x00*"):
        return 1
    try:
        e = "<" if blob[:2] == b"II" else ">"
        tags, _ = _read_ifd(blob, struct.unpack_from(e + "I", blob, 4)[0], blob[:2])
    except struct.error:
        return 1
    value = tags.get(0x0112, 1)
    return value if 1 <= value <= 8 else 1


def apply_orientation(a: np.ndarray, orientation: int, *, copy: bool = True) -> np.ndarray:
    """Turn stored pixels ``[H, W, ...]`` upright for EXIF orientation 1..8 (same result as OpenCV's).

    ``copy=False`` returns a view (no second copy of a large picture; the caller reads it in bands).
    """
    ops: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda x: x[:, ::-1],                 # mirrored
        3: lambda x: x[::-1, ::-1],              # rotated 180
        4: lambda x: x[::-1],                    # mirrored vertically
        5: lambda x: x.swapaxes(0, 1),           # transposed
        6: lambda x: np.rot90(x, -1),            # rotate 90 clockwise to view
        7: lambda x: x[::-1, ::-1].swapaxes(0, 1),  # transverse
        8: lambda x: np.rot90(x, 1),             # rotate 90 counter-clockwise to view
    }
    op = ops.get(orientation)
    if op is None:
        return a
    return np.ascontiguousarray(op(a)) if copy else op(a)
