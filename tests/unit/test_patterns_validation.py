"""Pattern validation: every rule, with the exact path and message of each problem."""

from __future__ import annotations

import pytest

from triggers.errors import PatternError, TriggersError
from triggers.rules.patterns import compile

ANY_OP = "a match value must be a string, a number, true, false, null or an operator object"
ANYTHING_BUT_FORMS = (
    "anything-but must be a string, a number, an array of strings or of numbers, or an object"
    ' such as {"prefix": ...}'
)
CIDR_HINT = '(expected e.g. "10.0.0.0/24" or "2001:db8::/32")'


def _problems(pattern) -> list:
    with pytest.raises(PatternError) as caught:
        compile(pattern)
    return caught.value.problems


INVALID = [
    # structure
    ([], [((), "a pattern must be an object, not an array")]),
    ("x", [((), "a pattern must be an object, not a string")]),
    (None, [((), "a pattern must be an object, not null")]),
    ({}, [((), "empty objects are not allowed")]),
    ({"a": {}}, [(("a",), "empty objects are not allowed")]),
    ({"a": "v"}, [(("a",), "must be an object or an array of match values, not a string")]),
    ({"a": 5}, [(("a",), "must be an object or an array of match values, not a number")]),
    ({"a": None}, [(("a",), "must be an object or an array of match values, not null")]),
    ({"a": True}, [(("a",), "must be an object or an array of match values, not true")]),
    (
        {"a": {"b": "x"}},
        [(("a", "b"), "must be an object or an array of match values, not a string")],
    ),
    ({"a": []}, [(("a",), "empty arrays are not allowed")]),
    ({"a": [["x"]]}, [(("a", 0), f"{ANY_OP}, not an array")]),
    ({"a": ["x", ["y"]]}, [(("a", 1), f"{ANY_OP}, not an array")]),
    ({5: ["x"]}, [(("5",), "field names must be strings, not a number")]),
    # numbers in patterns must be doubles
    ({"a": [float("nan")]}, [(("a", 0), "NaN is not a finite number")]),
    ({"a": [float("inf")]}, [(("a", 0), "Infinity is not a finite number")]),
    (
        {"a": [10**400]},
        [(("a", 0), "1" + "0" * 38 + "… is too large to be a JSON number (a double)")],
    ),
    # operator objects
    ({"a": [{}]}, [(("a", 0), "an operator object must have exactly one key, not 0")]),
    (
        {"a": [{"prefix": "a", "suffix": "b"}]},
        [(("a", 0), "an operator object must have exactly one key, not 2")],
    ),
    ({"a": [{"foo": 1}]}, [(("a", 0), 'unknown operator "foo"')]),
    ({"a": [{"Prefix": "x"}]}, [(("a", 0), 'unknown operator "Prefix"')]),  # case-sensitive
    ({"a": [{"exact": "x"}]}, [(("a", 0), 'unknown operator "exact"')]),
    # prefix / suffix
    (
        {"a": [{"prefix": 5}]},
        [(("a", 0, "prefix"), 'prefix must be a string or {"equals-ignore-case": string}, not 5')],
    ),
    (
        {"a": [{"prefix": ["a"]}]},
        [
            (
                ("a", 0, "prefix"),
                'prefix must be a string or {"equals-ignore-case": string}, not ["a"]',
            )
        ],
    ),
    (
        {"a": [{"prefix": {"other": "x"}}]},
        [
            (
                ("a", 0, "prefix"),
                'prefix must be a string or {"equals-ignore-case": string}, not {"other": "x"}',
            )
        ],
    ),
    (
        {"a": [{"prefix": {"equals-ignore-case": 5}}]},
        [
            (
                ("a", 0, "prefix", "equals-ignore-case"),
                "equals-ignore-case must be a string, not a number",
            )
        ],
    ),
    (
        {"a": [{"suffix": None}]},
        [
            (
                ("a", 0, "suffix"),
                'suffix must be a string or {"equals-ignore-case": string}, not null',
            )
        ],
    ),
    (
        {"a": [{"suffix": {"equals-ignore-case": ["x"]}}]},
        [
            (
                ("a", 0, "suffix", "equals-ignore-case"),
                "equals-ignore-case must be a string, not an array",
            )
        ],
    ),
    # equals-ignore-case
    (
        {"a": [{"equals-ignore-case": ["a"]}]},
        [(("a", 0, "equals-ignore-case"), "equals-ignore-case must be a string, not an array")],
    ),
    (
        {"a": [{"equals-ignore-case": None}]},
        [(("a", 0, "equals-ignore-case"), "equals-ignore-case must be a string, not null")],
    ),
    # wildcard
    ({"a": [{"wildcard": 5}]}, [(("a", 0, "wildcard"), "wildcard must be a string, not a number")]),
    (
        {"a": [{"wildcard": "a**b"}]},
        [(("a", 0, "wildcard"), 'consecutive wildcard characters are not allowed in "a**b"')],
    ),
    (
        {"a": [{"wildcard": "**"}]},
        [(("a", 0, "wildcard"), 'consecutive wildcard characters are not allowed in "**"')],
    ),
    (
        {"a": [{"wildcard": "a\\b"}]},
        [
            (
                ("a", 0, "wildcard"),
                'invalid escape character at position 1 in wildcard "a\\\\b" (only \\* and \\\\ are allowed)',
            )
        ],
    ),
    (
        {"a": [{"wildcard": "ab\\"}]},
        [
            (
                ("a", 0, "wildcard"),
                'invalid escape character at position 2 in wildcard "ab\\\\" (only \\* and \\\\ are allowed)',
            )
        ],
    ),
    (
        {"a": [{"wildcard": "\\n"}]},
        [
            (
                ("a", 0, "wildcard"),
                'invalid escape character at position 0 in wildcard "\\\\n" (only \\* and \\\\ are allowed)',
            )
        ],
    ),
    # anything-but
    (
        {"a": [{"anything-but": None}]},
        [(("a", 0, "anything-but"), f"{ANYTHING_BUT_FORMS}, not null")],
    ),
    (
        {"a": [{"anything-but": True}]},
        [(("a", 0, "anything-but"), f"{ANYTHING_BUT_FORMS}, not true")],
    ),
    ({"a": [{"anything-but": []}]}, [(("a", 0, "anything-but"), "empty arrays are not allowed")]),
    (
        {"a": [{"anything-but": ["a", None]}]},
        [
            (
                ("a", 0, "anything-but", 1),
                "null is not allowed in anything-but (only strings or numbers)",
            )
        ],
    ),
    (
        {"a": [{"anything-but": [None, 1]}]},
        [
            (
                ("a", 0, "anything-but", 0),
                "null is not allowed in anything-but (only strings or numbers)",
            )
        ],
    ),
    (
        {"a": [{"anything-but": ["a", True]}]},
        [
            (
                ("a", 0, "anything-but", 1),
                "true is not allowed in anything-but (only strings or numbers)",
            )
        ],
    ),
    (
        {"a": [{"anything-but": [["a"]]}]},
        [
            (
                ("a", 0, "anything-but", 0),
                "an array is not allowed in anything-but (only strings or numbers)",
            )
        ],
    ),
    (
        {"a": [{"anything-but": ["a", 1]}]},
        [
            (
                ("a", 0, "anything-but"),
                "anything-but arrays must be all strings or all numbers, not a mix",
            )
        ],
    ),
    (
        {"a": [{"anything-but": {"prefix": ""}}]},
        [(("a", 0, "anything-but", "prefix"), "anything-but prefix must not be empty")],
    ),
    (
        {"a": [{"anything-but": {"suffix": ""}}]},
        [(("a", 0, "anything-but", "suffix"), "anything-but suffix must not be empty")],
    ),
    (
        {"a": [{"anything-but": {"suffix": ["x", ""]}}]},
        [(("a", 0, "anything-but", "suffix", 1), "anything-but suffix must not be empty")],
    ),
    (
        {"a": [{"anything-but": {"prefix": {"equals-ignore-case": "x"}}}]},
        [
            (
                ("a", 0, "anything-but", "prefix"),
                "anything-but prefix must be a string or an array of strings, not an object",
            )
        ],
    ),
    (
        {"a": [{"anything-but": {"numeric": [">", 1]}}]},
        [(("a", 0, "anything-but"), 'unsupported anything-but operator "numeric"')],
    ),
    (
        {"a": [{"anything-but": {"exists": True}}]},
        [(("a", 0, "anything-but"), 'unsupported anything-but operator "exists"')],
    ),
    (
        {"a": [{"anything-but": {"prefix": "a", "suffix": "b"}}]},
        [(("a", 0, "anything-but"), "an anything-but object must have exactly one key, not 2")],
    ),
    (
        {"a": [{"anything-but": {}}]},
        [(("a", 0, "anything-but"), "an anything-but object must have exactly one key, not 0")],
    ),
    (
        {"a": [{"anything-but": {"wildcard": "a**"}}]},
        [
            (
                ("a", 0, "anything-but", "wildcard"),
                'consecutive wildcard characters are not allowed in "a**"',
            )
        ],
    ),
    (
        {"a": [{"anything-but": {"wildcard": ["ok*", "a\\x"]}}]},
        [
            (
                ("a", 0, "anything-but", "wildcard", 1),
                'invalid escape character at position 1 in wildcard "a\\\\x" (only \\* and \\\\ are allowed)',
            )
        ],
    ),
    (
        {"a": [{"anything-but": {"prefix": []}}]},
        [(("a", 0, "anything-but", "prefix"), "empty arrays are not allowed")],
    ),
    (
        {"a": [{"anything-but": {"equals-ignore-case": 5}}]},
        [
            (
                ("a", 0, "anything-but", "equals-ignore-case"),
                "anything-but equals-ignore-case must be a string or an array of strings, not a number",
            )
        ],
    ),
    (
        {"a": [{"anything-but": {"equals-ignore-case": ["a", None]}}]},
        [
            (
                ("a", 0, "anything-but", "equals-ignore-case", 1),
                "anything-but equals-ignore-case values must be strings, not null",
            )
        ],
    ),
    # numeric
    (
        {"a": [{"numeric": 5}]},
        [
            (
                ("a", 0, "numeric"),
                'numeric must be a non-empty array such as [">", 0, "<=", 5], not 5',
            )
        ],
    ),
    (
        {"a": [{"numeric": []}]},
        [
            (
                ("a", 0, "numeric"),
                'numeric must be a non-empty array such as [">", 0, "<=", 5], not []',
            )
        ],
    ),
    ({"a": [{"numeric": [">"]}]}, [(("a", 0, "numeric", 0), '">" must be followed by a number')]),
    ({"a": [{"numeric": ["!=", 5]}]}, [(("a", 0, "numeric", 0), 'unknown numeric operator "!="')]),
    ({"a": [{"numeric": [5, ">"]}]}, [(("a", 0, "numeric", 0), "unknown numeric operator 5")]),
    ({"a": [{"numeric": [">", "5"]}]}, [(("a", 0, "numeric", 1), '">" needs a number, not "5"')]),
    ({"a": [{"numeric": [">", True]}]}, [(("a", 0, "numeric", 1), '">" needs a number, not true')]),
    ({"a": [{"numeric": [">", None]}]}, [(("a", 0, "numeric", 1), '">" needs a number, not null')]),
    (
        {"a": [{"numeric": [">", float("inf")]}]},
        [(("a", 0, "numeric", 1), "Infinity is not a finite number")],
    ),
    (
        {"a": [{"numeric": [">", 1, ">", 2]}]},
        [(("a", 0, "numeric", 2), "numeric takes at most one lower bound (> or >=)")],
    ),
    (
        {"a": [{"numeric": [">=", 1, "<", 9, ">", 2]}]},
        [(("a", 0, "numeric", 4), "numeric takes at most one lower bound (> or >=)")],
    ),
    (
        {"a": [{"numeric": ["<", 1, "<=", 2]}]},
        [(("a", 0, "numeric", 2), "numeric takes at most one upper bound (< or <=)")],
    ),
    (
        {"a": [{"numeric": ["=", 1, "<", 2]}]},
        [(("a", 0, "numeric", 0), '"=" cannot be combined with other numeric operators')],
    ),
    (
        {"a": [{"numeric": ["<", 2, "=", 1]}]},
        [(("a", 0, "numeric", 2), '"=" cannot be combined with other numeric operators')],
    ),
    (
        {"a": [{"numeric": [">", 5, "<", 1]}]},
        [(("a", 0, "numeric"), 'numeric range [">", 5, "<", 1] can match no number')],
    ),
    (
        {"a": [{"numeric": [">", 5, "<=", 5]}]},
        [(("a", 0, "numeric"), 'numeric range [">", 5, "<=", 5] can match no number')],
    ),
    (
        {"a": [{"numeric": [">=", 5, "<", 5]}]},
        [(("a", 0, "numeric"), 'numeric range [">=", 5, "<", 5] can match no number')],
    ),
    # exists
    (
        {"a": [{"exists": "true"}]},
        [(("a", 0, "exists"), 'exists must be true or false, not "true"')],
    ),
    ({"a": [{"exists": None}]}, [(("a", 0, "exists"), "exists must be true or false, not null")]),
    ({"a": [{"exists": 1}]}, [(("a", 0, "exists"), "exists must be true or false, not 1")]),
    # cidr
    ({"a": [{"cidr": 5}]}, [(("a", 0, "cidr"), "cidr must be a string, not a number")]),
    (
        {"a": [{"cidr": "10.0.0.0"}]},
        [(("a", 0, "cidr"), f'invalid CIDR block "10.0.0.0" {CIDR_HINT}')],
    ),
    (
        {"a": [{"cidr": "10.0.0.0/33"}]},
        [(("a", 0, "cidr"), f'invalid CIDR block "10.0.0.0/33" {CIDR_HINT}')],
    ),
    (
        {"a": [{"cidr": "10.0.0.256/8"}]},
        [(("a", 0, "cidr"), f'invalid CIDR block "10.0.0.256/8" {CIDR_HINT}')],
    ),
    ({"a": [{"cidr": "x/8"}]}, [(("a", 0, "cidr"), f'invalid CIDR block "x/8" {CIDR_HINT}')]),
    (
        {"a": [{"cidr": "2001:db8::/129"}]},
        [(("a", 0, "cidr"), f'invalid CIDR block "2001:db8::/129" {CIDR_HINT}')],
    ),
    (
        {"a": [{"cidr": "10.0.0.0/8/8"}]},
        [(("a", 0, "cidr"), f'invalid CIDR block "10.0.0.0/8/8" {CIDR_HINT}')],
    ),
    # $or: alternatives are checked like any object; fewer than two objects is a plain field
    ({"$or": [{"a": ["1"]}, {}]}, [(("$or", 1), "empty objects are not allowed")]),
    ({"$or": [{"a": ["1"]}]}, [(("$or", 0), 'unknown operator "a"')]),
    (
        {
            "x": {
                "$or": [
                    {"a": "1"},
                    {"b": [], "c": {"$or": [{"d": [{"exists": 2}]}, {"e": ["ok"]}]}},
                ]
            }
        },
        [
            (("x", "$or", 0, "a"), "must be an object or an array of match values, not a string"),
            (("x", "$or", 1, "b"), "empty arrays are not allowed"),
            (
                ("x", "$or", 1, "c", "$or", 0, "d", 0, "exists"),
                "exists must be true or false, not 2",
            ),
        ],
    ),
]


