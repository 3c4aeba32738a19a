"""The pattern matcher against a reference matcher written here, straight from the semantics.

`reference_matches` is the slow, obvious reading of EventBridge content filtering as
/work/shared/notes/eventbridge-patterns.md and the docstring of triggers/rules/patterns.py state
it: it walks the raw pattern and the event together, with no compilation, no indexes, no shared
leaves and no per-size fast paths. Hypothesis generates patterns of up to eight fields (so the
matcher's four-or-more-fields path runs, not only its one-, two- and three-field shortcuts),
nested objects, `$or` groups, every operator and every literal type, and events shaped like
the pattern (arrays of values, arrays of objects, nested arrays, tuples and read-only
mappings) so that most of them match or nearly match. The two matchers must agree on every
one, and `explain` must be None exactly when they say "match".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import event as event_note
from hypothesis import strategies as st

from triggers.rules._pattern_match import ObjectNode
from triggers.rules.patterns import PatternError, compile, exact_key

# -- the reference ---------------------------------------------------------------------------

OPERATOR_NAMES = frozenset(
    {"prefix", "suffix", "equals-ignore-case", "wildcard", "anything-but", "numeric", "exists"}
    | {"cidr"}
)


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)  # JSON numbers; true and false are not numbers


def _is_object(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_array(value: Any) -> bool:
    return isinstance(value, (list, tuple))


def _is_or_group(key: str, value: Any) -> bool:
    # "$or" is an operator only as an array of at least two objects; else a field name.
    return (
        key == "$or"
        and isinstance(value, list)
        and len(value) >= 2
        and all(isinstance(v, dict) for v in value)
    )


def _flatten(array) -> list:
    out: list = []
    for item in array:
        out.extend(_flatten(item) if _is_array(item) else [item])
    return out


def _wildcard_regex(text: str) -> re.Pattern:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\":
            out.append(re.escape(text[i + 1]))
            i += 2
            continue
        out.append(".*" if text[i] == "*" else re.escape(text[i]))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _equal(literal: Any, value: Any) -> bool:
    """Exact match: numbers by value as doubles, everything else by type and value."""
    if _is_number(literal) and _is_number(value):
        return float(literal) == float(value)
    return type(literal) is type(value) and literal == value


def _string_test(name: str, spec: Any, value: Any) -> bool:
    """prefix / suffix / equals-ignore-case / wildcard on one value (strings only)."""
    if not isinstance(value, str):
        return False
    if name in ("prefix", "suffix") and isinstance(spec, dict):
        (folded,) = spec.values()  # {"equals-ignore-case": text}
        text, value = folded.lower(), value.lower()
    else:
        text = spec
    if name == "prefix":
        return value.startswith(text)
    if name == "suffix":
        return value.endswith(text)
    if name == "equals-ignore-case":
        return value.lower() == text.lower()
    return _wildcard_regex(text).fullmatch(value) is not None


def _anything_but(spec: Any, value: Any) -> bool:
    if isinstance(spec, dict):  # {prefix|suffix|equals-ignore-case|wildcard: text or texts}
        ((name, texts),) = spec.items()
        texts = texts if isinstance(texts, list) else [texts]
        if not isinstance(value, str):
            return True  # numbers, booleans and null are not excluded by a string test
        return not any(_string_test(name, text, value) for text in texts)
    excluded = spec if isinstance(spec, list) else [spec]
    return not any(_equal(x, value) for x in excluded)


_COMPARE = {
    "=": lambda x, b: x == b,
    ">": lambda x, b: x > b,
    ">=": lambda x, b: x >= b,
    "<": lambda x, b: x < b,
    "<=": lambda x, b: x <= b,
}


def _condition(condition: Any, value: Any) -> bool:
    """Whether one element of a pattern array accepts one leaf value that is present."""
    if not isinstance(condition, dict):
        return _equal(condition, value)
    ((name, spec),) = condition.items()
    if name == "exists":
        return spec is True  # the value is there
    if name == "anything-but":
        return _anything_but(spec, value)
    if name == "numeric":
        if not _is_number(value):
            return False
        pairs = zip(spec[::2], spec[1::2], strict=True)
        return all(_COMPARE[op](float(value), float(bound)) for op, bound in pairs)
    if name == "cidr":
        try:
            address = ipaddress.ip_address(value) if isinstance(value, str) else None
        except ValueError:
            return False
        network = ipaddress.ip_network(spec, strict=False)
        return address is not None and address.version == network.version and address in network
    return _string_test(name, spec, value)


def _leaf_matches(conditions: list, value: Any, present: bool) -> bool:
    leaves = [] if not present else [value] if not _is_array(value) else _flatten(value)
    leaves = [v for v in leaves if not _is_object(v)]  # objects are not leaf values
    if not leaves:  # missing, an object, [] or only objects: absent, which only exists:false takes
        return any(c == {"exists": False} for c in conditions)
    return any(_condition(c, v) for c in conditions for v in leaves)


def _candidate_objects(value: Any, present: bool) -> list[Mapping]:
    """The event objects a nested pattern may match: the object itself, or each element of an
    array (nested arrays flattened); anything else, and each scalar element, is an empty
    object, so that exists:false below it holds."""
    if not present or not (_is_object(value) or _is_array(value)):
        return [{}]
    if _is_object(value):
        return [value]
    if not value:
        return [{}]
    found: list[Mapping] = []
    for item in value:
        found.extend(
            _candidate_objects(item, True)
            if _is_array(item)
            else [item if _is_object(item) else {}]
        )
    return found


def reference_matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    for key, sub in pattern.items():
        if _is_or_group(key, sub):
            if not any(reference_matches(alternative, event) for alternative in sub):
                return False
            continue
        present = key in event
        value = event.get(key)
        if isinstance(sub, dict):
            # one single event object must match the whole sub-pattern
            if not any(reference_matches(sub, obj) for obj in _candidate_objects(value, present)):
                return False
        elif not _leaf_matches(sub, value, present):
            return False
    return True


# -- generated patterns ----------------------------------------------------------------------

KEYS = ["a", "b", "c", "d", "e", "f", "g", "h"]
STRINGS = ["", "x", "X", "ab", "Ab", "b.csv", "B.CSV", "a*b", "10.0.0.7", "10.0.1.7", "2001:db8::1"]
NUMBERS = [0, 1, 1.0, -2.5, 300, 3e2, 5]
scalars = st.one_of(
    st.none(), st.booleans(), st.sampled_from(STRINGS), st.sampled_from(NUMBERS), st.integers(-3, 6)
)
texts = st.sampled_from(["", "a", "A", "b", "x", ".csv", ".CSV", "ab", "10."])
nonempty_texts = texts.filter(bool)
wildcards = st.sampled_from(["*", "", "a*", "*b", "*b*", "a*b", "*.csv", "a\\*b", "x*y*z", "1*7"])
numbers = st.sampled_from(NUMBERS + [-1, 2, 299.5])


@st.composite
def numeric_ranges(draw) -> list:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return ["=", draw(numbers)]
    low, high = sorted([draw(numbers), draw(numbers)])
    lower = [draw(st.sampled_from([">", ">="])), low]
    upper = [draw(st.sampled_from(["<", "<="])), high]
    if kind == 1:
        return lower
    if kind == 2:
        return upper
    return lower + upper


def _string_or_list(strategy):
    return st.one_of(strategy, st.lists(strategy, min_size=1, max_size=3))


operators = st.one_of(
    st.builds(lambda t: {"prefix": t}, texts),
    st.builds(lambda t: {"suffix": t}, texts),
    st.builds(lambda t: {"prefix": {"equals-ignore-case": t}}, texts),
    st.builds(lambda t: {"suffix": {"equals-ignore-case": t}}, texts),
    st.builds(lambda t: {"equals-ignore-case": t}, texts),
    st.builds(lambda t: {"wildcard": t}, wildcards),
    st.builds(lambda t: {"anything-but": t}, st.sampled_from(STRINGS)),
    st.builds(lambda n: {"anything-but": n}, numbers),
    st.builds(lambda t: {"anything-but": t}, st.lists(st.sampled_from(STRINGS), min_size=1)),
    st.builds(lambda n: {"anything-but": n}, st.lists(numbers, min_size=1, max_size=3)),
    st.builds(lambda t: {"anything-but": {"prefix": t}}, _string_or_list(nonempty_texts)),
    st.builds(lambda t: {"anything-but": {"suffix": t}}, _string_or_list(nonempty_texts)),
    st.builds(lambda t: {"anything-but": {"equals-ignore-case": t}}, _string_or_list(texts)),
    st.builds(lambda t: {"anything-but": {"wildcard": t}}, _string_or_list(wildcards)),
    st.builds(lambda r: {"numeric": r}, numeric_ranges()),
    st.builds(lambda b: {"exists": b}, st.booleans()),
    st.builds(
        lambda c: {"cidr": c}, st.sampled_from(["10.0.0.0/24", "10.0.0.7/32", "2001:db8::/32"])
    ),
)
leaf_patterns = st.lists(
    st.one_of(scalars, operators, operators, st.just({"exists": False})), min_size=1, max_size=3
)


@st.composite
def object_patterns(draw, depth: int = 0, max_fields: int = 8) -> dict:
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=max_fields, unique=True))
    pattern: dict = {}
    for key in keys:
        if depth < 2 and draw(st.integers(0, 3)) == 0:
            pattern[key] = draw(object_patterns(depth + 1, max_fields=4))
        elif depth and draw(st.integers(0, 2)) == 0:
            # a sub-pattern that an empty object passes: what scalars and [] are matched as
            pattern[key] = [{"exists": False}]
        else:
            pattern[key] = draw(leaf_patterns)
    if depth < 2 and draw(st.integers(0, 4)) == 0:
        pattern["$or"] = draw(
            st.lists(object_patterns(depth + 1, max_fields=3), min_size=2, max_size=3)
        )
    elif draw(st.integers(0, 9)) == 0:
        pattern["$or"] = [draw(scalars)]  # not an $or group: a field named "$or"
    return pattern


# -- events shaped like a pattern ------------------------------------------------------------

event_leaves = st.one_of(scalars, st.sampled_from(["a.csv", "A.csv", "xyz", "ab.CSV", "1.7"]))
any_values = st.recursive(
    st.one_of(event_leaves, st.just([]), st.just({})),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)
    ),
    max_leaves=8,
)


def _satisfying_values(condition: Any) -> list:
    """Values likely to pass a condition (so that generated events often match)."""
    if not isinstance(condition, dict):
        return [condition, float(condition) if _is_number(condition) else condition]
    ((name, spec),) = condition.items()
    if name in ("prefix", "suffix", "equals-ignore-case"):
        text = spec if isinstance(spec, str) else next(iter(spec.values()))
        return [text, text + "z", "z" + text, text.upper()]
    if name == "wildcard":
        return [spec.replace("\\*", "*").replace("*", ""), spec.replace("*", "q")]
    if name == "numeric":
        return [float(b) + d for b in spec[1::2] for d in (-0.5, 0, 0.5)]
    if name == "cidr":
        return ["10.0.0.7", "2001:db8::5"]
    if condition == {"exists": False}:
        return [[], {}, [{}]]  # no leaf value: as good as missing
    return [None, "other", 42]  # anything-but, and exists: true


@st.composite
def events_like(draw, pattern: Mapping[str, Any], noise: int | None = None) -> dict:
    """An event with the pattern's fields, filled with values that pass one of each field's
    conditions; with `noise` n > 0, about one field in n is left out or holds anything."""
    if noise is None:
        noise = draw(st.sampled_from([0, 0, 4, 12]))
    event: dict = {}
    for key, sub in pattern.items():
        if _is_or_group(key, sub):
            for alternative in draw(st.lists(st.sampled_from(sub), min_size=1, max_size=2)):
                for k, v in draw(events_like(alternative, noise)).items():
                    event.setdefault(k, v)
            continue
        roll = draw(st.integers(0, noise)) if noise else None
        if roll == 0:
            continue  # left out
        if roll == 1:
            event[key] = draw(any_values)  # anything at all
            continue
        if isinstance(sub, dict):
            value: Any = draw(events_like(sub, noise))
            shape = draw(st.integers(0, 5))
            if shape == 0:  # an array of objects: one element may match
                others = [draw(events_like(sub, noise or 3)), draw(any_values)]
                value = draw(st.permutations([value, *others]))
            elif shape == 1:  # a scalar, an empty array or nested arrays where an object is due
                value = draw(
                    st.sampled_from([draw(event_leaves), [], [[]], [draw(event_leaves)], [[value]]])
                )
        else:
            candidates = _satisfying_values(draw(st.sampled_from(sub)))
            if not noise:  # keep the ones that do pass, when one does (a faithful event)
                candidates = [v for v in candidates if _leaf_matches(sub, v, True)] or candidates
            value = draw(st.sampled_from(candidates))
            shape = draw(st.integers(0, 5))
            if shape == 0:
                value = [value]
            elif shape == 1:
                value = [draw(event_leaves), value]
            elif shape == 2:
                value = [[value], {}]
            elif shape == 3:
                value = (draw(event_leaves), value)
        event[key] = value
    return event


def _read_only(value: Any, flip: bool) -> Any:
    """The same JSON value with objects as read-only mappings and arrays as tuples, as a caller
    passing non-dict mappings would (the matcher's generic path)."""
    if isinstance(value, dict):
        inner = {k: _read_only(v, flip) for k, v in value.items()}
        return MappingProxyType(inner) if flip else inner
    if isinstance(value, list):
        return tuple(_read_only(v, flip) for v in value)
    return value


# -- the properties --------------------------------------------------------------------------

PROPERTY = settings(
    max_examples=600,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def _compiled(pattern):
    try:
        return compile(pattern)
    except PatternError:
        assume(False)


@PROPERTY
@given(pattern=object_patterns(), data=st.data())
def test_the_matcher_agrees_with_the_reference(pattern, data):
    compiled = _compiled(pattern)
    event = data.draw(
        st.one_of(
            events_like(pattern),
            events_like(pattern),
            st.dictionaries(st.sampled_from(KEYS), any_values, max_size=4),
        )
    )
    expected = reference_matches(pattern, event)
    event_note("match" if expected else "no match")
    event_note(f"{len(pattern)} fields")
    assert compiled.matches(event) is expected
    assert (compiled.explain(event) is None) is expected
    # the explanation walk does not use the match closures: it must agree on its own
    assert (compiled._root.explain_value(event, "(event)") is None) is expected


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pattern=object_patterns(), data=st.data(), flip=st.booleans())
def test_mappings_and_tuples_match_like_objects_and_arrays(pattern, data, flip):
    compiled = _compiled(pattern)
    event = data.draw(events_like(pattern))
    other = _read_only(event, flip)
    assert compiled.matches(other) is reference_matches(pattern, event)
    assert (compiled.explain(other) is None) is compiled.matches(other)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fields=st.lists(st.tuples(st.sampled_from(KEYS), leaf_patterns), min_size=4, max_size=8),
    data=st.data(),
)
def test_four_to_eight_fields_need_every_field(fields, data):
    # The matcher has shortcuts for one, two and three fields and a loop from four on: a pattern
    # of N >= 4 fields matches an event exactly when every one of its fields does on its own.
    pattern = dict(fields)
    assume(len(pattern) >= 4)
    compiled = _compiled(pattern)
    event = data.draw(events_like(pattern))
    each = [reference_matches({key: sub}, event) for key, sub in pattern.items()]
    assert compiled.matches(event) is all(each)
    assert compiled.matches(event) is reference_matches(pattern, event)


