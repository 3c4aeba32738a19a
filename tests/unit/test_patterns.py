"""EventBridge pattern matching: every operator, matching and not, plus the structural rules.

Each table row reads: GIVEN this pattern, WHEN this event is matched, THEN this is the answer.
"""

from __future__ import annotations

import pytest

from triggers.rules._intern import Interner
from triggers.rules.patterns import Pattern, compile, compile_text

MISSING = object()  # marks "the field is absent from the event"


def _event(value):
    return {} if value is MISSING else {"f": value}


def _matches(leaf_pattern: list, value) -> bool:
    return compile({"f": leaf_pattern}).matches(_event(value))


def _cases(leaf_pattern, accepted, rejected):
    """Rows for one leaf pattern: the values it must accept and the ones it must reject."""
    return [
        pytest.param(leaf_pattern, v, True, id=_id(f"{leaf_pattern}-accepts-{v!r}"))
        for v in accepted
    ] + [
        pytest.param(leaf_pattern, v, False, id=_id(f"{leaf_pattern}-rejects-{v!r}"))
        for v in rejected
    ]


def _id(text: str) -> str:
    # "::" separates the parts of a pytest node id: an id holding one (an IPv6 address) cannot
    # be selected on the command line, which is how mutmut runs the tests of one mutant.
    return text.replace("::", ": :")


# -- exact values ------------------------------------------------------------------------------

EXACT = [
    *_cases(["x"], ["x"], ["X", "x ", " x", "", None, MISSING, [], {"x": "x"}, '"x"']),
    # numbers compare numerically, never with strings or booleans
    *_cases([300], [300, 300.0, 3e2], ["300", 301, 299.9999, True, None, MISSING]),
    *_cases([300.0], [300], ["300.0"]),
    *_cases(["300"], ["300"], [300, 300.0]),
    *_cases([1], [1, 1.0], [True, "1"]),
    *_cases([0], [0, -0.0], [False, None, ""]),
    *_cases([True], [True], [1, 1.0, "true", False]),
    *_cases([False], [False], [0, "false", None, MISSING]),
    # AWS account numbers and other large integers
    *_cases([123456789012], [123456789012, 123456789012.0], ["123456789012", 123456789013]),
    # comparisons are between IEEE-754 doubles: 2**53 + 1 is the same double as 2**53
    *_cases([9007199254740993], [9007199254740992, 9007199254740993.0], [9007199254740996]),
    *_cases([-1.5, 2], [-1.5, 2.0], [1.5, -2]),
    # JSON inside a string is not parsed
    *_cases(['{"a": 1}'], ['{"a": 1}'], [{"a": 1}, '{"a":1}']),
    # an array of values is ORed
    *_cases(["a", "b", 3], ["a", "b", 3.0], ["c", "3", 4]),
    *_cases(["é", "日本"], ["é", "日本"], ["e", "É"]),
]


@pytest.mark.parametrize(("leaf", "value", "expected"), EXACT)
def test_exact_values(leaf, value, expected):
    assert _matches(leaf, value) is expected


# -- null vs empty vs missing ------------------------------------------------------------------

NULL_EMPTY_MISSING = [
    *_cases([None], [None, [None], ["x", None]], ["null", "", MISSING, [], {}, 0, False]),
    *_cases([""], ["", ["", "x"]], [None, MISSING, [], "null", " "]),
    *_cases(["null"], ["null"], [None, MISSING]),
    *_cases([None, ""], [None, ""], [MISSING, [], "x"]),
]


@pytest.mark.parametrize(("leaf", "value", "expected"), NULL_EMPTY_MISSING)
def test_null_empty_and_missing_are_distinct(leaf, value, expected):
    assert _matches(leaf, value) is expected


# -- prefix / suffix / equals-ignore-case ------------------------------------------------------

