"""Regenerate the demo photos bundled in ``onnx_kernelviz/data/photos/``.

The photos come from the sample data that ships inside the scikit-image wheel
(``skimage/data/``), so no network access is needed.  Only images whose
scikit-image docstring states a public-domain or CC0 status are used; the
per-image source, author and licence are recorded in
``onnx_kernelviz/data/photos/LICENSES.md`` (copied from those docstrings).

Each image is converted to RGB, downscaled (Lanczos) so that its longest side
is at most 512 px, and saved as baseline JPEG, quality 92, without metadata.
The output is deterministic for a given Pillow version.

    python scripts/fetch_photos.py [--out DIR]
"""
import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

# file name -> scikit-image loader; licences: see LICENSES.md next to the photos
PHOTOS = {
    "chelsea.jpg": data.chelsea,      # CC0, Stefan van der Walt
    "coffee.jpg": data.coffee,        # CC0, Rachel Michetti
    "astronaut.jpg": data.astronaut,  # public domain, NASA
    "rocket.jpg": data.rocket,        # public domain, SpaceX
}
MAX_SIDE = 512
QUALITY = 92
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "onnx_kernelviz" / "data" / "photos"


def save_photo(array: np.ndarray, path: Path) -> Image.Image:
    img = Image.fromarray(np.asarray(array, dtype=np.uint8)).convert("RGB")
    scale = MAX_SIDE / max(img.size)
    if scale < 1:
        size = (round(img.width * scale), round(img.height * scale))
        img = img.resize(size, Image.Resampling.LANCZOS)
    img.save(path, format="JPEG", quality=QUALITY, optimize=False, progressive=False)
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, loader in PHOTOS.items():
        img = save_photo(loader(), args.out / name)
        size = (args.out / name).stat().st_size
        print(f"{name}: {img.width}x{img.height}, {size} bytes")


if __name__ == "__main__":
    main()
