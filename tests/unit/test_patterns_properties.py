"""Property tests: the invariants other code relies on, over generated patterns and events."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from triggers.rules.patterns import PatternError, compile, exact_key, values_at

KEYS = ["a", "b", "c"]
# A small vocabulary, shared by patterns and events, so that generated events often match.
STRINGS = ["", "x", "X", "ab", "b.csv", "10.0.0.7", "2001:db8::1", "null"]
NUMBERS = [0, 1, 1.0, -2.5, 300, 3e2]

leaf_values = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(STRINGS),
    st.sampled_from(NUMBERS),
    st.integers(-3, 3),
)

events_values = st.recursive(
    st.one_of(leaf_values, st.just([]), st.just({})),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    ),
    max_leaves=12,
)
events = st.dictionaries(st.sampled_from(KEYS), events_values, max_size=3)

OPERATORS = [
    {"prefix": "a"},
    {"prefix": ""},
    {"suffix": ".csv"},
    {"prefix": {"equals-ignore-case": "A"}},
    {"equals-ignore-case": "x"},
    {"wildcard": "*b*"},
    {"wildcard": "*"},
    {"anything-but": "x"},
    {"anything-but": [0, 1]},
    {"anything-but": {"prefix": "a"}},
    {"anything-but": {"wildcard": "*.csv"}},
    {"numeric": [">", 0, "<=", 300]},
    {"numeric": ["=", 1]},
    {"exists": True},
    {"exists": False},
    {"cidr": "10.0.0.0/24"},
    {"cidr": "2001:db8::/32"},
]

literals = st.one_of(st.none(), st.booleans(), st.sampled_from(STRINGS), st.sampled_from(NUMBERS))
leaf_patterns = st.lists(
    st.one_of(literals, literals, st.sampled_from(OPERATORS)), min_size=1, max_size=3
)


@st.composite
def object_patterns(draw, depth: int = 0) -> dict:
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=3, unique=True))
    pattern: dict = {}
    for key in keys:
        if depth < 2 and draw(st.booleans()) and draw(st.booleans()):
            pattern[key] = draw(object_patterns(depth + 1))
        else:
            pattern[key] = draw(leaf_patterns)
    if depth < 2 and draw(st.integers(0, 3)) == 0:
        pattern["$or"] = draw(st.lists(object_patterns(depth + 1), min_size=2, max_size=3))
    return pattern


def _is_or(key, value) -> bool:
    return (
        key == "$or"
        and isinstance(value, list)
        and len(value) >= 2
        and all(isinstance(v, dict) for v in value)
    )


def _merge(target: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(target.get(key), dict) and isinstance(value, dict):
            _merge(target[key], value)
        else:
            target[key] = value


@st.composite
def events_resembling(draw, pattern: dict) -> dict:
    """Events shaped like the pattern, using its literals often, in varied array wrappings: they
    match far more often than unrelated events, without being built from the anchors."""
    event: dict = {}
    for key, sub in pattern.items():
        if _is_or(key, sub):
            _merge(event, draw(events_resembling(draw(st.sampled_from(sub)))))
            continue
        if draw(st.integers(0, 9)) == 0:
            continue  # sometimes leave the field out
        if isinstance(sub, dict):
            value = draw(events_resembling(sub))
        else:
            plain = [v for v in sub if not isinstance(v, dict)]
            value = (
                draw(st.sampled_from(plain))
                if plain and draw(st.booleans())
                else draw(events_values)
            )
        shape = draw(st.integers(0, 4))
        if shape == 0:
            value = [value]
        elif shape == 1:
            value = [draw(events_values), value]
        elif shape == 2:
            value = [[value], draw(events_values)]
        _merge(event, {key: value})
    return event


def _walk_explanation(compiled, event):
    # The explanation walk is a separate implementation of the matching rules; comparing it with
    # matches() is what makes "explain is None iff matches" a real check (explain() itself also
    # guards the contract by calling matches() first).
    return compiled._root.explain_value(event, "(event)")


# -- explain is None iff matches ---------------------------------------------------------------

FIXED_PATTERNS = [
    {"a": ["x", 1], "b": {"c": [{"prefix": "a"}, {"numeric": [">", 0]}]}},
    {"a": {"b": ["x"], "c": [{"exists": False}]}},
    {"a": [{"anything-but": ["x", ""]}], "$or": [{"b": [None]}, {"c": {"a": [{"exists": True}]}}]},
    {
        "a": [{"wildcard": "*b*"}, {"cidr": "10.0.0.0/24"}],
        "b": {"b": {"b": [{"exists": False}, "x"]}},
    },
    {
        "c": {
            "$or": [
                {"a": [300]},
                {"b": [{"equals-ignore-case": "X"}], "$or": [{"c": [True]}, {"a": [""]}]},
            ]
        }
    },
]


@pytest.mark.parametrize("pattern", FIXED_PATTERNS)
@given(event=events)
@settings(max_examples=300, deadline=None)
def test_explain_is_none_iff_matches_for_fixed_patterns(pattern, event):
    compiled = compile(pattern)
    matched = compiled.matches(event)
    assert (compiled.explain(event) is None) == matched
    assert (_walk_explanation(compiled, event) is None) == matched


@given(pattern=object_patterns(), data=st.data())
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_explain_is_none_iff_matches_for_generated_patterns(pattern, data):
    try:
        compiled = compile(pattern)
    except PatternError:
        assume(False)
    event = data.draw(st.one_of(events, events_resembling(pattern)))
    matched = compiled.matches(event)
    assert (_walk_explanation(compiled, event) is None) == matched
    assert (compiled.explain(event) is None) == matched


# -- the anchors guarantee ---------------------------------------------------------------------


@given(pattern=object_patterns(), event=events)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_matching_events_carry_an_anchor_value_for_every_anchor(pattern, event):
    try:
        compiled = compile(pattern)
    except PatternError:
        assume(False)
    if compiled.matches(event):
        for path, keys in compiled.anchors():
            found = [exact_key(v) for v in values_at(event, path)]
            assert any(key in keys for key in found), (path, keys, found)


@given(pattern=object_patterns(), data=st.data())
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_anchor_guarantee_on_events_resembling_the_pattern(pattern, data):
    try:
        compiled = compile(pattern)
    except PatternError:
        assume(False)
    event = data.draw(events_resembling(pattern))
    if compiled.matches(event):
        for path, keys in compiled.anchors():
            found = [exact_key(v) for v in values_at(event, path)]
            assert any(key in keys for key in found), (path, keys, found)


# -- literal equality is exact_key equality ----------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=3),
    st.integers(-(2**60), 2**60),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -0.0, 1.0, 2**53, 2**53 + 1, float(2**53), "1", "true", "null"]),
)


@given(literal=scalars, value=scalars)
@settings(max_examples=500, deadline=None)
def test_a_literal_matches_exactly_the_values_with_its_exact_key(literal, value):
    matched = compile({"k": [literal]}).matches({"k": value})
    assert matched == (exact_key(literal) == exact_key(value))


# -- wildcard against a regex reference --------------------------------------------------------


def _reference_wildcard(pattern: str) -> re.Pattern | None:
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            if pattern[i + 1 : i + 2] not in ("*", "\\"):
                return None
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if char == "*":
            if pattern[i + 1 : i + 2] == "*":
                return None
            out.append(".*")
        else:
            out.append(re.escape(char))
        i += 1
    return re.compile("".join(out), re.DOTALL)


@given(pattern=st.text(alphabet="ab*\\/", max_size=8), text=st.text(alphabet="ab*\\/", max_size=10))
@settings(max_examples=1000, deadline=None)
def test_wildcard_agrees_with_a_regex_reference(pattern, text):
    reference = _reference_wildcard(pattern)
    if reference is None:
        with pytest.raises(PatternError):
            compile({"k": [{"wildcard": pattern}]})
        return
    expected = reference.fullmatch(text) is not None
    assert compile({"k": [{"wildcard": pattern}]}).matches({"k": text}) == expected
    # anything-but wildcard is its exact negation for strings
    assert compile({"k": [{"anything-but": {"wildcard": pattern}}]}).matches({"k": text}) == (
        not expected
    )


# -- numeric against plain comparisons ---------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
COMPARE = {
    ">": float.__gt__,
    ">=": float.__ge__,
    "<": float.__lt__,
    "<=": float.__le__,
    "=": float.__eq__,
}


@given(
    low_op=st.sampled_from([">", ">="]),
    low=finite,
    high_op=st.sampled_from(["<", "<="]),
    high=finite,
    value=st.one_of(finite, st.integers(-(2**70), 2**70)),
)
@settings(max_examples=1000, deadline=None)
def test_numeric_range_agrees_with_double_comparisons(low_op, low, high_op, high, value):
    try:
        compiled = compile({"k": [{"numeric": [low_op, low, high_op, high]}]})
    except PatternError:
        assume(False)
    x = float(value)
    expected = COMPARE[low_op](x, float(low)) and COMPARE[high_op](x, float(high))
    assert compiled.matches({"k": value}) == expected


@given(op=st.sampled_from(list(COMPARE)), bound=finite, value=finite)
@settings(max_examples=500, deadline=None)
def test_single_numeric_bound_agrees_with_double_comparisons(op, bound, value):
    compiled = compile({"k": [{"numeric": [op, bound]}]})
    assert compiled.matches({"k": value}) == COMPARE[op](float(value), float(bound))