STRING_OPERATORS = [
    *_cases(
        [{"prefix": "ab"}],
        ["ab", "abc", ["x", "abz"]],
        ["xab", "Abc", "a", 5, None, True, MISSING, []],
    ),
    *_cases([{"prefix": ""}], ["", "anything"], [0, None, False, MISSING, {}]),
    *_cases([{"prefix": "2017-10-02"}], ["2017-10-02T16:24:49Z"], ["2017-10-03T00:00:00Z"]),
    *_cases(
        [{"prefix": {"equals-ignore-case": "EventB"}}],
        ["eventbridge", "EVENTBRIDGE", "EventB"],
        ["xeventb", "event", 5, None],
    ),
    *_cases(
        [{"suffix": ".png"}],
        ["a.png", ".png", ["a.jpg", "b.png"]],
        ["a.PNG", "a.png ", "png", 5, None, MISSING],
    ),
    *_cases([{"suffix": ""}], ["", "x"], [1, None]),
    *_cases([{"suffix": {"equals-ignore-case": ".PNG"}}], ["a.png", "A.Png"], ["a.jpg", "png"]),
    *_cases(
        [{"equals-ignore-case": "AbC"}],
        ["abc", "ABC", "aBc"],
        ["abcd", "ab", " abc", 5, None, MISSING],
    ),
    *_cases([{"equals-ignore-case": ""}], [""], ["a", None, MISSING]),
    *_cases([{"equals-ignore-case": "Straße"}], ["STRAßE", "straße"], ["strasse"]),
    # operators and literals mix freely in one array
    *_cases(
        ["exact", {"prefix": "pre"}, {"suffix": "suf"}],
        ["exact", "prefix", "a-suf"],
        ["Exact", "x-pre", "suf-x"],
    ),
]


@pytest.mark.parametrize(("leaf", "value", "expected"), STRING_OPERATORS)
def test_string_operators(leaf, value, expected):
    assert _matches(leaf, value) is expected


# -- wildcard ----------------------------------------------------------------------------------

WILDCARDS = [
    *_cases([{"wildcard": "*"}], ["", "anything", "a/b/c"], [5, None, True, MISSING, []]),
    *_cases([{"wildcard": ""}], [""], ["a", "*"]),
    *_cases(
        [{"wildcard": "a*b"}], ["ab", "axxb", "a/b/c/b", "a*b"], ["ba", "abx", "xab", "a", "b"]
    ),
    *_cases(
        [{"wildcard": "incoming/*.csv"}],
        ["incoming/x.csv", "incoming/2024/01/x.csv", "incoming/.csv"],
        ["incoming/x.csv.gz", "a.txt", "x/incoming/x.csv"],
    ),
    *_cases(
        [{"wildcard": "a*b*c"}], ["abc", "aXbYc", "abcbc", "abbc"], ["acb", "ab", "bc", "abcd"]
    ),
    # segments may not overlap: "aba" is too short for "ab*ba"
    *_cases([{"wildcard": "ab*ba"}], ["abba", "abXba", "ababa"], ["aba", "abab"]),
    *_cases(
        [{"wildcard": "*:*:*:event-bus/*"}],
        ["arn:aws:x:event-bus/default"],
        ["arn:aws:event-bus/x"],
    ),
    *_cases([{"wildcard": "*.csv"}], [".csv", "x.csv"], ["x.csvx", "x.CSV"]),
    # escapes: \* is a literal star, \\ a literal backslash
    *_cases([{"wildcard": "a\\*b"}], ["a*b"], ["ab", "axb", "a\\*b"]),
    *_cases([{"wildcard": "a\\\\b"}], ["a\\b"], ["ab", "a\\\\b", "a\\xb"]),
    *_cases([{"wildcard": "\\**"}], ["*", "*abc"], ["abc", ""]),
    *_cases([{"wildcard": "a\\\\*"}], ["a\\", "a\\xyz"], ["a", "axyz"]),
    *_cases([{"wildcard": "日*本"}], ["日本", "日x本"], ["本日"]),
]


@pytest.mark.parametrize(("leaf", "value", "expected"), WILDCARDS)
def test_wildcard(leaf, value, expected):
    assert _matches(leaf, value) is expected


# -- anything-but ------------------------------------------------------------------------------

