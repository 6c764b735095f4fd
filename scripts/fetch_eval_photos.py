"""Write the held-out photos of the focus evaluation (never used for tuning) into an ignored cache folder.

They come from sample data inside two PyPI wheels, so no other download is needed; each is converted to RGB
(grey images are repeated over the channels) and its longest side downscaled to 512 px. Not committed.

| file | source | licence (as the package states it) |
|---|---|---|
| hubble.jpg | scikit-image ``data.hubble_deep_field()`` | NASA, "may be freely used in the public domain" |
| coins.jpg | scikit-image ``data.coins()`` | Brooklyn Museum, "no known copyright restrictions" |
| text.jpg | scikit-image ``data.text()`` | Wikipedia File:Corner.png, "released into the public domain" |
| camera.jpg | scikit-image ``data.camera()`` | "CC0 by the photographer (Lav Varshney)" |
| retina.jpg | scikit-image ``data.retina()`` | Wikimedia Commons, CC0 1.0 (Mikael Häggström) |
| grace_hopper.jpg | matplotlib ``sample_data/grace_hopper.jpg`` | U.S. Navy photograph (public domain) |

    pip install scikit-image matplotlib   # the `eval` extra
    python scripts/fetch_eval_photos.py [--out .cache/eval/photos]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".cache" / "eval" / "photos"
MAX_SIDE = 512


def _sources() -> dict:
    from matplotlib import cbook
    from skimage import data
    return {"hubble.jpg": data.hubble_deep_field, "coins.jpg": data.coins, "text.jpg": data.text,
            "camera.jpg": data.camera, "retina.jpg": data.retina,
            "grace_hopper.jpg": lambda: np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")))}


def fetch(out: Path = OUT) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name, load in _sources().items():
        path = out / name
        if path.exists():
            continue
        img = Image.fromarray(np.asarray(load(), dtype=np.uint8)).convert("RGB")
        scale = MAX_SIDE / max(img.size)
        if scale < 1:
            img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
        img.save(path, format="JPEG", quality=92)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    print(fetch(ap.parse_args(argv).out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
