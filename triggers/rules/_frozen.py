"""`Frozen`: small immutable value classes without `@dataclass`'s import-time cost.

`@dataclass(frozen=True, slots=True)` writes and compiles the source of five or six methods per
class when its module is imported: ~0.5 ms a class, and the rules package has a score of them on
the function's cold start path. A `Frozen` subclass lists its fields in `__slots__` and writes
its own `__init__` (assigning with `object.__setattr__`); this base gives what the dataclass
did: equality and hashing by the fields (between instances of the same class), a repr of the
fields, and `dataclasses.FrozenInstanceError` on assignment or deletion.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

init = object.__setattr__  # for subclasses' __init__: assignment itself is refused


class Frozen:
    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__qualname__}({fields})"

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")