ANYTHING_BUT = [
    # a missing field never matches; null, booleans and numbers pass a string exclusion
    *_cases(
        [{"anything-but": "x"}],
        ["y", "X", "", None, 5, True, ["x", "y"]],
        ["x", MISSING, [], ["x"], {"a": 1}],
    ),
    *_cases(
        [{"anything-but": ["stopped", "overloaded"]}],
        ["running", None],
        ["stopped", "overloaded", ["stopped"], MISSING],
    ),
    # a numeric exclusion compares numerically and lets strings through
    *_cases([{"anything-but": 300}], [301, "300", None, True], [300, 300.0, MISSING]),
    *_cases(
        [{"anything-but": [100, 200.5]}],
        [150, "100", None, False],
        [100, 100.0, 200.5, [100, 200.5]],
    ),
    *_cases(
        [{"anything-but": {"prefix": "init"}}],
        ["running", "Init", 5, None, True],
        ["init", "initializing", MISSING],
    ),
    *_cases(
        [{"anything-but": {"prefix": ["a", "b"]}}], ["c", "xa", 1, None], ["a1", "b2", ["a", "b"]]
    ),
    *_cases(
        [{"anything-but": {"suffix": ".tmp"}}],
        ["x.csv", ".tm", 7, None],
        ["x.tmp", ".tmp", MISSING],
    ),
    *_cases([{"anything-but": {"suffix": [".tmp", ".bak"]}}], ["x.csv"], ["x.tmp", "x.bak"]),
    *_cases(
        [{"anything-but": {"equals-ignore-case": "Stopped"}}],
        ["running", 1, None],
        ["stopped", "STOPPED", MISSING],
    ),
    *_cases([{"anything-but": {"equals-ignore-case": ["a", "B"]}}], ["c"], ["A", "b"]),
    *_cases(
        [{"anything-but": {"wildcard": "*.tmp"}}],
        ["x.csv", 5, None, False],
        ["x.tmp", ".tmp", MISSING],
    ),
    *_cases([{"anything-but": {"wildcard": ["a*", "*z"]}}], ["bcd", 3], ["abc", "xyz", "az"]),
    # several anything-buts in one array are ORed like everything else
    *_cases([{"anything-but": "a"}, {"anything-but": "b"}], ["a", "b", "c"], [MISSING]),
]


@pytest.mark.parametrize(("leaf", "value", "expected"), ANYTHING_BUT)
def test_anything_but(leaf, value, expected):
    assert _matches(leaf, value) is expected


# -- numeric -----------------------------------------------------------------------------------

NUMERIC = [
    *_cases(
        [{"numeric": [">", 0, "<=", 5]}],
        [0.0001, 1, 5, 5.0, [-1, 3]],
        [0, -0.0, 5.0000001, 6, "3", None, True, MISSING, [], [-1, 6]],
    ),
    *_cases([{"numeric": ["<", 10]}], [9.999, -1e308, -(10**400)], [10, 10.0, 11, "5"]),
    *_cases([{"numeric": [">=", 5]}], [5, 5.0, 1e308, 10**400], [4.999999999, "6", False]),
    *_cases([{"numeric": ["<=", -2]}], [-2, -2.5], [-1.999]),
    *_cases(
        [{"numeric": ["=", 3.018e2]}], [301.8, 301.80000000000001], [301.8000001, "301.8", 301]
    ),
    *_cases([{"numeric": ["=", 0]}], [0, 0.0, -0.0], [False, "0", None]),
    # bounds may come in either order
    *_cases([{"numeric": ["<", 10, ">", 0]}], [5], [0, 10]),
    *_cases([{"numeric": [">=", 5, "<=", 5]}], [5], [4.9999, 5.0001]),
    # full double precision, well beyond the old ±5e9 and six-decimal limits
    *_cases(
        [{"numeric": [">", 5000000000]}], [5000000000.5, 1e10, 2**62], [5000000000, 4999999999.9999]
    ),
    *_cases([{"numeric": [">", 0.1234567]}], [0.1234568, 0.12345670000001], [0.1234567, 0.1234566]),
    *_cases([{"numeric": [">", 1e-7, "<", 2e-7]}], [1.5e-7], [1e-7, 2e-7, 0]),
    # strict bounds are strict at the last bit
    *_cases([{"numeric": ["<", 1]}], [0.9999999999999999], [1.0]),
    *_cases([{"numeric": [">", 9007199254740992]}], [9007199254740994], [9007199254740993]),
]


@pytest.mark.parametrize(("leaf", "value", "expected"), NUMERIC)
def test_numeric(leaf, value, expected):
    assert _matches(leaf, value) is expected


