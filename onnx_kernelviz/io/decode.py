"""Reading one image file robustly, with memory bounded by the model input rather than by the file.

Every image becomes an RGB float32 array in [0, 1] (:class:`LoadedImage`), whatever its file held: grayscale,
grayscale+alpha, palette, 16-bit, float, RGBA (composited on white), several frames (the first is used), or
an EXIF orientation tag. Each such conversion is recorded in ``LoadedImage.notes``. A file that cannot be
used raises :class:`ImageError` with the reason - never an OpenCV traceback.

Memory (files come from strangers: eight 9999x9999 PNGs of zeros are 2 MB on disk): only regular files of at
most :data:`MAX_IMAGE_BYTES` are read (``safefile``: a FIFO or ``/dev/zero`` is refused before it is opened);
the header must promise at most ``max_pixels``; given the model input size, a JPEG is decoded by libjpeg at 1/2,
1/4 or 1/8 scale when that still covers the input, and every picture becomes float32 in row bands that are
shrunk as they go (:func:`_to_float`). What stays per image is the input size; the passing peak is one file's
decoded pixels in their stored type.

Why OpenCV 5 needs care here (checked on opencv-python-headless 5.0):

* ``IMREAD_UNCHANGED`` (needed for alpha and 16 bits) does NOT apply EXIF orientation, so we take the EXIF
  block from the file header ourselves (JPEG APP1, PNG eXIf, WebP EXIF) and rotate. TIFF is the exception:
  libtiff already orients the pixels, so its tag must not be applied twice. The reduced JPEG modes would
  orient, so they are asked not to (``IMREAD_IGNORE_ORIENTATION``) and the same code orients every format.
* Palette PNGs come back already expanded to BGR (BGRA with a tRNS chunk) and grayscale+alpha PNGs as BGRA;
  only the file header tells they were palette / gray, so we peek at it for the notes.
* OpenCV's own size limit (``OPENCV_IO_MAX_IMAGE_PIXELS``) is read once when cv2 is imported; we set it here
  before importing cv2 (effective when this module is the first to import cv2), and in any case refuse
  oversized files from their header before any pixel is decoded.
"""

from __future__ import annotations

import os

from onnx_kernelviz.io.imageheader import MAX_PIXELS

# Must precede the first `import cv2` in the process to take effect (see the module docstring).
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))

import contextlib  # noqa: E402
import threading  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from onnx_kernelviz.errors import ImageError  # noqa: E402
from onnx_kernelviz.io.imageheader import Header, apply_orientation, exif_orientation, peek_header  # noqa: E402
from onnx_kernelviz.io.modelinput import DEFAULT_FIT, FitPlan, fit_image, plan_fit, resize  # noqa: E402
from onnx_kernelviz.safefile import FileTooLarge, NotRegularFile, read_capped  # noqa: E402

#: The largest image file read (a 100-megapixel 16-bit RGBA TIFF is 800 MB uncompressed).
MAX_IMAGE_BYTES = 1 << 30
_SUPPORTED = "use a JPEG/PNG/BMP/TIFF/WebP file"
#: Pixels per band of the conversion to float, so no float copy of a whole large file exists.
_BAND_PIXELS = 1 << 18


