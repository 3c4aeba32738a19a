"""What `explain` tells a user about each operator (`triggers plan`, `triggers test-pattern`):
the words are the interface, so they are asserted whole. Found by mutation testing: each of
these descriptions once survived being emptied or garbled."""

from __future__ import annotations

import pytest

from triggers.rules._pattern_conditions import Exists, Numeric
from triggers.rules.patterns import PatternError, compile


@pytest.mark.parametrize(
    ("pattern", "value", "reason"),
    [
        ({"suffix": ".csv"}, "a.txt", 'n: "a.txt" does not match suffix ".csv"'),
        (
            {"suffix": {"equals-ignore-case": ".CSV"}},
            "a.txt",
            'n: "a.txt" does not match suffix (ignoring case) ".CSV"',
        ),
        (
            {"prefix": {"equals-ignore-case": "AB"}},
            "x",
            'n: "x" does not match prefix (ignoring case) "AB"',
        ),
        ({"anything-but": 5}, 5, "n: 5 does not match anything-but 5.0"),
        ({"anything-but": [1, 2]}, 1, "n: 1 does not match anything-but [1.0, 2.0]"),
        ({"anything-but": ["a", "b"]}, "a", 'n: "a" does not match anything-but ["a", "b"]'),
        (
            {"anything-but": {"prefix": "a"}},
            "ab",
            'n: "ab" does not match anything-but prefix "a"',
        ),
        ({"numeric": [">=", 1, "<", 5]}, 9, 'n: 9 does not match numeric [">=", 1, "<", 5]'),
        ({"numeric": ["=", 2]}, 9, 'n: 9 does not match numeric ["=", 2]'),
        ({"exists": False}, 1, "n: 1 is present but must not exist"),
    ],
)
def test_a_failed_operator_is_described(pattern, value, reason):
    assert compile({"n": [pattern]}).explain({"n": value}) == reason


def test_several_conditions_are_listed_each_in_its_words():
    pattern = compile({"n": [{"exists": False}, {"prefix": "a"}]})
    assert pattern.explain({"n": "b"}) == 'n: "b" does not match any of: exists false, prefix "a"'
    assert Exists(True).describe() == "exists true"


@pytest.mark.parametrize(
    ("numeric", "words"),
    [
        (Numeric(lower=2.0, lower_inclusive=True, upper=2.0, upper_inclusive=True), '["=", 2.0]'),
        (Numeric(lower=1.0), '[">", 1.0]'),
        (Numeric(lower=1.0, lower_inclusive=True), '[">=", 1.0]'),
        (Numeric(upper=5.0), '["<", 5.0]'),
        (Numeric(upper=5.0, upper_inclusive=True), '["<=", 5.0]'),
        (Numeric(lower=1.0, upper=5.0, upper_inclusive=True), '[">", 1.0, "<=", 5.0]'),
    ],
)
def test_a_numeric_range_built_without_its_source_terms_describes_its_bounds(numeric, words):
    assert numeric.describe() == f"numeric {words}"


@pytest.mark.parametrize(
    ("value", "kind"),
    [(False, "false"), (True, "true"), (None, "null"), (1.5, "1.5"), ([], "[]")],
)
def test_a_wrong_operand_is_named_in_the_validation_error(value, kind):
    with pytest.raises(PatternError) as info:
        compile({"n": [{"prefix": value}]})
    assert str(info.value) == (
        f'n.0.prefix: prefix must be a string or {{"equals-ignore-case": string}}, not {kind}'
    )


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (False, "a pattern must be an object, not false"),
        ({"a": False}, "a: must be an object or an array of match values, not false"),
        ({"a": True}, "a: must be an object or an array of match values, not true"),
        (
            {"a": [frozenset()]},
            "a.0: a match value must be a string, a number, true, false, null or an operator"
            " object, not a frozenset",
        ),
    ],
)
def test_a_wrong_pattern_node_is_named_by_its_json_kind(pattern, message):
    with pytest.raises(PatternError) as info:
        compile(pattern)
    assert str(info.value) == message