# -- exists ------------------------------------------------------------------------------------

EXISTS = [
    # null is a present leaf; an object, [] or an array of only objects is not a leaf value
    *_cases(
        [{"exists": True}],
        ["x", "", 0, False, None, [None], ["a"], [[1]]],
        [MISSING, [], {}, {"b": 1}, [{"b": 1}], [[]]],
    ),
    *_cases(
        [{"exists": False}],
        [MISSING, [], {}, {"b": 1}, [{"b": 1}]],
        ["x", "", 0, None, [None], [1, {"b": 1}]],
    ),
    # combined with a literal: absent, or equal to "x"
    *_cases(["x", {"exists": False}], ["x", MISSING], ["y", None]),
]


@pytest.mark.parametrize(("leaf", "value", "expected"), EXISTS)
def test_exists(leaf, value, expected):
    assert _matches(leaf, value) is expected


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({}, True),  # the parent is missing
        ({"a": 5}, True),  # the parent is not an object
        ({"a": []}, True),
        ({"a": {}}, True),
        ({"a": {"c": 1}}, True),
        ({"a": {"b": None}}, False),
        ({"a": {"b": 1}}, False),
        ({"a": {"b": {"c": 1}}}, True),  # b is an object, not a leaf
    ],
)
def test_exists_false_below_a_missing_or_odd_parent(event, expected):
    # GIVEN a nested exists:false WHEN the parent is missing or not an object THEN it holds
    assert compile({"a": {"b": [{"exists": False}]}}).matches(event) is expected


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({}, False),
        ({"a": 5}, False),
        ({"a": {"b": None}}, True),
        ({"a": [{"b": 0}]}, True),
        ({"a": {"b": []}}, False),
    ],
)
def test_exists_true_nested(event, expected):
    assert compile({"a": {"b": [{"exists": True}]}}).matches(event) is expected


# -- cidr --------------------------------------------------------------------------------------

CIDR = [
    *_cases(
        [{"cidr": "10.0.0.0/24"}],
        ["10.0.0.0", "10.0.0.1", "10.0.0.255", ["1.1.1.1", "10.0.0.9"]],
        [
            "10.0.1.0",
            "9.255.255.255",
            "10.0.0.256",
            "10.0.0",
            "010.0.0.1",
            "10.0.0.1/24",
            " 10.0.0.1",
            "not-an-ip",
            "",
            167772161,
            None,
            MISSING,
            "::ffff:10.0.0.1",
        ],
    ),
    # host bits in the pattern are ignored: 10.0.0.7/24 is the block 10.0.0.0/24
    *_cases([{"cidr": "10.0.0.7/24"}], ["10.0.0.200"], ["10.0.1.7"]),
    *_cases([{"cidr": "192.168.1.5/32"}], ["192.168.1.5"], ["192.168.1.4", "192.168.1.6"]),
    *_cases([{"cidr": "0.0.0.0/0"}], ["0.0.0.0", "255.255.255.255"], ["::1", "x"]),
    *_cases(
        [{"cidr": "2001:db8::/32"}],
        ["2001:db8::1", "2001:DB8:0:0:0:0:0:ff", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"],
        [
            "2001:db9::1",
            "2001:db7:ffff::",
            "10.0.0.1",
            "gggg::1",
            "2001:db8::1::2",
            "2001:db8::/32",
            5,
        ],
    ),
    *_cases([{"cidr": "::/0"}], ["::", "::1", "::ffff:10.0.0.1"], ["10.0.0.1"]),
    *_cases([{"cidr": "fe80::/10"}], ["fe80::1%eth0", "febf::1"], ["fec0::1"]),
]


@pytest.mark.parametrize(("leaf", "value", "expected"), CIDR)
def test_cidr(leaf, value, expected):
    assert _matches(leaf, value) is expected


# -- structure: nesting, ignored fields, case --------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        pytest.param(
            {"a": ["x"], "b": ["y"]},
            {"a": "x", "b": "y", "c": "ignored"},
            True,
            id="fields-are-anded",
        ),
        pytest.param({"a": ["x"], "b": ["y"]}, {"a": "x", "b": "z"}, False, id="one-field-fails"),
        pytest.param({"a": ["x"], "b": ["y"]}, {"a": "x"}, False, id="one-field-missing"),
        pytest.param({"A": ["x"]}, {"a": "x"}, False, id="field-names-are-case-sensitive"),
        pytest.param({"a": {"b": ["x"]}}, {"a": {"b": "x"}}, True, id="nested"),
        pytest.param({"a": {"b": ["x"]}}, {"b": "x"}, False, id="nesting-must-match"),
        pytest.param({"a": {"b": ["x"]}}, {"a": "x"}, False, id="parent-is-a-scalar"),
        pytest.param(
            {"a": {"b": ["x"]}}, {"a": '{"b": "x"}'}, False, id="json-in-string-not-parsed"
        ),
        # deliberately unsupported: AWS's dotted-key quirk
        pytest.param({"a": {"b": ["x"]}}, {"a.b": "x"}, False, id="dotted-key-quirk-unsupported"),
        pytest.param({"a.b": ["x"]}, {"a.b": "x"}, True, id="a-dot-in-a-field-name-is-literal"),
        pytest.param({"a.b": ["x"]}, {"a": {"b": "x"}}, False, id="dot-does-not-descend"),
        pytest.param(
            {
                "detail": {"state": ["running"], "count": [{"numeric": [">", 1]}]},
                "source": [{"prefix": "aws."}],
            },
            {"source": "aws.ec2", "detail": {"state": "running", "count": 2}},
            True,
            id="mixed-depths",
        ),
    ],
)
def test_structure(pattern, event, expected):
    assert compile(pattern).matches(event) is expected


