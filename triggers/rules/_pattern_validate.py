"""Validation: turn a pattern (plain dicts and lists) into a checked tree, or list every problem.

The checker never stops at the first problem: it keeps going and records each one with the path
(keys and list indexes from the pattern root) of the node at fault, so that a rules file can be
fixed in one pass. The tree it builds (``ObjectSpec`` and friends) holds only validated
conditions; ``_pattern_match`` compiles it into matchers.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from typing import Any

from ._frozen import Frozen, init
from ._pattern_conditions import (
    AnythingBut,
    Cidr,
    Condition,
    EqualsIgnoreCase,
    Exists,
    Literal,
    Numeric,
    Prefix,
    Suffix,
    Wildcard,
    WildcardSyntaxError,
    as_double,
    is_number,
    parse_wildcard,
    render,
)

PatternPath = tuple[str | int, ...]
Problem = tuple[PatternPath, str]

OR_KEY = "$or"
# AWS rejects a pattern whose $or alternatives multiply out to more than this many combinations.
MAX_OR_COMBINATIONS = 1000


class LeafField(Frozen):
    """A field whose pattern is an array of conditions, ORed together."""

    __slots__ = ("key", "field_path", "conditions")
    key: str
    field_path: tuple[str, ...]  # where it is in the event (no $or, no indexes)
    conditions: tuple[Condition, ...]

    def __init__(
        self, key: str, field_path: tuple[str, ...], conditions: tuple[Condition, ...]
    ) -> None:
        init(self, "key", key)
        init(self, "field_path", field_path)
        init(self, "conditions", conditions)


class NestedField(Frozen):
    """A field whose pattern is an object: the event value must be an object that matches it."""

    __slots__ = ("key", "field_path", "spec")
    key: str
    field_path: tuple[str, ...]
    spec: ObjectSpec

    def __init__(self, key: str, field_path: tuple[str, ...], spec: ObjectSpec) -> None:
        init(self, "key", key)
        init(self, "field_path", field_path)
        init(self, "spec", spec)


class OrGroup(Frozen):
    """A ``$or``: the enclosing object matches if any one of the alternatives does."""

    __slots__ = ("alternatives",)
    alternatives: tuple[ObjectSpec, ...]

    def __init__(self, alternatives: tuple[ObjectSpec, ...]) -> None:
        init(self, "alternatives", alternatives)


Member = LeafField | NestedField | OrGroup


class ObjectSpec(Frozen):
    """An object of the pattern: every member must match (in the same event object)."""

    __slots__ = ("field_path", "members")
    field_path: tuple[str, ...]
    members: tuple[Member, ...]

    def __init__(self, field_path: tuple[str, ...], members: tuple[Member, ...]) -> None:
        init(self, "field_path", field_path)
        init(self, "members", members)

    def combinations(self) -> int:
        """How many $or-free patterns this one stands for (the product of its $or widths)."""
        total = 1
        for member in self.members:
            if isinstance(member, NestedField):
                total *= member.spec.combinations()
            elif isinstance(member, OrGroup):
                total *= sum(alt.combinations() for alt in member.alternatives)
        return total


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"a {type(value).__name__}"


def _is_array(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _plain(value: Any) -> Any:
    """The pattern with builtin types only (YAML loaders may hand over str, int and float
    subclasses), so that the checks below can rely on exact types."""
    if isinstance(value, Mapping):
        return {(_plain(k) if isinstance(k, str) else k): _plain(v) for k, v in value.items()}
    if _is_array(value):
        return [_plain(v) for v in value]
    if isinstance(value, bool):
        return bool(value)
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    return value


def _is_or_combinator(value: Any) -> bool:
    # Anything else under "$or" is an ordinary field named "$or" (event-ruler keeps that for
    # backward compatibility).
    return _is_array(value) and len(value) >= 2 and all(isinstance(v, Mapping) for v in value)


class PatternChecker:
    """Checks one pattern; ``problems`` collects everything wrong with it."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._operators: dict[str, Callable[[Any, PatternPath], Condition | None]] = {
            "prefix": self._prefix,
            "suffix": self._suffix,
            "equals-ignore-case": self._equals_ignore_case,
            "wildcard": self._wildcard,
            "anything-but": self._anything_but,
            "numeric": self._numeric,
            "exists": self._exists,
            "cidr": self._cidr,
        }

    def check(self, pattern: Any) -> ObjectSpec | None:
        if not isinstance(pattern, Mapping):
            self._fail((), f"a pattern must be an object, not {_kind(pattern)}")
            return None
        spec = self._object(_plain(pattern), (), ())
        combinations = spec.combinations()
        if combinations > MAX_OR_COMBINATIONS:
            self._fail(
                (),
                f"too many $or combinations: {combinations} (at most {MAX_OR_COMBINATIONS})",
            )
        return spec

    def _fail(self, path: PatternPath, message: str) -> None:
        self.problems.append((path, message))

    # -- structure -----------------------------------------------------------------------------

    def _object(self, node: Mapping, path: PatternPath, field_path: tuple[str, ...]) -> ObjectSpec:
        if not node:
            self._fail(path, "empty objects are not allowed")
        members: list[Member] = []
        for key, value in node.items():
            if not isinstance(key, str):
                self._fail(path + (str(key),), f"field names must be strings, not {_kind(key)}")
                continue
            here = path + (key,)
            if key == OR_KEY and _is_or_combinator(value):
                alternatives = tuple(
                    self._object(alternative, here + (index,), field_path)
                    for index, alternative in enumerate(value)
                )
                members.append(OrGroup(alternatives))
            elif isinstance(value, Mapping):
                inner = field_path + (key,)
                members.append(NestedField(key, inner, self._object(value, here, inner)))
            elif _is_array(value):
                members.append(self._leaf(key, value, here, field_path + (key,)))
            else:
                self._fail(
                    here, f"must be an object or an array of match values, not {_kind(value)}"
                )
        return ObjectSpec(field_path, tuple(members))

    def _leaf(
        self, key: str, values: list | tuple, path: PatternPath, field_path: tuple[str, ...]
    ) -> LeafField:
        if not values:
            self._fail(path, "empty arrays are not allowed")
        conditions = []
        for index, item in enumerate(values):
            condition = self._value(item, path + (index,))
            if condition is not None:
                conditions.append(condition)
        return LeafField(key, field_path, tuple(conditions))

    def _value(self, item: Any, path: PatternPath) -> Condition | None:
        if item is None or isinstance(item, (str, bool)):
            return Literal(item)
        if is_number(item):
            return Literal(item) if self._finite(item, path) else None
        if isinstance(item, Mapping):
            return self._operator(item, path)
        self._fail(
            path,
            "a match value must be a string, a number, true, false, null or an operator object,"
            f" not {_kind(item)}",
        )
        return None

    def _finite(self, number: int | float, path: PatternPath) -> bool:
        if math.isfinite(as_double(number)):
            return True
        if type(number) is int:  # an integer is finite, but may not fit in a double
            self._fail(path, f"{render(number, 40)} is too large to be a JSON number (a double)")
        else:
            self._fail(path, f"{render(number)} is not a finite number")
        return False

    def _operator(self, item: Mapping, path: PatternPath) -> Condition | None:
        if len(item) != 1:
            self._fail(path, f"an operator object must have exactly one key, not {len(item)}")
            return None
        ((name, argument),) = item.items()
        check = self._operators.get(name) if isinstance(name, str) else None
        if check is None:
            self._fail(path, f"unknown operator {render(name)}")
            return None
        return check(argument, path + (name,))

    # -- string operators ----------------------------------------------------------------------

    def _prefix(self, argument: Any, path: PatternPath) -> Condition | None:
        text, ignore_case = self._affix("prefix", argument, path)
        return None if text is None else Prefix(text, ignore_case)

    def _suffix(self, argument: Any, path: PatternPath) -> Condition | None:
        text, ignore_case = self._affix("suffix", argument, path)
        return None if text is None else Suffix(text, ignore_case)

    def _affix(self, name: str, argument: Any, path: PatternPath) -> tuple[str | None, bool]:
        if isinstance(argument, str):
            return argument, False
        if isinstance(argument, Mapping) and list(argument) == ["equals-ignore-case"]:
            text = argument["equals-ignore-case"]
            if isinstance(text, str):
                return text, True
            self._fail(
                path + ("equals-ignore-case",),
                f"equals-ignore-case must be a string, not {_kind(text)}",
            )
            return None, False
        self._fail(
            path,
            f'{name} must be a string or {{"equals-ignore-case": string}}, not {render(argument)}',
        )
        return None, False

    def _equals_ignore_case(self, argument: Any, path: PatternPath) -> Condition | None:
        if isinstance(argument, str):
            return EqualsIgnoreCase(argument)
        self._fail(path, f"equals-ignore-case must be a string, not {_kind(argument)}")
        return None

    def _wildcard(self, argument: Any, path: PatternPath) -> Condition | None:
        if not isinstance(argument, str):
            self._fail(path, f"wildcard must be a string, not {_kind(argument)}")
            return None
        try:
            return Wildcard(argument, parse_wildcard(argument))
        except WildcardSyntaxError as exc:
            self._fail(path, str(exc))
            return None

    # -- anything-but --------------------------------------------------------------------------

    def _anything_but(self, argument: Any, path: PatternPath) -> Condition | None:
        if isinstance(argument, str):
            return AnythingBut("strings", (argument,))
        if is_number(argument):
            return (
                AnythingBut("numbers", (as_double(argument),))
                if self._finite(argument, path)
                else None
            )
        if _is_array(argument):
            return self._anything_but_list(argument, path)
        if isinstance(argument, Mapping):
            return self._anything_but_operator(argument, path)
        self._fail(
            path,
            "anything-but must be a string, a number, an array of strings or of numbers, or an"
            f' object such as {{"prefix": ...}}, not {_kind(argument)}',
        )
        return None

    def _anything_but_list(self, values: list | tuple, path: PatternPath) -> Condition | None:
        if not values:
            self._fail(path, "empty arrays are not allowed")
            return None
        strings, numbers, valid = [], [], True
        for index, value in enumerate(values):
            if isinstance(value, str):
                strings.append(value)
            elif is_number(value):
                if self._finite(value, path + (index,)):
                    numbers.append(as_double(value))
                else:
                    valid = False
            else:
                valid = False
                what = "null" if value is None else _kind(value)
                self._fail(
                    path + (index,),
                    f"{what} is not allowed in anything-but (only strings or numbers)",
                )
        if strings and numbers:
            self._fail(path, "anything-but arrays must be all strings or all numbers, not a mix")
            return None
        if not valid:
            return None
        return (
            AnythingBut("strings", tuple(strings))
            if strings
            else AnythingBut("numbers", tuple(numbers))
        )

    def _anything_but_operator(self, argument: Mapping, path: PatternPath) -> Condition | None:
        if len(argument) != 1:
            self._fail(
                path, f"an anything-but object must have exactly one key, not {len(argument)}"
            )
            return None
        ((name, value),) = argument.items()
        if name not in ("prefix", "suffix", "equals-ignore-case", "wildcard"):
            self._fail(path, f"unsupported anything-but operator {render(name)}")
            return None
        here = path + (name,)
        if isinstance(value, str):
            items, paths = [value], [here]
        elif _is_array(value) and value:
            items, paths = list(value), [here + (i,) for i in range(len(value))]
        else:
            problem = (
                "empty arrays are not allowed"
                if _is_array(value)
                else (
                    f"anything-but {name} must be a string or an array of strings, "
                    f"not {_kind(value)}"
                )
            )
            self._fail(here, problem)
            return None
        valid = True
        for item, where in zip(items, paths, strict=True):
            if not isinstance(item, str):
                self._fail(where, f"anything-but {name} values must be strings, not {_kind(item)}")
                valid = False
            elif name in ("prefix", "suffix") and not item:
                # An empty prefix excludes every string; AWS rejects it rather than guess.
                self._fail(where, f"anything-but {name} must not be empty")
                valid = False
            elif name == "wildcard":
                try:
                    parse_wildcard(item)
                except WildcardSyntaxError as exc:
                    self._fail(where, str(exc))
                    valid = False
        return AnythingBut(name, tuple(items)) if valid else None

    # -- numeric, exists, cidr -----------------------------------------------------------------

    def _numeric(self, argument: Any, path: PatternPath) -> Condition | None:
        if not _is_array(argument) or not argument:
            self._fail(
                path,
                f'numeric must be a non-empty array such as [">", 0, "<=", 5], '
                f"not {render(argument)}",
            )
            return None
        terms: list[tuple[int, str, float]] = []  # (index of the operator, operator, number)
        valid = True
        for index in range(0, len(argument), 2):
            operator = argument[index]
            if not isinstance(operator, str) or operator not in ("=", "<", "<=", ">", ">="):
                self._fail(path + (index,), f"unknown numeric operator {render(operator)}")
                valid = False
            elif index + 1 >= len(argument):
                self._fail(path + (index,), f'"{operator}" must be followed by a number')
                valid = False
            elif not is_number(argument[index + 1]):
                self._fail(
                    path + (index + 1,),
                    f'"{operator}" needs a number, not {render(argument[index + 1])}',
                )
                valid = False
            elif not self._finite(argument[index + 1], path + (index + 1,)):
                valid = False
            else:
                terms.append((index, operator, as_double(argument[index + 1])))
        if not valid:
            return None
        equals = [term for term in terms if term[1] == "="]
        if equals:
            if len(terms) > 1:
                self._fail(
                    path + (equals[0][0],), '"=" cannot be combined with other numeric operators'
                )
                return None
            value = equals[0][2]
            return Numeric(value, True, value, True, tuple(argument))
        lowers = [term for term in terms if term[1] in (">", ">=")]
        uppers = [term for term in terms if term[1] in ("<", "<=")]
        if len(lowers) > 1:
            self._fail(path + (lowers[1][0],), "numeric takes at most one lower bound (> or >=)")
            valid = False
        if len(uppers) > 1:
            self._fail(path + (uppers[1][0],), "numeric takes at most one upper bound (< or <=)")
            valid = False
        if not valid:
            return None
        low = lowers[0] if lowers else None
        high = uppers[0] if uppers else None
        if low and high:
            low_inclusive, high_inclusive = low[1] == ">=", high[1] == "<="
            if low[2] > high[2] or (low[2] == high[2] and not (low_inclusive and high_inclusive)):
                self._fail(path, f"numeric range {render(list(argument))} can match no number")
                return None
        return Numeric(
            low[2] if low else None,
            low is not None and low[1] == ">=",
            high[2] if high else None,
            high is not None and high[1] == "<=",
            tuple(argument),
        )

    def _exists(self, argument: Any, path: PatternPath) -> Condition | None:
        if isinstance(argument, bool):
            return Exists(argument)
        self._fail(path, f"exists must be true or false, not {render(argument)}")
        return None

    def _cidr(self, argument: Any, path: PatternPath) -> Condition | None:
        if not isinstance(argument, str):
            self._fail(path, f"cidr must be a string, not {_kind(argument)}")
            return None
        try:
            if argument.count("/") != 1:
                raise ValueError("one '/' is required")
            network = ipaddress.ip_network(argument, strict=False)
        except ValueError:
            self._fail(
                path,
                f"invalid CIDR block {render(argument)} "
                f'(expected e.g. "10.0.0.0/24" or "2001:db8::/32")',
            )
            return None
        return Cidr(argument, network)
