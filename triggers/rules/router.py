"""Indexed routing: which rules match an event, without trying every rule.

Rules are grouped by CloudEvent type, then indexed by one *way* each (`Pattern.index_ways`): a
required field, or one field per alternative of a `$or`, whose conditions an index can serve:
exact values and equals-ignore-case (hash tables), prefixes and suffixes, case-sensitive or not
(hash tables keyed by the prefix or suffix, probed once per distinct length), wildcards (by their
literal head or tail) and numeric ranges (sorted boundaries). Per event we walk only the event
fields that some rule indexes (a trie of their paths, so the walk is bounded by the event's size),
probe each field's tables with its values, and fully evaluate only the rules found there, plus the
rules that have no way at all (anything-but, exists, cidr, CEL alone: those stay a scan).

The work per event therefore depends on the event and on the number of distinct prefix/suffix
lengths, not on the number of rules. The index is an optimisation only: `route()` returns exactly
what a linear scan returns, in declaration order (property tests hold it to that).
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, cast

from ..events.model import Event
from ._pattern_conditions import as_double
from ._pattern_match import element_objects, leaf_values
from .patterns import IndexAnchor, exact_key
from .rule import Rule

_SCALARS = (str, int, float, bool, type(None))
# A numeric range spanning more elementary intervals than this is not indexed by the interval
# table (its position lists would grow with the square of the rules): it is always a candidate.
_MAX_SPAN = 64


class _FieldIndex:
    """Every entry of the rules indexed by one event field, by kind."""

    __slots__ = (
        "exact",
        "folded",
        "prefix",
        "prefix_folded",
        "suffix",
        "suffix_folded",
        "prefix_lengths",
        "prefix_folded_lengths",
        "suffix_lengths",
        "suffix_folded_lengths",
        "ranges",
        "points",
        "segments",
        "wide",
    )

    def __init__(self) -> None:
        self.exact: dict[Hashable, list[int]] = {}
        self.folded: dict[str, list[int]] = {}
        self.prefix: dict[str, list[int]] = {}
        self.prefix_folded: dict[str, list[int]] = {}
        self.suffix: dict[str, list[int]] = {}
        self.suffix_folded: dict[str, list[int]] = {}
        self.prefix_lengths: tuple[int, ...] = ()
        self.prefix_folded_lengths: tuple[int, ...] = ()
        self.suffix_lengths: tuple[int, ...] = ()
        self.suffix_folded_lengths: tuple[int, ...] = ()
        self.ranges: list[tuple[float, float, int]] = []
        self.points: list[float] = []
        self.segments: list[list[int]] = []
        self.wide: list[tuple[float, float, int]] = []

    def add(self, kind: str, key: Any, position: int) -> None:
        if kind == "n":
            lo, hi = key
            self.ranges.append((lo, hi, position))
            return
        tables: dict[str, dict[Any, list[int]]] = {
            "x": self.exact,
            "e": self.folded,
            "p": self.prefix,
            "pi": self.prefix_folded,
            "s": self.suffix,
            "si": self.suffix_folded,
        }
        table = tables[kind]
        table.setdefault(key, []).append(position)

    def seal(self) -> None:
        """Precompute what lookups need, once every rule is in."""
        self.prefix_lengths = tuple(sorted({len(k) for k in self.prefix}))
        self.prefix_folded_lengths = tuple(sorted({len(k) for k in self.prefix_folded}))
        self.suffix_lengths = tuple(sorted({len(k) for k in self.suffix}))
        self.suffix_folded_lengths = tuple(sorted({len(k) for k in self.suffix_folded}))
        if not self.ranges:
            return
        # Elementary intervals [points[i], points[i+1]) between every range's start and its
        # end's successor; each holds the positions of the ranges that cover it.
        points = sorted({b for lo, hi, _ in self.ranges for b in (lo, _after(hi))})
        segments: list[list[int]] = [[] for _ in points]
        for lo, hi, position in self.ranges:
            first = bisect_right(points, lo) - 1
            # up to the segment that starts after `hi`; a range open to +inf covers the last one
            last = len(points) if hi == math.inf else bisect_right(points, _after(hi)) - 1
            if last - first > _MAX_SPAN:
                self.wide.append((lo, hi, position))
                continue
            for i in range(first, last):
                segments[i].append(position)
        self.points, self.segments = points, segments
        self.ranges = []

    def probe(self, value: Any, found: set[int]) -> None:
        """Add the positions of every entry that `value` (a leaf of the event) satisfies."""
        kind = type(value)
        if kind is str:  # the usual leaf: its exact key inline
            hit = self.exact.get(("s", value))
            if hit:
                found.update(hit)
            self._probe_text(value, found)
            return
        if isinstance(value, _SCALARS):
            hit = self.exact.get(exact_key(value))
            if hit:
                found.update(hit)
        if (kind is int or kind is float) and (self.segments or self.wide):
            number = as_double(value)
            i = bisect_right(self.points, number) - 1
            if 0 <= i < len(self.segments):
                found.update(self.segments[i])
            for lo, hi, position in self.wide:
                if lo <= number <= hi:
                    found.add(position)

    def _probe_text(self, text: str, found: set[int]) -> None:
        _probe_ends(self.prefix, self.prefix_lengths, text, False, found)
        _probe_ends(self.suffix, self.suffix_lengths, text, True, found)
        if self.folded or self.prefix_folded or self.suffix_folded:
            lowered = text.lower()
            hit = self.folded.get(lowered)
            if hit:
                found.update(hit)
            _probe_ends(self.prefix_folded, self.prefix_folded_lengths, lowered, False, found)
            _probe_ends(self.suffix_folded, self.suffix_folded_lengths, lowered, True, found)


def _probe_ends(
    table: dict[str, list[int]],
    lengths: tuple[int, ...],
    text: str,
    from_end: bool,
    found: set[int],
) -> None:
    """Look `text`'s prefixes (or suffixes) of each indexed length up in `table` (shortest
    first; `lengths` is sorted, so the first one longer than `text` ends the probe)."""
    size = len(text)
    for length in lengths:
        if length > size:
            return
        hit = table.get(text[size - length :] if from_end else text[:length])
        if hit:
            found.update(hit)


def _after(bound: float) -> float:
    return math.nextafter(bound, math.inf)


class _PathTrie:
    """The indexed field paths of one event type, as a trie over their keys."""

    __slots__ = ("children", "index")

    def __init__(self) -> None:
        self.children: dict[str, _PathTrie] = {}
        self.index: _FieldIndex | None = None

    def field(self, path: tuple[str, ...]) -> _FieldIndex:
        node = self
        for key in path:
            node = node.children.setdefault(key, _PathTrie())
        if node.index is None:
            node.index = _FieldIndex()
        return node.index

    def fields(self) -> list[_FieldIndex]:
        out = [self.index] if self.index is not None else []
        for child in self.children.values():
            out.extend(child.fields())
        return out

    def probe(self, nodes: list[Any], found: set[int]) -> None:
        """`nodes` are the event values at this trie node's path (as `values_at` reaches them)."""
        index = self.index
        if index is not None:
            for node in nodes:
                if isinstance(node, (list, tuple)):
                    for value in leaf_values(node):
                        index.probe(value, found)
                elif not isinstance(node, Mapping):
                    index.probe(node, found)
        children = self.children
        if not children:
            return
        if len(nodes) == 1 and type(nodes[0]) is dict:
            # The common case, one JSON object: no grouping needed.
            node = nodes[0]
            if len(node) <= len(children):
                for key, value in node.items():
                    child = children.get(key)
                    if child is not None:
                        child.probe([value], found)
            else:
                for key, child in children.items():
                    if key in node:
                        child.probe([node[key]], found)
            return
        reached: dict[str, list[Any]] = {}
        for node in nodes:
            for candidate in element_objects(node) if isinstance(node, (list, tuple)) else (node,):
                if not isinstance(candidate, Mapping):
                    continue
                # Whichever is smaller: the event object's keys or the indexed ones.
                if len(candidate) <= len(children):
                    for key in candidate:
                        if key in children:
                            reached.setdefault(key, []).append(candidate[key])
                else:
                    for key in children:
                        if key in candidate:
                            reached.setdefault(key, []).append(candidate[key])
        for key, values in reached.items():
            children[key].probe(values, found)