# -- arrays in events --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        pytest.param({"a": ["x"]}, {"a": ["y", "x"]}, True, id="any-element"),
        pytest.param({"a": ["x"]}, {"a": ["y", "z"]}, False, id="no-element"),
        pytest.param({"a": ["x"]}, {"a": [["y"], ["x"]]}, True, id="nested-arrays-flattened"),
        pytest.param({"a": ["x", "q"]}, {"a": ["y", "q"]}, True, id="non-empty-intersection"),
        pytest.param({"a": ["x"]}, {"a": [{"b": "x"}]}, False, id="objects-are-not-leaf-values"),
        pytest.param(
            {"employees": {"firstName": ["Anna"]}},
            {"employees": [{"firstName": "John"}, {"firstName": "Anna"}]},
            True,
            id="array-of-objects-is-crushed",
        ),
        pytest.param(
            {"employees": {"first": ["Anna"], "last": ["Smith"]}},
            {"employees": [{"first": "Anna", "last": "Jones"}, {"first": "John", "last": "Smith"}]},
            False,
            id="fields-from-different-elements-do-not-combine",
        ),
        pytest.param(
            {"employees": {"first": ["Anna"], "last": ["Smith"]}},
            {"employees": [{"first": "John", "last": "Smith"}, {"first": "Anna", "last": "Smith"}]},
            True,
            id="one-element-satisfies-all",
        ),
        pytest.param(
            {"a": {"b": {"c": ["x"], "d": ["y"]}}},
            {"a": [{"b": [{"c": "x", "d": "n"}, {"c": "n", "d": "y"}]}]},
            False,
            id="consistency-holds-at-depth",
        ),
        pytest.param(
            {"a": {"b": {"c": ["x"], "d": ["y"]}}},
            {"a": [{"b": [{"c": "n"}]}, {"b": [{"c": "x", "d": ["q", "y"]}]}]},
            True,
            id="deep-arrays-one-consistent-path",
        ),
        pytest.param(
            {"a": {"b": ["x"]}, "c": ["y"]},
            {"a": [{"b": "n"}, {"b": "x"}], "c": ["y"]},
            True,
            id="different-arrays-are-independent",
        ),
        pytest.param(
            {"a": {"b": ["x"]}}, {"a": [[{"b": "x"}]]}, True, id="nested-arrays-of-objects"
        ),
        pytest.param({"a": {"b": ["x"]}}, {"a": []}, False, id="empty-array-parent"),
        pytest.param({"a": {"b": ["x"]}}, {"a": ["x"]}, False, id="array-of-scalars-parent"),
        pytest.param(
            {"r": {"$or": [{"x": ["1"]}, {"y": ["2"]}], "z": ["3"]}},
            {"r": [{"x": "1", "z": "0"}, {"y": "2", "z": "3"}]},
            True,
            id="or-inside-array-element",
        ),
        pytest.param(
            {"r": {"x": ["1"], "z": ["3"]}},
            {"r": [{"x": "1", "z": "0"}, {"y": "2", "z": "3"}]},
            False,
            id="and-inside-array-element",
        ),
    ],
)
def test_arrays_in_events(pattern, event, expected):
    assert compile(pattern).matches(event) is expected


