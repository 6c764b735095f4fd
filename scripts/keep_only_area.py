"""How much of the rf_box a binary mask needs only to hold kernel k, with nothing else asked (no suppression).

An estimate of the least kept area the bar's "kept area ≤ 0.3 of the box" can be met with while k keeps its
activation: the small-box binary mask (``focus_small_box``) run with ``focus_suppress=0``, so that only the keep
hinge (k at 0.95 on F) and the area weight act. It is an optimization, not a proof: where the mask never leaves
its fully kept start (a kernel that needs little of the box may still come back whole), the number says nothing;
where it does, it is an upper estimate of that least area. This wraps ``optimize_on_focus`` in
``pipeline/batch.py`` and reads, for each binary mask it optimizes, k's kept share on F (the torch copy) and the
kept area of what its x' shows (scripts/small_box_probe.py's hook); the run is scripts/focus_sweep.py's, whose
arguments follow:

    python scripts/keep_only_area.py --faces --heldout --models mtcnn_rnet:0 --top 2 --no-oracle \\
        --settings focus_suppress=0,focus_small_soft_area=none,focus_small_share=0
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from small_box_probe import sweep_reading_binary_masks  # noqa: E402

import onnx_kernelviz.pipeline.batch as batch  # noqa: E402
from onnx_kernelviz.measure.focus import readability  # noqa: E402


def main(argv: list[str]) -> int:
    seen: list[tuple[float, float, bool]] = []  # (kept on F, kept area / box, fully kept) per binary mask

    def reading(res, forward, x, b, k, sites) -> None:
        _, ((kept, _),) = batch.scores_on_sites(forward, [res.x_mod], x, k, sites)
        shown = batch.shown_mask(res.x_mod, x, b, torch.tensor([s.rf_box for s in sites])).cpu().numpy()
        whole = (res.grid > 0.5).flatten(1).all(1)
        seen.extend((float(kept[i]), readability(shown[i], s.rf_box).box_area, bool(whole[i]))
                    for i, s in enumerate(sites))

    rc = sweep_reading_binary_masks(argv, reading)
    held = [(a, w) for kp, a, w in seen if kp >= 0.9]
    moved = [a for a, w in held if not w]
    print(f"binary keep-only masks: {len(seen)}; holding k >= 0.9: {len(held)}, of which {len(held) - len(moved)} "
          f"never left the fully kept start; median kept area / box of the others: "
          f"{np.median(moved) if moved else float('nan'):.2f} ({np.mean([a > 0.3 for a in moved]) if moved else 0:.0%}"
          f" over 0.3)")
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