@pytest.mark.parametrize("size", range(1, 9))
def test_a_pattern_of_n_fields_matches_only_with_all_n(size):
    pattern = {key: [key] for key in KEYS[:size]}
    full = {key: key for key in KEYS[:size]}
    compiled = compile(pattern)
    assert compiled.matches(full) and reference_matches(pattern, full)
    for missing in KEYS[:size]:
        # each field in turn is the one that fails: first, middle and last alike
        event = {**full, missing: "no"}
        assert not compiled.matches(event) and not reference_matches(pattern, event)
        assert compiled.explain(event) == f'{missing}: "no" is not one of ["{missing}"]'


@pytest.mark.parametrize("size", [1, 2, 3, 4, 6])
def test_an_object_node_of_n_fields_is_built_for_n(size):
    # The size-specific closures must each check all their members (a check that returned the
    # first member's answer would pass the one-field tests).
    node = compile({key: [1] for key in KEYS[:size]})._root
    assert isinstance(node, ObjectNode) and len(node.members) == size
    for position in range(size):
        event = {key: 1 for key in KEYS[:size]}
        event[KEYS[position]] = 2
        assert node.match(event) is False
    assert node.match({key: 1 for key in KEYS[:size]}) is True


# -- fixed cases the reference decides, straight from the notes ------------------------------

