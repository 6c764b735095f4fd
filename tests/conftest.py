"""Shared fixtures. The model corpus itself lives in ``tests/corpus.py``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import corpus  # noqa: E402


@pytest.fixture(scope="session")
def torchvision_export(tmp_path_factory) -> Callable[[str, str], Path]:
    """``export(name, exporter)`` -> path of the exported ONNX file, exported once per session."""
    out = tmp_path_factory.mktemp("torchvision")
    return lambda name, exporter: corpus.export_torchvision(name, exporter, out)
