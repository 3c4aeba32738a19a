"""Rules with `limits:`: the dispatcher claims, enqueues the launch task and records `queued`;
the queue's failures keep the event (pure logic: memory ledger, MemoryTaskQueue)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fakes import (
    STORAGE_RULES_YAML,
    Ambiguous,
    RecordingSpans,
    ScriptedRunner,
    storage_event,
)
from triggers.dispatch import NO_QUEUE, Dispatcher, Outcome
from triggers.errors import AmbiguousRunError
from triggers.flow.queue import MemoryTaskQueue, QueueUnavailable, Task, TaskQueueError
from triggers.flow.spec import Flow, Limits
from triggers.ledger import Ledger, Status
from triggers.rules import load_text
from triggers.rules.rule import Rule
from triggers.rules.ruleset import RuleSet


def with_flow(rule: Rule, flow: Flow | None) -> Rule:
    fields = {name: getattr(rule, name) for name in Rule.__slots__}
    fields["flow"] = flow
    return Rule(**fields)


def flow_rules(limits: Limits) -> RuleSet:
    """`load` paced by `limits`; `audit` launches inline as before."""
    loaded = load_text(STORAGE_RULES_YAML, environ={})
    return RuleSet(
        [with_flow(r, Flow(limits)) if r.name == "load" else r for r in loaded],
    )


class FailingQueue:
    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.inner = MemoryTaskQueue()

    def enqueue(self, task: Task) -> bool:
        if self.errors:
            raise self.errors.pop(0)
        return self.inner.enqueue(task)


@pytest.fixture
def queue():
    return MemoryTaskQueue()


@pytest.fixture
def paced(ledger, runner, queue):
    return Dispatcher(
        flow_rules(Limits(queue="q-load", rate_per_second=1.0)), ledger, runner, queue=queue
    )


def by_rule(decision):
    return {o.rule: o for o in decision.outcomes}


def test_a_paced_rule_is_queued_not_run_and_the_event_is_acked(paced, ledger, runner, queue):
    decision = paced.dispatch(storage_event())
    load = by_rule(decision)["load"]
    assert load.outcome is Outcome.QUEUED and not decision.retry
    assert by_rule(decision)["audit"].outcome is Outcome.LAUNCHED  # inline rules unchanged
    assert runner.run_calls == 1
    [task] = queue.tasks
    record = ledger.get(load.ledger_key)
    millis = int(record.created_at.timestamp() * 1000)
    assert task == Task(
        "q-load",
        f"l-{load.ledger_key}-{millis}",
        {"kind": "launch", "rule": "load", "ledger_key": load.ledger_key},
    )
    assert (record.status, record.task, record.reason, record.attempts) == (
        Status.QUEUED,
        task.name,
        None,
        1,
    )
    assert record.execution is None and record.event_document["data"]["name"] == "incoming/a.csv"
    assert load.reason == f"task {task.name} on queue q-load"


def test_a_redelivery_of_a_queued_event_is_a_duplicate_and_enqueues_nothing(paced, ledger, queue):
    first = by_rule(paced.dispatch(storage_event()))["load"]
    again = by_rule(paced.dispatch(storage_event()))["load"]
    assert again.outcome is Outcome.DUPLICATE
    assert len(queue.tasks) == 1
    assert ledger.get(first.ledger_key).duplicates == 1


def test_queue_unavailable_releases_the_claim_and_asks_for_a_retry(ledger, runner):
    queue = FailingQueue(QueueUnavailable("503 from Cloud Tasks"))
    dispatcher = Dispatcher(flow_rules(Limits(queue="q-load")), ledger, runner, queue=queue)
    decision = dispatcher.dispatch(storage_event())
    load = by_rule(decision)["load"]
    assert decision.retry and load.outcome is Outcome.RETRY
    record = ledger.get(load.ledger_key)
    assert (record.status, record.task, record.attempts, record.ambiguous) == (
        Status.RELEASED,
        None,
        1,
        False,
    )
    assert record.reason == "task queue unavailable: 503 from Cloud Tasks"
    # the redelivery enqueues and records `queued`; the launch is not run inline either time
    again = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert again.outcome is Outcome.QUEUED
    record = ledger.get(load.ledger_key)
    assert (record.status, record.attempts) == (Status.QUEUED, 2)
    assert len(queue.inner.tasks) == 1
    assert runner.run_calls == 1  # audit, inline, the first time; never load


def test_a_missing_queue_is_retried_and_logged_as_an_error_naming_the_queue(ledger, runner, caplog):
    queue = FailingQueue(TaskQueueError("404 queue not found"))
    dispatcher = Dispatcher(flow_rules(Limits(queue="q-missing")), ledger, runner, queue=queue)
    load = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert load.outcome is Outcome.RETRY
    assert load.reason == "task queue q-missing: 404 queue not found"
    assert ledger.get(load.ledger_key).status is Status.RELEASED
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert errors and "q-missing" in errors[0].getMessage()
    assert errors[0].getMessage() == (
        "cannot enqueue the launch of load on queue q-missing: 404 queue not found"
    )
    # the labels an alert on deployment mistakes selects
    assert errors[0].labels == {"kind": "queue_error", "rule": "load", "queue": "q-missing"}
    # released as not ambiguous: nothing was sent to a job API, the redelivery need not look
    record = ledger.get(load.ledger_key)
    assert (record.ambiguous, record.reason) == (False, load.reason)


def test_a_failed_queued_write_asks_for_a_retry_naming_the_task(ledger, runner, queue, caplog):
    class FailingQueued(Ledger):
        def queued(self, claim, task):
            raise ConnectionError("ledger gone")

    failing = FailingQueued(ledger.backend, lease=ledger.lease, clock=ledger.clock)
    rules = flow_rules(Limits(queue="q-load"))
    load = by_rule(Dispatcher(rules, failing, runner, queue=queue).dispatch(storage_event()))[
        "load"
    ]
    [task] = queue.tasks
    assert (load.outcome, load.reason) == (
        Outcome.RETRY,
        f"queued {task.name}; the ledger write failed",
    )
    assert any(
        r.getMessage() == f"queued {task.name} but could not record it: ledger gone"
        for r in caplog.records
    )


def test_enqueueing_is_one_span_naming_the_queue(ledger, runner, queue):
    spans = RecordingSpans()
    rules = flow_rules(Limits(queue="q-load"))
    Dispatcher(rules, ledger, runner, queue=queue, spans=spans).dispatch(storage_event())
    assert [(s.name, s.attributes) for s in spans.opened if "enqueue" in s.name.lower()] == [
        ("triggers.enqueue", {"queue": "q-load"})
    ]


def test_without_a_queue_a_paced_rule_answers_retry_with_the_setting_to_set(ledger, runner):
    dispatcher = Dispatcher(flow_rules(Limits(queue="q-load")), ledger, runner)
    load = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert (load.outcome, load.reason) == (Outcome.RETRY, NO_QUEUE)
    assert "TRIGGERS_TASK_TARGET_URL" in NO_QUEUE
    record = ledger.get(load.ledger_key)
    assert (record.status, record.ambiguous, record.reason) == (Status.RELEASED, False, NO_QUEUE)


def test_the_task_exists_already_is_as_good_as_created(paced, ledger, queue):
    # A redelivery taking over a claim whose holder crashed after enqueue: ALREADY_EXISTS.
    record_key = by_rule(paced.dispatch(storage_event()))["load"].ledger_key
    assert queue.enqueue(queue.tasks[0]) is False
    assert ledger.get(record_key).status is Status.QUEUED


def test_a_crash_after_enqueue_is_taken_over_as_ambiguous_and_not_enqueued_twice(
    ledger, runner, queue, clock
):
    class CrashOnQueued(Ledger):
        def queued(self, claim, task):
            raise ConnectionError("ledger gone")

    crashing = CrashOnQueued(ledger.backend, lease=ledger.lease, clock=clock)
    rules = flow_rules(Limits(queue="q-load"))
    first = by_rule(Dispatcher(rules, crashing, runner, queue=queue).dispatch(storage_event()))
    assert first["load"].outcome is Outcome.RETRY  # the task exists; the record says claimed
    assert ledger.get(first["load"].ledger_key).status is Status.CLAIMED
    clock.advance(ledger.lease + timedelta(seconds=1))
    again = by_rule(Dispatcher(rules, ledger, runner, queue=queue).dispatch(storage_event()))
    assert again["load"].outcome is Outcome.QUEUED
    record = ledger.get(first["load"].ledger_key)
    assert (record.status, record.attempts, record.task) == (
        Status.QUEUED,
        2,
        queue.tasks[0].name,
    )
    assert len(queue.tasks) == 1  # the same name: ALREADY_EXISTS
    assert runner.find_calls == 1  # the takeover looked for an execution first


def test_an_ambiguous_takeover_that_finds_the_execution_adopts_it_instead_of_queueing(
    ledger, clock, queue
):
    runner = ScriptedRunner(clock=clock)
    inline = load_text(STORAGE_RULES_YAML, environ={})
    # An inline attempt (before `limits:` was added) lost its jobs.run response.
    runner.fail(
        "loader", Ambiguous(AmbiguousRunError("deadline"), appears_after=timedelta(minutes=1))
    )
    first = by_rule(Dispatcher(inline, ledger, runner, queue=queue).dispatch(storage_event()))
    assert first["load"].outcome is Outcome.RETRY
    clock.advance(timedelta(minutes=10))
    paced = Dispatcher(flow_rules(Limits(queue="q-load")), ledger, runner, queue=queue)
    again = by_rule(paced.dispatch(storage_event()))["load"]
    assert again.outcome is Outcome.LAUNCHED and again.adopted
    assert queue.tasks == []
    assert ledger.get(first["load"].ledger_key).status is Status.LAUNCHED


def test_a_new_occurrence_after_the_dedup_window_gets_a_new_task_name(paced, ledger, queue, clock):
    key = by_rule(paced.dispatch(storage_event()))["load"].ledger_key
    ledger.backend.update(key, ledger.get(key).token, {"status": Status.LAUNCHED})
    clock.advance(timedelta(days=30))
    assert by_rule(paced.dispatch(storage_event()))["load"].outcome is Outcome.QUEUED
    first, second = queue.tasks
    assert first.name != second.name and first.body == second.body


# -- launch_planned: a run planned outside an event (a batch's own run) -----------------------


def planned_request():
    rule = next(r for r in load_text(STORAGE_RULES_YAML, environ={}) if r.name == "load")
    return rule.plan(storage_event())


def test_a_planned_run_launches_once_and_its_repeat_is_a_duplicate_of_that_execution(
    dispatcher, ledger, runner
):
    # GIVEN a request planned outside an event, with the document to keep beside it
    request = planned_request()
    # WHEN it is launched twice
    first = dispatcher.launch_planned(request, {"batch": "b-1"})
    again = dispatcher.launch_planned(request, {"batch": "b-1"})
    # THEN it ran once, and the repeat names that execution
    assert first.outcome is Outcome.LAUNCHED and runner.run_calls == 1
    assert (again.outcome, again.execution) == (Outcome.DUPLICATE, first.execution)
    assert (again.rule, again.ledger_key) == (request.rule, request.ledger_key)
    record = ledger.get(request.ledger_key)
    assert (record.status, record.execution, record.event_document) == (
        Status.LAUNCHED,
        first.execution,
        {"batch": "b-1"},
    )


def test_a_planned_run_whose_claim_is_held_elsewhere_waits(dispatcher, ledger, runner):
    request = planned_request()
    ledger.claim(request, None)  # another attempt holds it, its lease live
    outcome = dispatcher.launch_planned(request, None)
    assert (outcome.outcome, outcome.reason) == (Outcome.RETRY, "another attempt holds the claim")
    assert outcome.ledger_key == request.ledger_key and runner.run_calls == 0


def test_a_planned_run_without_a_ledger_is_retried_and_never_launched(ledger, runner):
    class Down(Ledger):
        def claim(self, request, event_document=None):
            raise ConnectionError("firestore unreachable")

    down = Down(ledger.backend, lease=ledger.lease, clock=ledger.clock)
    request = planned_request()
    outcome = Dispatcher(load_text(STORAGE_RULES_YAML, environ={}), down, runner).launch_planned(
        request, None
    )
    assert (outcome.outcome, outcome.reason) == (
        Outcome.RETRY,
        "ledger unavailable: firestore unreachable",
    )
    assert (outcome.rule, outcome.ledger_key) == (request.rule, request.ledger_key)
    assert runner.run_calls == 0
