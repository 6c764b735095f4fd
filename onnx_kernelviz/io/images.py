"""Reading image files robustly, turning them into model input and back, and writing results atomically.

Every image becomes an RGB float32 array in [0, 1] (:class:`LoadedImage`), whatever its file held: grayscale,
grayscale+alpha, palette, 16-bit, float, RGBA (composited on white), several frames (the first is used), or
an EXIF orientation tag. Each such conversion is recorded in ``LoadedImage.notes``. A file that cannot be
used raises :class:`ImageError` with the reason - never an OpenCV traceback.

Why OpenCV 5 needs care here (checked on opencv-python-headless 5.0):

* ``IMREAD_UNCHANGED`` (needed for alpha and 16 bits) does NOT apply EXIF orientation, so we take the EXIF
  block from the file header ourselves (JPEG APP1, PNG eXIf, WebP EXIF; the same block
  ``cv2.imdecodeWithMetadata`` returns on OpenCV >= 4.12, but this works on older versions too) and rotate.
  TIFF is the exception: libtiff already orients the pixels, so its tag must not be applied twice.
* Palette PNGs come back already expanded to BGR (BGRA with a tRNS chunk) and grayscale+alpha PNGs as BGRA;
  only the file header tells they were palette / gray, so we peek at it for the notes.
* OpenCV's own size limit (``OPENCV_IO_MAX_IMAGE_PIXELS``) is read once when cv2 is imported; we set it here
  before importing cv2 (effective when this module is the first to import cv2), and in any case refuse
  oversized files from their header before any pixel is decoded.
"""

from __future__ import annotations

import os

# Must precede the first `import cv2` in the process to take effect (see the module docstring).
MAX_PIXELS = 100_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import contextlib  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import BinaryIO  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from onnx_kernelviz.errors import ImageError, UsageError  # noqa: E402
from onnx_kernelviz.io.imageheader import Header, apply_orientation, exif_orientation, peek_header  # noqa: E402
from onnx_kernelviz.io.preprocess import Preprocess, channel_stats  # noqa: E402

#: File name endings (lower case) that a folder is searched for.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
     ".pbm", ".pgm", ".ppm", ".pnm"}
)

_SUPPORTED = "use a JPEG/PNG/BMP/TIFF/WebP file"
# ITU-R BT.601 luma weights, the same OpenCV's RGB2GRAY uses, so a gray model sees what cv2 users expect.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class LoadedImage:
    """One image, decoded and normalized to RGB.

    Attributes:
        path: the file it came from.
        rgb: ``[H, W, 3]`` float32 in [0, 1], C-contiguous and read-only (copy before editing).
        original_size: ``(H, W)`` of the picture as displayed (after EXIF orientation), before any resize.
        notes: the conversions done, e.g. ``"grayscale -> RGB"``, ``"RGBA composited on white"``.
    """

    path: Path
    rgb: np.ndarray
    original_size: tuple[int, int]
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of :attr:`rgb`."""
        return (int(self.rgb.shape[0]), int(self.rgb.shape[1]))


# ---------------------------------------------------------------------------------------------------------
# Finding images.

def list_images(paths: Sequence[str | Path]) -> list[Path]:
    """Expand the user's IMAGE_OR_DIR arguments into image files.

    Files are taken as given (whatever their extension; :func:`read_image` judges them). A folder contributes
    its files with an extension in :data:`IMAGE_EXTENSIONS` (case-insensitive), sorted by name, not recursing
    into sub-folders and skipping hidden files (``.name``). A file listed twice is kept once.

    Raises:
        ImageError: a path that does not exist, or a folder without any image file.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                (p for p in path.iterdir()
                 if not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                key=lambda p: p.name,
            )
            if not found:
                exts = ", ".join(sorted(IMAGE_EXTENSIONS))
                raise ImageError(f"folder {path} has no image files ({exts}); add images or name files directly")
        elif path.exists():
            found = [path]
        else:
            raise ImageError(f"no such file or folder: {path}; check the path")
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


# ---------------------------------------------------------------------------------------------------------
# Decoding.

