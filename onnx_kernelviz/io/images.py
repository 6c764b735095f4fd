"""Image files: finding them, and writing results atomically. Decoding is ``io/decode.py``; fitting a picture
to the model input and normalizing it is ``io/modelinput.py`` (both names stay importable from here).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from onnx_kernelviz.errors import ImageError, UsageError  # noqa: E402

# decode sets OpenCV's pixel limit, which must happen before the first `import cv2` of the process
from onnx_kernelviz.io.decode import MAX_IMAGE_BYTES, MAX_PIXELS, LoadedImage, read_image  # noqa: F401
from onnx_kernelviz.io.files import atomic_file  # noqa: E402
from onnx_kernelviz.io.modelinput import from_model_input, resize, to_model_input  # noqa: F401
from onnx_kernelviz.safefile import special_kind  # noqa: E402

#: File name endings (lower case) that a folder is searched for.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".gif",
     ".pbm", ".pgm", ".ppm", ".pnm"}
)

# ---------------------------------------------------------------------------------------------------------
# Finding images.

def list_images(paths: Sequence[str | Path]) -> list[Path]:
    """Expand the user's IMAGE_OR_DIR arguments into image files.

    Files are taken as given (whatever their extension; :func:`read_image` judges them). A folder contributes
    its files with an extension in :data:`IMAGE_EXTENSIONS` (case-insensitive), sorted by name, not recursing
    into sub-folders and skipping hidden files (``.name``). A file listed twice is kept once.

    Raises:
        ImageError: a path that does not exist, a FIFO/device/socket, or a folder without any image file
            (special files inside a folder are skipped).
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
            kind = special_kind(path)  # before anything opens it: a FIFO would block the run forever
            if kind:
                raise ImageError(f"cannot read image {path}: it is {kind}, not a regular file; give an image file")
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
# Writing, atomically (io/files.py): a crash or Ctrl-C never leaves a half-written file under the final name.

_WRITE_EXTENSIONS = {".png": ".png", ".jpg": ".jpg", ".jpeg": ".jpg"}


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
