"""Matching: compile a checked pattern tree into nested closures, and explain a failed match.

Every node of the tree becomes a node object holding a ``match`` closure (the fast path, built
once) and an ``explain`` method (the slow path, only run to say *why* an event did not match).
Both follow the same rules, which live here and nowhere else:

* A leaf field matches if one of its leaf values passes the array's combined condition. An
  array value is flattened (nested arrays too); objects inside it are not leaf values. A field
  with no leaf value at all (missing, an object, or an array of nothing but objects) is *absent*:
  only ``exists: false`` accepts that.
* An object field matches if its value is an object matching the sub-pattern, or an array with
  at least one element matching the *whole* sub-pattern. Requiring a single element to satisfy
  every field is what keeps a match from combining fields of different array elements.
  Anything else (missing, a scalar, an empty array) is matched as an empty object, so that
  ``exists: false`` below a missing parent holds.
* ``$or`` matches if one alternative matches the same object.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, cast

from ._pattern_conditions import Exists, Literal, combined_predicate, render
from ._pattern_validate import LeafField, NestedField, ObjectSpec, OrGroup

Matcher = Callable[[Any], bool]

_MISSING = object()
_EMPTY: Mapping[str, Any] = MappingProxyType({})
# The JSON leaf types; anything else goes through the slower generic path.
_SCALAR_TYPES = frozenset({str, int, float, bool, type(None)})


def _is_object(value: Any) -> bool:
    kind = type(value)
    if kind is dict:
        return True
    return kind not in _SCALAR_TYPES and kind is not list and isinstance(value, Mapping)


def _is_array(value: Any) -> bool:
    kind = type(value)
    if kind is list:
        return True
    return kind not in _SCALAR_TYPES and kind is not dict and isinstance(value, (list, tuple))


def leaf_values(array: list | tuple) -> list:
    """The leaf values of an event array: nested arrays flattened, objects skipped."""
    found: list = []
    for item in array:
        if type(item) in _SCALAR_TYPES:
            found.append(item)
        elif _is_array(item):
            found.extend(leaf_values(item))
        elif not _is_object(item):
            found.append(item)
    return found


def element_objects(array: list | tuple) -> list[Mapping]:
    """The objects an object sub-pattern is tried against, one per array element (nested arrays
    flattened). Scalars and empty arrays stand for the empty object, as a missing value does."""
    if not array:
        return [_EMPTY]
    found: list[Mapping] = []
    for item in array:
        if _is_object(item):
            found.append(item)
        elif _is_array(item):
            found.extend(element_objects(item))
        else:
            found.append(_EMPTY)
    return found


def _test_odd_value(test: Callable[[Any], bool], value: Any) -> bool:
    # A value no JSON parser produces (a set, a Decimal...): judged as a leaf, but never allowed
    # to raise from inside matching.
    try:
        return test(value)
    except TypeError:
        return False


def _dotted(field_path: tuple[str, ...]) -> str:
    return ".".join(field_path) or "(event)"


class LeafNode:
    """A field whose pattern is an array of conditions."""

    __slots__ = (
        "key",
        "field_path",
        "conditions",
        "test",
        "accepts_absent",
        "match",
        "__weakref__",
    )

    def __init__(self, spec: LeafField) -> None:
        self.key = spec.key
        self.field_path = spec.field_path
        self.conditions = spec.conditions
        self.test = combined_predicate(spec.conditions)
        self.accepts_absent = any(isinstance(c, Exists) and not c.present for c in spec.conditions)
        self.match = self._build()

    def _build(self) -> Matcher:
        key, test, accepts_absent = self.key, self.test, self.accepts_absent
        scalar_types = _SCALAR_TYPES

        def match_leaf(obj: Mapping) -> bool:
            value = obj.get(key, _MISSING)
            if type(value) in scalar_types:
                return test(value)
            if value is _MISSING or _is_object(value):
                return accepts_absent
            if _is_array(value):
                leaves = leaf_values(value)
                if not leaves:
                    return accepts_absent
                for leaf in leaves:  # noqa: SIM110 - hot path: a loop beats any()/all() over a generator
                    if test(leaf):
                        return True
                return False
            return _test_odd_value(test, value)

        return match_leaf

    def explain(self, obj: Mapping) -> str | None:
        value = obj.get(self.key, _MISSING)
        where = _dotted(self.field_path)
        if value is _MISSING:
            return None if self.accepts_absent else f"{where}: missing"
        if _is_object(value):
            return None if self.accepts_absent else f"{where}: is an object, not a value"
        if _is_array(value):
            leaves = leaf_values(value)
            if not leaves:
                return (
                    None
                    if self.accepts_absent
                    else f"{where}: missing (no values in {render(value)})"
                )
            if any(self.test(leaf) for leaf in leaves):
                return None
            if self._only_absence():
                return f"{where}: {render(leaves)} is present but must not exist"
            return f"{where}: no element of {render(leaves)} matches {self._expected()}"
        if _test_odd_value(self.test, value):
            return None
        if self._only_absence():
            return f"{where}: {render(value)} is present but must not exist"
        if all(isinstance(c, Literal) for c in self.conditions):
            return f"{where}: {render(value)} is not one of {self._expected()}"
        return f"{where}: {render(value)} does not match {self._expected()}"

    def _only_absence(self) -> bool:
        return all(isinstance(c, Exists) and not c.present for c in self.conditions)

    def _expected(self) -> str:
        conditions = self.conditions
        if all(isinstance(c, Literal) for c in conditions):
            return "[" + ", ".join(c.describe() for c in conditions) + "]"
        if len(conditions) == 1:
            return conditions[0].describe()
        return "any of: " + ", ".join(c.describe() for c in conditions)


class ObjectNode:
    """An object of the pattern: all members must match the same event object."""

    __slots__ = ("members", "match")

    def __init__(self, spec: ObjectSpec) -> None:
        self.members = tuple(_member_node(m) for m in spec.members)
        self.match = self._build()

    def _build(self) -> Matcher:
        checks = tuple(m.match for m in self.members)
        if len(checks) == 1:
            return checks[0]
        if len(checks) == 2:
            first, second = checks
            return lambda obj: first(obj) and second(obj)
        if len(checks) == 3:
            first, second, third = checks
            return lambda obj: first(obj) and second(obj) and third(obj)

        def match_all(obj: Mapping) -> bool:
            for check in checks:  # noqa: SIM110 - hot path: a loop beats any()/all() over a generator
                if not check(obj):
                    return False
            return True

        return match_all

    def explain(self, obj: Mapping) -> str | None:
        for member in self.members:
            reason = member.explain(obj)
            if reason is not None:
                return reason
        return None

    def match_value(self, value: Any) -> bool:
        """Match any event value against this object pattern (see the module docstring)."""
        if _is_object(value):
            return self.match(value)
        if _is_array(value):
            match = self.match
            return any(match(element) for element in element_objects(value))
        return self.match(_EMPTY)

    def explain_value(self, value: Any, where: str) -> str | None:
        if _is_object(value):
            return self.explain(value)
        if not _is_array(value):
            return self.explain(_EMPTY)
        first = None
        for element in element_objects(value):
            reason = self.explain(element)
            if reason is None:
                return None
            first = first or reason
        return f"{where}: no element matches (first: {first})"


class NestedNode:
    """A field whose pattern is an object."""

    __slots__ = ("key", "field_path", "sub", "match")

    def __init__(self, spec: NestedField, sub: ObjectNode | None = None) -> None:
        self.key = spec.key
        self.field_path = spec.field_path
        self.sub = ObjectNode(spec.spec) if sub is None else sub
        self.match = self._build()

    def _build(self) -> Matcher:
        key, sub_match, match_value = self.key, self.sub.match, self.sub.match_value

        def match_nested(obj: Mapping) -> bool:
            value = obj.get(key, _MISSING)
            if type(value) is dict:
                return sub_match(value)
            return match_value(value)

        return match_nested

    def explain(self, obj: Mapping) -> str | None:
        return self.sub.explain_value(obj.get(self.key, _MISSING), _dotted(self.field_path))


class OrNode:
    """A ``$or``: one of the alternatives must match the enclosing event object."""

    __slots__ = ("alternatives", "match")

    def __init__(self, spec: OrGroup, alternatives: tuple[ObjectNode, ...] | None = None) -> None:
        if alternatives is None:
            alternatives = tuple(ObjectNode(alt) for alt in spec.alternatives)
        self.alternatives = alternatives
        checks = tuple(alt.match for alt in self.alternatives)

        def match_any(obj: Mapping) -> bool:
            for check in checks:  # noqa: SIM110 - hot path: a loop beats any()/all() over a generator
                if check(obj):
                    return True
            return False

        self.match = match_any

    def explain(self, obj: Mapping) -> str | None:
        first = None
        for alternative in self.alternatives:
            reason = alternative.explain(obj)
            if reason is None:
                return None
            first = first or reason
        return f"none of the $or alternatives matched (first: {first})"


# Identical leaves are compiled once and shared: rule sets repeat conditions (the same suffix,
# prefix, anything-but list) across thousands of rules, and sharing keeps the objects a match
# touches few and close together. With 10,000 rules that made routing ~25% faster. Keys use
# repr(), not equality: Literal(True) == Literal(1) as dataclasses, but they must not merge.
_LEAVES: weakref.WeakValueDictionary[tuple, LeafNode] = weakref.WeakValueDictionary()

# The nodes of one load of rules (triggers.rules._intern): every node, not only leaves, is
# shared with the equal nodes of other rules, built bottom-up so that equal subtrees have the
# same members. Keys name members by id(): the table keeps every node alive while it is used.
Nodes = dict[tuple, Any]


def object_node(spec: ObjectSpec, nodes: Nodes | None = None) -> ObjectNode:
    if nodes is None:
        return ObjectNode(spec)
    members = tuple(_member_node(m, nodes) for m in spec.members)
    key = ("object", *map(id, members))
    node = nodes.get(key)
    if node is None:
        node = nodes[key] = ObjectNode.__new__(ObjectNode)
        node.members = members
        node.match = node._build()
    return cast(ObjectNode, node)


def _leaf_node(member: LeafField, nodes: Nodes | None) -> LeafNode:
    key = (member.key, member.field_path, repr(member.conditions))
    table: Any = _LEAVES if nodes is None else nodes
    node = table.get(key)
    if node is None:
        node = table[key] = LeafNode(member)
    return cast(LeafNode, node)


def _member_node(
    member: LeafField | NestedField | OrGroup, nodes: Nodes | None = None
) -> LeafNode | NestedNode | OrNode:
    if isinstance(member, LeafField):
        return _leaf_node(member, nodes)
    if nodes is None:
        return NestedNode(member) if isinstance(member, NestedField) else OrNode(member)
    if isinstance(member, NestedField):
        sub = object_node(member.spec, nodes)
        key: tuple = ("nested", member.key, member.field_path, id(sub))
        node = nodes.get(key)
        if node is None:
            node = nodes[key] = NestedNode(member, sub)
        return cast(NestedNode, node)
    alternatives = tuple(object_node(alt, nodes) for alt in member.alternatives)
    key = ("or", *map(id, alternatives))
    node = nodes.get(key)
    if node is None:
        node = nodes[key] = OrNode(member, alternatives)
    return cast(OrNode, node)