# "::" (IPv6) would split a pytest node id, and mutmut selects tests by node id.
@pytest.mark.parametrize(
    ("pattern", "expected"), INVALID, ids=[repr(p)[:60].replace("::", ": :") for p, _ in INVALID]
)
def test_invalid_pattern_is_rejected_with_path_and_message(pattern, expected):
    # GIVEN an invalid pattern WHEN it is compiled THEN PatternError lists exactly these problems
    assert _problems(pattern) == expected


def test_every_problem_is_reported_at_once_in_document_order():
    pattern = {
        "a": "v",
        "b": [],
        "c": [{"nope": 1}, "fine", {"numeric": [">"]}],
        "d": {"e": [{"wildcard": "x**"}], "f": [{"cidr": "bad"}]},
        "g": ["ok"],
    }
    assert _problems(pattern) == [
        (("a",), "must be an object or an array of match values, not a string"),
        (("b",), "empty arrays are not allowed"),
        (("c", 0), 'unknown operator "nope"'),
        (("c", 2, "numeric", 0), '">" must be followed by a number'),
        (("d", "e", 0, "wildcard"), 'consecutive wildcard characters are not allowed in "x**"'),
        (("d", "f", 0, "cidr"), f'invalid CIDR block "bad" {CIDR_HINT}'),
    ]