# -- $or ---------------------------------------------------------------------------------------

OR_SIMPLE = {
    "source": ["aws.cloudwatch"],
    "$or": [{"metricName": ["CPU", "Latency"]}, {"namespace": ["AWS/EC2"]}],
}
OR_NESTED = {
    "source": ["aws.cloudwatch"],
    "$or": [
        {"metricName": ["CPU"]},
        {
            "metricType": ["MetricType"],
            "namespace": ["AWS/EC2"],
            "$or": [{"metricId": [1234]}, {"spaceId": [1000]}],
        },
        {"scope": ["Service"]},
    ],
}


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        (OR_SIMPLE, {"source": "aws.cloudwatch", "metricName": "CPU"}, True),
        (OR_SIMPLE, {"source": "aws.cloudwatch", "namespace": "AWS/EC2"}, True),
        (OR_SIMPLE, {"source": "aws.cloudwatch", "namespace": "AWS/ES"}, False),
        (OR_SIMPLE, {"metricName": "CPU"}, False),  # the ANDed field is still required
        (OR_NESTED, {"source": "aws.cloudwatch", "scope": "Service"}, True),
        (
            OR_NESTED,
            {
                "source": "aws.cloudwatch",
                "metricType": "MetricType",
                "namespace": "AWS/EC2",
                "spaceId": 1000,
            },
            True,
        ),
        (
            OR_NESTED,
            {
                "source": "aws.cloudwatch",
                "metricType": "MetricType",
                "namespace": "AWS/EC2",
                "metricId": 1234.0,
            },
            True,
        ),
        (
            OR_NESTED,
            {"source": "aws.cloudwatch", "metricType": "MetricType", "namespace": "AWS/EC2"},
            False,
        ),
        (
            OR_NESTED,
            {"source": "aws.cloudwatch", "metricType": "MetricType", "spaceId": 1000},
            False,
        ),
        # $or inside a nested object applies to that object
        ({"detail": {"$or": [{"a": ["1"]}, {"b": ["2"]}]}}, {"detail": {"b": "2"}}, True),
        ({"detail": {"$or": [{"a": ["1"]}, {"b": ["2"]}]}}, {"b": "2"}, False),
        # parallel $ors at different levels are ANDed
        (
            {"$or": [{"a": ["1"]}, {"b": ["2"]}], "d": {"$or": [{"c": ["3"]}, {"e": ["4"]}]}},
            {"a": "1", "d": {"e": "4"}},
            True,
        ),
        (
            {"$or": [{"a": ["1"]}, {"b": ["2"]}], "d": {"$or": [{"c": ["3"]}, {"e": ["4"]}]}},
            {"a": "1", "d": {"f": "4"}},
            False,
        ),
        # an alternative may be satisfied by absence
        ({"$or": [{"a": [{"exists": False}]}, {"a": ["x"]}]}, {}, True),
        ({"$or": [{"a": [{"exists": False}]}, {"a": ["x"]}]}, {"a": "y"}, False),
    ],
)
def test_or(pattern, event, expected):
    assert compile(pattern).matches(event) is expected


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        # fewer than two objects, or not objects: "$or" is an ordinary field name
        ({"$or": ["x"]}, {"$or": "x"}, True),
        ({"$or": ["x"]}, {"x": "x"}, False),
        ({"$or": ["x", "y"]}, {"$or": "y"}, True),
        ({"$or": {"a": ["1"]}}, {"$or": {"a": "1"}}, True),
        ({"$or": {"a": ["1"]}}, {"a": "1"}, False),
        ({"$or": [{"prefix": "a"}]}, {"$or": "abc"}, True),
        ({"$or": [{"prefix": "a"}]}, {"prefix": "a"}, False),
    ],
)
def test_or_with_other_values_is_an_ordinary_field(pattern, event, expected):
    assert compile(pattern).matches(event) is expected


