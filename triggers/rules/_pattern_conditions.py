"""Value conditions: what one element of a pattern array asks of one leaf value of an event.

Each condition is a frozen value built by the validator. ``predicate()`` turns it into a plain
function ``value -> bool`` once, at compile time, so that matching does no parsing, no regex
work and no allocation. A predicate sees a single *leaf* value (string, number, true, false,
null); absent fields, objects and arrays are dealt with by the caller (see ``_pattern_match``).

Numbers are compared as IEEE-754 binary64 doubles, like aws/event-ruler >= 1.8: ``300``,
``300.0`` and ``3e2`` are the same number, and a number never equals a string or a boolean.
"""

from __future__ import annotations

import ipaddress
import json
import math
import socket
from collections.abc import Callable
from typing import Any, cast

from ._frozen import Frozen, init

Predicate = Callable[[Any], bool]


# -- numbers -----------------------------------------------------------------------------------


def as_double(number: int | float) -> float:
    """The double a JSON number denotes. Integers too large for a double become +/-infinity,
    which is what a JSON parser producing doubles (as the Java library does) would give."""
    if type(number) is float:
        return number
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def is_number(value: Any) -> bool:
    # `type(...) is` rather than isinstance: bool is a subclass of int, and True is not 1 here.
    kind = type(value)
    return kind is int or kind is float


def render(value: Any, limit: int = 80) -> str:
    """A short JSON rendering of a value, for messages."""
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- wildcards ---------------------------------------------------------------------------------


class WildcardSyntaxError(ValueError):
    """A wildcard string breaks the escaping or star rules."""


def parse_wildcard(text: str) -> tuple[str, ...]:
    """Split a wildcard into the literal segments between its unescaped stars.

    ``\\*`` is a literal star and ``\\\\`` a literal backslash; any other escape is an error, as
    are two stars in a row (they would add nothing but backtracking cost).
    """
    segments: list[str] = []
    current: list[str] = []
    previous_was_star = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            escaped = text[index + 1 : index + 2]
            if escaped not in ("*", "\\"):
                raise WildcardSyntaxError(
                    f"invalid escape character at position {index} in wildcard {render(text)}"
                    " (only \\* and \\\\ are allowed)"
                )
            current.append(escaped)
            index += 2
            previous_was_star = False
            continue
        if char == "*":
            if previous_was_star:
                raise WildcardSyntaxError(
                    f"consecutive wildcard characters are not allowed in {render(text)}"
                )
            segments.append("".join(current))
            current = []
            previous_was_star = True
        else:
            current.append(char)
            previous_was_star = False
        index += 1
    segments.append("".join(current))
    return tuple(segments)


def wildcard_predicate(segments: tuple[str, ...]) -> Predicate:
    """A predicate for parsed wildcard segments: true for strings the wildcard matches.

    With only `*` as a metacharacter, anchoring the first and last segments and then finding
    each middle segment leftmost-first is exact (no backtracking is ever needed), and
    str.find is far cheaper than a regex.
    """
    if len(segments) == 1:
        only = segments[0]
        return lambda v: type(v) is str and v == only
    head, *middle_list, tail = segments
    middle = tuple(middle_list)
    shortest = sum(len(s) for s in segments)
    head_length = len(head)
    tail_length = len(tail)
    if not middle:
        return lambda v: (
            type(v) is str and len(v) >= shortest and v.startswith(head) and v.endswith(tail)
        )

    def match_segments(v: Any) -> bool:
        if (
            type(v) is not str
            or len(v) < shortest
            or not v.startswith(head)
            or not v.endswith(tail)
        ):
            return False
        position = head_length
        end = len(v) - tail_length
        for segment in middle:
            found = v.find(segment, position, end)
            if found < 0:
                return False
            position = found + len(segment)
        return True

    return match_segments


# -- the conditions ----------------------------------------------------------------------------


class Literal(Frozen):
    """An exact value: a string, a number (compared numerically), true, false or null."""

    __slots__ = ("value",)
    value: str | int | float | bool | None

    def __init__(self, value: str | int | float | bool | None) -> None:
        init(self, "value", value)

    def describe(self) -> str:
        return render(self.value)


class Prefix(Frozen):
    __slots__ = ("text", "ignore_case")
    text: str
    ignore_case: bool

    def __init__(self, text: str, ignore_case: bool = False) -> None:
        init(self, "text", text)
        init(self, "ignore_case", ignore_case)

    def predicate(self) -> Predicate:
        if self.ignore_case:
            folded = self.text.lower()
            return lambda v: type(v) is str and v.lower().startswith(folded)
        text = self.text
        return lambda v: type(v) is str and v.startswith(text)

    def describe(self) -> str:
        return f"prefix{' (ignoring case)' if self.ignore_case else ''} {render(self.text)}"


