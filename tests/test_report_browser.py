"""The HTML report in a real browser: headless chromium opens it from disk and every image renders.

How: chromium has no Python API here, so the test opens a *copy* of the report with a small probe script
prepended. The probe records error events (a missing image fires one), then on load switches the lazy images
to eager, waits until all are complete, and writes ``{"images", "broken", "errors"}`` into the DOM, which
``--dump-dom`` prints. Console messages (``--enable-logging=stderr``) are checked for errors as well.
The report's own Content-Security-Policy stays in force, widened only to let the probe run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from onnx_kernelviz.report.html import CSP, write_report

try:  # tests/ is a plain folder (rootdir on sys.path) or a package
    import focus_sample
    from test_report import make_sample
except ImportError:  # pragma: no cover
    from tests import focus_sample
    from tests.test_report import make_sample

pytestmark = pytest.mark.browser

PROBE = """<script>
var kvErrors = [];
window.addEventListener("error", function (e) {
  kvErrors.push(e.message || ("cannot load " + (e.target && (e.target.src || e.target.href))));
}, true);
document.addEventListener("securitypolicyviolation", function (e) { kvErrors.push("CSP blocked " + e.blockedURI); });
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  imgs.forEach(function (i) { i.loading = "eager"; });
  (function report() {  // poll: a broken image is "complete" too, and may have failed before we listen
    if (!imgs.every(function (i) { return i.complete; })) { setTimeout(report, 50); return; }
    var out = document.createElement("pre");
    out.id = "kv-probe";
    var shown = function (sel) {  // laid out on the page (not inside a closed <details>)
      return Array.prototype.filter.call(document.querySelectorAll(sel), function (e) { return e.offsetHeight > 0; });
    };
    out.textContent = JSON.stringify({images: imgs.length, errors: kvErrors,
      broken: imgs.filter(function (i) { return !i.naturalWidth; }).map(function (i) { return i.src; }),
      focus_rows: shown(".focus-row").length, sentences: shown("p.sentence, .reason").length,
      focus_imgs: shown(".focus-row img").filter(function (i) { return i.naturalWidth > 0; }).length});
    document.body.appendChild(out);
  })();
});
</script>"""


def _chromium() -> str:
    found = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else shutil.which("chromium")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing on CI: run scripts/install_chromium.sh")
    pytest.skip("chromium not installed (run scripts/install_chromium.sh)")


def _open_in_chromium(page: Path, profile: Path) -> tuple[dict, str]:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=5000", "--dump-dom", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="kv-probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"the page did not finish loading (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&")), proc.stderr


def _render(out: Path, tmp_path: Path) -> tuple[str, dict, str]:
    text = write_report(out).read_text(encoding="utf-8")
    assert CSP in text
    probe_csp = CSP.replace("default-src 'none'", "default-src 'none'; script-src 'unsafe-inline'")
    copy = out / "report_probe.html"  # same folder, so relative image paths resolve the same way
    copy.write_text(text.replace(CSP, probe_csp).replace("<head>", "<head>" + PROBE, 1), encoding="utf-8")
    result, stderr = _open_in_chromium(copy, tmp_path / "profile")
    assert result["images"] == text.count("<img "), result
    assert result["broken"] == [], result
    assert result["errors"] == [], result
    console = [line for line in stderr.splitlines() if "CONSOLE" in line]
    assert not [line for line in console if re.search(r"error|uncaught|violates|failed", line, re.I)], console
    return text, result, stderr


def test_report_renders_in_headless_chromium(tmp_path):
    _, result, _ = _render(make_sample(tmp_path / "out"), tmp_path)
    assert result["images"] >= 20


def test_focus_report_renders_in_headless_chromium(tmp_path):
    """The focus cards: sentence on top, the box / crops / maps rows laid out and their pictures loaded."""
    text, result, _ = _render(focus_sample.build(tmp_path / "out", evil="<img src=x onerror=alert(1)>"), tmp_path)
    assert result["sentences"] == 2, result  # one per result: the sentence, or the "cannot be told apart" box
    # kernel 1: box+crops, maps, and the baselines' two rows; kernel 2: box+maps (its crops are folded)
    assert result["focus_rows"] >= 5, result
    assert result["focus_imgs"] >= 12, result
    assert "&lt;img src=x onerror=alert(1)&gt;" in text
