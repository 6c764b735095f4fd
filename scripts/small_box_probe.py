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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import focus_sweep  # noqa: E402

import onnx_kernelviz.pipeline.batch as batch  # noqa: E402


def main(argv: list[str]) -> int:
    real = batch.optimize_on_focus
    counts = {"binary masks": 0, "fully kept": 0}

    def counting(*a, **kw):
        res = real(*a, **kw)
        g = res.grid  # [B, M, g, g]; the soft stages' masks have 3 bands, the binary mask one
        if kw.get("places_itself") and g is not None and g.shape[1] == 1:
            full = (g > 0.5).flatten(1).all(1)
            counts["binary masks"] += len(full)
            counts["fully kept"] += int(full.sum())
        return res

    batch.optimize_on_focus = counting
    try:
        rc = focus_sweep.main(argv)
    finally:
        batch.optimize_on_focus = real
    print(f"binary masks: {counts['binary masks']}, fully kept: {counts['fully kept']}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
