"""The output folder: never overwrite a user's files by accident."""

from __future__ import annotations

import json
from pathlib import Path

from onnx_kernelviz.errors import UsageError


def prepare_out_dir(out: Path, *, force: bool, resume: bool) -> dict:
    """Create ``out`` or accept it; returns the previous results.json content when resuming (else ``{}``).

    A non-empty folder is refused unless ``force`` (write over our own files in it) or ``resume`` (keep finished
    work and do the rest). ``out`` must not be an existing file.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    previous: dict = {}
    if out.is_dir() and any(out.iterdir()):
        if resume:
            path = out / "results.json"
            if path.exists():
                try:
                    previous = json.loads(path.read_text(encoding="utf-8"))
                except (OSError, ValueError) as e:
                    raise UsageError(f"cannot resume: {path} is unreadable ({e}); use --force to start over") from e
        elif not force:
            raise UsageError(f"--out {out} is not empty; use --force to overwrite, --resume to continue a run, "
                             "or choose a new folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --out {out}: {e.strerror or e}") from e
    return previous