class _TypeIndex:
    __slots__ = ("trie", "unanchored", "fields")

    def __init__(self) -> None:
        self.trie = _PathTrie()
        self.unanchored: list[int] = []
        self.fields = 0


class _Sharing:
    """How many indexed entries of the same field an event value that satisfies one entry may
    also satisfy: the candidates it brings. Equal exact values; the entry's own prefixes (or
    suffixes), each shared as often as it occurs; every numeric range that overlaps it."""

    def __init__(self, ways: Iterable[tuple[IndexAnchor, ...]]) -> None:
        self.counts: Counter[tuple[tuple[str, ...], Hashable]] = Counter()
        ranges: dict[tuple[str, ...], list[tuple[float, float]]] = defaultdict(list)
        for way in ways:
            for path, entries in way:
                for entry in entries:
                    self.counts[path, entry] += 1
                    if entry[0] == "n":
                        ranges[path].append(cast(tuple[float, float], entry[1]))
        self.lows = {p: sorted(lo for lo, _ in rs) for p, rs in ranges.items()}
        self.highs = {p: sorted(hi for _, hi in rs) for p, rs in ranges.items()}
        self._memo: dict[tuple[tuple[str, ...], Hashable], int] = {}

    def of(self, path: tuple[str, ...], entry: tuple[str, Any]) -> int:
        key = (path, entry)
        found = self._memo.get(key)
        if found is None:
            found = self._memo[key] = self._count(path, entry)
        return found

    def _count(self, path: tuple[str, ...], entry: tuple[str, Any]) -> int:
        kind, value = entry
        if kind == "n":
            lo, hi = value
            # ranges starting at or before `hi`, less those ending before `lo`
            return bisect_right(self.lows[path], hi) - bisect_left(self.highs[path], lo)
        if kind in ("p", "pi"):
            return sum(self.counts[path, (kind, value[:n])] for n in range(len(value) + 1))
        if kind in ("s", "si"):
            return sum(
                self.counts[path, (kind, value[len(value) - n :])] for n in range(len(value) + 1)
            )
        return self.counts[path, entry]