class Suffix(Frozen):
    __slots__ = ("text", "ignore_case")
    text: str
    ignore_case: bool

    def __init__(self, text: str, ignore_case: bool = False) -> None:
        init(self, "text", text)
        init(self, "ignore_case", ignore_case)

    def predicate(self) -> Predicate:
        if self.ignore_case:
            folded = self.text.lower()
            return lambda v: type(v) is str and v.lower().endswith(folded)
        text = self.text
        return lambda v: type(v) is str and v.endswith(text)

    def describe(self) -> str:
        return f"suffix{' (ignoring case)' if self.ignore_case else ''} {render(self.text)}"


class EqualsIgnoreCase(Frozen):
    __slots__ = ("text",)
    text: str

    def __init__(self, text: str) -> None:
        init(self, "text", text)

    def predicate(self) -> Predicate:
        # lower() rather than casefold(): casefold equates "ß" with "ss", which a per-character
        # case-insensitive comparison (Java's equalsIgnoreCase) does not.
        folded = self.text.lower()
        return lambda v: type(v) is str and v.lower() == folded

    def describe(self) -> str:
        return f"equals-ignore-case {render(self.text)}"


class Wildcard(Frozen):
    __slots__ = ("text", "segments")
    text: str
    segments: tuple[str, ...]

    def __init__(self, text: str, segments: tuple[str, ...]) -> None:
        init(self, "text", text)
        init(self, "segments", segments)

    def predicate(self) -> Predicate:
        return wildcard_predicate(self.segments)

    def describe(self) -> str:
        return f"wildcard {render(self.text)}"


class AnythingBut(Frozen):
    """Matches every present leaf value except the excluded ones.

    Exclusions only ever apply to values of their own type: a string variant lets every number,
    boolean and null through, and a numeric one every string, boolean and null (this is how
    event-ruler behaves, and AWS documents that null matches every anything-but).
    """

    __slots__ = ("variant", "values")
    # "strings" or "numbers" (exact exclusions), or "prefix", "suffix", "equals-ignore-case",
    # "wildcard" (the operator whose matches are excluded).
    variant: str
    values: tuple  # the strings, or doubles for "numbers"

    def __init__(self, variant: str, values: tuple) -> None:
        init(self, "variant", variant)
        init(self, "values", values)

    def predicate(self) -> Predicate:
        variant = self.variant
        if variant == "strings":
            excluded = frozenset(self.values)
            return lambda v: type(v) is not str or v not in excluded
        if variant == "numbers":
            excluded_numbers = frozenset(self.values)

            def not_excluded_number(v: Any) -> bool:
                kind = type(v)
                if kind is float:
                    return v not in excluded_numbers
                if kind is int:
                    return as_double(v) not in excluded_numbers
                return True

            return not_excluded_number
        if variant == "prefix":
            prefixes = tuple(self.values)
            return lambda v: type(v) is not str or not v.startswith(prefixes)
        if variant == "suffix":
            suffixes = tuple(self.values)
            return lambda v: type(v) is not str or not v.endswith(suffixes)
        if variant == "equals-ignore-case":
            folded = frozenset(text.lower() for text in self.values)
            return lambda v: type(v) is not str or v.lower() not in folded
        if variant == "wildcard":
            matchers = tuple(wildcard_predicate(parse_wildcard(text)) for text in self.values)

            def matches_no_wildcard(v: Any) -> bool:
                if type(v) is not str:
                    return True
                for match in matchers:  # noqa: SIM110 - hot path: a loop beats any()/all() over a generator
                    if match(v):
                        return False
                return True

            return matches_no_wildcard
        raise AssertionError(f"unknown anything-but variant {variant!r}")

    def describe(self) -> str:
        values = list(self.values)
        shown = render(values[0] if len(values) == 1 else values)
        if self.variant in ("strings", "numbers"):
            return f"anything-but {shown}"
        return f"anything-but {self.variant} {shown}"


class Numeric(Frozen):
    """A numeric range; either bound may be missing. ``=`` is a closed range of one point."""

    __slots__ = ("lower", "lower_inclusive", "upper", "upper_inclusive", "terms")
    lower: float | None
    lower_inclusive: bool
    upper: float | None
    upper_inclusive: bool
    terms: tuple  # the array as written, for messages

    def __init__(
        self,
        lower: float | None = None,
        lower_inclusive: bool = False,
        upper: float | None = None,
        upper_inclusive: bool = False,
        terms: tuple = (),
    ) -> None:
        init(self, "lower", lower)
        init(self, "lower_inclusive", lower_inclusive)
        init(self, "upper", upper)
        init(self, "upper_inclusive", upper_inclusive)
        init(self, "terms", terms)

    def bounds(self) -> tuple[float, float]:
        """The range as inclusive double bounds ``lo <= x <= hi`` (infinite when missing)."""
        # Strict bounds become inclusive ones on the neighbouring double (x > lo is exactly
        # x >= nextafter(lo, +inf) for doubles), and a missing bound an infinite one, so every
        # shape of range is the same single chained comparison.
        lo = -math.inf if self.lower is None else self.lower
        if self.lower is not None and not self.lower_inclusive:
            lo = math.nextafter(lo, math.inf)
        hi = math.inf if self.upper is None else self.upper
        if self.upper is not None and not self.upper_inclusive:
            hi = math.nextafter(hi, -math.inf)
        return lo, hi

    def predicate(self) -> Predicate:
        lo, hi = self.bounds()

        def in_range(v: Any) -> bool:
            kind = type(v)
            if kind is float:
                return lo <= v <= hi
            if kind is int:
                return lo <= as_double(v) <= hi
            return False

        return in_range

    def describe(self) -> str:
        if self.terms:
            return f"numeric {render(list(self.terms))}"
        terms: list[Any] = []
        if self.lower is not None and self.lower == self.upper:
            terms = ["=", self.lower]
        else:
            if self.lower is not None:
                terms += [">=" if self.lower_inclusive else ">", self.lower]
            if self.upper is not None:
                terms += ["<=" if self.upper_inclusive else "<", self.upper]
        return f"numeric {render(terms)}"


