"""``--kernel SPEC`` and ``--top-images N``: which (image, kernel) pairs to explain."""

from __future__ import annotations

import re

import numpy as np

from onnx_kernelviz.errors import UsageError


def parse_kernel_spec(spec: str, channels: int) -> tuple[str, object]:
    """Validate ``SPEC`` (``7``, ``3,7,12``, ``top5``, ``all``) against a layer with ``channels`` kernels.

    Returns ``("list", [ints])``, ``("top", n)`` or ``("all", None)``.
    """
    s = str(spec).strip().lower()
    if s == "all":
        return "all", None
    m = re.fullmatch(r"top(\d+)", s)
    if m:
        n = int(m.group(1))
        if n < 1:
            raise UsageError(f"--kernel {spec}: topN needs N >= 1")
        return "top", min(n, channels)
    try:
        ks = [int(p) for p in s.split(",") if p.strip() != ""]
    except ValueError:
        raise UsageError(f"--kernel {spec!r} is not a kernel spec; use e.g. 7, 3,7,12, top5 or all") from None
    if not ks:
        raise UsageError(f"--kernel {spec!r} is empty; use e.g. 7, 3,7,12, top5 or all")
    bad = [k for k in ks if not 0 <= k < channels]
    if bad:
        raise UsageError(f"kernel {bad[0]} is out of range: this layer has {channels} kernels (0..{channels - 1})")
    return "list", list(dict.fromkeys(ks))


def select_items(spec: str, energy: np.ndarray, top_images: int | None = None) -> list[tuple[int, int]]:
    """The (image index, kernel) pairs to explain, given ‖r_k(x)‖ per image ``energy [N, C]``.

    Without ``top_images``: every image with the chosen kernels (``topN``: the N strongest on that image).
    With ``top_images`` (a folder of images): each chosen kernel on the ``top_images`` images where it fires
    most; ``topN`` then picks the N kernels with the highest peak energy over the images.
    """
    n_img, channels = energy.shape
    kind, value = parse_kernel_spec(spec, channels)
    if top_images is None:
        items = []
        for i in range(n_img):
            ks = (list(range(channels)) if kind == "all" else value if kind == "list"
                  else list(np.argsort(-energy[i], kind="stable")[:value]))
            items.extend((i, int(k)) for k in ks)
        return items
    if top_images < 1:
        raise UsageError("--top-images needs N >= 1")
    ks = (list(range(channels)) if kind == "all" else value if kind == "list"
          else list(np.argsort(-energy.max(axis=0), kind="stable")[:value]))
    items = []
    for k in ks:
        best = np.argsort(-energy[:, k], kind="stable")[:top_images]
        items.extend((int(i), int(k)) for i in sorted(best))
    return items
