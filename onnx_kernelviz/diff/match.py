"""Which layers of model A and model B are the same layer: two builds of one model (fp32 and its int8 or fp16 build,
two training runs) list the same convs in the same order with the same channel counts and groups."""

from __future__ import annotations

from onnx_kernelviz.errors import ModelError, UsageError
from onnx_kernelviz.frontend.layers import Layer


def parse_layers(spec: str | None, count: int) -> list[int]:
    """``all`` (or None), or indices and ranges as ``inspect`` numbers them: ``3,7,10-12``; negative from the end."""
    if spec is None or spec.strip() == "all":
        return list(range(count))
    out: list[int] = []
    for part in (p.strip() for p in spec.split(",")):
        lo, sep, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
        try:
            idx = range(int(lo), int(hi) + 1) if sep else [int(lo)]
        except ValueError:
            raise UsageError(f"--layers {spec!r}: use all, or indices and ranges like 3,7,10-12") from None
        if sep and not idx:  # 4-2 is an empty range: the diff ran on no layer and exited 0
            raise UsageError(f"--layers {spec!r}: a range goes from the smaller index to the larger")
        for i in idx:
            if not -count <= i < count:
                raise UsageError(f"--layers {spec!r}: layer {i} is out of range (the models have {count} conv "
                                 f"layers, 0..{count - 1})")
            out.append(i % count)
    return list(dict.fromkeys(out))


def match_layers(a: list[Layer], b: list[Layer], name_a: str, name_b: str) -> list[tuple[Layer, Layer]]:
    """Pair the conv layers of A and B by position, checking they are the same layer.

    Raises:
        ModelError: different numbers of conv layers, or a pair whose channels or groups differ; the message
            names the first difference and what ``diff`` is for.
    """
    why = "kernelviz diff compares two versions of one model (fp32 and its int8 or fp16 build, two trainings)"
    if len(a) != len(b):
        raise ModelError(f"the models' conv layers do not match: {name_a} has {len(a)}, {name_b} has {len(b)}; {why}")
    for la, lb in zip(a, b):
        if (la.channels, la.group) != (lb.channels, lb.group):
            raise ModelError(f"the models' conv layers do not match at layer {la.index}: {name_a} has "
                             f"{la.channels} kernels (group {la.group}), {name_b} has {lb.channels} (group "
                             f"{lb.group}); {why}")
        sa, sb = _spatial(la), _spatial(lb)
        if sa and sb and sa != sb:
            raise ModelError(f"the models' conv layers do not match at layer {la.index}: activation maps of "
                             f"{'x'.join(map(str, sa))} in {name_a} and {'x'.join(map(str, sb))} in {name_b}; {why}")
    return list(zip(a, b))


def _spatial(la: Layer) -> tuple[int, ...] | None:
    if la.shape is None or len(la.shape) < 3:
        return None
    dims = [d for d in la.shape[2:] if isinstance(d, int)]
    return tuple(dims) if len(dims) == len(la.shape) - 2 else None