@dataclass(frozen=True)
class LoadedImage:
    """One image, decoded and normalized to RGB.

    Attributes:
        path: the file it came from.
        rgb: ``[H, W, 3]`` float32 in [0, 1], C-contiguous and read-only (copy before editing).
        original_size: ``(H, W)`` of the picture as displayed (after EXIF orientation), before any resize.
        notes: the conversions done, e.g. ``"grayscale -> RGB"``, ``"RGBA composited on white"``, and how it
            was fitted to the input size.
    """

    path: Path
    rgb: np.ndarray
    original_size: tuple[int, int]
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of :attr:`rgb`."""
        return (int(self.rgb.shape[0]), int(self.rgb.shape[1]))


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


def read_file(path: Path) -> bytes:
    """The bytes of an image file, or :class:`ImageError` saying why not (one line, what to do)."""
    try:
        return read_capped(path, MAX_IMAGE_BYTES)
    except NotRegularFile as exc:
        raise ImageError(f"cannot read image {path}: it is {exc.kind}, not a regular file; give an image "
                         "file") from None
    except FileTooLarge as exc:
        raise ImageError(f"cannot read image {path}: the file holds {exc.size / 2**30:.1f} GB, more than the "
                         f"{MAX_IMAGE_BYTES >> 30} GB an image may; downscale or recompress it") from None
    except IsADirectoryError:
        raise _fail(path, "it is a folder, not a file") from None
    except FileNotFoundError:
        raise ImageError(f"cannot read image {path}: no such file; check the path") from None
    except OSError as exc:
        reason = exc.strerror or exc
        raise ImageError(f"cannot read image {path}: {reason}; check the file and its permissions") from None


def read_image(path: str | Path, *, size: tuple[int, int] | None = None, fit: str = DEFAULT_FIT,
               fill: np.ndarray | float = 1.0, max_pixels: int = MAX_PIXELS) -> LoadedImage:
    """Read an image file into RGB float32 [0, 1], handling every common storage form.

    The file's bytes are read in Python and decoded with ``cv2.imdecode`` (so non-ASCII paths work on every
    platform). Oversized files are refused from their header, before decoding (PNG, JPEG, GIF, BMP, WebP,
    TIFF, PNM; other formats by OpenCV's own limit, see the module docstring).

    Args:
        path: the image file.
        size: ``(H, W)`` of the model input: the picture is fitted to it right away (as ``fit`` says, see
            ``io/modelinput.py``), decoded at reduced scale where possible, and the fitting is recorded in
            ``notes``. None keeps the full picture.
        fit: ``crop``, ``squash`` or ``pad``.
        fill: the ``pad`` colour, RGB in [0, 1] (``modelinput.mean_colour`` of the preprocessing).
        max_pixels: refuse images with more pixels than this (decompression bombs).

    Returns:
        A :class:`LoadedImage`; ``rgb`` is ``[H, W, 3]`` (``size`` when given).

    Raises:
        ImageError: missing / special / unreadable / empty / non-image / truncated / oversized file, or a pixel
            type that cannot be used. The message names the file and says what to do.
    """
    path = Path(path)
    data = read_file(path)
    if not data:
        raise _fail(path, "the file is empty")
    header = peek_header(data)
    if header is not None and header.height is not None and header.width is not None:
        if header.height * header.width > max_pixels:
            raise _too_large(path, header.height, header.width, max_pixels)
    orientation = 1
    if header is not None and not header.decoder_orients:  # libtiff orients TIFF itself: never twice
        orientation = exif_orientation(header.exif)
    shown = _shown_size(header, orientation)
    plan = plan_fit(shown, size, fit) if size is not None and shown is not None else None
    scale = _jpeg_scale(header, shown, plan)
    decoded = _decode(path, data, header, scale)
    del data
    notes: list[str] = []
    if header is not None and header.frames > 1:
        notes.append("multi-frame file: first frame used")
    if orientation != 1:
        decoded = apply_orientation(decoded, orientation, copy=False)
        notes.append(f"EXIF orientation {orientation} applied")
    if decoded.shape[0] * decoded.shape[1] > max_pixels:  # formats whose header we do not parse
        raise _too_large(path, decoded.shape[0], decoded.shape[1], max_pixels)
    original = shown if scale > 1 and shown is not None else (int(decoded.shape[0]), int(decoded.shape[1]))
    if size is not None:
        plan = plan_fit(original, size, fit)
        decoded = plan.cut(decoded)  # a view: only the rows and columns the input shows
    shrink = plan is not None and decoded.shape[0] >= plan.resized[0] and decoded.shape[1] >= plan.resized[1]
    x = _to_float(path, decoded, header, notes, plan.resized if shrink and plan is not None else None)
    del decoded
    if x.shape[2] == 1:
        x = np.repeat(x, 3, axis=2)
    rgb = x[:, :, ::-1]  # OpenCV's BGR -> RGB
    if plan is not None:
        rgb = fit_image(rgb, plan, fill, cut=False)
        if plan.note:
            notes.append(plan.note)
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)
    rgb.flags.writeable = False
    return LoadedImage(path=path, rgb=rgb, original_size=original, notes=tuple(notes))


def median_aspect(paths: Sequence[str | Path]) -> float | None:
    """The median width / height of the pictures as displayed, from their headers (no decoding); None when no
    header says (a free input side next to a fixed one then stays square)."""
    ratios = []
    for p in paths:
        header = peek_header(read_file(Path(p)))
        orientation = 1 if header is None or header.decoder_orients else exif_orientation(header.exif)
        shown = _shown_size(header, orientation)
        if shown:
            ratios.append(shown[1] / shown[0])
    ratios.sort()
    return ratios[len(ratios) // 2] if ratios else None


def _shown_size(header: Header | None, orientation: int) -> tuple[int, int] | None:
    """(H, W) as displayed, from the header (EXIF orientations 5-8 swap the sides)."""
    if header is None or not header.height or not header.width:
        return None
    return (header.width, header.height) if orientation >= 5 else (header.height, header.width)


def _jpeg_scale(header: Header | None, shown: tuple[int, int] | None, plan: FitPlan | None) -> int:
    """1, 2, 4 or 8: the largest libjpeg scale-down whose result still covers ``plan.scaled`` (1 if none)."""
    if plan is None or shown is None or header is None or header.format != "jpeg" or not header.baseline \
            or header.channels not in (1, 3):
        return 1
    (h, w), (rh, rw) = shown, plan.scaled  # the whole photo at the fit's scale must stay covered
    return next((d for d in (8, 4, 2) if -(-h // d) >= rh and -(-w // d) >= rw), 1)


def _decode(path: Path, data: bytes, header: Header | None, scale: int = 1) -> np.ndarray:
    """Decoded pixels as stored: ``[H, W]`` or ``[H, W, C]`` in B, G, R(, A) order, any depth."""
    flags = cv2.IMREAD_UNCHANGED
    if scale > 1:  # only baseline 8-bit gray/colour JPEGs (see _jpeg_scale): nothing UNCHANGED would keep
        gray = header is not None and header.channels == 1
        flags = getattr(cv2, f"IMREAD_REDUCED_{'GRAYSCALE' if gray else 'COLOR'}_{scale}") \
            | cv2.IMREAD_IGNORE_ORIENTATION
    try:
        with _quiet_opencv():
            img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
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


def _to_float(path: Path, a: np.ndarray, header: Header | None, notes: list[str],
              shrink_to: tuple[int, int] | None = None) -> np.ndarray:
    """Decoded ``[H, W]`` / ``[H, W, 1|2|3|4]`` gray/BGR(A) of any depth -> float32 ``[H', W', 1|3]`` in [0, 1],
    alpha composited on white, shrunk to ``shrink_to`` (H', W') when given (INTER_AREA, no side may grow).

    Transparent areas become white, the usual page background, rather than whatever colour the encoder left
    under alpha = 0 (often black, which would fire edge detectors at the borders). Colour stays in OpenCV's
    B, G, R order and gray stays one channel. The work runs in row bands, each shrunk across first, then the
    input-wide result down: area averaging is separable, so this is the same INTER_AREA result while no
    float copy of the whole file ever exists.
    """
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, channels = a.shape
    if channels not in (1, 2, 3, 4):
        raise _fail(path, f"it has {channels} channels (only gray, gray+alpha, RGB and RGBA are supported)")
    if a.dtype not in (np.uint8, np.uint16, np.float16, np.float32, np.float64):
        raise _fail(path, f"its pixel type {a.dtype} is not supported (use 8 or 16 bits per channel)")
    unit = {np.dtype(np.uint8): 1 / 255, np.dtype(np.uint16): 1 / 65535}.get(a.dtype)
    out_h, out_w = shrink_to or (h, w)
    colour = 3 if channels >= 3 else 1
    across = np.empty((h, out_w, colour), np.float32)
    clipped, step = False, max(1, _BAND_PIXELS // max(w, 1))
    for r in range(0, h, step):
        band = a[r:r + step].astype(np.float32)
        if unit is not None:
            band *= np.float32(unit)
        elif not np.all(np.isfinite(band)) or band.min() < 0.0 or band.max() > 1.0:
            band = np.clip(np.nan_to_num(band, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
            clipped = True
        if channels in (2, 4):
            alpha = band[:, :, -1:]
            band = band[:, :, :-1] * alpha + (1.0 - alpha)
        across[r:r + step] = resize(band, (band.shape[0], out_w))
        del band  # before the next band is made: one band at a time
    if a.dtype == np.uint16:
        notes.append("16-bit -> [0, 1]")
    elif unit is None:
        notes.append("float pixels clipped to [0, 1]" if clipped else "float pixels taken as [0, 1]")
    palette = header is not None and header.palette
    if palette:
        notes.append("palette -> RGB")
    gray_alpha = channels == 2 or (header is not None and header.gray_alpha)
    if channels in (2, 4):
        notes.append("grayscale+alpha composited on white" if gray_alpha else "RGBA composited on white")
    if colour == 1 and not palette and not gray_alpha:
        notes.append("grayscale -> RGB")
    return resize(across, (out_h, out_w))
