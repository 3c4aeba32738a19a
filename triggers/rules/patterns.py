"""Amazon EventBridge content patterns: compile once, match events fast, explain misses.

A pattern is a JSON object mirroring the event. Fields are ANDed; event fields the pattern does
not name are ignored; names are case-sensitive. Every leaf of a pattern is a non-empty array
whose elements are ORed; each element is either a literal or an operator object:

====================================  =======================================================
``"x"``, ``300``, ``true``, ``null``  exact value. Numbers compare numerically (``300`` matches
                                      ``300.0``) but never equal strings (``"300"``) or
                                      booleans. ``null`` matches null only: not ``"null"``,
                                      not a missing field, not ``[]``; ``""`` matches ``""`` only.
``{"prefix": "a"}``                   string prefix; ``""`` matches every string.
``{"suffix": "z"}``                   string suffix. Both also take
                                      ``{"equals-ignore-case": "..."}`` as their value.
``{"equals-ignore-case": "Ab"}``      whole string, ignoring case.
``{"wildcard": "dir/*.csv"}``         ``*`` is zero or more characters (``/`` included);
                                      ``\\*`` a literal star, ``\\\\`` a backslash. Other escapes
                                      and ``**`` are rejected.
``{"anything-but": ...}``             any present value except: a string, a number, an array
                                      of strings or of numbers, or ``{"prefix"|"suffix"|
                                      "equals-ignore-case"|"wildcard": string-or-array}``. A
                                      missing field never matches; null, booleans and values
                                      of the other type (e.g. numbers for a string variant)
                                      always do.
``{"numeric": [">", 0, "<=", 5]}``    JSON numbers only, as IEEE-754 doubles: ``=``, or at most
                                      one lower (``>``, ``>=``) and one upper (``<``, ``<=``)
                                      bound.
``{"exists": true}``                  any leaf value, null included (not ``[]``, not an object).
``{"exists": false}``                 no leaf value: missing, an object, ``[]``, or a missing
                                      parent.
``{"cidr": "10.0.0.0/8"}``            an IPv4 or IPv6 address string inside the block;
                                      malformed addresses simply do not match.
====================================  =======================================================

``"$or": [{...}, {...}, ...]`` (an array of at least two objects) matches if any alternative
does; it nests, and a pattern may stand for at most 1000 combinations. ``"$or"`` with any other
value is an ordinary field name.

An array in the event matches if any element does. Arrays of objects are "crushed" (a pattern
field ``{"a": {"b": [...]}}`` looks into every element of ``a``), but a single element must
match a whole sub-pattern, so one match never combines fields of different elements. That holds
for ``exists: false`` too: it is judged within the element that matches the rest of the
sub-pattern (event-ruler's answer there depends on the order of the keys).

Not supported, deliberately: the "dotted key" quirk, where AWS also lets ``{"a": {"b": [...]}}``
match an event key literally named ``"a.b"``. AWS itself advises against relying on it.

``compile`` validates the whole pattern and raises one ``PatternError`` listing every problem,
each with the path of the offending node.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any, cast

from ..errors import PatternError
from ._pattern_conditions import (
    EqualsIgnoreCase,
    Literal,
    Numeric,
    Prefix,
    Suffix,
    Wildcard,
    as_double,
)
from ._pattern_match import Nodes, ObjectNode, element_objects, leaf_values, object_node
from ._pattern_validate import LeafField, NestedField, ObjectSpec, OrGroup, PatternChecker

if TYPE_CHECKING:
    from ._intern import Interner

__all__ = ["Pattern", "PatternError", "compile", "exact_key", "values_at"]


class Pattern:
    """A compiled, validated pattern. Build it with ``compile``; it is immutable.

    It keeps the pattern as compact JSON text rather than as the dicts and lists it was given
    (``source`` parses it again): a loaded rule set holds one pattern or two per rule, and the
    text is a fraction of their size (docs/performance.md, "Memory").
    """

    __slots__ = ("text", "_root", "_match", "_ways")
    text: str  # the pattern as JSON, for artifacts and sample events
    _root: ObjectNode
    _match: Callable[[Mapping[str, Any]], bool]
    _ways: tuple[tuple[IndexAnchor, ...], ...]

    def __init__(self, text: str, spec: ObjectSpec, nodes: Nodes | None = None) -> None:
        root = object_node(spec, nodes)
        set_once = object.__setattr__  # the class refuses assignment after construction
        set_once(self, "text", text)
        set_once(self, "_root", root)
        set_once(self, "_match", root.match)
        # computed now, so that the validated tree is not kept for it (memory per rule)
        set_once(self, "_ways", _index_ways(spec))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Pattern is immutable: cannot set {name!r}")

    @property
    def source(self) -> dict[str, Any]:
        """The pattern as written (a new copy on each call)."""
        return cast(dict[str, Any], json.loads(self.text))

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True if the event matches the pattern."""
        if type(event) is dict:
            return self._match(event)
        return self._root.match_value(event)

    def explain(self, event: Mapping[str, Any]) -> str | None:
        """None if the event matches, else a short reason naming the first failing field."""
        if self.matches(event):
            return None
        # The walk follows the same rules as matching; the fallback only guards the contract
        # ("None iff matches") against a divergence between the two.
        return self._root.explain_value(event, "(event)") or "the event does not match"

    def anchors(self) -> list[tuple[tuple[str, ...], frozenset]]:
        """Required fields whose allowed values are only exact literals, with their exact keys.

        Only fields reached through ANDed object keys count (never anything under ``$or``), so
        whenever ``matches(doc)`` holds, some value in ``values_at(doc, path)`` has its
        ``exact_key`` in the set: a router may index rules by these values.
        """
        # Only tests and tools ask: checked again from the text rather than kept per rule.
        spec = PatternChecker().check(self.source)
        return [] if spec is None else list(_find_anchors(spec))

    def index_ways(self) -> list[tuple[IndexAnchor, ...]]:
        """Ways a router may index this pattern by, for every operator that allows it.

        Each way is a tuple of anchors ``(path, entries)`` with this guarantee: whenever
        ``matches(doc)`` holds, at least one anchor of the way *hits*, i.e. some value in
        ``values_at(doc, path)`` is accepted by one of its entries (see ``IndexAnchor``). A
        required field gives a way of one anchor; a ``$or`` a way with one anchor per
        alternative. Fields no index can serve (anything-but, exists, cidr, a wildcard with
        stars at both ends) give none.
        """
        return list(self._ways)

    def __repr__(self) -> str:
        return f"Pattern({self.source!r})"


