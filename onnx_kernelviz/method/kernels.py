"""``--kernel SPEC`` and ``--top-images N``: which (image, kernel) pairs to explain."""

from __future__ import annotations

import re
from typing import Literal

import numpy as np

from onnx_kernelviz.errors import UsageError

#: ``("list", [ints])``, ``("top", n)`` or ``("all", None)``
KernelSpec = tuple[Literal["list", "top", "all"], "list[int] | int | None"]


def parse_kernel_spec(spec: str, channels: int) -> KernelSpec:
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

    def kernels(e: np.ndarray) -> list[int]:
        """The chosen kernels, given a per-kernel energy ``[C]`` (for ``topN``)."""
        if isinstance(value, list):
            return value
        if kind == "all" or value is None:
            return list(range(channels))
        return [int(k) for k in np.argsort(-e, kind="stable")[:value]]

    items: list[tuple[int, int]] = []
    if top_images is None:
        for i in range(n_img):
            items.extend((i, k) for k in kernels(energy[i]))
        return items
    if top_images < 1:
        raise UsageError("--top-images needs N >= 1")
    for k in kernels(energy.max(axis=0)):
        best = np.argsort(-energy[:, k], kind="stable")[:top_images]
        items.extend((int(i), int(k)) for i in sorted(best))
    return items