CASES = [
    # pattern, event, match
    ({"n": [300]}, {"n": 300.0}, True),
    ({"n": [300]}, {"n": "300"}, False),
    ({"n": [1]}, {"n": True}, False),
    ({"n": [None]}, {}, False),
    ({"n": [None]}, {"n": "null"}, False),
    ({"n": [None]}, {"n": []}, False),
    ({"n": [""]}, {"n": None}, False),
    ({"n": [{"exists": True}]}, {"n": None}, True),
    ({"n": [{"exists": True}]}, {"n": []}, False),
    ({"n": [{"exists": True}]}, {"n": {"x": 1}}, False),
    ({"n": [{"exists": False}]}, {"n": {"x": 1}}, True),
    ({"p": {"n": [{"exists": False}]}}, {}, True),
    ({"p": {"n": [{"exists": False}]}}, {"p": 5}, True),
    ({"n": [{"anything-but": "x"}]}, {}, False),
    ({"n": [{"anything-but": "x"}]}, {"n": None}, True),
    ({"n": [{"anything-but": {"prefix": "a"}}]}, {"n": 7}, True),
    ({"n": [{"anything-but": [1, 2]}]}, {"n": 2.0}, False),
    ({"n": [{"prefix": ""}]}, {"n": 5}, False),
    ({"n": [{"numeric": [">", 0]}]}, {"n": "5"}, False),
    ({"n": [{"wildcard": "*"}]}, {"n": ""}, True),
    ({"n": [{"cidr": "10.0.0.0/8"}]}, {"n": "10.0.0.300"}, False),
    ({"e": {"first": ["Anna"]}}, {"e": [{"first": "Bo"}, {"first": "Anna"}]}, True),
    # one element must match the whole sub-pattern: fields of different elements never combine
    ({"e": {"a": ["x"], "b": ["y"]}}, {"e": [{"a": "x"}, {"b": "y"}]}, False),
    ({"e": {"a": ["x"], "b": [{"exists": False}]}}, {"e": [{"a": "x", "b": 1}, {"a": "x"}]}, True),
    # scalars and empty arrays where an object is due stand for the empty object
    ({"p": {"n": [{"exists": False}]}}, {"p": [5]}, True),
    ({"p": {"n": [{"exists": False}]}}, {"p": [[], {"n": 1}]}, True),
    ({"p": {"n": [{"exists": False}]}}, {"p": [{"n": 1}]}, False),
    ({"$or": [{"a": ["x"]}, {"b": ["y"]}]}, {"b": "y"}, True),
    ({"$or": ["x"]}, {"$or": "x"}, True),
]