def compile(  # noqa: A001 - the public name is deliberate
    pattern: Mapping[str, Any], intern: Interner | None = None
) -> Pattern:
    """Validate and compile a pattern; raise PatternError listing every problem found.

    With an `Interner` (one load of rules), equal patterns compile once and are shared."""
    spec = _checked(pattern)
    # A valid pattern holds only string keys and finite JSON leaves: JSON keeps it exactly.
    text = json.dumps(pattern, separators=(",", ":"), ensure_ascii=False)
    if intern is None:
        return Pattern(text, spec)
    return cast(Pattern, intern.built("pattern", text, lambda: Pattern(text, spec, intern.nodes)))


def compile_text(text: str, intern: Interner | None = None) -> Pattern:
    """A pattern from the JSON text of one that `compile` accepted (a pre-validated artifact);
    checked again all the same, which is also what builds its tree."""

    if intern is None:
        return Pattern(text, _checked(json.loads(text)))

    def build() -> Pattern:
        return Pattern(text, _checked(json.loads(text)), intern.nodes)

    return cast(Pattern, intern.built("pattern", text, build))


def _checked(pattern: Any) -> ObjectSpec:
    checker = PatternChecker()
    spec = checker.check(pattern)
    if checker.problems or spec is None:
        raise PatternError(checker.problems)
    return spec


