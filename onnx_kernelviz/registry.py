"""A tiny named registry, the one extension mechanism of the package (objectives, parameterizations,
references, baselines, presets use it), in the style of onnx2torch's converter registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from onnx_kernelviz.errors import UsageError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories; unknown names raise :class:`UsageError` listing the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UsageError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return list(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items
