"""explain(): None when the event matches, otherwise a short reason naming the failing field."""

from __future__ import annotations

import pytest

from triggers.rules.patterns import compile

STORAGE = compile(
    {
        "data": {
            "bucket": ["raw-data"],
            "name": [{"wildcard": "incoming/*.csv"}],
            "size": [{"numeric": [">", 0]}],
        }
    }
)


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (
            {"data": {"bucket": "other", "name": "incoming/a.csv", "size": 1}},
            'data.bucket: "other" is not one of ["raw-data"]',
        ),
        (
            {"data": {"bucket": "raw-data", "name": "a.txt", "size": 1}},
            'data.name: "a.txt" does not match wildcard "incoming/*.csv"',
        ),
        ({"data": {"bucket": "raw-data", "name": "incoming/a.csv"}}, "data.size: missing"),
        (
            {"data": {"bucket": "raw-data", "name": "incoming/a.csv", "size": "5"}},
            'data.size: "5" does not match numeric [">", 0]',
        ),
        # the first failing field, in pattern order
        (
            {"data": {"bucket": "other", "name": "a.txt"}},
            'data.bucket: "other" is not one of ["raw-data"]',
        ),
        ({}, "data.bucket: missing"),
        ({"data": "flat"}, "data.bucket: missing"),
        ({"data": {"bucket": {"nested": 1}}}, "data.bucket: is an object, not a value"),
        ({"data": {"bucket": []}}, "data.bucket: missing (no values in [])"),
        (
            {"data": {"bucket": ["a", "b"]}},
            'data.bucket: no element of ["a", "b"] matches ["raw-data"]',
        ),
        (
            {"data": [{"bucket": "raw-data", "name": "a.txt"}, {"bucket": "x"}]},
            'data: no element matches (first: data.name: "a.txt" does not match wildcard "incoming/*.csv")',
        ),
    ],
)
def test_explain_names_the_first_failing_field(event, reason):
    assert STORAGE.matches(event) is False
    assert STORAGE.explain(event) == reason


def test_explain_is_none_when_the_event_matches():
    event = {"data": {"bucket": "raw-data", "name": "incoming/2024/a.csv", "size": 10}}
    assert STORAGE.matches(event) is True
    assert STORAGE.explain(event) is None


@pytest.mark.parametrize(
    ("pattern", "event", "reason"),
    [
        (
            {"source": ["s"], "$or": [{"a": ["1"]}, {"b": [{"prefix": "x"}]}]},
            {"source": "s", "b": "y"},
            "none of the $or alternatives matched (first: a: missing)",
        ),
        (
            {"source": ["s"], "$or": [{"a": ["1"]}, {"b": [{"prefix": "x"}]}]},
            {"source": "t", "a": "1"},
            'source: "t" is not one of ["s"]',
        ),
        (
            {"d": {"$or": [{"a": ["1"]}, {"$or": [{"b": ["2"]}, {"c": ["3"]}]}]}},
            {"d": {"a": "0"}},
            'none of the $or alternatives matched (first: d.a: "0" is not one of ["1"])',
        ),
        ({"a": [{"exists": False}]}, {"a": None}, "a: null is present but must not exist"),
        ({"a": [{"exists": False}]}, {"a": [1, 2]}, "a: [1, 2] is present but must not exist"),
        ({"a": [{"exists": True}]}, {"a": {}}, "a: is an object, not a value"),
        ({"a": [{"exists": True}]}, {}, "a: missing"),
        ({"a": [{"anything-but": "x"}]}, {"a": "x"}, 'a: "x" does not match anything-but "x"'),
        (
            {"a": [{"anything-but": {"prefix": ["p", "q"]}}]},
            {"a": "px"},
            'a: "px" does not match anything-but prefix ["p", "q"]',
        ),
        (
            {"a": [{"cidr": "10.0.0.0/8"}]},
            {"a": "11.0.0.1"},
            'a: "11.0.0.1" does not match cidr "10.0.0.0/8"',
        ),
        ({"a": [{"numeric": ["=", 5]}]}, {"a": 6}, 'a: 6 does not match numeric ["=", 5]'),
        (
            {"a": [{"prefix": {"equals-ignore-case": "ab"}}]},
            {"a": "x"},
            'a: "x" does not match prefix (ignoring case) "ab"',
        ),
        ({"a": [{"suffix": ".csv"}]}, {"a": 5}, 'a: 5 does not match suffix ".csv"'),
        (
            {"a": [{"equals-ignore-case": "ab"}]},
            {"a": "abc"},
            'a: "abc" does not match equals-ignore-case "ab"',
        ),
        ({"a": [300, None, True]}, {"a": "300"}, 'a: "300" is not one of [300, null, true]'),
        (
            {"a": ["x", {"prefix": "y"}, {"numeric": [">", 1, "<=", 2]}]},
            {"a": "q"},
            'a: "q" does not match any of: "x", prefix "y", numeric [">", 1, "<=", 2]',
        ),
        (
            {"a": ["x"]},
            [{"a": "y"}],
            '(event): no element matches (first: a: "y" is not one of ["x"])',
        ),
        ({"a": ["x"]}, None, "a: missing"),
    ],
)
def test_explain_reasons(pattern, event, reason):
    compiled = compile(pattern)
    assert compiled.matches(event) is False
    assert compiled.explain(event) == reason


def test_long_values_are_shortened_in_reasons():
    reason = compile({"a": ["x"]}).explain({"a": "y" * 500})
    assert reason is not None
    assert reason.startswith('a: "yyy')
    assert len(reason) < 150 and "…" in reason