_LOG_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's (and libpng's, routed through it) stderr messages while decoding.

    A damaged file otherwise prints several "[ERROR] ... imdecode_" lines before our one clear error.
    The log level is process-wide, hence the lock.
    """
    logging = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging is None:  # very old builds without the logging API: just decode
        yield
        return
    with _LOG_LOCK:
        old = logging.getLogLevel()
        logging.setLogLevel(logging.LOG_LEVEL_SILENT)
        try:
            yield
        finally:
            logging.setLogLevel(old)


def _fail(path: Path, reason: str) -> ImageError:
    return ImageError(f"cannot read image {path}: {reason}; {_SUPPORTED}")


def _too_large(path: Path, height: int, width: int, max_pixels: int) -> ImageError:
    return ImageError(
        f"cannot read image {path}: {width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is more "
        f"than the {max_pixels / 1e6:g} megapixel limit; downscale the image first"
    )


def read_image(
    path: str | Path,
    *,
    size: tuple[int, int] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> LoadedImage:
    """Read an image file into RGB float32 [0, 1], handling every common storage form.

    The file's bytes are read in Python and decoded with ``cv2.imdecode`` (so non-ASCII paths work on every
    platform). Oversized files are refused from their header, before decoding (PNG, JPEG, GIF, BMP, WebP,
    TIFF, PNM; other formats by OpenCV's own limit, see the module docstring).

    Args:
        path: the image file.
        size: optional ``(H, W)`` to resize to right away (as :func:`to_model_input` would), which saves memory
            when many large photos are kept; recorded in ``notes``.
        max_pixels: refuse images with more pixels than this (decompression bombs).

    Returns:
        A :class:`LoadedImage`; ``rgb`` is ``[H, W, 3]`` (``size`` when given).

    Raises:
        ImageError: missing / unreadable / empty / non-image / truncated / oversized file, or a pixel type
            that cannot be used. The message names the file and says what to do.
    """
    path = Path(path)
    if path.is_dir():
        raise _fail(path, "it is a folder, not a file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"cannot read image {path}: no such file; check the path") from None
    except OSError as exc:
        reason = exc.strerror or exc
        raise ImageError(f"cannot read image {path}: {reason}; check the file and its permissions") from None
    if not data:
        raise _fail(path, "the file is empty")

    header = peek_header(data)
    if header is not None and header.height is not None and header.width is not None:
        if header.height * header.width > max_pixels:
            raise _too_large(path, header.height, header.width, max_pixels)

    decoded = _decode(path, data, header)
    notes: list[str] = []
    if header is not None and header.frames > 1:
        notes.append("multi-frame file: first frame used")
    if header is not None and header.decoder_orients:
        pass  # libtiff already oriented the pixels; applying the tag again would rotate twice
    elif header is not None and (orientation := exif_orientation(header.exif)) != 1:
        decoded = apply_orientation(decoded, orientation)
        notes.append(f"EXIF orientation {orientation} applied")
    if decoded.shape[0] * decoded.shape[1] > max_pixels:  # formats whose header we do not parse
        raise _too_large(path, decoded.shape[0], decoded.shape[1], max_pixels)

    x = _to_unit_float(path, decoded, header, notes)
    original_size = (int(x.shape[0]), int(x.shape[1]))
    if size is not None:
        # Before gray -> RGB, so a huge gray scan is resized as one channel, not three.
        size = _check_target_size(size)
        if size != original_size:
            x = resize(x, size)
            notes.append(f"resized {original_size[0]}x{original_size[1]} -> {size[0]}x{size[1]} (HxW)")
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    rgb = np.ascontiguousarray(x[:, :, ::-1], dtype=np.float32)  # OpenCV's BGR -> RGB
    rgb.flags.writeable = False
    return LoadedImage(path=path, rgb=rgb, original_size=original_size, notes=tuple(notes))


def _decode(path: Path, data: bytes, header: Header | None) -> np.ndarray:
    """Decoded pixels as stored: ``[H, W]`` or ``[H, W, C]`` in B, G, R(, A) order, any depth."""
    try:
        with _quiet_opencv():
            img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        if "MAX_IMAGE_PIXELS" in str(exc) or "MAX_IMAGE_WIDTH" in str(exc) or "MAX_IMAGE_HEIGHT" in str(exc):
            raise ImageError(
                f"cannot read image {path}: it is larger than OpenCV's size limit; downscale the image first"
            ) from None
        img = None
    if img is None or img.size == 0:
        if header is None:
            raise _fail(path, "not a recognised image format")
        raise _fail(path, f"the {header.format.upper()} data is damaged or truncated")
    return img


def _to_unit_float(path: Path, a: np.ndarray, header: Header | None, notes: list[str]) -> np.ndarray:
    """Decoded ``[H, W]`` / ``[H, W, 1|2|3|4]`` gray/BGR(A) of any depth -> float32 ``[H, W, 1|3]`` in [0, 1].

    Alpha is composited away; colour stays in OpenCV's B, G, R order and gray stays one channel (the caller
    resizes first, then expands).
    """
    if a.ndim == 2:
        a = a[:, :, None]
    channels = a.shape[2]
    if channels not in (1, 2, 3, 4):
        raise _fail(path, f"it has {channels} channels (only gray, gray+alpha, RGB and RGBA are supported)")

    if a.dtype == np.uint8:
        x = a.astype(np.float32) * np.float32(1 / 255)
    elif a.dtype == np.uint16:
        x = a.astype(np.float32) * np.float32(1 / 65535)
        notes.append("16-bit -> [0, 1]")
    elif a.dtype in (np.float16, np.float32, np.float64):
        x = a.astype(np.float32)
        if not np.all(np.isfinite(x)) or x.min() < 0.0 or x.max() > 1.0:
            x = np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
            notes.append("float pixels clipped to [0, 1]")
        else:
            notes.append("float pixels taken as [0, 1]")
    else:
        raise _fail(path, f"its pixel type {a.dtype} is not supported (use 8 or 16 bits per channel)")

    palette = header is not None and header.palette
    if palette:
        notes.append("palette -> RGB")
    gray_alpha = channels == 2 or (header is not None and header.gray_alpha)
    if channels in (2, 4):
        # Transparent areas become white, the usual page background, rather than whatever colour the
        # encoder left under alpha = 0 (often black, which would fire edge detectors at the borders).
        alpha = x[:, :, -1:]
        x = x[:, :, :-1] * alpha + (1.0 - alpha)
        notes.append("grayscale+alpha composited on white" if gray_alpha else "RGBA composited on white")
    if x.shape[2] == 1 and not palette and not gray_alpha:
        notes.append("grayscale -> RGB")
    return x


# ---------------------------------------------------------------------------------------------------------
# Model input and back.

def median_aspect(images: Sequence[LoadedImage]) -> float | None:
    """The median width / height of ``images`` (as read, before any resize), or None for no images."""
    ratios = sorted(im.original_size[1] / im.original_size[0] for im in images if im.original_size[0] > 0)
    return ratios[len(ratios) // 2] if ratios else None


def _check_target_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise UsageError(f"invalid image size {size!r}: give (height, width)") from None
    if h < 1 or w < 1:
        raise UsageError(f"invalid image size {size!r}: height and width must be positive")
    return (h, w)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``[H, W, C]`` to ``size`` = ``(H', W')``, stretching if the aspect ratio differs (no crop).

    INTER_AREA when neither side grows (averages pixels, no aliasing/moiré), INTER_LINEAR otherwise (AREA
    upsampling is blocky). No cropping, so every pixel of the picture can be explained; a model trained on
    center crops may see a slightly squeezed picture - crop the files beforehand if that matters.
    """
    h, w = _check_target_size(size)
    if image.shape[:2] == (h, w):
        return image
    shrinking = h <= image.shape[0] and w <= image.shape[1]
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return out[:, :, None] if out.ndim == 2 else out  # cv2 drops a trailing single channel


