"""Dispatcher decisions, with the memory ledger and a scripted runner (pure logic, no I/O).

The same scenarios run against the real Firestore emulator and Cloud Run emulator in
tests/integration/test_dispatch_e2e.py.
"""

from __future__ import annotations

from tests.fakes import STORAGE_RULES_YAML, storage_event
from triggers.dispatch import Dispatcher, Outcome
from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError
from triggers.events.model import Event
from triggers.ledger import Ledger, Status
from triggers.ledger.memory import MemoryBackend
from triggers.rules import load_text

RULES = load_text(STORAGE_RULES_YAML, environ={})


def outcomes(decision) -> dict[str, Outcome]:
    return {o.rule: o.outcome for o in decision.outcomes}


def test_new_event_launches_every_matching_rule_and_acks(dispatcher, ledger, runner):
    decision = dispatcher.dispatch(storage_event())
    assert outcomes(decision) == {"load": Outcome.LAUNCHED, "audit": Outcome.LAUNCHED}
    assert not decision.retry
    record = ledger.get(decision.outcomes[0].ledger_key)
    assert record.status is Status.LAUNCHED
    assert record.execution == decision.outcomes[0].execution
    assert record.event_document["data"]["name"] == "incoming/a.csv"


def test_redelivery_is_a_counted_duplicate_and_runs_nothing(dispatcher, ledger, runner):
    first = dispatcher.dispatch(storage_event())
    again = dispatcher.dispatch(storage_event())
    assert outcomes(again) == {"load": Outcome.DUPLICATE, "audit": Outcome.DUPLICATE}
    assert runner.run_calls == 2
    assert again.outcomes[0].execution == first.outcomes[0].execution
    assert ledger.get(first.outcomes[0].ledger_key).duplicates == 1


def test_event_matching_no_rule_is_acked_with_no_outcomes(dispatcher):
    other = Event(
        id="x",
        source="s",
        type="com.example.other",
        kind="generic",
        form="cloudevent-structured",
        data={},
    )
    decision = dispatcher.dispatch(other)
    assert decision.outcomes == () and not decision.retry


def test_permanent_api_error_is_rejected_recorded_and_acked(dispatcher, ledger, runner):
    runner.fail("loader", PermanentRunError("job not found", status=404))
    decision = dispatcher.dispatch(storage_event())
    assert outcomes(decision) == {"load": Outcome.REJECTED, "audit": Outcome.LAUNCHED}
    assert not decision.retry
    record = ledger.get(decision.outcomes[0].ledger_key)
    assert record.status is Status.REJECTED and record.reason == "job not found"
    # and a redelivery does not try again
    assert outcomes(dispatcher.dispatch(storage_event()))["load"] is Outcome.DUPLICATE
    assert runner.run_calls == 2


def test_retryable_error_releases_the_claim_and_a_redelivery_runs_once(dispatcher, ledger, runner):
    runner.fail("loader", RetryableRunError("quota", status=429))
    decision = dispatcher.dispatch(storage_event())
    assert decision.retry
    assert outcomes(decision) == {"load": Outcome.RETRY, "audit": Outcome.LAUNCHED}
    assert ledger.get(decision.outcomes[0].ledger_key).status is Status.RELEASED
    # the redelivery comes at once (no lease to wait for): load runs, audit is a duplicate
    again = dispatcher.dispatch(storage_event())
    assert outcomes(again) == {"load": Outcome.LAUNCHED, "audit": Outcome.DUPLICATE}
    assert not again.retry
    assert len(runner.executions[decision.outcomes[0].ledger_key]) == 1
    assert ledger.get(decision.outcomes[0].ledger_key).attempts == 2


def test_ambiguous_failure_adopts_the_execution_it_started(dispatcher, ledger, runner):
    runner.fail("loader", AmbiguousRunError("connection reset after sending"))
    decision = dispatcher.dispatch(storage_event())
    load = decision.outcomes[0]
    # the same attempt found what it had started: launched, adopted, acked
    assert load.outcome is Outcome.LAUNCHED and load.adopted
    assert len(runner.executions[load.ledger_key]) == 1
    assert ledger.get(load.ledger_key).execution == load.execution


def test_crash_between_claim_and_record_is_taken_over_after_the_lease(
    dispatcher, ledger, runner, clock
):
    # GIVEN a delivery that claimed and ran, then died before recording
    request = RULES.get("load").plan(storage_event())
    claim = ledger.claim(request)
    runner.run(request)
    # WHEN the redelivery arrives while the lease is live THEN it is asked to retry later
    assert outcomes(dispatcher.dispatch(storage_event()))["load"] is Outcome.RETRY
    # WHEN it arrives after the lease THEN the earlier execution is adopted, not run again
    clock.advance(minutes=6)
    decision = dispatcher.dispatch(storage_event())
    load = decision.outcomes[0]
    assert load.outcome is Outcome.LAUNCHED and load.adopted
    assert len(runner.executions[request.ledger_key]) == 1
    assert ledger.get(request.ledger_key).attempts == 2
    # and the dead claimer can no longer overwrite the record
    assert ledger.launched(claim, "late") is False


def test_render_failure_is_rejected_once_and_recorded(dispatcher, ledger, runner):
    decision = dispatcher.dispatch(storage_event(name="strict/a.csv"))
    strict = {o.rule: o for o in decision.outcomes}["needs-field"]
    assert strict.outcome is Outcome.REJECTED
    assert "missing_field" in strict.reason and "args[0]" in strict.reason
    assert ledger.get(strict.ledger_key).status is Status.REJECTED
    assert not decision.retry
    # a redelivery is a duplicate of the rejection (nothing is rendered again), and says so
    again = {o.rule: o for o in dispatcher.dispatch(storage_event(name="strict/a.csv")).outcomes}
    assert again["needs-field"].outcome is Outcome.DUPLICATE
    assert again["needs-field"].reason == f"already rejected: {strict.reason}"
    assert ledger.get(strict.ledger_key).duplicates == 1


class BrokenBackend(MemoryBackend):
    def create(self, record):
        raise ConnectionError("firestore unavailable")


def test_ledger_outage_asks_for_a_retry_and_runs_nothing(runner, clock):
    dispatcher = Dispatcher(RULES, Ledger(BrokenBackend(), clock=clock), runner)
    decision = dispatcher.dispatch(storage_event())
    assert decision.retry
    assert {o.outcome for o in decision.outcomes} == {Outcome.RETRY}
    assert runner.run_calls == 0
    assert "ledger unavailable" in decision.outcomes[0].reason


def test_decision_as_dict_summarises_each_rule(dispatcher):
    summary = dispatcher.dispatch(storage_event()).as_dict()
    assert summary["decision"] == "ack"
    assert [r["rule"] for r in summary["rules"]] == ["load", "audit"]
    assert all(r["outcome"] == "launched" and r["execution"] for r in summary["rules"])