def _ways(rule: Rule) -> list[tuple[IndexAnchor, ...]]:
    found = []
    for constraint in (rule.scope, rule.pattern):
        if constraint is not None:
            found.extend(constraint.index_ways())
    return found


class Router:
    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules: tuple[Rule, ...] = tuple(rules)
        candidates = [_ways(rule) for rule in self.rules]
        # Index each rule by its most selective way: the one that brings the fewest other
        # rules along when an event hits it (a rule's own bucket beats a `kind: [a]` that
        # sixty rules have, and beats a `> 5` range that every larger number also reaches);
        # then the one with fewer anchors.
        sharing = _Sharing(way for ways in candidates for way in ways)

        def selectivity(way: tuple[IndexAnchor, ...]) -> tuple[int, int]:
            shared = sum(max(sharing.of(path, entry) for entry in entries) for path, entries in way)
            return (-shared, -len(way))

        by_type: dict[str, _TypeIndex] = defaultdict(_TypeIndex)
        for position, (rule, ways) in enumerate(zip(self.rules, candidates, strict=True)):
            best = max(ways, key=selectivity, default=None)
            for event_type in rule.types:
                index = by_type[event_type]
                if best is None:
                    index.unanchored.append(position)
                    continue
                for path, entries in best:
                    field = index.trie.field(path)
                    for kind, key in entries:
                        field.add(kind, key, position)
        for index in by_type.values():
            fields = index.trie.fields()
            for field in fields:
                field.seal()
            index.fields = len(fields)
        self._by_type = dict(by_type)

    def route(self, event: Event) -> list[Rule]:
        """The matching rules, in declaration order."""
        index = self._by_type.get(event.type)
        if index is None:
            return []
        document = event.document
        positions = set(index.unanchored)
        index.trie.probe([document], positions)
        rules = self.rules
        return [rules[p] for p in sorted(positions) if rules[p].matches_content(document)]

    def scan(self, event: Event) -> list[Rule]:
        """The same answer by trying every rule: the reference the index is tested against."""
        return [rule for rule in self.rules if rule.matches(event)]

    def stats(self) -> dict[str, int]:
        return {
            "rules": len(self.rules),
            "types": len(self._by_type),
            "anchor_fields": sum(i.fields for i in self._by_type.values()),
            "unanchored": sum(len(i.unanchored) for i in self._by_type.values()),
        }