def to_model_input(
    img: LoadedImage | np.ndarray,
    pp: Preprocess,
    size: tuple[int, int],
    channels: int = 3,
) -> np.ndarray:
    """Normalize an image into one model input, always channel-first.

    Steps: :func:`resize` to ``size`` (no crop); ``channels=1`` -> BT.601 luminance; ``pp.bgr`` -> B, G, R
    order; ``* 255`` unless ``pp.scale``; ``(v - mean) / std`` with mean/std in model channel order (see
    :func:`onnx_kernelviz.io.preprocess.channel_stats`). NHWC models are handled by the caller (transpose).

    Args:
        img: a :class:`LoadedImage`, or an RGB ``[H, W, 3]`` float array in [0, 1].
        pp: the preprocessing settings.
        size: ``(H, W)`` of the model input.
        channels: 1 (grayscale model) or 3.

    Returns:
        float32 ``[channels, H, W]``, C-contiguous.
    """
    rgb = img.rgb if isinstance(img, LoadedImage) else np.asarray(img, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UsageError(f"expected an RGB image [H, W, 3], got shape {tuple(rgb.shape)}")
    mean, std = channel_stats(pp, channels)
    v = resize(rgb.astype(np.float32, copy=False), size)
    if channels == 1:
        v = v @ _LUMA
        v = v[:, :, None]
    elif channels == 3:
        if pp.bgr:
            v = v[:, :, ::-1]
    else:
        raise UsageError(f"the model input has {channels} channels; only 1 (gray) and 3 (colour) are supported")
    if not pp.scale:
        v = v * np.float32(255.0)
    x = (v - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def from_model_input(x: np.ndarray, pp: Preprocess) -> np.ndarray:
    """Inverse of :func:`to_model_input` (same size): ``[C, H, W]`` -> ``[H, W, 3]`` uint8 RGB.

    Values outside what a real image can hold are clipped to 0..255 (NaN -> 0); gray (C = 1) is replicated.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise UsageError(f"expected a model input [C, H, W] with C = 1 or 3, got shape {tuple(x.shape)}")
    channels = x.shape[0]
    mean, std = channel_stats(pp, channels)
    v = x.transpose(1, 2, 0) * std + mean
    if pp.scale:
        v = v * np.float32(255.0)
    if channels == 1:
        v = np.repeat(v, 3, axis=2)
    elif pp.bgr:
        v = v[:, :, ::-1]
    v = np.nan_to_num(v, nan=0.0, posinf=255.0, neginf=0.0)
    return np.ascontiguousarray(np.clip(np.rint(v), 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------------------------------------
# Writing, atomically: a crash or Ctrl-C never leaves a half-written file under the final name.

_WRITE_EXTENSIONS = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg"}


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
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


def write_image(path: str | Path, rgb_uint8: np.ndarray, *, jpeg_quality: int = 95) -> Path:
    """Save an RGB (``[H, W, 3]``) or gray (``[H, W]``) uint8 image atomically as PNG or JPEG (by extension).

    Raises:
        UsageError: another extension, or not a uint8 image.
        ImageError: the file cannot be written (the message says why).
    """
    path = Path(path)
    ext = _WRITE_EXTENSIONS.get(path.suffix.lower())
    if ext is None:
        raise UsageError(f"cannot write image {path}: use a .png or .jpg file name")
    a = np.asarray(rgb_uint8)
    if a.dtype != np.uint8 or not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (1, 3))):
        raise UsageError(f"cannot write image {path}: expected uint8 [H, W, 3] or [H, W], got {a.dtype} {a.shape}")
    bgr = a[:, :, ::-1] if a.ndim == 3 and a.shape[2] == 3 else a
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext == ".jpg" else []
    ok, encoded = cv2.imencode(ext, np.ascontiguousarray(bgr), params)
    if not ok:
        raise ImageError(f"cannot encode image {path} as {ext}; try a .png name")
    try:
        with atomic_file(path, durable=False) as f:
            f.write(encoded.tobytes())
    except OSError as exc:
        raise ImageError(f"cannot write image {path}: {exc.strerror or exc}; check the folder is writable") from None
    return path


def write_npy(path: str | Path, array: np.ndarray) -> Path:
    """Save ``array`` atomically with ``np.save`` (no pickled objects) to exactly ``path``."""
    path = Path(path)
    try:
        with atomic_file(path, durable=False) as f:
            np.save(f, np.asarray(array), allow_pickle=False)
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc.strerror or exc}; check the folder is writable") from None
    return path
