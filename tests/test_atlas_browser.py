"""atlas.html and its pages in headless chromium: opened from disk, every image renders, no script, no CSP
violation, links lead to pages that exist; a screenshot of a layer page shows its tiles."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import cv2
import pytest
from test_atlas import planted, run  # noqa: F401  (planted is a fixture)
from test_report_browser import PROBE, _chromium, _open_in_chromium

from onnx_kernelviz.atlas import AtlasSettings
from onnx_kernelviz.atlas.html import CSP

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def atlas_dir(planted, tmp_path_factory) -> Path:  # noqa: F811
    model, images = planted
    out = tmp_path_factory.mktemp("atlas_html") / "atlas"
    run(model, images, out, settings=AtlasSettings(top=3, explain=1, shard_size=2))
    return out


@pytest.mark.parametrize("page", ["atlas.html", "pages/L000.html", "pages/L000/k0001.html", "pages/L001/k0005.html",
                                  "pages/duplicates.html", "pages/dead.html", "pages/rare.html",
                                  "pages/flat.html"])
def test_atlas_pages_render(atlas_dir, page, tmp_path):
    path = atlas_dir / page
    text = path.read_text(encoding="utf-8")
    assert CSP in text and "<script" not in text
    # every local link points at a page or picture that exists
    for href in re.findall(r'(?:href|src)="([^"#]+)', text):
        assert (path.parent / href).resolve().is_file(), href
    probe_csp = CSP.replace("default-src 'none'", "default-src 'none'; script-src 'unsafe-inline'")
    copy = path.with_name("probe_" + path.name)  # same folder: relative paths resolve the same way
    copy.write_text(text.replace(CSP, probe_csp).replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    result, stderr = _open_in_chromium(copy, tmp_path / "profile")
    copy.unlink()
    assert result["images"] == text.count("<img ")
    assert result["broken"] == [] and result["errors"] == [], result
    console = [line for line in stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if re.search(r"error|uncaught|violates|failed", line, re.I)], console
    if page == "pages/L000/k0001.html":
        assert result["images"] == 2  # the strip of its exemplars and its explanation's strip
    if page == "pages/L000.html":
        assert result["images"] >= 5  # one tile per live kernel


def test_layer_page_screenshot_shows_tiles(atlas_dir, tmp_path):
    shot = tmp_path / "layer.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,700", "--hide-scrollbars",
           f"--screenshot={shot}", (atlas_dir / "pages" / "L000.html").as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (700, 1000)
    # the tiles are photos: the top of the page holds many distinct colours, not a blank page
    assert len({tuple(int(v) // 32 for v in px) for px in img[100:400].reshape(-1, 3)}) > 20