# -- the compiled object -----------------------------------------------------------------------


def test_compile_returns_a_pattern_that_keeps_its_source():
    source = {"a": ["x"], "b": {"c": [{"numeric": [">", 1.5]}, None, "é"]}}
    pattern = compile(source)
    assert isinstance(pattern, Pattern)
    # Kept as compact JSON text (memory per rule); each read is an equal, separate copy.
    assert pattern.source == source
    assert pattern.source is not pattern.source
    assert pattern.text == '{"a":["x"],"b":{"c":[{"numeric":[">",1.5]},null,"é"]}}'
    assert compile_text(pattern.text).source == source
    assert "a" in repr(pattern)


def test_equal_patterns_of_one_load_are_compiled_once():
    intern = Interner()
    first = compile({"a": ["x"]}, intern)
    assert compile({"a": ["x"]}, intern) is first
    assert compile_text(first.text, intern) is first
    assert compile({"a": ["y"]}, intern) is not first
    assert compile({"a": ["x"]}) is not first  # no sharing outside a load


@pytest.mark.parametrize("event", [None, "x", 5, [], [{"a": "y"}]])
def test_non_object_events_do_not_match_a_required_field(event):
    assert compile({"a": ["x"]}).matches(event) is False


def test_an_array_event_is_matched_element_by_element():
    assert compile({"a": ["x"]}).matches([{"a": "y"}, {"a": "x"}]) is True


def test_read_only_mappings_are_events_too():
    from types import MappingProxyType

    event = MappingProxyType({"a": MappingProxyType({"b": ("x", "y")})})
    assert compile({"a": {"b": ["y"]}}).matches(event) is True
    assert compile({"a": {"b": ["z"]}}).matches(event) is False


def test_matching_does_not_modify_the_event():
    event = {"a": [{"b": "x"}, {"b": "y"}], "c": None}
    snapshot = repr(event)
    pattern = compile({"a": {"b": ["y"]}, "c": [None]})
    assert pattern.matches(event) is True
    assert pattern.explain(event) is None
    assert repr(event) == snapshot


def test_patterns_from_yaml_like_subclasses_compile_as_builtins():
    # GIVEN a pattern made of str/float subclasses, tuples and an ordered mapping (as YAML
    # loaders may produce) WHEN compiled THEN it behaves like the plain JSON pattern
    from collections import OrderedDict

    class Text(str):
        pass

    class Number(float):
        pass

    source = OrderedDict(
        [(Text("a"), (Text("x"), Number(1.5))), ("b", [{"numeric": (">", Number(0))}])]
    )
    pattern = compile(source)
    assert pattern.source == {"a": ["x", 1.5], "b": [{"numeric": [">", 0.0]}]}  # plain JSON
    assert pattern.matches({"a": 1.5, "b": 1}) is True
    assert pattern.matches({"a": "x", "b": 0}) is False
    assert pattern.anchors() == [(("a",), frozenset({("s", "x"), ("n", 1.5)}))]


ABSENT_B = {"a": {"b": [{"exists": False}]}}
ABSENT_B_WITH_C = {"a": {"b": [{"exists": False}], "c": [2]}}


@pytest.mark.parametrize(
    ("pattern", "event", "expected"),
    [
        (ABSENT_B, {"a": [{"b": 1}, {"c": 2}]}, True),  # the second element has no b
        (ABSENT_B, {"a": [{"b": 1}, {"b": 2}]}, False),
        (ABSENT_B_WITH_C, {"a": [{"b": 1, "c": 2}, {"c": 3}]}, False),  # the c == 2 element has b
        (ABSENT_B_WITH_C, {"a": [{"b": 1, "c": 3}, {"c": 2}]}, True),
    ],
)
def test_exists_false_is_judged_in_the_same_array_element(pattern, event, expected):
    # GIVEN a sub-pattern with an absence test, applied to an array of objects
    # THEN a single element must satisfy the whole sub-pattern, absence included
    assert compile(pattern).matches(event) is expected


def test_pattern_is_immutable():
    pattern = compile({"a": ["x"]})
    with pytest.raises(AttributeError):
        pattern.source = {}
