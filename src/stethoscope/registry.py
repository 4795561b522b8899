"""Name -> object registries, filled by decorators where each component is defined.

Systems, front ends, back ends, thresholds and feature extractors are looked up by the names used in
configs and on the command line, so a new component is one decorated class, not an edit to a
dispatch table. A registry keeps the order of registration (the order systems are listed and
reported in).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from stethoscope.errors import ConfigError

T = TypeVar("T")


class UnknownName(ConfigError, KeyError):
    """A name that no component was registered under."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ConfigError(f"{self.kind} '{name}' registered twice")
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise UnknownName(f"unknown {self.kind} '{name}'; known: {known}") from None

    def names(self) -> list[str]:
        """Registered names, in the order they were registered."""
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items
