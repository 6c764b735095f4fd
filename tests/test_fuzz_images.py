"""Bounded fuzzing of read_image: whatever the bytes, the only failure allowed is ImageError.

Random bytes, random bytes behind a real format signature (to reach the header parsers), and valid files of
every supported kind with bytes flipped, overwritten, inserted, deleted or cut off.
"""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2  # noqa: E402  (after images, which sets OpenCV's size limit before cv2 is first imported)
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx_kernelviz.errors import ImageError
from onnx_kernelviz.io.images import LoadedImage, read_image

# Keeps a mutated header that claims a big (but allowed) size from costing seconds and gigabytes per example.
FUZZ_MAX_PIXELS = 4_000_000
# 300 examples per test keeps the suite fast (~1 s each); set KERNELVIZ_FUZZ_EXAMPLES=5000 for a deeper run.
FUZZ_EXAMPLES = int(os.environ.get("KERNELVIZ_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _palette_png() -> bytes:
    ihdr = struct.pack(">IIBBBBB", 4, 2, 8, 3, 0, 0, 0)
    rows = b"\x00\x00\x01\x02\x01\x00\x02\x01\x00\x01"
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"PLTE", bytes(range(9)))
            + _png_chunk(b"tRNS", b"\xff\x80") + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def _exif_jpeg(bgr: np.ndarray) -> bytes:
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    data = cv2.imencode(".jpg", bgr)[1].tobytes()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + data[2:]


def _seeds() -> list[bytes]:
    rng = np.random.default_rng(1)
    bgr = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    bgra = np.dstack([bgr, rng.integers(0, 256, (6, 8), dtype=np.uint8)])
    encoded = [
        (".png", bgr, []),
        (".png", bgra, []),
        (".png", bgr.astype(np.uint16) * 257, []),
        (".png", bgr[:, :, 0], []),
        (".jpg", bgr, []),
        (".jpg", bgr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".bmp", bgr, []),
        (".tiff", bgr, []),
        (".tiff", bgr.astype(np.float32) / 255, []),
        (".webp", bgra, []),
        (".ppm", bgr, []),
        (".gif", bgr, []),
    ]
    seeds = [cv2.imencode(ext, a, params)[1].tobytes() for ext, a, params in encoded if cv2.haveImageWriter("x" + ext)]
    if hasattr(cv2, "imencodeanimation"):  # OpenCV >= 4.11
        anim = cv2.Animation()
        anim.frames, anim.durations = [bgr, bgr[::-1].copy()], [50, 50]
        seeds += [cv2.imencodeanimation(ext, anim)[1].tobytes() for ext in (".png", ".webp")]
    return seeds + [_palette_png(), _exif_jpeg(bgr)]


SEEDS = _seeds()
SIGNATURES = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*",
              b"RIFF\x00\x00\x00\x00WEBPVP8X", b"RIFF\x00\x00\x00\x00WEBPVP8L", b"P6\n", b"#?RADIANCE\n"]


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "fuzz.img"


def _check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        img = read_image(path, max_pixels=FUZZ_MAX_PIXELS)
    except ImageError as exc:
        assert str(exc).startswith(f"cannot read image {path}: ")
        return
    assert isinstance(img, LoadedImage)
    assert img.rgb.dtype == np.float32 and img.rgb.ndim == 3 and img.rgb.shape[2] == 3
    assert np.all(np.isfinite(img.rgb)) and img.rgb.min() >= 0.0 and img.rgb.max() <= 1.0


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(scratch: Path, data: bytes) -> None:
    _check(scratch, data)


@FUZZ
@given(signature=st.sampled_from(SIGNATURES), rest=st.binary(max_size=2048))
def test_random_bytes_behind_a_signature(scratch: Path, signature: bytes, rest: bytes) -> None:
    _check(scratch, signature + rest)


_MUTATION = st.tuples(
    st.sampled_from(["flip", "set", "insert", "delete", "truncate", "overwrite"]),
    st.floats(0.0, 1.0),  # where, as a fraction of the length (header bytes are as likely as pixel bytes)
    st.binary(min_size=1, max_size=16),
)


@FUZZ
@given(seed=st.sampled_from(range(len(SEEDS))), mutations=st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutated_valid_files(scratch: Path, seed: int, mutations: list[tuple[str, float, bytes]]) -> None:
    data = bytearray(SEEDS[seed])
    for op, where, payload in mutations:
        i = min(int(where * len(data)), max(len(data) - 1, 0))
        if not data:
            break
        if op == "flip":
            data[i] ^= 1 << (payload[0] % 8)
        elif op == "set":
            data[i] = payload[0]
        elif op == "insert":
            data[i:i] = payload
        elif op == "delete":
            del data[i: i + len(payload)]
        elif op == "truncate":
            del data[i:]
        else:
            data[i: i + len(payload)] = payload
    _check(scratch, bytes(data))


def test_seeds_are_valid(scratch: Path) -> None:
    for data in SEEDS:
        scratch.write_bytes(data)
        assert read_image(scratch).rgb.shape[2] == 3
