"""What the rule index finds and what it leaves alone, value by value.

`test_router.py` holds the index to a linear scan on generated rule sets; these are the cases
that generation reaches too rarely (found by mutating `triggers/rules/router.py`): exact values
that are not strings, a wide numeric range at its own bounds, values that no entry covers, and
the choice of the field a rule is indexed by when its conditions are shared unequally.
"""

from __future__ import annotations

import pytest

from tests.fakes import route_counted
from triggers.rules import load_text

_HEADER = "project: demo-project\nregion: europe-west1\nrules:\n"


def _rules(*lines: str):
    return load_text(_HEADER + "".join(f"  - {line}\n" for line in lines), environ={})


# -- exact values that are not strings ------------------------------------------------------

_LITERALS = (
    "{name: count, on: storage, match: {data: {count: [3]}}, job: j}",
    "{name: flag, on: storage, match: {data: {flag: [true]}}, job: j}",
    "{name: gone, on: storage, match: {data: {gone: [null]}}, job: j}",
)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"count": 3}, ["count"]),
        ({"count": 3.0}, ["count"]),  # numbers compare numerically
        ({"count": [1, 3]}, ["count"]),  # a leaf of an array
        ({"count": 4}, []),
        ({"flag": True}, ["flag"]),
        ({"flag": 1}, []),  # true never equals 1
        ({"gone": None}, ["gone"]),
        ({"gone": "null"}, []),
    ],
)
def test_numbers_booleans_and_null_are_found_through_the_exact_table(monkeypatch, data, expected):
    rules = _rules(*_LITERALS)
    found, evaluated = route_counted(monkeypatch, rules, data)
    assert found == expected
    assert evaluated == expected  # through the index: nothing else is evaluated
    assert rules._router.stats()["unanchored"] == 0


# -- a numeric range wider than the interval table takes ------------------------------------


def test_a_wide_range_matches_at_both_of_its_inclusive_bounds(monkeypatch):
    # GIVEN 70 point rules (140 elementary intervals) and one range across all of them, too
    # wide for the interval table: it is checked bound by bound instead
    rules = _rules(
        "{name: wide, on: storage, match: {data: {level: [{numeric: ['>=', 0, '<=', 69]}]}}, "
        "job: j}",
        *(
            f"{{name: p{k}, on: storage, match: {{data: {{level: [{{numeric: ['=', {k}]}}]}}}}, "
            "job: j}"
            for k in range(70)
        ),
    )
    # WHEN an event sits on each bound, inside, and just outside THEN the range says so
    assert route_counted(monkeypatch, rules, {"level": 0})[0] == ["wide", "p0"]
    assert route_counted(monkeypatch, rules, {"level": 69})[0] == ["wide", "p69"]
    assert route_counted(monkeypatch, rules, {"level": 35.5})[0] == ["wide"]
    assert route_counted(monkeypatch, rules, {"level": -0.5}) == ([], [])
    assert route_counted(monkeypatch, rules, {"level": 69.5}) == ([], [])


# -- values no entry covers evaluate nothing ------------------------------------------------

_ENTRIES = (
    "{name: range, on: storage, match: {data: {size: [{numeric: ['>=', 10, '<', 20]}]}}, job: j}",
    "{name: pre, on: storage, match: {data: {name: [{prefix: abc}]}}, job: j}",
    "{name: suf, on: storage, match: {data: {name: [{suffix: .csv}]}}, job: j}",
)


@pytest.mark.parametrize(
    "data",
    [
        {"size": 25},  # above the range: the segment after it is not the range's
        {"size": 20},  # its exclusive end
        {"size": 9.99},  # below it
        {"name": "ab"},  # shorter than the prefix
        {"name": "xabc"},  # the prefix, not at the start
        {"name": "csv"},  # shorter than the suffix
    ],
)
def test_a_value_no_entry_covers_evaluates_no_rule(monkeypatch, data):
    assert route_counted(monkeypatch, _rules(*_ENTRIES), data) == ([], [])


# -- several objects reached at one level, a scalar among them --------------------------------


def test_a_scalar_among_the_objects_at_one_level_does_not_end_the_walk(monkeypatch):
    rules = _rules("{name: deep, on: storage, match: {data: {rows: {cell: {k: [x]}}}}, job: j}")
    data = {"rows": [{"cell": "plain"}, {"cell": {"k": "x"}}]}
    assert route_counted(monkeypatch, rules, data) == (["deep"], ["deep"])


# -- the field a rule is indexed by -------------------------------------------------------------

# Each case: a condition `{i}` shared unequally by 40 rules (rule i's condition is satisfied by
# every value that satisfies rule j's for j <= i, plus a `base` rule's), listed before the rule's
# own exact `kind`; and a value that satisfies all of them.
_SHARED = [
    ("name", "{{prefix: 'logs/{x}'}}", "{prefix: 'logs/'}", "logs/" + "x" * 50),
    (
        "name",
        "{{prefix: {{equals-ignore-case: 'LOGS/{x}'}}}}",
        "{prefix: {equals-ignore-case: 'LOGS/'}}",
        "Logs/" + "x" * 50,
    ),
    ("name", "{{suffix: '{x}.csv'}}", "{suffix: '.csv'}", "x" * 50 + ".csv"),
    (
        "name",
        "{{suffix: {{equals-ignore-case: '{X}.CSV'}}}}",
        "{suffix: {equals-ignore-case: '.CSV'}}",
        "x" * 50 + ".csv",
    ),
    ("size", "{{numeric: ['>=', {i}]}}", "{numeric: ['>=', -1]}", 100),
]


@pytest.mark.parametrize(
    ("field", "condition", "base", "value"),
    _SHARED,
    ids=["prefix", "prefix-ignore-case", "suffix", "suffix-ignore-case", "range"],
)
def test_a_rule_is_indexed_by_its_own_value_not_a_condition_others_share(
    monkeypatch, field, condition, base, value
):
    lines = [f"{{name: base, on: storage, match: {{data: {{{field}: [{base}]}}}}, job: j}}"]
    for i in range(40):
        shared = condition.format(i=i, x="x" * (i + 1), X="X" * (i + 1))
        lines.append(
            f"{{name: r{i}, on: storage, match: {{data: {{{field}: [{shared}], kind: [k{i}]}}}}, "
            "job: j}"
        )
    rules = _rules(*lines)
    # WHEN an event satisfies every shared condition and names rule 30's kind
    found, evaluated = route_counted(monkeypatch, rules, {field: value, "kind": "k30"})
    # THEN rule 30 was found by its kind: only it and `base` (indexed by its only field) ran
    assert found == ["base", "r30"]
    assert evaluated == ["base", "r30"]
