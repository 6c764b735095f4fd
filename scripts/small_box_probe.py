"""Count the small-box binary masks that come back fully kept (every grid cell over ½), per setting.

The small-box candidate (``focus_small_box``, docs/TRADEOFF.md "The binary mask's loss reads the soft grid") is
wasted where it ends with the whole rf_box kept: its x' is then the photo's box, never less than the soft result.
This wraps ``optimize_on_focus`` in ``pipeline/batch.py`` and counts, among the calls that optimize the binary
mask (one band, a ``focus_small_box``-cell grid), the rows whose final grid is over ½ everywhere; the rest of the
run is scripts/focus_sweep.py's, whose arguments follow (one setting per run gives one count):

    python scripts/small_box_probe.py --faces --models mtcnn_onet:0,1,2,3 mtcnn_rnet:0,1,2 --top 2 --no-oracle \\
        --settings default
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import focus_sweep  # noqa: E402

import onnx_kernelviz.pipeline.batch as batch  # noqa: E402


def sweep_reading_binary_masks(argv: list[str], read: Callable[..., None]) -> int:
    """scripts/focus_sweep.py's run on ``argv``, calling ``read(res, forward, x, b, k, sites)`` with the result of
    every ``optimize_on_focus`` call of ``pipeline/batch.py`` that optimizes the binary mask (placed on the whole
    input, one band: the soft stages' masks have 3)."""
    real = batch.optimize_on_focus

    def reading(forward, build, objective, loop, x, b, k, sites, **kw):
        res = real(forward, build, objective, loop, x, b, k, sites, **kw)
        if kw.get("places_itself") and res.grid is not None and res.grid.shape[1] == 1:
            read(res, forward, x, b, k, sites)
        return res

    batch.optimize_on_focus = reading
    try:
        return focus_sweep.main(argv)
    finally:
        batch.optimize_on_focus = real


def main(argv: list[str]) -> int:
    counts = {"binary masks": 0, "fully kept": 0}

    def counting(res, *_) -> None:
        full = (res.grid > 0.5).flatten(1).all(1)  # [B, 1, g, g] -> every cell kept
        counts["binary masks"] += len(full)
        counts["fully kept"] += int(full.sum())

    rc = sweep_reading_binary_masks(argv, counting)
    print(f"binary masks: {counts['binary masks']}, fully kept: {counts['fully kept']}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