def exact_key(value: Any) -> Hashable:
    """A hashable key under which equal literals (as patterns compare them) coincide.

    300 and 300.0 share a key; True never equals 1; None has its own key; strings are keyed by
    their text. Only leaf values (str, int, float, bool, None) have keys.
    """
    kind = type(value)
    if kind is str:
        return ("s", value)
    if kind is bool:
        return ("b", value)
    if kind is int or kind is float:
        return ("n", as_double(value))
    if value is None:
        return ("z",)
    if isinstance(value, str):
        return ("s", str(value))
    raise TypeError(f"exact_key: {kind.__name__} is not a JSON leaf value")


def values_at(document: Mapping, path: tuple[str, ...]) -> list:
    """The leaf values at ``path``, flattening arrays at every level (arrays of objects are
    crushed); ``[]`` if there are none."""
    nodes: list = [document]
    for key in path:
        reached = []
        for node in nodes:
            candidates = element_objects(node) if isinstance(node, (list, tuple)) else [node]
            for candidate in candidates:
                if isinstance(candidate, Mapping) and key in candidate:
                    reached.append(candidate[key])
        nodes = reached
    values: list = []
    for node in nodes:
        if isinstance(node, (list, tuple)):
            values.extend(leaf_values(node))
        elif not isinstance(node, Mapping):
            values.append(node)
    return values


# An index entry: what one condition needs of a leaf value, in a form a hash table or a sorted
# list can look up. ("x", exact_key) an exact value; ("e", lowered) equals-ignore-case; ("p", s)
# / ("pi", lowered) a prefix; ("s", s) / ("si", lowered) a suffix; ("n", (lo, hi)) a numeric
# range with inclusive double bounds. A wildcard is served by its literal head (a prefix) or,
# failing that, its literal tail (a suffix): a superset of what it matches.
IndexEntry = tuple[str, Hashable]
IndexAnchor = tuple[tuple[str, ...], tuple[IndexEntry, ...]]


def _entry(condition: object) -> IndexEntry | None:
    if isinstance(condition, Literal):
        return ("x", exact_key(condition.value))
    if isinstance(condition, Prefix):
        return ("pi", condition.text.lower()) if condition.ignore_case else ("p", condition.text)
    if isinstance(condition, Suffix):
        return ("si", condition.text.lower()) if condition.ignore_case else ("s", condition.text)
    if isinstance(condition, EqualsIgnoreCase):
        return ("e", condition.text.lower())
    if isinstance(condition, Numeric):
        return ("n", condition.bounds())
    if isinstance(condition, Wildcard):
        segments = condition.segments
        if len(segments) == 1:
            return ("x", exact_key(segments[0]))
        if segments[0]:
            return ("p", segments[0])
        if segments[-1]:
            return ("s", segments[-1])
    return None


def _index_ways(spec: ObjectSpec) -> tuple[tuple[IndexAnchor, ...], ...]:
    ways: list[tuple[IndexAnchor, ...]] = []
    for member in spec.members:
        if isinstance(member, LeafField):
            entries = tuple(_entry(c) for c in member.conditions)
            if entries and all(e is not None for e in entries):
                ways.append(((member.field_path, cast(tuple[IndexEntry, ...], entries)),))
        elif isinstance(member, NestedField):
            ways.extend(_index_ways(member.spec))
        elif isinstance(member, OrGroup):
            # Each alternative must be covered: take its narrowest way (fewest anchors).
            covered: list[IndexAnchor] = []
            for alternative in member.alternatives:
                options = _index_ways(alternative)
                if not options:
                    break
                narrowest: tuple[IndexAnchor, ...] = min(options, key=len)
                covered.extend(narrowest)
            else:
                ways.append(tuple(covered))
    return tuple(ways)


def _find_anchors(spec: ObjectSpec) -> tuple[tuple[tuple[str, ...], frozenset[Hashable]], ...]:
    found: list[tuple[tuple[str, ...], frozenset[Hashable]]] = []
    for member in spec.members:
        if isinstance(member, LeafField):
            if member.conditions and all(isinstance(c, Literal) for c in member.conditions):
                literals = cast(tuple[Literal, ...], member.conditions)
                found.append((member.field_path, frozenset(exact_key(c.value) for c in literals)))
        elif isinstance(member, NestedField):
            found.extend(_find_anchors(member.spec))
        # An OrGroup is skipped: none of its alternatives is required on its own.
    return tuple(found)