class Exists(Frozen):
    """``exists: true`` asks for any leaf value (null included); ``false`` for none at all."""

    __slots__ = ("present",)
    present: bool

    def __init__(self, present: bool) -> None:
        init(self, "present", present)

    def describe(self) -> str:
        return f"exists {'true' if self.present else 'false'}"


def ip_to_int(text: str, version: int) -> int | None:
    """The address as an int if ``text`` is an IP address of that version, else None.

    inet_pton is as strict as ipaddress for dotted quads (no leading zeros, exactly four
    decimal parts) and several times faster, which matters as it runs per event value;
    ipaddress remains the judge of whatever inet_pton refuses (e.g. IPv6 scope ids).
    """
    try:
        if version == 4:
            return int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except (OSError, ValueError):
        pass
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return int(address) if address.version == version else None


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Cidr(Frozen):
    """An IPv4 or IPv6 block; event values are address strings of the same version."""

    __slots__ = ("text", "network")
    text: str
    network: IPNetwork

    def __init__(self, text: str, network: IPNetwork) -> None:
        init(self, "text", text)
        init(self, "network", network)

    def predicate(self) -> Predicate:
        version = self.network.version
        first = int(self.network.network_address)
        last = int(self.network.broadcast_address)

        def in_network(v: Any) -> bool:
            if type(v) is not str:
                return False
            # A malformed address, or one of the other IP version, is simply no match.
            address = ip_to_int(v, version)
            return address is not None and first <= address <= last

        return in_network

    def describe(self) -> str:
        return f"cidr {render(self.text)}"


Condition = (
    Literal | Prefix | Suffix | EqualsIgnoreCase | Wildcard | AnythingBut | Numeric | Exists | Cidr
)


# -- a whole array of conditions ---------------------------------------------------------------


def _always_true(value: Any) -> bool:
    return True


def _always_false(value: Any) -> bool:
    return False


def literal_predicate(literals: list[Literal]) -> Predicate:
    """One set-lookup predicate for all the literals of one pattern array."""
    strings = frozenset(lit.value for lit in literals if type(lit.value) is str)
    numbers = frozenset(
        as_double(cast(float, lit.value)) for lit in literals if is_number(lit.value)
    )
    booleans = frozenset(lit.value for lit in literals if type(lit.value) is bool)
    accepts_null = any(lit.value is None for lit in literals)
    if strings and not (numbers or booleans or accepts_null):
        # Only strings are in the set, and a string never equals a non-string, so a bare
        # membership test is exact (and the fastest thing Python has).
        return strings.__contains__

    def is_listed(v: Any) -> bool:
        kind = type(v)
        if kind is str:
            return v in strings
        if kind is float:
            return v in numbers
        if kind is int:
            return as_double(v) in numbers
        if kind is bool:
            return v in booleans
        return v is None and accepts_null

    return is_listed


def combined_predicate(conditions: tuple[Condition, ...]) -> Predicate:
    """The OR of a pattern array's conditions, over one leaf value.

    ``exists: false`` contributes nothing here: it is about the absence of leaf values, which the
    caller decides before any leaf is looked at.
    """
    if any(isinstance(c, Exists) and c.present for c in conditions):
        return _always_true
    literals = [c for c in conditions if isinstance(c, Literal)]
    predicates: list[Predicate] = [literal_predicate(literals)] if literals else []
    predicates += [c.predicate() for c in conditions if not isinstance(c, (Literal, Exists))]
    if not predicates:
        return _always_false
    if len(predicates) == 1:
        return predicates[0]
    if len(predicates) == 2:
        first, second = predicates
        return lambda v: first(v) or second(v)
    options = tuple(predicates)

    def any_condition(v: Any) -> bool:
        for option in options:  # noqa: SIM110 - hot path: a loop beats any()/all() over a generator
            if option(v):
                return True
        return False

    return any_condition