def test_pattern_error_is_a_value_error_and_says_where():
    with pytest.raises(PatternError) as caught:
        compile({"data": {"size": [{"numeric": [">", "5"]}]}})
    error = caught.value
    assert isinstance(error, ValueError) and isinstance(error, TriggersError)
    assert str(error) == 'data.size.0.numeric.1: ">" needs a number, not "5"'


# -- $or combinations --------------------------------------------------------------------------


def _alternatives(count: int, name: str) -> list[dict]:
    return [{name: [str(i)]} for i in range(count)]


def test_one_thousand_or_combinations_are_allowed():
    # 10 x 10 x 10 = 1000: three $ors at different levels multiply
    pattern = {
        "$or": _alternatives(10, "a"),
        "x": {"$or": _alternatives(10, "b")},
        "y": {"$or": _alternatives(10, "c")},
    }
    compiled = compile(pattern)
    assert compiled.matches({"a": "3", "x": {"b": "9"}, "y": {"c": "0"}}) is True
    assert compiled.matches({"a": "3", "x": {"b": "10"}, "y": {"c": "0"}}) is False


def test_more_than_one_thousand_or_combinations_are_rejected():
    pattern = {
        "$or": _alternatives(11, "a"),
        "x": {"$or": _alternatives(10, "b")},
        "y": {"$or": _alternatives(10, "c")},
    }
    assert _problems(pattern) == [((), "too many $or combinations: 1100 (at most 1000)")]


def test_nested_or_alternatives_add_up_before_multiplying():
    # (2 + 3) alternatives for the outer $or, times 201 for the sibling: 1005 combinations
    inner = {"k": ["v"], "$or": _alternatives(3, "n")}
    pattern = {"$or": [{"p": ["1"]}, {"q": ["2"]}, inner], "z": {"$or": _alternatives(201, "m")}}
    # the third alternative stands for 3 combinations: 1 + 1 + 3 = 5
    assert _problems(pattern) == [((), "too many $or combinations: 1005 (at most 1000)")]
    pattern["z"]["$or"] = _alternatives(200, "m")
    assert compile(pattern).matches({"k": "v", "n": "2", "z": {"m": "199"}}) is True
