#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (tests/test_report_browser.py).
# Idempotent and quiet: does nothing when chromium is already on PATH or at /usr/bin/chromium.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "chromium was not installed" >&2; exit 1; }
