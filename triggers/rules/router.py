"""Indexed routing: which rules match an event, without trying every rule.

Rules are grouped by CloudEvent type, then indexed by one *anchor* each: a required field whose
allowed values are plain literals (a bucket, a topic, a status...). Per event we look up each
anchored field's value(s) in a hash table and fully evaluate only the rules found there, plus
the few rules that have no anchor. The work per event therefore grows with the number of
*distinct anchor fields*, not with the number of rules.

The index is an optimisation only: `route()` must return exactly what a linear scan returns, in
declaration order (a property test holds it to that).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from ..events.model import Event
from .patterns import exact_key, values_at
from .rule import Rule

_SCALARS = (str, int, float, bool, type(None))


class _TypeIndex:
    __slots__ = ("by_field", "unanchored")

    def __init__(self) -> None:
        self.by_field: dict[tuple[str, ...], dict[object, list[int]]] = {}
        self.unanchored: list[int] = []


def _anchors(rule: Rule) -> list[tuple[tuple[str, ...], frozenset]]:
    found = []
    for constraint in (rule.scope, rule.pattern):
        if constraint is not None:
            found.extend(constraint.anchors())
    return found


class Router:
    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        candidates = [_anchors(rule) for rule in self.rules]
        # Index each rule under its most selective field: the one with the most distinct values
        # across all rules (a bucket beats a three-valued `kind`), then the most shared one
        # (fewer fields to look up per event).
        popularity = Counter(path for anchors in candidates for path, _ in anchors)
        distinct: dict[tuple[str, ...], set] = defaultdict(set)
        for anchors in candidates:
            for path, keys in anchors:
                distinct[path].update(keys)

        def selectivity(anchor):
            path, keys = anchor
            return (len(distinct[path]), popularity[path], -len(keys))

        self._by_type: dict[str, _TypeIndex] = defaultdict(_TypeIndex)
        for position, (rule, anchors) in enumerate(zip(self.rules, candidates, strict=True)):
            best = max(anchors, key=selectivity, default=None)
            for event_type in rule.types:
                index = self._by_type[event_type]
                if best is None:
                    index.unanchored.append(position)
                    continue
                table = index.by_field.setdefault(best[0], {})
                for key in best[1]:
                    table.setdefault(key, []).append(position)
        self._by_type = dict(self._by_type)

    def route(self, event: Event) -> list[Rule]:
        """The matching rules, in declaration order."""
        index = self._by_type.get(event.type)
        if index is None:
            return []
        document = event.document
        positions = set(index.unanchored)
        for path, table in index.by_field.items():
            for value in values_at(document, path):
                if isinstance(value, _SCALARS):
                    hit = table.get(exact_key(value))
                    if hit:
                        positions.update(hit)
        rules = self.rules
        return [rules[p] for p in sorted(positions) if rules[p].matches_content(document)]

    def scan(self, event: Event) -> list[Rule]:
        """The same answer by trying every rule: the reference the index is tested against."""
        return [rule for rule in self.rules if rule.matches(event)]

    def stats(self) -> dict[str, int]:
        return {
            "rules": len(self.rules),
            "types": len(self._by_type),
            "anchor_fields": sum(len(i.by_field) for i in self._by_type.values()),
            "unanchored": sum(len(i.unanchored) for i in self._by_type.values()),
        }
