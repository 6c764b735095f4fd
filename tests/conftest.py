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


@pytest.fixture(scope="session")
def deployed_build(tmp_path_factory) -> Callable[[str], Path]:
    """``build(kind)`` -> path of the ``kind`` build (qdq, qoperator, dynamic, fp16) of the tiny float net, made once
    per session with onnxruntime's own tools (``tests/corpus_deployed.py``)."""
    import corpus_deployed

    out = tmp_path_factory.mktemp("deployed")
    return lambda kind: corpus_deployed.build(kind, out)


@pytest.fixture(scope="session")
def default_build(tmp_path_factory) -> Callable[[str], Path]:
    """``build(kind)`` -> the shipped default model quantized (or converted to fp16) with onnxruntime's tools, once
    per session (slow tests only: 1-2 s per build)."""
    import corpus_deployed

    out = tmp_path_factory.mktemp("default_builds")
    return lambda kind: corpus_deployed.quantize_model(corpus.DEFAULT_MODEL, out / f"default_{kind}.onnx", kind,
                                                       size=(224, 224), calibration=4)
