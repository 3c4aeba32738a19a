"""Sample events for `triggers check`: a rule's `example:` (checked at load) or one synthesized
from its `on:` kind, scope, pattern and templates."""

from __future__ import annotations

import pytest

from triggers.errors import RulesError
from triggers.events.model import PUBSUB_PUBLISHED, SCHEDULER_EXECUTED, STORAGE_DELETED
from triggers.rules import load_text
from triggers.rules.samples import sample, synthesize

HEAD = "project: demo-project\nregion: europe-west1\nrules:\n"


def rule_of(body: str):
    (rule,) = load_text(HEAD + body, environ={})
    return rule


def matching_sample(body: str):
    rule = rule_of(body)
    found = sample(rule)
    assert found.origin == "synthesized"
    assert found.mismatch is None, found.mismatch
    rule.plan(found.event)  # the templates render
    return found.event


def test_storage_rule_gets_an_object_in_its_bucket_matching_its_pattern():
    event = matching_sample(
        """\
  - name: r
    on: storage.deleted
    bucket: raw-data
    match:
      data:
        name: [{wildcard: "in/*/x-*.csv"}]
        size: [{numeric: [">", 10, "<=", 20]}]
        contentType: [{prefix: "text/"}]
    job: j
"""
    )
    assert event.type == STORAGE_DELETED
    assert event.data["bucket"] == "raw-data"
    assert event.data["name"] == "in/sample/x-sample.csv"
    assert 10 < event.data["size"] <= 20


def test_pubsub_rule_gets_its_topic_subscription_attributes_and_json():
    event = matching_sample(
        """\
  - name: r
    on: pubsub
    topic: orders
    subscription: projects/other/subscriptions/orders-sub
    match:
      data:
        message:
          attributes: {kind: [order]}
          json:
            status: [paid]
            amount: [{numeric: [">=", 10]}]
            note: [{exists: true}]
            region: [{anything-but: [eu, us]}]
    job: j
    overrides:
      args: ["--order={{ data.message.json.order_id }}", "{{ event.data.message.text }}"]
"""
    )
    assert event.type == PUBSUB_PUBLISHED
    assert event.data["topic"] == "projects/demo-project/topics/orders"
    assert event.data["subscription"] == "projects/other/subscriptions/orders-sub"
    message = event.data["message"]
    assert message["attributes"] == {"kind": "order"}
    assert message["json"]["status"] == "paid" and message["json"]["amount"] >= 10
    assert message["json"]["region"] not in ("eu", "us")
    assert "order_id" in message["json"]  # a template reads it


def test_scheduler_rule_gets_a_tick_of_its_own_job_at_a_fire_time():
    rule = rule_of(
        """\
  - name: r
    on: scheduler
    schedule: "30 2 * * *"
    scheduler_job: nightly
    job: j
    overrides:
      env: {REPORT: "{{ data.json.report }}"}
"""
    )
    event = synthesize(rule)
    assert event.type == SCHEDULER_EXECUTED
    assert event.data["job_name"] == "nightly"
    assert event.data["schedule_time"].endswith("T02:30:00Z")
    assert rule.plan(event).overrides.env[0][0] == "REPORT"


def test_generic_rule_gets_a_cloudevent_with_its_extensions_and_data():
    event = matching_sample(
        """\
  - name: r
    on: com.example.order.v1.created
    match:
      tenant: [acme]
      source: [{prefix: "//shop"}]
      data: {ip: [{cidr: "10.0.0.0/24"}], "$or": [{a: [1]}, {b: [2]}]}
    job: j
"""
    )
    assert event.type == "com.example.order.v1.created"
    assert event.document["tenant"] == "acme"
    assert event.data["ip"] == "10.0.0.1" and event.data["a"] == 1


def test_a_when_condition_it_cannot_satisfy_is_reported_not_hidden():
    rule = rule_of(
        """\
  - name: r
    on: pubsub
    when: "data.message.attributes.size == 'big'"
    job: j
"""
    )
    found = sample(rule)
    assert found.mismatch is not None


EXAMPLE_RULES = """\
  - name: ok
    on: storage
    bucket: raw-data
    job: j
    example:
      headers:
        ce-specversion: "1.0"
        ce-id: "1"
        ce-source: //storage.googleapis.com/projects/_/buckets/raw-data
        ce-type: google.cloud.storage.object.v1.finalized
        ce-time: "2026-01-01T00:00:00Z"
        Content-Type: application/json
      body: {bucket: raw-data, name: a.csv, generation: "3", size: "10"}
"""


def test_an_example_is_used_as_the_sample():
    rule = rule_of(EXAMPLE_RULES)
    found = sample(rule)
    assert (found.origin, found.mismatch) == ("example", None)
    assert found.event.data["name"] == "a.csv" and found.event.data["generation"] == 3


@pytest.mark.parametrize(
    ("example", "line", "message"),
    [
        ("example: {hello: 1}", 8, "example: cannot be decoded (unrecognised)"),
        ("example: [1]", 8, "example: Input should be a valid dictionary"),
        (
            "example:\n      message: {data: e30=, messageId: '1'}\n"
            "      subscription: projects/p/subscriptions/s",
            8,
            "example: the rule does not match it: type:",
        ),
    ],
)
def test_a_wrong_example_fails_the_rules_at_its_line(example, line, message):
    text = HEAD + EXAMPLE_RULES.split("    example:")[0] + "    " + example + "\n"
    with pytest.raises(RulesError) as info:
        load_text(text, name="rules.yaml", environ={})
    (problem,) = info.value.problems
    assert (problem.file, problem.line, problem.rule) == ("rules.yaml", line, "ok")
    assert problem.message.startswith(message), problem.message


def test_an_example_whose_templates_fail_fails_the_rules():
    text = (
        HEAD
        + """\
  - name: t
    on: pubsub
    job: j
    overrides: {args: ["{{ data.message.json.id }}"]}
    example: {message: {data: e30=, messageId: "1"}, subscription: projects/p/subscriptions/s}
"""
    )
    with pytest.raises(RulesError) as info:
        load_text(text, name="rules.yaml", environ={})
    (problem,) = info.value.problems
    assert problem.line == 8
    assert "example: its run cannot be planned" in problem.message
    assert "args[0]" in problem.message


def test_an_example_survives_the_compiled_artifact(tmp_path):
    from triggers.rules.compiled import compile_rules, read

    path = tmp_path / "rules.yaml"
    path.write_text(HEAD + EXAMPLE_RULES, encoding="utf-8")
    compile_rules(path, environ={})
    rules, stale = read(path, {})
    assert stale is None and rules is not None
    assert sample(rules.get("ok")).origin == "example"
