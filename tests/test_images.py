"""Tests for onnx_kernelviz.io.images: finding, reading (every storage form), model input and atomic writes.

Every test image is built in code; formats OpenCV cannot write (gray+alpha / palette PNG, EXIF JPEG, oriented
TIFF) are assembled byte by byte.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2  # noqa: E402  (after images, which sets OpenCV's size limit before cv2 is first imported)
import numpy as np
import pytest

from onnx_kernelviz.errors import ImageError, UsageError
from onnx_kernelviz.io.images import (
    IMAGE_EXTENSIONS,
    LoadedImage,
    from_model_input,
    list_images,
    read_image,
    resize,
    to_model_input,
    write_image,
    write_npy,
)
from onnx_kernelviz.io.preprocess import Preprocess, get_preset

# ---------------------------------------------------------------------------------------------------------
# Builders.

def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_png(width: int, height: int, color_type: int, depth: int, rows: list[bytes], extra: bytes = b"") -> bytes:
    """A PNG from raw scanlines (filter type 0), for the kinds cv2.imencode cannot produce."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in rows)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + extra
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def exif_tiff_block(orientation: int, byte_order: str = "MM") -> bytes:
    """A minimal EXIF TIFF structure: IFD0 with only the Orientation (0x0112) tag."""
    e = ">" if byte_order == "MM" else "<"
    return (byte_order.encode() + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1)
            + struct.pack(e + "HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(e + "I", 0))


def jpeg_with_exif(bgr: np.ndarray, orientation: int, byte_order: str = "MM") -> bytes:
    """A JPEG with a hand-made APP1 "Exif" segment inserted right after SOI."""
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert ok
    payload = b"Exif\x00\x00" + exif_tiff_block(orientation, byte_order)
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = buf.tobytes()
    return data[:2] + app1 + data[2:]


def make_tiff(rgb: np.ndarray, orientation: int) -> bytes:
    """An uncompressed 8-bit RGB TIFF with an Orientation tag (cv2 does not write one)."""
    h, w, _ = rgb.shape
    pixels = rgb.tobytes()
    entries = [(256, 3, w), (257, 3, h), (258, 3, 8), (259, 3, 1), (262, 3, 2), (273, 4, 0),
               (274, 3, orientation), (277, 3, 3), (278, 3, h), (279, 4, len(pixels))]
    data_at = 8 + 2 + 12 * len(entries) + 4
    out = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(entries))
    for tag, kind, value in entries:
        value = data_at if tag == 273 else value
        out += struct.pack("<HHIHH", tag, kind, 1, value, 0) if kind == 3 else struct.pack("<HHII", tag, kind, 1, value)
    return out + struct.pack("<I", 0) + pixels


def encode(ext: str, a: np.ndarray, params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, a, params or [])
    assert ok
    return buf.tobytes()


