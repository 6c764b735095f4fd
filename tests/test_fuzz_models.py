"""Bounded fuzzing of load_model: whatever the bytes, the only failure allowed is a KernelvizError.

Random bytes, and a valid tiny model (with and without external data) with bytes flipped, overwritten,
inserted, deleted or cut off. Sizes and durations are recorded in docs/RELIABILITY.md.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import tiny_models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onnx_kernelviz.errors import KernelvizError
from onnx_kernelviz.frontend.load import LoadedModel, load_model

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                database=None)

_DIR = Path(tempfile.mkdtemp(prefix="kernelviz-fuzz-models-"))
_SEEDS = {
    "two_conv": tiny_models.two_conv().SerializeToString(),
    "halves": tiny_models.halves().SerializeToString(),
}
_EXTERNAL = tiny_models.save_external(tiny_models.two_conv(), _DIR / "ext")
_SEEDS["external"] = _EXTERNAL.read_bytes()  # its tensors point at ext/model.bin


def _try(data: bytes, folder: Path) -> None:
    p = folder / "model.onnx"
    p.write_bytes(data)
    try:
        result = load_model(p)
    except KernelvizError as e:
        assert str(e) and "\n" not in str(e).strip()  # one line for the CLI's `Error:`
        return
    assert isinstance(result, LoadedModel)


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(_SEEDS[draw(st.sampled_from(sorted(_SEEDS)))])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[pos:pos + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[pos:]
    return bytes(data)


def test_seeds_load():
    for name, data in _SEEDS.items():
        folder = _EXTERNAL.parent if name == "external" else _DIR
        _try(data, folder)
        assert load_model(folder / "model.onnx").input.name == "x"


@pytest.mark.parametrize("old, new, needle", [
    # found by a longer run of test_mutated_models: onnx's ExternalDataInfo raised ValueError, pathlib TypeError
    (b"\x06length\x12\x03432", b"\x06length\x12\x03x32", "invalid external data information"),
    (b"\tmodel.bin", b"\t\x80odel.bin", "not a valid file name"),
])
def test_regressions(tmp_path, old, new, needle):
    data = _SEEDS["external"]
    assert old in data
    p = tmp_path / "model.onnx"
    p.write_bytes(data.replace(old, new, 1))
    (tmp_path / "model.bin").write_bytes((_EXTERNAL.parent / "model.bin").read_bytes())
    with pytest.raises(KernelvizError, match=needle):
        load_model(p)


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes(data):
    _try(data, _DIR)


@FUZZ
@given(mutated())
def test_mutated_models(data):
    # in the external-data model's folder, so mutated locations meet a real data file beside them
    _try(data, _EXTERNAL.parent)


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    import shutil
    shutil.rmtree(_DIR, ignore_errors=True)
