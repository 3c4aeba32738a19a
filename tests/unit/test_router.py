"""The rule index is an optimisation only: it must return exactly what a linear scan returns."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from triggers.events.model import STORAGE_DELETED, STORAGE_FINALIZED, Event
from triggers.rules import load_text
from triggers.rules.rule import Rule

BUCKETS = ["raw", "curated", "archive"]
NAMES = ["incoming/a.csv", "incoming/b.json", "out/c.csv", "x"]

# Conditions a generated rule may put on a field: exact lists (indexable), operators (not).
CONDITIONS = st.sampled_from(
    [
        ["raw"],
        ["raw", "curated"],
        [{"prefix": "incoming/"}],
        [{"suffix": ".csv"}],
        [{"anything-but": "raw"}],
        [{"exists": False}],
        [{"wildcard": "*a*"}],
        ["incoming/a.csv", {"prefix": "out/"}],
        [3, 4.0],
        [{"numeric": [">", 3]}],
        [None],
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
            # Some rules use $or, which must never be indexed.
            first, *rest = data.items()
            data = {"$or": [dict([first]), dict(rest) or {"bucket": ["archive"]}]}
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
        data["kind"] = draw(st.sampled_from(["raw", ["raw", "x"], None, True]))
    return Event(
        id="1",
        source="s",
        type=draw(st.sampled_from([STORAGE_FINALIZED, STORAGE_DELETED])),
        kind="storage",
        form="cloudevent-binary",
        data=data,
    )


@settings(max_examples=300, deadline=None)
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
    evaluated = []
    original = Rule.matches_content
    monkeypatch.setattr(
        Rule, "matches_content", lambda self, d: evaluated.append(self.name) or original(self, d)
    )
    event = Event(
        id="1",
        source="s",
        type=STORAGE_FINALIZED,
        kind="storage",
        form="cloudevent-binary",
        data={"bucket": "b7", "kind": "a"},
    )
    # WHEN routed THEN the bucket, not the shared kind, picked the candidates
    assert [r.name for r in rules.route(event)] == ["r7"]
    assert evaluated == ["r7"]


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
