"""What a loaded rule keeps (docs/performance.md, "Memory"): no pydantic spec until one is asked
for, and one instance of each template, pattern, node and option set that several rules share;
with the same behaviour as before."""

from __future__ import annotations

import gc
import json
import textwrap
import tracemalloc

import pytest

from triggers.events.model import STORAGE_FINALIZED, Event
from triggers.rules import load_text
from triggers.rules._spec_text import dump_spec, load_spec
from triggers.rules.rule import RunOptions
from triggers.rules.schema import RuleSpec

RULES = textwrap.dedent(
    """\
    project: demo-project
    region: europe-west1
    limits: {rate: 5/s}
    rules:
      - name: csv
        description: every CSV
        on: [storage.finalized, storage.deleted]
        bucket: raw-data
        match:
          data:
            name: [{wildcard: "incoming/*.csv"}]
        job: csv-loader
        overrides:
          args: ["--input=gs://{{ data.bucket }}/{{ data.name }}"]
          env:
            GENERATION: "{{ data.generation }}"
            TOKEN: {secret: api-token}
          task_count: 4
          timeout: 30m
        dedup:
          key: "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"
          window: 2d
        limits: {max_running: 2}
      - name: json
        enabled: false
        on: storage.finalized
        bucket: raw-data
        match:
          data:
            name: [{wildcard: "incoming/*.csv"}]
        job: csv-loader
        overrides:
          args: ["--input=gs://{{ data.bucket }}/{{ data.name }}"]
        dedup:
          key: "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"
      - name: batched
        on: storage.finalized
        bucket: landing
        match: null
        job: loader
        batch: {window: 2m, key: "{{ data.bucket }}"}
      - name: nightly
        on: scheduler
        schedule: "0 2 * * *"
        time_zone: Europe/Berlin
        when: "event.id != ''"
        job: report
    """
)


def _raw_rules() -> list[dict]:
    """The same rules as plain data, for validating each one with pydantic directly."""
    from triggers.rules.yamlsource import parse, plain

    return plain(parse(RULES))["rules"]


def _all_fields_set(spec) -> dict:
    nested = {}
    for name in ("overrides", "dedup", "limits", "batch"):
        value = getattr(spec, name)
        nested[name] = None if value is None else value.model_fields_set
    nested["secrets"] = {k: v.model_fields_set for k, v in spec.overrides.secret_env.items()}
    return {"rule": spec.model_fields_set, **nested}


def test_a_loaded_rule_keeps_its_spec_as_text_until_asked():
    rule = load_text(RULES, environ={}).get("csv")
    assert isinstance(rule.spec_source, str)
    assert "raw-data" in rule.spec_source
    spec = rule.spec
    assert isinstance(spec, RuleSpec)
    assert rule.spec is spec  # built once, then kept


def test_the_rebuilt_spec_is_the_validated_one_with_the_same_fields_set():
    ruleset = load_text(RULES, environ={})
    for raw in _raw_rules():
        validated = RuleSpec.model_validate(raw)
        rebuilt = ruleset.get(validated.name).spec
        assert rebuilt == validated
        assert rebuilt.model_dump() == validated.model_dump()
        assert _all_fields_set(rebuilt) == _all_fields_set(validated)


def test_planning_reads_the_run_options_not_the_spec():
    ruleset = load_text(RULES, environ={})
    csv = ruleset.get("csv")
    assert csv.options == RunOptions.of(RuleSpec.model_validate(_raw_rules()[0]))
    event = Event(
        id="1",
        source="//storage.googleapis.com/projects/_/buckets/raw-data",
        type=STORAGE_FINALIZED,
        kind="storage",
        form="cloudevent-binary",
        data={"bucket": "raw-data", "name": "incoming/a.csv", "generation": 7},
    )
    request = csv.plan(event)
    assert isinstance(csv.spec_source, str)  # planning did not build the spec
    assert request.overrides.task_count == 4
    assert request.overrides.timeout_seconds == 1800
    assert [name for name, _ in request.overrides.secret_env] == ["TOKEN"]
    assert request.dedup_window_seconds == 2 * 86400
    assert request.dedup_key == "raw-data/incoming/a.csv#7"
    assert [r.name for r in ruleset.route(event)] == ["csv"]  # `json` is disabled
    assert ruleset.get("json").enabled is False


def test_rules_of_one_load_share_equal_templates_patterns_and_jobs():
    ruleset = load_text(RULES, environ={})
    csv, other = ruleset.get("csv"), ruleset.get("json")
    assert csv.args == other.args and csv.args[0] is other.args[0]
    assert csv.dedup_key is other.dedup_key
    assert csv.pattern is other.pattern  # the same `match:`
    assert csv.scope is other.scope  # the same bucket
    assert csv.job is other.job
    # ... and nothing is shared with another load (whose templates may be compiled apart).
    again = load_text(RULES, environ={}).get("csv")
    assert again.pattern is not csv.pattern and again.dedup_key is not csv.dedup_key


def test_a_spec_json_cannot_carry_exactly_is_kept_as_the_model():
    spec = RuleSpec.model_validate({"name": "a", "on": "pubsub", "job": "w"})
    odd = spec.model_copy(update={"example": {"data": {1: "an integer key"}}})
    assert dump_spec(odd) is None
    nan = spec.model_copy(update={"example": {"x": float("nan")}})
    assert dump_spec(nan) is None
    assert load_spec(dump_spec(spec) or "", None) == spec


def _generated(count: int) -> str:
    lines = ["project: demo-project", "region: europe-west1", "rules:"]
    for i in range(count):
        kind = ("csv", "json", "parquet")[i % 3]
        lines += [
            f"  - name: tenant-{i}",
            "    on: storage.finalized",
            f"    bucket: landing-{i % 50}",
            f"    match: {json.dumps({'data': {'name': [{'suffix': '.' + kind}]}})}",
            f"    job: loader-{i % 7}",
            "    overrides:",
            '      args: ["--input=gs://{{ data.bucket }}/{{ data.name }}"]',
            "    dedup:",
            '      key: "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"',
        ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("count", [2000])
def test_a_loaded_rule_stays_small(count):
    # Allocation sizes are exact for one Python version: this bounds what loading keeps, with
    # room to spare (measured ~1.0 KiB a rule here; 13.5 KiB when each rule kept a pydantic spec
    # and compiled its own templates).
    text = _generated(count)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        ruleset = load_text(text, environ={})
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(ruleset) == count
    assert kept / count < 3 * 1024
