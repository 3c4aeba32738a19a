"""Sharing equal values between the rules of one load.

Large rule sets repeat themselves: the same job, event types, templates (`{{ data.bucket }}/
{{ data.name }}` in every storage rule), run options. One instance of each, shared by every rule
that uses it, is a large part of what keeps a loaded rule small (docs/performance.md, "Memory").
The tables live as long as one load and are dropped with it, so they cost nothing afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T", bound=Hashable)


class Interner:
    __slots__ = ("_values", "_built", "nodes", "templates", "options")

    def __init__(self) -> None:
        # Keys carry the value's type, so that 1, 1.0 and True never stand for one another.
        self._values: dict[tuple[type, Hashable], Any] = {}
        self._built: dict[tuple[str, Hashable], Any] = {}
        # The pattern nodes built so far, shared by equal subtrees (_pattern_match.Nodes).
        self.nodes: dict[tuple, Any] = {}
        # Tables the artifact's reader looks up directly (it is hot with 50,000 rules).
        self.templates: dict[str, Any] = {}  # deferred templates by source
        self.options: dict[tuple, Any] = {}  # RunOptions by their values

    def __call__(self, value: T) -> T:
        """The first value equal to `value` (of the same type) seen in this load."""
        return self._values.setdefault((type(value), value), value)

    def built(self, kind: str, key: Hashable, build: Callable[[], Any]) -> Any:
        """What `build()` made the first time `key` was asked for (templates, patterns)."""
        cache = self._built
        found = cache.get((kind, key))
        if found is None:
            found = cache[(kind, key)] = build()
        return found
