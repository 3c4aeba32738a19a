"""The rule index is an optimisation only: it must return exactly what a linear scan returns."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import route_counted
from triggers.events.model import STORAGE_DELETED, STORAGE_FINALIZED, Event
from triggers.rules import load_text
from triggers.rules.rule import Rule

BUCKETS = ["raw", "curated", "archive", "RAW"]
NAMES = ["incoming/a.csv", "incoming/b.json", "out/c.csv", "x", "", "Incoming/A.CSV", "ä/ß.csv"]

# Conditions a generated rule may put on a field: every operator, indexable (exact, prefix,
# suffix, equals-ignore-case, wildcard heads and tails, numeric ranges) or not.
CONDITIONS = st.sampled_from(
    [
        ["raw"],
        ["raw", "curated"],
        [{"prefix": "incoming/"}],
        [{"prefix": ""}],
        [{"prefix": {"equals-ignore-case": "INCOMING/"}}],
        [{"suffix": ".csv"}],
        [{"suffix": ""}],
        [{"suffix": {"equals-ignore-case": ".CSV"}}],
        [{"equals-ignore-case": "raw"}],
        [{"equals-ignore-case": "Ä/SS.CSV"}],
        [{"anything-but": "raw"}],
        [{"anything-but": {"prefix": "in"}}],
        [{"exists": False}],
        [{"exists": True}],
        [{"wildcard": "*a*"}],
        [{"wildcard": "incoming/*.csv"}],
        [{"wildcard": "*.json"}],
        [{"wildcard": "x"}],
        ["incoming/a.csv", {"prefix": "out/"}],
        [{"suffix": ".json"}, {"numeric": ["<", 4]}, "x"],
        [3, 4.0],
        [{"numeric": [">", 3]}],
        [{"numeric": [">=", 3, "<", 5]}],
        [{"numeric": ["<=", 3]}],
        [{"numeric": ["=", 4]}],
        [{"numeric": [">", -1e308]}],
        [None],
        [True],
    ]
)
FIELDS = st.sampled_from(["bucket", "name", "size", "kind"])


@st.composite
def rule_sets(draw):
    count = draw(st.integers(min_value=1, max_value=12))
    lines = ["rules:"]
    for index in range(count):
        on = draw(st.sampled_from(["storage", "storage.finalized", "storage.deleted"]))
        data = draw(st.dictionaries(FIELDS, CONDITIONS, max_size=3))
        if draw(st.booleans()) and data:
            # Some rules use $or: indexed only when every alternative can be.
            first, *rest = data.items()
            data = {"$or": [dict([first]), dict(rest) or {"bucket": ["archive"]}]}
        if draw(st.booleans()):
            # a nested object, reached through arrays of objects in some events
            data["meta"] = {draw(st.sampled_from(["k", "t"])): draw(CONDITIONS)}
        bucket = draw(st.sampled_from([None, *BUCKETS]))
        lines += [
            f"  - name: r{index}",
            f"    on: {on}",
            "    job: projects/demo-project/locations/europe-west1/jobs/j",
        ]
        if data:
            lines.append(f"    match: {json.dumps({'data': data})}")
        if bucket:
            lines.append(f"    bucket: {bucket}")
    return load_text("\n".join(lines) + "\n", environ={})


@st.composite
def events(draw):
    data = {
        "bucket": draw(st.sampled_from(BUCKETS)),
        "name": draw(st.sampled_from(NAMES)),
    }
    if draw(st.booleans()):
        data["size"] = draw(st.sampled_from([3, 3.0, 4, 5, "3", None, [3, 9]]))
    if draw(st.booleans()):
        data["kind"] = draw(st.sampled_from(["raw", ["raw", "x"], None, True, "RAW"]))
    if draw(st.booleans()):
        value = st.sampled_from(["raw", "incoming/a.csv", 3, 4.5, None, ["x", 4], float("inf")])
        data["meta"] = draw(
            st.one_of(
                st.fixed_dictionaries({"k": value}),
                st.lists(st.fixed_dictionaries({"k": value, "t": value}), max_size=3),
                value,
            )
        )
    return Event(
        id="1",
        source="s",
        type=draw(st.sampled_from([STORAGE_FINALIZED, STORAGE_DELETED])),
        kind="storage",
        form="cloudevent-binary",
        data=data,
    )


@settings(max_examples=600, deadline=None)
@given(rule_sets(), st.lists(events(), min_size=1, max_size=5))
def test_index_returns_exactly_what_a_linear_scan_returns(rules, evts):
    router = rules._router
    for event in evts:
        assert router.route(event) == router.scan(event)


def test_index_evaluates_only_the_rules_whose_anchor_value_matches(monkeypatch):
    # GIVEN 200 rules, each bound to its own bucket
    text = "rules:\n" + "".join(
        f"  - name: r{i}\n    on: storage\n    bucket: b{i}\n"
        "    job: projects/demo-project/locations/europe-west1/jobs/j\n"
        for i in range(200)
    )
    rules = load_text(text, environ={})
    evaluated = []
    original = Rule.matches_content

    def counting(self, document):
        evaluated.append(self.name)
        return original(self, document)

    monkeypatch.setattr(Rule, "matches_content", counting)
    event = Event(
        id="1",
        source="s",
        type=STORAGE_FINALIZED,
        kind="storage",
        form="cloudevent-binary",
        data={"bucket": "b150", "name": "n"},
    )
    # WHEN routed THEN exactly one rule is evaluated and found
    assert [r.name for r in rules.route(event)] == ["r150"]
    assert evaluated == ["r150"]
    # and a linear scan would have evaluated all of them
    evaluated.clear()
    rules._router.scan(event)
    assert len(evaluated) == 200


def test_rules_are_indexed_under_their_most_selective_field(monkeypatch):
    # GIVEN 60 rules that all share kind=a but each name its own bucket
    text = "rules:\n" + "".join(
        f"  - name: r{i}\n    on: storage\n"
        f"    match: {{data: {{kind: [a], bucket: [b{i}]}}}}\n"
        "    job: projects/demo-project/locations/europe-west1/jobs/j\n"
        for i in range(60)
    )
    rules = load_text(text, environ={})
    # WHEN routed THEN the bucket, not the shared kind, picked the candidates
    assert route_counted(monkeypatch, rules, {"bucket": "b7", "kind": "a"}) == (["r7"], ["r7"])


# -- the hard layouts: each rule evaluated only when its own condition can hold ----------------


def _layout(match: str, count: int = 300, scope: str = "    bucket: landing\n") -> object:
    text = "rules:\n" + "".join(
        f"  - name: r{i}\n    on: storage\n{scope}"
        f"    match: {{data: {match.format(i=i)}}}\n"
        "    job: projects/demo-project/locations/europe-west1/jobs/j\n"
        for i in range(count)
    )
    return load_text(text, environ={})


@pytest.mark.parametrize(
    ("match", "data"),
    [
        ("{{name: [{{prefix: 'tenant-{i}/'}}]}}", {"name": "tenant-150/x.csv"}),
        ("{{name: [{{suffix: '.kind{i}'}}]}}", {"name": "a/b.kind150"}),
        ("{{name: [{{wildcard: 'tenant-{i}/*.csv'}}]}}", {"name": "tenant-150/in/x.csv"}),
        ("{{name: [{{wildcard: '*/kind-{i}.csv'}}]}}", {"name": "a/kind-150.csv"}),
        ("{{customer: [{{equals-ignore-case: 'Customer-{i}'}}]}}", {"customer": "CUSTOMER-150"}),
        (
            "{{name: [{{prefix: {{equals-ignore-case: 'Tenant-{i}/'}}}}]}}",
            {"name": "TENANT-150/x"},
        ),
        ("{{size: [{{numeric: ['>=', {i}0, '<', {i}9]}}]}}", {"size": 1505}),
        ("{{attrs: {{attr-{i}: [on]}}}}", {"attrs": {"attr-150": "on", "attr-7": "off"}}),
        (
            "{{$or: [{{kind: ['kind-{i}']}}, {{name: [{{prefix: 'p-{i}/'}}]}}]}}",
            {"kind": "none", "name": "p-150/x"},
        ),
    ],
)
def test_each_hard_layout_evaluates_only_the_rule_that_can_match(monkeypatch, match, data):
    # GIVEN 300 rules on one bucket that differ only by one operator's value
    rules = _layout(match)
    # WHEN an event for rule 150 arrives THEN only that rule is evaluated, and it matches
    found, evaluated = route_counted(monkeypatch, rules, {"bucket": "landing", **data})
    assert found == ["r150"]
    assert evaluated == ["r150"]


def test_rules_no_index_can_serve_are_still_scanned(monkeypatch):
    rules = _layout("{{name: [{{anything-but: 'n{i}'}}]}}", count=5, scope="")
    found, evaluated = route_counted(monkeypatch, rules, {"bucket": "landing", "name": "n3"})
    assert found == ["r0", "r1", "r2", "r4"]
    assert evaluated == ["r0", "r1", "r2", "r3", "r4"]
    assert rules._router.stats()["unanchored"] == 5 * len(rules.rules[0].types)  # per type


def test_overlapping_numeric_ranges_and_infinite_bounds(monkeypatch):
    text = "rules:\n" + "".join(
        f"  - name: r{i}\n    on: storage\n    match: {{data: {{size: [{{numeric: {rng}}}]}}}}\n"
        "    job: projects/demo-project/locations/europe-west1/jobs/j\n"
        for i, rng in enumerate(
            [[">", 0], ["<", 0], [">=", 0, "<=", 10], ["=", 10]]
            + [[">", n] for n in range(100)]  # wide, overlapping: past the span limit
        )
    )
    rules = load_text(text, environ={})
    for size in (-5, 0, 10, 10.5, 99, 1e300, float("inf"), float("-inf")):
        found, _ = route_counted(monkeypatch, rules, {"size": size})
        monkeypatch.undo()
        assert "r0" in found or size <= 0


def test_stats_count_rules_types_anchor_fields_and_unanchored_rules():
    # What the benchmark reports to show how well the index partitions a rule set: two
    # finalized rules anchored on the same field (data.bucket), one finalized rule and one
    # deleted rule that have no exact value to be indexed by.
    rules = load_text(
        """\