def put(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def as_uint8(img: LoadedImage) -> np.ndarray:
    return np.rint(img.rgb * 255).astype(np.uint8)


RNG = np.random.default_rng(0)
BGR = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------------------------------
# list_images

def test_list_images_expands_folders_sorted_and_filtered(tmp_path: Path) -> None:
    for name in ["b.png", "a.JPG", "c.webp", ".hidden.png", "notes.txt", "z.tiff"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.png").write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()  # a folder with an image-like name is not an image
    found = list_images([tmp_path])
    assert [p.name for p in found] == ["a.JPG", "b.png", "c.webp", "z.tiff"]


def test_list_images_takes_files_as_given_and_dedupes(tmp_path: Path) -> None:
    text = put(tmp_path, "weird.dat", b"x")
    png = put(tmp_path, "one.png", b"x")
    assert list_images([text, png, str(png), tmp_path / "." / "one.png"]) == [text, png]


def test_list_images_mixes_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    put(folder, "x.png", b"x")
    single = put(tmp_path, "y.jpg", b"x")
    assert [p.name for p in list_images([single, folder])] == ["y.jpg", "x.png"]


def test_list_images_missing_path(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file or folder") as info:
        list_images([tmp_path / "nope.png"])
    assert "nope.png" in str(info.value)


def test_list_images_folder_without_images(tmp_path: Path) -> None:
    put(tmp_path, "readme.txt", b"x")
    put(tmp_path, ".secret.png", b"x")
    with pytest.raises(ImageError, match="has no image files") as info:
        list_images([tmp_path])
    assert str(tmp_path) in str(info.value)


def test_image_extensions_are_lowercase_with_dot() -> None:
    assert {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"} <= IMAGE_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in IMAGE_EXTENSIONS)


# ---------------------------------------------------------------------------------------------------------
# read_image: each kind of file

def test_read_rgb_png_exact_and_rgb_order(tmp_path: Path) -> None:
    img = read_image(put(tmp_path, "c.png", encode(".png", BGR)))
    assert img.rgb.dtype == np.float32 and img.rgb.shape == (5, 7, 3)
    assert img.rgb.flags.c_contiguous and not img.rgb.flags.writeable
    assert np.array_equal(as_uint8(img), BGR[:, :, ::-1])
    assert img.original_size == (5, 7) and img.size == (5, 7)
    assert img.notes == ()


@pytest.mark.parametrize("ext", [".png", ".bmp", ".tiff", ".webp"])
def test_read_lossless_formats(tmp_path: Path, ext: str) -> None:
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []  # >100 = lossless WebP
    img = read_image(put(tmp_path, "c" + ext, encode(ext, BGR, params)))
    assert np.array_equal(as_uint8(img), BGR[:, :, ::-1])


def test_read_jpeg(tmp_path: Path) -> None:
    data = encode(".jpg", BGR)
    img = read_image(put(tmp_path, "c.jpg", data))
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert np.array_equal(as_uint8(img), reference)
    assert img.notes == ()


def test_read_grayscale(tmp_path: Path) -> None:
    gray = RNG.integers(0, 256, (4, 6), dtype=np.uint8)
    img = read_image(put(tmp_path, "g.png", encode(".png", gray)))
    assert img.rgb.shape == (4, 6, 3)
    assert all(np.array_equal(as_uint8(img)[:, :, c], gray) for c in range(3))
    assert img.notes == ("grayscale -> RGB",)


def test_read_rgba_composited_on_white(tmp_path: Path) -> None:
    bgra = np.zeros((1, 3, 4), np.uint8)
    bgra[0, 0] = (0, 0, 255, 255)  # opaque red
    bgra[0, 1] = (0, 0, 0, 0)  # fully transparent black -> white
    bgra[0, 2] = (255, 0, 0, 128)  # half-transparent blue
    img = read_image(put(tmp_path, "a.png", encode(".png", bgra)))
    rgb = img.rgb
    assert np.allclose(rgb[0, 0], (1, 0, 0))
    assert np.allclose(rgb[0, 1], (1, 1, 1))
    a = 128 / 255
    assert np.allclose(rgb[0, 2], (1 - a, 1 - a, 1), atol=1e-6)
    assert img.notes == ("RGBA composited on white",)


def test_read_gray_alpha_png(tmp_path: Path) -> None:
    data = make_png(2, 1, 4, 8, [bytes([100, 255, 0, 0])])  # (gray 100, opaque), (black, transparent)
    img = read_image(put(tmp_path, "ga.png", data))
    assert np.allclose(img.rgb[0, 0], 100 / 255) and np.allclose(img.rgb[0, 1], 1.0)
    assert img.notes == ("grayscale+alpha composited on white",)


def test_read_16bit_png(tmp_path: Path) -> None:
    bgr16 = np.zeros((2, 2, 3), np.uint16)
    bgr16[..., 2] = 65535
    bgr16[0, 0] = (1000, 30000, 65535)
    img = read_image(put(tmp_path, "d.png", encode(".png", bgr16)))
    assert np.allclose(img.rgb[0, 0], (1.0, 30000 / 65535, 1000 / 65535))
    assert np.allclose(img.rgb[1, 1], (1, 0, 0))
    assert "16-bit -> [0, 1]" in img.notes


def test_read_16bit_gray_png(tmp_path: Path) -> None:
    data = make_png(2, 1, 0, 16, [struct.pack(">2H", 0, 65535)])
    img = read_image(put(tmp_path, "g16.png", data))
    assert np.allclose(img.rgb[0, 0], 0) and np.allclose(img.rgb[0, 1], 1)
    assert img.notes == ("16-bit -> [0, 1]", "grayscale -> RGB")


def test_read_palette_png(tmp_path: Path) -> None:
    plte = png_chunk(b"PLTE", bytes([255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255]))
    data = make_png(2, 2, 3, 8, [bytes([0, 1]), bytes([2, 3])], plte)
    img = read_image(put(tmp_path, "p.png", data))
    assert np.array_equal(as_uint8(img).reshape(-1, 3), [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]])
    assert img.notes == ("palette -> RGB",)


def test_read_palette_png_with_transparency(tmp_path: Path) -> None:
    plte = png_chunk(b"PLTE", bytes([255, 0, 0, 0, 0, 0]))
    trns = png_chunk(b"tRNS", bytes([255, 0]))  # entry 1 fully transparent
    data = make_png(2, 1, 3, 4, [bytes([0x01])], plte + trns)  # 4-bit indices 0, 1
    img = read_image(put(tmp_path, "pt.png", data))
    assert np.array_equal(as_uint8(img)[0], [[255, 0, 0], [255, 255, 255]])
    assert img.notes == ("palette -> RGB", "RGBA composited on white")


def test_read_float_tiff_is_clipped(tmp_path: Path) -> None:
    a = np.full((2, 3, 3), 1.5, np.float32)
    a[0, 0] = (-1.0, 0.5, np.nan)
    img = read_image(put(tmp_path, "f.tiff", encode(".tiff", a)))
    assert np.allclose(img.rgb[1, 1], 1.0)
    assert np.allclose(img.rgb[0, 0], (0.0, 0.5, 0.0))  # stored B, G, R = -1, 0.5, NaN
    assert img.notes == ("float pixels clipped to [0, 1]",)


def test_read_float_tiff_in_range_is_not_clipped(tmp_path: Path) -> None:
    img = read_image(put(tmp_path, "f.tiff", encode(".tiff", np.full((2, 2, 3), 0.25, np.float32))))
    assert np.allclose(img.rgb, 0.25) and img.notes == ("float pixels taken as [0, 1]",)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("byte_order", ["MM", "II"])
def test_exif_orientation_matches_opencv(tmp_path: Path, orientation: int, byte_order: str) -> None:
    bgr = np.zeros((16, 32, 3), np.uint8)
    bgr[:8, :8] = (0, 0, 255)  # a red block marks the stored top-left corner
    data = jpeg_with_exif(bgr, orientation, byte_order)
    img = read_image(put(tmp_path, "e.jpg", data))
    # cv2's IMREAD_COLOR applies EXIF orientation (IMREAD_UNCHANGED does not): it is the reference.
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert img.rgb.shape == reference.shape
    assert np.abs(as_uint8(img).astype(int) - reference).max() <= 1
    assert img.original_size == reference.shape[:2]
    expected = () if orientation == 1 else (f"EXIF orientation {orientation} applied",)
    assert img.notes == expected


def test_exif_orientation_6_turns_landscape_to_portrait(tmp_path: Path) -> None:
    bgr = np.zeros((16, 32, 3), np.uint8)
    bgr[:8, :8] = (0, 0, 255)
    img = read_image(put(tmp_path, "e.jpg", jpeg_with_exif(bgr, 6)))
    assert img.rgb.shape == (32, 16, 3)
    assert img.rgb[2, -3, 0] > 0.9 and img.rgb[-3, 2, 0] < 0.1  # stored top-left is now top-right


def test_garbage_exif_is_ignored(tmp_path: Path) -> None:
    ok, buf = cv2.imencode(".jpg", BGR)
    payload = b"Exif\x00\x00MM\x00*\xff\xff\xff\xf0garbage"
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = buf.tobytes()[:2] + app1 + buf.tobytes()[2:]
    img = read_image(put(tmp_path, "g.jpg", data))
    assert img.rgb.shape == (5, 7, 3) and img.notes == ()


def test_exif_in_png_is_applied(tmp_path: Path) -> None:
    png = encode(".png", BGR)
    data = png[:33] + png_chunk(b"eXIf", exif_tiff_block(8, "II")) + png[33:]  # right after IHDR
    img = read_image(put(tmp_path, "e.png", data))
    assert np.array_equal(as_uint8(img), np.rot90(BGR[:, :, ::-1], 1))
    assert img.notes == ("EXIF orientation 8 applied",)
    if hasattr(cv2, "imdecodeWithMetadata"):  # OpenCV >= 4.12 finds the same block
        _, kinds, blocks = cv2.imdecodeWithMetadata(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        assert bytes(np.asarray(blocks[0]).ravel()) == exif_tiff_block(8, "II")


def test_exif_in_webp_is_applied(tmp_path: Path) -> None:
    lossless = encode(".webp", BGR, [cv2.IMWRITE_WEBP_QUALITY, 101])
    h, w = BGR.shape[:2]
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x08, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (
        h - 1).to_bytes(3, "little")
    block = exif_tiff_block(6, "II")
    body = b"WEBP" + vp8x + lossless[12:] + b"EXIF" + struct.pack("<I", len(block)) + block + b"\0" * (len(block) & 1)
    data = b"RIFF" + struct.pack("<I", len(body)) + body
    img = read_image(put(tmp_path, "e.webp", data))
    assert np.array_equal(as_uint8(img), np.rot90(BGR[:, :, ::-1], -1))
    assert img.notes == ("EXIF orientation 6 applied",)


def test_tiff_orientation_is_not_applied_twice(tmp_path: Path) -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    data = make_tiff(rgb, 6)
    img = read_image(put(tmp_path, "o.tiff", data))
    # libtiff orients TIFF pixels itself, even with IMREAD_UNCHANGED.
    assert img.rgb.shape == (3, 2, 3)
    assert np.array_equal(as_uint8(img), np.rot90(rgb, -1))
    assert img.notes == ()


HAS_GIF = cv2.haveImageWriter("x.gif")
needs_animation = pytest.mark.skipif(not hasattr(cv2, "imencodeanimation"), reason="OpenCV < 4.11")


def _animation(ext: str) -> bytes:
    anim = cv2.Animation()
    anim.frames = [np.full((4, 5, 3), 255, np.uint8), np.full((4, 5, 3), 0, np.uint8)]
    anim.durations = [100, 100]
    ok, buf = cv2.imencodeanimation(ext, anim)
    assert ok
    return buf.tobytes()


@needs_animation
@pytest.mark.parametrize("ext", [".gif", ".png", ".webp"])
def test_animation_first_frame(tmp_path: Path, ext: str) -> None:
    img = read_image(put(tmp_path, "anim" + ext, _animation(ext)))
    assert img.rgb.shape == (4, 5, 3) and img.rgb.min() > 0.9  # the first (white) frame
    assert "multi-frame file: first frame used" in img.notes


@pytest.mark.skipif(not hasattr(cv2, "imencodemulti"), reason="OpenCV without imencodemulti")
def test_multipage_tiff_first_page(tmp_path: Path) -> None:
    ok, buf = cv2.imencodemulti(".tiff", [np.full((2, 3, 3), 10, np.uint8), np.full((4, 5, 3), 200, np.uint8)])
    assert ok
    img = read_image(put(tmp_path, "m.tiff", buf.tobytes()))
    assert img.rgb.shape == (2, 3, 3) and np.allclose(img.rgb, 10 / 255)
    assert img.notes == ("multi-frame file: first frame used",)


@pytest.mark.skipif(not HAS_GIF, reason="OpenCV built without GIF")
def test_single_frame_gif_is_palette(tmp_path: Path) -> None:
    img = read_image(put(tmp_path, "s.gif", encode(".gif", np.full((3, 4, 3), 255, np.uint8))))
    assert img.rgb.shape == (3, 4, 3) and img.notes == ("palette -> RGB",)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3)])
def test_tiny_images(tmp_path: Path, shape: tuple[int, int]) -> None:
    bgr = RNG.integers(0, 256, (*shape, 3), dtype=np.uint8)
    img = read_image(put(tmp_path, "t.png", encode(".png", bgr)))
    assert img.rgb.shape == (*shape, 3)
    x = to_model_input(img, get_preset("imagenet"), (224, 224))
    assert x.shape == (3, 224, 224) and np.all(np.isfinite(x))


def test_large_image_resized_on_read(tmp_path: Path) -> None:
    # A 5000x4000 solid gray PNG is ~20 KB compressed; reading it resized keeps memory small.
    data = encode(".png", np.full((4000, 5000), 77, np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    img = read_image(put(tmp_path, "big.png", data), size=(224, 224))
    assert img.rgb.shape == (224, 224, 3) and np.allclose(img.rgb, 77 / 255, atol=1e-6)
    assert img.original_size == (4000, 5000)
    assert img.notes == ("grayscale -> RGB", "resized 4000x5000 -> 224x280 (HxW), centre-cropped to 224x224")
    squashed = read_image(put(tmp_path, "big.png", data), size=(224, 224), fit="squash")
    assert squashed.notes[-1] == "resized 4000x5000 -> 224x224 (HxW), proportions not kept (--fit squash)"


def test_resize_on_read_matches_to_model_input(tmp_path: Path) -> None:
    bgr = RNG.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    path = put(tmp_path, "r.png", encode(".png", bgr))
    pp = get_preset("imagenet")
    a = to_model_input(read_image(path, size=(20, 30)), pp, (20, 30))
    b = to_model_input(read_image(path), pp, (20, 30))
    assert np.allclose(a, b, atol=1e-5)


def test_non_ascii_path(tmp_path: Path) -> None:
    folder = tmp_path / "Bilder ü 猫"
    folder.mkdir()
    img = read_image(put(folder, "kätzchen 猫.png", encode(".png", BGR)))
    assert np.array_equal(as_uint8(img), BGR[:, :, ::-1])
    assert list_images([folder]) == [folder / "kätzchen 猫.png"]


# ---------------------------------------------------------------------------------------------------------
# read_image: files it must refuse, with one clear message

def _assert_image_error(path: Path, *fragments: str) -> str:
    with pytest.raises(ImageError) as info:
        read_image(path)
    message = str(info.value)
    assert message.startswith(f"cannot read image {path}: ")
    for fragment in fragments:
        assert fragment in message
    return message


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = put(tmp_path, "fake.jpg", b"this is not a picture\n")
    _assert_image_error(path, "not a recognised image format", "use a JPEG/PNG/BMP/TIFF/WebP file")


def test_empty_file(tmp_path: Path) -> None:
    _assert_image_error(put(tmp_path, "empty.png", b""), "the file is empty", "use a JPEG/PNG")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp", ".tiff"] + [".gif"] * HAS_GIF)
def test_truncated_file(tmp_path: Path, ext: str) -> None:
    data = encode(ext, RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    path = put(tmp_path, "cut" + ext, data[: len(data) // 2])
    _assert_image_error(path, "damaged or truncated", "use a JPEG/PNG")


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "folder.png"
    folder.mkdir()
    _assert_image_error(folder, "it is a folder")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="no such file; check the path"):
        read_image(tmp_path / "missing.png")


def test_refused_file_prints_nothing(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    data = encode(".png", BGR)
    with pytest.raises(ImageError):
        read_image(put(tmp_path, "cut.png", data[:40]))
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # OpenCV's / libpng's own messages are silenced
    assert cv2.utils.logging.getLogLevel() != cv2.utils.logging.LOG_LEVEL_SILENT  # and the level restored


def test_decompression_bomb_png_refused_before_decoding(tmp_path: Path) -> None:
    # A header claiming 20000 x 10000 pixels with no real pixel data: refused from the header alone.
    ihdr = struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 100))
    message = _assert_image_error(put(tmp_path, "bomb.png", data), "20000x10000", "200 megapixels", "downscale")
    assert "100 megapixel limit" in message


def test_decompression_bomb_jpeg_refused(tmp_path: Path) -> None:
    data = bytearray(encode(".jpg", BGR))
    sof = data.index(b"\xff\xc0")
    data[sof + 5: sof + 9] = struct.pack(">HH", 60000, 60000)
    _assert_image_error(put(tmp_path, "bomb.jpg", bytes(data)), "60000x60000", "megapixel limit")


def test_max_pixels_is_adjustable(tmp_path: Path) -> None:
    path = put(tmp_path, "s.png", encode(".png", BGR))  # 35 pixels
    with pytest.raises(ImageError, match="megapixel limit"):
        read_image(path, max_pixels=34)
    assert read_image(path, max_pixels=35).size == (5, 7)


def test_unsupported_pixel_type(tmp_path: Path) -> None:
    data = encode(".tiff", np.full((2, 2), -5, np.int16))
    _assert_image_error(put(tmp_path, "s.tiff", data), "pixel type int16")


# ---------------------------------------------------------------------------------------------------------
# resize / to_model_input / from_model_input

def test_resize_uses_area_when_shrinking_and_linear_when_enlarging() -> None:
    a = RNG.random((40, 60, 3), dtype=np.float32)
    assert np.array_equal(resize(a, (20, 30)), cv2.resize(a, (30, 20), interpolation=cv2.INTER_AREA))
    assert np.array_equal(resize(a, (80, 90)), cv2.resize(a, (90, 80), interpolation=cv2.INTER_LINEAR))
    assert np.array_equal(resize(a, (20, 90)), cv2.resize(a, (90, 20), interpolation=cv2.INTER_LINEAR))
    assert resize(a, (40, 60)) is a
    assert resize(a[:, :, :1], (10, 10)).shape == (10, 10, 1)


def test_to_model_input_imagenet_values() -> None:
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[0, 0] = (1.0, 0.5, 0.0)
    x = to_model_input(rgb, get_preset("imagenet"), (2, 2))
    assert x.shape == (3, 2, 2) and x.dtype == np.float32 and x.flags.c_contiguous
    expected = (np.array([1.0, 0.5, 0.0]) - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    assert np.allclose(x[:, 0, 0], expected, atol=1e-6)


def test_to_model_input_caffe_is_bgr_unscaled() -> None:
    rgb = np.zeros((1, 1, 3), np.float32)
    rgb[0, 0] = (1.0, 0.0, 0.0)  # pure red
    x = to_model_input(rgb, get_preset("caffe"), (1, 1))
    assert np.allclose(x[:, 0, 0], [0 - 103.939, 0 - 116.779, 255 - 123.68], atol=1e-4)  # red is last


def test_to_model_input_grayscale_luminance() -> None:
    rgb = np.zeros((1, 2, 3), np.float32)
    rgb[0, 0] = (1, 0, 0)
    rgb[0, 1] = (0.2, 0.6, 1.0)
    x = to_model_input(rgb, Preprocess(mean=(0.0,), std=(1.0,)), (1, 2), channels=1)
    assert x.shape == (1, 1, 2)
    assert np.allclose(x[0, 0], [0.299, 0.299 * 0.2 + 0.587 * 0.6 + 0.114])


def test_to_model_input_gray_model_with_rgb_stats_uses_their_average() -> None:
    x = to_model_input(np.full((1, 1, 3), 0.5, np.float32), get_preset("imagenet"), (1, 1), channels=1)
    assert np.allclose(x, (0.5 - np.mean([0.485, 0.456, 0.406])) / np.mean([0.229, 0.224, 0.225]), atol=1e-6)


def test_to_model_input_rejects_bad_channels_and_shapes() -> None:
    with pytest.raises(UsageError, match="4 channels"):
        to_model_input(np.zeros((2, 2, 3), np.float32), Preprocess(mean=(0.0,), std=(1.0,)), (2, 2), channels=4)
    with pytest.raises(UsageError, match=r"\[H, W, 3\]"):
        to_model_input(np.zeros((2, 2), np.float32), Preprocess(), (2, 2))
    with pytest.raises(UsageError, match="3 values but the model input has 2 channels"):
        to_model_input(np.zeros((2, 2, 3), np.float32), Preprocess(), (2, 2), channels=2)


@pytest.mark.parametrize("preset", ["imagenet", "raw", "unit", "tf", "caffe", "clip"])
def test_round_trip_is_exact(tmp_path: Path, preset: str) -> None:
    bgr = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)
    img = read_image(put(tmp_path, "rt.png", encode(".png", bgr)))
    pp = get_preset(preset)
    back = from_model_input(to_model_input(img, pp, (6, 9)), pp)
    assert back.dtype == np.uint8 and back.shape == (6, 9, 3)
    assert np.array_equal(back, bgr[:, :, ::-1])


def test_from_model_input_clips_and_handles_gray() -> None:
    pp = get_preset("imagenet")
    x = np.full((3, 2, 2), 100.0, np.float32)
    x[:, 0, 0] = -100.0
    x[0, 1, 1] = np.nan
    out = from_model_input(x, pp)
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [255, 255, 255]
    assert out[1, 1, 0] == 0
    gray = from_model_input(np.full((1, 2, 2), 0.5, np.float32), Preprocess(mean=(0.0,), std=(1.0,)))
    assert gray.shape == (2, 2, 3) and (gray == 128).all()
    with pytest.raises(UsageError, match="C = 1 or 3"):
        from_model_input(np.zeros((2, 2), np.float32), pp)


# ---------------------------------------------------------------------------------------------------------
# Atomic writes

def test_write_png_round_trip_and_no_temp_files(tmp_path: Path) -> None:
    rgb = RNG.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    out = write_image(tmp_path / "sub" / "x.png", rgb)
    assert os.listdir(tmp_path / "sub") == ["x.png"]
    assert np.array_equal(as_uint8(read_image(out)), rgb)
    write_image(out, rgb[::-1].copy())  # overwrite in place
    assert os.listdir(tmp_path / "sub") == ["x.png"]
    assert np.array_equal(as_uint8(read_image(out)), rgb[::-1])


@pytest.mark.parametrize("name", ["x.jpg", "x.JPEG"])
def test_write_jpeg(tmp_path: Path, name: str) -> None:
    rgb = np.full((8, 8, 3), (200, 30, 90), np.uint8)
    out = write_image(tmp_path / name, rgb)
    assert out.read_bytes()[:3] == b"\xff\xd8\xff"
    assert np.abs(as_uint8(read_image(out)).astype(int) - rgb).max() <= 3


def test_write_gray(tmp_path: Path) -> None:
    out = write_image(tmp_path / "g.png", np.full((3, 4), 9, np.uint8))
    assert np.allclose(read_image(out).rgb, 9 / 255)


def test_write_image_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"use a \.png or \.jpg"):
        write_image(tmp_path / "x.gif", np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(UsageError, match="expected uint8"):
        write_image(tmp_path / "x.png", np.zeros((2, 2, 3), np.float32))
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "keep.png"
    write_image(target, np.zeros((2, 2, 3), np.uint8))
    before = target.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    import onnx_kernelviz.io.files as files  # the one atomic writer

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(ImageError, match="No space left on device"):
        write_image(target, np.full((2, 2, 3), 255, np.uint8))
    with pytest.raises(ImageError, match="check the folder is writable"):
        write_npy(tmp_path / "a.npy", np.zeros(3))
    assert os.listdir(tmp_path) == ["keep.png"] and target.read_bytes() == before


def test_write_into_unwritable_location(tmp_path: Path) -> None:
    blocker = put(tmp_path, "file", b"x")
    with pytest.raises(ImageError, match="cannot write"):
        write_image(blocker / "x.png", np.zeros((2, 2, 3), np.uint8))


def test_write_npy_round_trip(tmp_path: Path) -> None:
    a = RNG.random((3, 4, 5)).astype(np.float32)
    out = write_npy(tmp_path / "m.npy", a)
    assert os.listdir(tmp_path) == ["m.npy"]
    assert np.array_equal(np.load(out), a)
    with pytest.raises(ValueError):
        write_npy(tmp_path / "obj.npy", np.array([object()], dtype=object))
    assert os.listdir(tmp_path) == ["m.npy"]
