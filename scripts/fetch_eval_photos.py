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

``--tuning`` writes a second tuning set instead (.cache/tune/photos; used by scripts/focus_sweep.py
``--tuning-extra``, never by the evaluation): textures and print, which the four bundled photos lack and which
make the focus cells large at the OCR model's late layers.

| file | source | licence (as the package states it) |
|---|---|---|
| page.jpg | scikit-image ``data.page()`` | a scanned printed page shipped in scikit-image's wheel; no licence stated |
| brick.jpg | scikit-image ``data.brick()`` | CC0Textures "Bricks25", CC0 |
| gravel.jpg | scikit-image ``data.gravel()`` | CC0Textures "Gravel04", CC0 |
| ihc.jpg | scikit-image ``data.immunohistochemistry()`` | CMMI, "no known copyright restrictions" |

``--faces`` writes face crops for the face family of scripts/fetch_eval_models.py (MTCNN's refine and output nets,
whose inputs are 24×24 and 48×48 face candidates) instead: held out (.cache/eval/faces) or, with ``--tuning``,
for tuning (.cache/tune/faces). Each set is six of the 25×25 grey faces of scikit-image ``data.lfw_subset()``
(Labeled Faces in the Wild; faces 0–5 for tuning, 50–55 held out) and two crops of larger photos (tuning: the
bundled astronaut and chelsea; held out: grace_hopper and camera above), saved as PNG and **transposed** (rows and
columns swapped), because the MTCNN port feeds its nets transposed images.

    pip install scikit-image matplotlib   # the `eval` extra
    python scripts/fetch_eval_photos.py [--out .cache/eval/photos]
    python scripts/fetch_eval_photos.py --tuning    # the second tuning set, into .cache/tune/photos
    python scripts/fetch_eval_photos.py --faces [--tuning]   # face crops, into .cache/eval/faces (.cache/tune/faces)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".cache" / "eval" / "photos"
TUNING = ROOT / ".cache" / "tune" / "photos"
FACES = ROOT / ".cache" / "eval" / "faces"
TUNING_FACES = ROOT / ".cache" / "tune" / "faces"
MAX_SIDE = 512


def _sources() -> dict:
    from matplotlib import cbook
    from skimage import data
    return {"hubble.jpg": data.hubble_deep_field, "coins.jpg": data.coins, "text.jpg": data.text,
            "camera.jpg": data.camera, "retina.jpg": data.retina,
            "grace_hopper.jpg": lambda: np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg")))}


def _tuning_sources() -> dict:
    from skimage import data
    return {"page.jpg": data.page, "brick.jpg": data.brick, "gravel.jpg": data.gravel,
            "ihc.jpg": data.immunohistochemistry}


def _face_sources(tuning: bool) -> dict:
    """name -> loader of an (H, W) or (H, W, 3) uint8 face crop, not yet transposed."""
    from matplotlib import cbook
    from skimage import data
    lfw = data.lfw_subset()  # (200, 25, 25) floats in [0, 1]: 100 faces, then 100 non-faces
    first = 0 if tuning else 50
    out = {f"lfw_{i:03d}.png": (lambda i=i: (lfw[i] * 255).round()) for i in range(first, first + 6)}
    if tuning:
        out["astronaut_face.png"] = lambda: data.astronaut()[20:200, 140:320]
        out["chelsea_face.png"] = lambda: data.chelsea()[20:250, 120:350]
    else:
        out["grace_hopper_face.png"] = lambda: np.asarray(
            Image.open(cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))[100:330, 105:335]
        out["camera_face.png"] = lambda: data.camera()[70:180, 170:280]
    return out


def fetch_faces(out: Path | None = None, tuning: bool = False) -> Path:
    """Write the face crops (transposed, PNG) into ``out`` and return it."""
    out = out or (TUNING_FACES if tuning else FACES)
    out.mkdir(parents=True, exist_ok=True)
    for name, load in _face_sources(tuning).items():
        path = out / name
        if not path.exists():
            img = np.asarray(load(), dtype=np.uint8)
            img = np.ascontiguousarray(np.swapaxes(img, 0, 1))  # MTCNN's port swaps rows and columns
            Image.fromarray(img).convert("RGB").save(path)
    return out


def fetch(out: Path = OUT, tuning: bool = False) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name, load in (_tuning_sources() if tuning else _sources()).items():
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
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--tuning", action="store_true", help="the second tuning set (not held out) instead")
    ap.add_argument("--faces", action="store_true", help="face crops for the face models (with --tuning: tuning's)")
    args = ap.parse_args(argv)
    if args.faces:
        print(fetch_faces(args.out, tuning=args.tuning))
    else:
        print(fetch(args.out or (TUNING if args.tuning else OUT), tuning=args.tuning))
    return 0


if __name__ == "__main__":
    sys.exit(main())