project: demo-project
region: europe-west1
rules:
  - {name: a, on: storage.finalized, match: {data: {bucket: [raw]}}, job: j}
  - {name: b, on: storage.finalized, match: {data: {bucket: [other], name: [x]}}, job: j}
  - {name: c, on: storage.finalized, job: j}
  - {name: d, on: storage.deleted, job: j}
""",
        environ={},
    )
    assert rules.stats() == {"rules": 4, "types": 2, "anchor_fields": 1, "unanchored": 2}


# -- every probe of the index, at its boundaries ------------------------------------------------

_PROBE_RULES = """\
rules:
  - {name: pre, on: storage, match: {data: {name: [{prefix: "abc"}]}}, job: j}
  - {name: pre-long, on: storage, match: {data: {name: [{prefix: "abcdefghij"}]}}, job: j}
  - {name: pre-ci, on: storage, match: {data: {name: [{prefix: {equals-ignore-case: "XYZ"}}]}}, job: j}
  - {name: suf, on: storage, match: {data: {name: [{suffix: ".csv"}]}}, job: j}
  - {name: suf-long, on: storage, match: {data: {name: [{suffix: "0123456789.csv"}]}}, job: j}
  - {name: suf-ci, on: storage, match: {data: {name: [{suffix: {equals-ignore-case: ".JSON"}}]}}, job: j}
  - {name: eic, on: storage, match: {data: {name: [{equals-ignore-case: "Report"}]}}, job: j}
  - {name: exact, on: storage, match: {data: {name: ["exact"]}}, job: j}
  - {name: range, on: storage, match: {data: {size: [{numeric: [">=", 10, "<", 20]}]}}, job: j}
  - {name: nested, on: storage, match: {data: {items: {k: [{prefix: "v"}]}}}, job: j}
  - {name: deep, on: storage, match: {data: {rows: {cell: {k: [exact]}}}}, job: j}
