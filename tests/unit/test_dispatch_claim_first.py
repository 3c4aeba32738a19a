"""Dispatch claims before it plans: a duplicate renders its dedup key and nothing else, the
owner plans after claiming and its first write records the planned request, and an event the
rule cannot plan does not keep a dedup key that other events share (issue 15).

The memory ledger and a scripted runner; templates are counted by wrapping `Template.render`.
"""

from __future__ import annotations

import pytest

from tests.fakes import ScriptedRunner, storage_event
from triggers.dispatch import Dispatcher, Outcome
from triggers.ledger import Ledger, Status
from triggers.ledger.memory import MemoryBackend
from triggers.rules import load_text
from triggers.rules.templates import Template

RULES = """\
project: demo-project
region: europe-west1
rules:
  - name: keyed
    on: storage.finalized
    match: {data: {name: [{prefix: "keyed/"}]}}
    job: loader
    overrides:
      args: ["--object={{ data.name }}", "--generation={{ data.generation }}"]
      env: {BUCKET: "{{ data.bucket }}"}
    dedup:
      key: "{{ data.bucket }}/{{ data.name }}"
  - name: by-event
    on: storage.finalized
    match: {data: {name: [{prefix: "plain/"}]}}
    job: loader
    overrides:
      args: ["--object={{ data.name }}"]
  - name: per-bucket
    on: storage.finalized
    match: {data: {name: [{prefix: "shared/"}]}}
    job: loader
    overrides:
      args: ["--label={{ data.metadata.label }}"]
    dedup:
      key: "{{ data.bucket }}"
"""


@pytest.fixture
def renders(monkeypatch) -> list[str]:
    """The source of every template rendered (literals included), in order."""
    seen: list[str] = []
    original = Template.render

    def counted(self, document):
        seen.append(self.source)
        return original(self, document)

    monkeypatch.setattr(Template, "render", counted)
    return seen


@pytest.fixture
def ledger(clock) -> Ledger:
    return Ledger(MemoryBackend(), clock=clock)


@pytest.fixture
def dispatcher(ledger) -> Dispatcher:
    return Dispatcher(load_text(RULES, environ={}), ledger, ScriptedRunner())


def only(decision):
    (outcome,) = decision.outcomes
    return outcome


def test_a_duplicate_renders_its_dedup_key_and_nothing_else(dispatcher, renders):
    # GIVEN an event launched by a rule with a dedup key template, args and env
    first = only(dispatcher.dispatch(storage_event("keyed/a.csv")))
    assert first.outcome is Outcome.LAUNCHED
    assert "{{ data.bucket }}" in renders and "--object={{ data.name }}" in renders
    renders.clear()
    # WHEN it is delivered again
    again = only(dispatcher.dispatch(storage_event("keyed/a.csv")))
    # THEN it is a duplicate with the execution, and only the key was rendered
    assert again.outcome is Outcome.DUPLICATE and again.execution == first.execution
    assert renders == ["{{ data.bucket }}/{{ data.name }}"]


def test_a_duplicate_of_a_rule_keyed_by_the_event_renders_nothing(dispatcher, renders):
    only(dispatcher.dispatch(storage_event("plain/a.csv")))
    renders.clear()
    assert only(dispatcher.dispatch(storage_event("plain/a.csv"))).outcome is Outcome.DUPLICATE
    assert renders == []


def test_the_owner_plans_after_claiming_and_records_the_request_with_its_launch(
    ledger, clock, renders
):
    # GIVEN a runner that reads the record while `jobs.run` is in flight
    seen_during_run = []

    class Peeking(ScriptedRunner):
        def run(self, request, *, validate_only=False):
            seen_during_run.append(ledger.get(request.ledger_key))
            return super().run(request, validate_only=validate_only)

    dispatcher = Dispatcher(load_text(RULES, environ={}), ledger, Peeking())
    outcome = only(dispatcher.dispatch(storage_event("keyed/a.csv")))
    # THEN the claim was made before planning (no request on it yet) ...
    (during,) = seen_during_run
    assert during.status is Status.CLAIMED and during.request == {}
    # ... and the launch recorded the exact request that was planned
    record = ledger.get(outcome.ledger_key)
    body = record.request["overrides"]["containerOverrides"][0]
    assert body["args"] == ["--object=keyed/a.csv", "--generation=1"]
    assert {"name": "BUCKET", "value": "raw"} in body["env"]
    assert {"name": "TRIGGERS_RUN_KEY", "value": outcome.ledger_key} in body["env"]


def test_an_event_that_cannot_be_planned_gives_a_shared_dedup_key_back(dispatcher, ledger):
    # GIVEN a rule keyed by bucket whose args need a metadata label, and an event without one
    bad = storage_event("shared/a.csv", event_id="e-bad")
    rejected = only(dispatcher.dispatch(bad))
    # THEN it is rejected under the event's own identity ...
    assert rejected.outcome is Outcome.REJECTED and "metadata" in rejected.reason
    assert rejected.dedup_key == bad.default_dedup_key
    assert ledger.get(rejected.ledger_key).status is Status.REJECTED
    # ... and the bucket's key is released, saying why
    by_bucket = ledger.list(rule="per-bucket", status=[Status.RELEASED])
    assert [r.dedup_key for r in by_bucket] == ["raw"]
    assert by_bucket[0].reason.startswith("not planned: ")
    # WHEN another event of the bucket that can be planned arrives THEN it launches
    good = storage_event("shared/b.csv", event_id="e-good")
    good.data["metadata"] = {"label": "ok"}
    launched = only(dispatcher.dispatch(good))
    assert launched.outcome is Outcome.LAUNCHED and launched.dedup_key == "raw"
    # and a redelivery of the bad event is now what its dedup key says: the bucket's run
    again = only(dispatcher.dispatch(storage_event("shared/a.csv", event_id="e-bad")))
    assert again.outcome is Outcome.DUPLICATE and again.execution == launched.execution


def test_a_redelivered_rejection_is_rejected_again_and_counted_once_more(dispatcher, ledger):
    bad = storage_event("shared/a.csv", event_id="e-bad")
    rejected = only(dispatcher.dispatch(bad))
    assert rejected.outcome is Outcome.REJECTED
    # the bucket's key is free again, so the redelivery plans, fails the same way, and is
    # counted as a duplicate on the event's own rejection
    again = only(dispatcher.dispatch(storage_event("shared/a.csv", event_id="e-bad")))
    assert again.outcome is Outcome.REJECTED and again.reason == rejected.reason
    assert again.ledger_key == rejected.ledger_key
    assert ledger.get(rejected.ledger_key).duplicates == 1
    assert [r.status for r in ledger.list(rule="per-bucket")].count(Status.REJECTED) == 1
