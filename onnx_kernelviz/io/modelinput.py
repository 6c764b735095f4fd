"""From a decoded picture to the model's input and back: fitting the picture to the input size, normalizing.

How a picture of another shape fits the model input (``--fit``, :data:`FITS`):

* ``crop`` (default): resize so the shorter side fits, then take the centre, as torchvision's
  ``Resize(shorter side)`` + ``CenterCrop`` do: proportions are kept, the edges of a long photo are cut off.
* ``squash``: resize to the input size, stretching the picture if its proportions differ (nothing cut off).
* ``pad``: resize so the longer side fits and letterbox the rest with the preprocessing's mean colour (which the
  model sees as 0 after normalization): the whole photo, proportions kept, with bands.

:func:`plan_fit` decides the sizes from the two shapes alone, so the decoder can shrink a large file right away
(``io/decode.py``) and results can say what was done (``FitPlan.note``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from onnx_kernelviz.errors import UsageError
from onnx_kernelviz.io.preprocess import DEFAULT_FIT, FITS, Fit, Preprocess, channel_stats, parse_fit  # noqa: F401

if TYPE_CHECKING:  # decode.py imports this module
    from onnx_kernelviz.io.decode import LoadedImage

# ITU-R BT.601 luma weights, the same OpenCV's RGB2GRAY uses, so a gray model sees what cv2 users expect.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


#: A crop whose resized picture would exceed this many times the input (a 1x10000 strip would become
#: 224x2240000) cuts its window out of the source first, so memory stays bounded by the input.
_MAX_CROP_AREA = 4


@dataclass(frozen=True)
class FitPlan:
    """How a ``src`` (H, W) picture becomes a ``dst`` (H, W) input.

    The picture is scaled to ``scaled`` (the whole photo at the fit's scale); then ``crop`` takes the ``dst``
    window at ``(top, left)`` and ``pad`` pastes it at ``(top, left)`` of a ``dst`` canvas. To do it,
    :func:`fit_image` cuts ``window`` (rows y0:y1, columns x0:x1 of the source) when set, resizes to ``resized``
    and crops or pads.
    """

    src: tuple[int, int]
    dst: tuple[int, int]
    fit: Fit
    scaled: tuple[int, int]
    top: int = 0
    left: int = 0
    window: tuple[int, int, int, int] | None = None

    @property
    def resized(self) -> tuple[int, int]:
        """The size :func:`fit_image` resizes to (after the window, if any)."""
        return self.dst if self.window is not None else self.scaled

    @property
    def kind(self) -> str | None:
        """``"cropped"``, ``"padded"``, ``"squashed"`` (proportions changed), ``"resized"`` or None (untouched)."""
        (h0, w0), (h, w) = self.src, self.dst
        if self.src == self.dst:
            return None
        if self.scaled != self.dst:
            return "cropped" if self.fit == "crop" else "padded"
        return "squashed" if self.fit == "squash" and h0 * w != w0 * h else "resized"

    @property
    def note(self) -> str | None:
        """What was done, in words, for ``image_notes``; None when the picture already had the input size."""
        kind = self.kind
        if kind is None:
            return None
        (h0, w0), (h1, w1), (h, w) = self.src, self.scaled, self.dst
        said = f"resized {h0}x{w0} -> {h1}x{w1} (HxW)" if self.src != self.scaled else f"{h0}x{w0} (HxW)"
        return said + {"cropped": f", centre-cropped to {h}x{w}", "padded": f", padded to {h}x{w} with the mean "
                       "colour", "squashed": ", proportions not kept (--fit squash)", "resized": ""}[kind]

    def cut(self, image: np.ndarray) -> np.ndarray:
        """``image`` (``src``-sized, or the same picture at another scale) limited to :attr:`window`."""
        if self.window is None:
            return image
        y0, y1, x0, x1 = self.window
        fy, fx = image.shape[0] / self.src[0], image.shape[1] / self.src[1]
        return image[int(y0 * fy):max(int(y0 * fy) + 1, round(y1 * fy)),
                     int(x0 * fx):max(int(x0 * fx) + 1, round(x1 * fx))]


def fit_summary(plans: list[FitPlan], hints: bool = True) -> str | None:
    """One terminal line for a run: how many pictures were cropped, padded, squashed or resized to the input;
    ``hints``: and the ``--fit`` that would keep more (for a command that has ``--fit``)."""
    count = {k: sum(1 for p in plans if p.kind == k) for k in ("cropped", "padded", "squashed", "resized")}
    if not any(count.values()):
        return None
    h, w = plans[0].dst
    said = {"cropped": "centre-cropped", "padded": "padded with the mean colour", "squashed": "squashed",
            "resized": "resized"}
    parts = [f"{n} image{'s' * (n > 1)} {said[k]}" for k, n in count.items() if n]
    hint = {"cropped": " (--fit pad keeps the whole photo, --fit squash stretches it)",
            "squashed": " (proportions not kept; --fit crop keeps them)"}
    return f"{', '.join(parts)} to fit the {h}x{w} input" + next((hint[k] for k in hint if count[k] and hints), "")


def plan_fit(src: tuple[int, int], dst: tuple[int, int], fit: str = DEFAULT_FIT) -> FitPlan:
    """The resize and crop/pad that fit a ``src`` (H, W) picture to a ``dst`` (H, W) input (see the module doc)."""
    fit = parse_fit(fit)
    (h0, w0), (h, w) = check_target_size(src), check_target_size(dst)
    if fit == "squash" or (h0, w0) == (h, w):
        return FitPlan((h0, w0), (h, w), fit, (h, w))
    scale = max(h / h0, w / w0) if fit == "crop" else min(h / h0, w / w0)
    # round, but never below (crop) or above (pad) the input size on the side that decides the scale
    rh, rw = max(1, round(h0 * scale)), max(1, round(w0 * scale))
    rh, rw = (max(rh, h), max(rw, w)) if fit == "crop" else (min(rh, h), min(rw, w))
    # torchvision's CenterCrop: int(round((H' - h) / 2)); for pad the same formula gives the band above
    top, left = int(round(abs(rh - h) / 2.0)), int(round(abs(rw - w) / 2.0))
    window = None
    if fit == "crop" and rh * rw > _MAX_CROP_AREA * h * w:
        y0, x0 = int(top / scale), int(left / scale)
        window = (y0, min(h0, y0 + max(1, round(h / scale))), x0, min(w0, x0 + max(1, round(w / scale))))
    return FitPlan((h0, w0), (h, w), fit, (rh, rw), top, left, window)


def check_target_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise UsageError(f"invalid image size {size!r}: give (height, width)") from None
    if h < 1 or w < 1:
        raise UsageError(f"invalid image size {size!r}: height and width must be positive")
    return (h, w)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``[H, W, C]`` to ``size`` = ``(H', W')`` exactly (stretching if the proportions differ).

    INTER_AREA when neither side grows (averages pixels, no aliasing/moiré), INTER_LINEAR otherwise (AREA
    upsampling is blocky). Works on uint8/uint16/float arrays alike.
    """
    h, w = check_target_size(size)
    if image.shape[:2] == (h, w):
        return image
    shrinking = h <= image.shape[0] and w <= image.shape[1]
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return out[:, :, None] if out.ndim == 2 and image.ndim == 3 else out  # cv2 drops a trailing single channel


def fit_image(image: np.ndarray, plan: FitPlan, fill: np.ndarray | float = 0.0, *, cut: bool = True) -> np.ndarray:
    """Apply ``plan`` to ``image`` ``[H, W, C]`` (the picture at ``plan.src`` or any other scale): ``[h, w, C]``.

    ``fill``: the padding colour, one value per channel of ``image`` (pad only). ``cut=False``: ``image`` is
    already ``plan.cut(...)`` of the picture.
    """
    x = resize(plan.cut(image) if cut else image, plan.resized)
    h, w = plan.dst
    if plan.resized == plan.dst:
        return x
    if plan.fit == "crop":
        return np.ascontiguousarray(x[plan.top:plan.top + h, plan.left:plan.left + w])
    canvas = np.empty((h, w, x.shape[2]), dtype=x.dtype)
    canvas[...] = fill
    rh, rw = plan.resized
    canvas[plan.top:plan.top + rh, plan.left:plan.left + rw] = x
    return canvas


def mean_colour(pp: Preprocess) -> np.ndarray:
    """The preprocessing's mean as an RGB colour in [0, 1] ``[3]`` (what ``pad`` fills with): normalized, it
    is 0 in every channel."""
    mean, _ = channel_stats(pp, 3)
    rgb = (mean[::-1] if pp.bgr else mean) / (1.0 if pp.scale else 255.0)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def to_model_input(img: LoadedImage | np.ndarray, pp: Preprocess, size: tuple[int, int],
                   channels: int = 3) -> np.ndarray:
    """Normalize an image into one model input, always channel-first.

    Steps: fit to ``size`` as ``pp.fit`` says (:func:`plan_fit`; a no-op for a picture read at that size);
    ``channels=1`` -> BT.601 luminance; ``pp.bgr`` -> B, G, R order; ``* 255`` unless ``pp.scale``;
    ``(v - mean) / std`` with mean/std in model channel order (see :func:`channel_stats`). NHWC models are
    handled by the caller (transpose).

    Args:
        img: a :class:`~onnx_kernelviz.io.decode.LoadedImage`, or an RGB ``[H, W, 3]`` float array in [0, 1].
        pp: the preprocessing settings.
        size: ``(H, W)`` of the model input.
        channels: 1 (grayscale model) or 3.

    Returns:
        float32 ``[channels, H, W]``, C-contiguous.
    """
    rgb = np.asarray(getattr(img, "rgb", img), dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise UsageError(f"expected an RGB image [H, W, 3], got shape {tuple(rgb.shape)}")
    mean, std = channel_stats(pp, channels)
    v = fit_image(rgb, plan_fit(rgb.shape[:2], size, pp.fit), mean_colour(pp))
    if channels == 1:
        v = (v @ _LUMA)[:, :, None]
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
