"""Reading one JSON value of a results file, with a message that names the field (``results[3].kernel is str, not an
integer``): what makes a damaged results.json one clear error instead of a traceback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

JSON = dict[str, Any]


def number(v: Any, where: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where} is {type(v).__name__}, not a number")
    return float(v)


def integer(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{where} is {type(v).__name__}, not an integer")
    return v


def string(v: Any, where: str) -> str:
    if not isinstance(v, str):
        raise ValueError(f"{where} is {type(v).__name__}, not a string")
    return v


def mapping(v: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(v, Mapping):
        raise ValueError(f"{where} is {type(v).__name__}, not an object")
    return v


def ints(v: Any, n: int, where: str) -> tuple[int, ...] | None:
    if v is None:
        return None
    if not isinstance(v, list) or len(v) != n:
        raise ValueError(f"{where} is not a list of {n} integers")
    return tuple(integer(x, where) for x in v)


def unknown_keys(d: Mapping[str, Any], known: set[str]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in known}