@pytest.mark.parametrize(("pattern", "event", "expected"), CASES)
def test_documented_cases(pattern, event, expected):
    assert reference_matches(pattern, event) is expected
    compiled = compile(pattern)
    assert compiled.matches(event) is expected
    assert (compiled._root.explain_value(event, "(event)") is None) is expected


def test_a_value_no_json_parser_makes_is_judged_without_raising():
    # A set is neither an object nor an array: a present leaf that no typed test accepts.
    odd = {"n": frozenset({1})}
    assert compile({"n": [{"exists": True}]}).matches(odd) is True
    assert compile({"n": [1]}).matches(odd) is False
    # not a number, so not one of the numbers excluded: like any value of another type, it passes
    assert compile({"n": [{"anything-but": [1, 2]}]}).matches({"n": {1, 2}}) is True
    assert compile({"n": [{"numeric": [">", 0]}]}).explain(odd) is not None
    # inside an array too, an odd value is itself, not null
    assert compile({"n": [None]}).matches(odd) is False
    assert compile({"n": [None]}).matches({"n": [frozenset({1})]}) is False
    assert compile({"n": [{"exists": True}]}).matches({"n": [frozenset({1})]}) is True
    # a bytearray is unhashable: a literal lookup raises TypeError inside, which is no match
    for literals in (["a"], ["a", "b"]):
        assert compile({"n": literals}).matches({"n": bytearray(b"a")}) is False


def test_exact_keys_of_text_and_of_what_is_no_json_leaf():
    class Text(str):
        pass

    assert exact_key(Text("a")) == exact_key("a") == ("s", "a")
    with pytest.raises(TypeError, match="^exact_key: frozenset is not a JSON leaf value$"):
        exact_key(frozenset())