"""


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"name": "abc"}, {"pre"}),  # a prefix as long as the value
        ({"name": "abcdefghij"}, {"pre", "pre-long"}),
        ({"name": "xyz"}, {"pre-ci"}),  # ignore-case prefix as long as the value
        ({"name": "XyZ-and-more"}, {"pre-ci"}),
        ({"name": "a.csv"}, {"suf"}),  # shorter than the longest suffix: the loop stops there
        ({"name": ".csv"}, {"suf"}),  # a suffix as long as the value
        ({"name": "x0123456789.csv"}, {"suf", "suf-long"}),
        ({"name": "a.json"}, {"suf-ci"}),  # shorter than the longest prefix, then ignore-case
        ({"name": ".JSON"}, {"suf-ci"}),
        ({"name": "REPORT"}, {"eic"}),
        ({"name": "exact"}, {"exact"}),
        ({"name": "zzz", "size": 10}, {"range"}),
        ({"name": "zzz", "size": 19.5}, {"range"}),
        ({"name": "zzz", "size": 20}, set()),
        ({"name": "zzz", "items": [{"k": "x"}, {"k": "v1"}]}, {"nested"}),  # several objects
        ({"name": "zzz", "items": {"k": "v2"}}, {"nested"}),
        # several objects reached at one level: each is walked, not only the first
        ({"name": "zzz", "rows": [{"cell": {"k": "no"}}, {"cell": {"k": "exact"}}]}, {"deep"}),
    ],
)
def test_every_probe_finds_its_rule_at_the_boundaries(monkeypatch, data, expected):
    rules = load_text("project: demo-project\nregion: europe-west1\n" + _PROBE_RULES, environ={})
    found, evaluated = route_counted(monkeypatch, rules, data)
    assert set(found) == expected
    assert set(evaluated) >= expected  # found through the index, not by a scan
    assert rules._router.stats()["unanchored"] == 0
