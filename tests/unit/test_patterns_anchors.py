"""anchors(), exact_key() and values_at(): what a router may index rules by."""

from __future__ import annotations

import pytest

from triggers.rules.patterns import compile, exact_key, values_at

# -- exact_key ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (300, 300.0),
        (3e2, 300),
        (0, -0.0),
        ("x", "x"),
        (None, None),
        (True, True),
        (9007199254740993, 9007199254740992),
    ],
)
def test_exact_key_equal_for_literals_patterns_consider_equal(left, right):
    assert exact_key(left) == exact_key(right)
    assert hash(exact_key(left)) == hash(exact_key(right))


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (True, 1),
        (False, 0),
        (1.0, True),
        ("300", 300),
        ("true", True),
        (None, "null"),
        (None, ""),
        (None, 0),
        (None, False),
        ("x", "X"),
        (1, 2),
    ],
)
def test_exact_key_distinguishes_what_patterns_distinguish(left, right):
    assert exact_key(left) != exact_key(right)


def test_exact_key_forms():
    assert exact_key(300) == ("n", 300.0)
    assert exact_key("x") == ("s", "x")
    assert exact_key(True) == ("b", True)
    assert exact_key(None) == ("z",)


@pytest.mark.parametrize("value", [[1], {"a": 1}, object()])
def test_exact_key_refuses_non_leaf_values(value):
    with pytest.raises(TypeError):
        exact_key(value)


# -- values_at ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "path", "expected"),
    [
        ({"a": {"b": "x"}}, ("a", "b"), ["x"]),
        ({"a": {"b": None}}, ("a", "b"), [None]),
        ({"a": {"b": ["x", ["y", ["z"]]]}}, ("a", "b"), ["x", "y", "z"]),
        # arrays of objects are crushed, at every level
        ({"a": [{"b": "x"}, {"b": ["y"]}, {"c": 1}, 5, [{"b": "z"}]]}, ("a", "b"), ["x", "y", "z"]),
        ({"a": [{"b": [{"c": 1}, {"c": 2}]}, {"b": {"c": 3}}]}, ("a", "b", "c"), [1, 2, 3]),
        # absent, or not a leaf: nothing
        ({"a": {"c": "x"}}, ("a", "b"), []),
        ({}, ("a", "b"), []),
        ({"a": "x"}, ("a", "b"), []),
        ({"a": {"b": {"c": 1}}}, ("a", "b"), []),
        ({"a": {"b": [{"c": 1}, "leaf"]}}, ("a", "b"), ["leaf"]),
        ({"a": {"b": []}}, ("a", "b"), []),
        # no dotted-key quirk
        ({"a.b": "x"}, ("a", "b"), []),
    ],
)
def test_values_at(document, path, expected):
    assert values_at(document, path) == expected


# -- anchors -----------------------------------------------------------------------------------


def test_anchors_are_required_literal_only_fields():
    pattern = compile(
        {
            "type": ["google.cloud.storage.object.v1.finalized"],
            "data": {
                "bucket": ["raw", "staging"],
                "name": [{"prefix": "incoming/"}],
                "size": [300],
                "meta": {"flag": [True, None]},
            },
        }
    )
    assert dict(pattern.anchors()) == {
        ("type",): frozenset({("s", "google.cloud.storage.object.v1.finalized")}),
        ("data", "bucket"): frozenset({("s", "raw"), ("s", "staging")}),
        ("data", "size"): frozenset({("n", 300.0)}),
        ("data", "meta", "flag"): frozenset({("b", True), ("z",)}),
    }


@pytest.mark.parametrize(
    "pattern",
    [
        {"a": ["x", {"prefix": "y"}]},  # an operator next to a literal
        {"a": [{"anything-but": "x"}]},
        {"a": [{"exists": True}]},
        {"a": ["x", {"exists": False}]},  # absence is allowed too
        {"a": [{"numeric": ["=", 5]}]},
        {"a": [{"equals-ignore-case": "x"}]},
        {"$or": [{"a": ["x"]}, {"b": ["y"]}]},  # under $or nothing is required on its own
        {"d": {"$or": [{"a": ["x"]}, {"a": ["x"], "b": ["y"]}]}},
    ],
)
def test_fields_that_are_not_anchors(pattern):
    assert compile(pattern).anchors() == []


def test_anchors_beside_an_or_are_kept():
    pattern = compile({"k": ["v"], "$or": [{"a": ["x"]}, {"b": ["y"]}]})
    assert pattern.anchors() == [(("k",), frozenset({("s", "v")}))]


def test_or_as_a_plain_field_name_can_anchor():
    assert compile({"$or": ["x"]}).anchors() == [(("$or",), frozenset({("s", "x")}))]


def test_anchors_returns_a_fresh_list():
    pattern = compile({"a": ["x"]})
    pattern.anchors().clear()
    assert pattern.anchors() == [(("a",), frozenset({("s", "x")}))]


@pytest.mark.parametrize(
    ("pattern", "document"),
    [
        ({"a": {"b": ["x"]}}, {"a": [{"b": "y"}, {"b": ["q", "x"]}]}),
        ({"a": [300]}, {"a": 300.0}),
        ({"a": [None]}, {"a": [None]}),
        ({"a": {"b": {"c": [True]}}}, {"a": [[{"b": [{"c": True}]}]]}),
    ],
)
def test_a_matching_document_has_a_value_under_every_anchor(pattern, document):
    compiled = compile(pattern)
    assert compiled.matches(document) is True
    for path, keys in compiled.anchors():
        assert any(exact_key(v) in keys for v in values_at(document, path))


def test_identical_leaves_are_shared_but_true_and_one_never_merge():
    # Sharing compiled leaves across patterns is an optimisation; equal-looking literals of
    # different JSON types must still be different conditions.
    from triggers.rules.patterns import compile as compile_pattern

    flag, one, also_one = (
        compile_pattern({"x": [True]}),
        compile_pattern({"x": [1]}),
        compile_pattern({"x": [1.0]}),
    )
    assert flag.matches({"x": True}) and not flag.matches({"x": 1})
    assert one.matches({"x": 1}) and not one.matches({"x": True})
    assert also_one.matches({"x": 1}) and not also_one.matches({"x": True})
