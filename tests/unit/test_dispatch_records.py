"""What the dispatcher writes to the ledger, field by field, and how it answers when the ledger
fails a write (the memory ledger with `FaultyBackend` switched on; a scripted runner).

test_dispatch.py covers the decisions; these tests read the records back whole, because an
operator (`triggers show`) and the next delivery (a takeover) act on what a record says: the
operation, the reason, the ambiguous flag and the attempts, not only its status.
"""

from __future__ import annotations

import logging

import pytest

from tests.fakes import STORAGE_RULES_YAML, ScriptedRunner, storage_event
from tests.ledger_faults import LEASE, StoreUnavailable, faulty_ledger, faulty_store
from tests.unit.conftest import STORAGE_RULES
from triggers.dispatch import Dispatcher, Outcome
from triggers.errors import PermanentRunError, RetryableRunError
from triggers.ledger import Status
from triggers.rules import load_text

store = pytest.fixture(faulty_store, name="store")
ledger = pytest.fixture(faulty_ledger, name="ledger")


@pytest.fixture
def dispatcher(ledger, runner: ScriptedRunner):
    return Dispatcher(STORAGE_RULES, ledger, runner)


def by_rule(decision) -> dict:
    return {o.rule: o for o in decision.outcomes}


def written(ledger, outcome) -> dict:
    """The fields of the outcome's record that a dispatch decides."""
    record = ledger.get(outcome.ledger_key)
    return {
        "status": record.status,
        "execution": record.execution,
        "operation": record.operation,
        "reason": record.reason,
        "ambiguous": record.ambiguous,
        "attempts": record.attempts,
    }


def test_a_launch_records_the_execution_and_the_operation(dispatcher, ledger, runner):
    load = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert load.outcome is Outcome.LAUNCHED and not load.adopted
    assert written(ledger, load) == {
        "status": Status.LAUNCHED,
        "execution": load.execution,
        "operation": f"op-{runner.run_calls - 1}",  # `load` runs first, then `audit`
        "reason": None,
        "ambiguous": False,
        "attempts": 1,
    }
    assert load.execution.startswith("projects/demo-project/locations/europe-west1/jobs/loader/")


def test_a_permanent_error_records_its_message_as_the_reason(dispatcher, ledger, runner):
    runner.fail("loader", PermanentRunError("job not found", status=404))
    load = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert (load.outcome, load.reason) == (Outcome.REJECTED, "job not found")
    assert written(ledger, load) == {
        "status": Status.REJECTED,
        "execution": None,
        "operation": None,
        "reason": "job not found",
        "ambiguous": False,
        "attempts": 1,
    }


def test_a_retryable_error_releases_with_its_reason_and_not_ambiguous(dispatcher, ledger, runner):
    runner.fail("loader", RetryableRunError("quota exceeded", status=429))
    load = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert (load.outcome, load.reason) == (Outcome.RETRY, "quota exceeded")
    assert written(ledger, load) == {
        "status": Status.RELEASED,
        "execution": None,
        "operation": None,
        "reason": "quota exceeded",
        "ambiguous": False,
        "attempts": 1,
    }
    # The retry runs at once; its record forgets the failed attempt, except that there was one.
    again = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert again.outcome is Outcome.LAUNCHED
    assert written(ledger, again) | {"operation": None} == {
        "status": Status.LAUNCHED,
        "execution": again.execution,
        "operation": None,
        "reason": None,
        "ambiguous": False,
        "attempts": 2,
    }
    assert ledger.get(again.ledger_key).operation == f"op-{runner.run_calls}"  # audit: duplicate
    # Nothing can have started (the error said so), so nobody looked for an execution.
    assert runner.find_calls == 0


def test_a_render_failure_records_the_rejection_under_the_events_identity(dispatcher, ledger):
    event = storage_event(name="strict/a.csv")
    strict = by_rule(dispatcher.dispatch(event))["needs-field"]
    assert strict.outcome is Outcome.REJECTED
    assert strict.dedup_key == event.default_dedup_key
    record = ledger.get(strict.ledger_key)
    assert record.rule == "needs-field" and record.dedup_key == event.default_dedup_key
    assert record.job == "projects/demo-project/locations/europe-west1/jobs/strict"
    assert written(ledger, strict) == {
        "status": Status.REJECTED,
        "execution": None,
        "operation": None,
        "reason": strict.reason,
        "ambiguous": False,
        "attempts": 1,
    }
    # nothing was planned, so no request is recorded (`triggers show`: "no job was planned")
    assert "missing_field" in record.reason and record.request == {}


# --- replays: a scope is a new dedup identity, on every path ----------------------------------


def test_a_replay_scope_applies_to_a_rule_whose_template_fails(dispatcher, ledger):
    # GIVEN an event whose `needs-field` template fails, dispatched once, then replayed
    event = storage_event(name="strict/a.csv")
    original = by_rule(dispatcher.dispatch(event))["needs-field"]
    replayed = by_rule(dispatcher.dispatch(event, scope="replay-7"))["needs-field"]
    # THEN the replay's rejection is recorded under the replay's own identity, not counted as a
    # duplicate of the original (a replay is one new run per event, whatever happens to it)
    assert replayed.outcome is Outcome.REJECTED
    assert replayed.dedup_key == f"replay-7/{event.default_dedup_key}"
    assert replayed.ledger_key != original.ledger_key
    record = ledger.get(replayed.ledger_key)
    assert record.dedup_key == f"replay-7/{event.default_dedup_key}"
    assert record.status is Status.REJECTED and record.duplicates == 0
    assert ledger.get(original.ledger_key).duplicates == 0


def test_a_replay_scope_applies_to_every_planned_rule(dispatcher, ledger, runner):
    first = by_rule(dispatcher.dispatch(storage_event()))
    replay = by_rule(dispatcher.dispatch(storage_event(), scope="replay-7"))
    for rule in ("load", "audit"):
        assert replay[rule].outcome is Outcome.LAUNCHED
        assert replay[rule].dedup_key == f"replay-7/{first[rule].dedup_key}"
        assert ledger.get(replay[rule].ledger_key).execution == replay[rule].execution
    assert runner.run_calls == 4


# --- the ledger fails a write -----------------------------------------------------------------


def test_a_failed_claim_asks_for_a_retry_with_the_stores_error(dispatcher, store, runner):
    store.fail("create", times=2)
    decision = dispatcher.dispatch(storage_event())
    assert decision.retry and runner.run_calls == 0
    reasons = {o.rule: o.reason for o in decision.outcomes}
    # once one claim has failed, the event's other rules do not wait on the ledger again
    assert reasons == {
        "load": "ledger unavailable: ledger store unavailable (create)",
        "audit": "ledger unavailable: ledger store unavailable (create)"
        " (not tried again for this event)",
    }
    assert store.failed == ["create"]


def test_a_failed_launch_record_is_recovered_by_the_takeover_without_a_second_run(
    dispatcher, ledger, store, runner, clock
):
    # GIVEN a launch whose `launched` write fails
    store.fail("update")
    load = by_rule(dispatcher.dispatch(storage_event()))["load"]
    # THEN the sender is asked to retry, with the execution named (it runs), and the record
    # still says claimed: only the takeover after the lease may record it, by adopting it
    assert load.outcome is Outcome.RETRY and load.execution is not None
    assert load.reason.startswith(f"launched {load.execution} but the ledger write failed")
    assert written(ledger, load)["status"] is Status.CLAIMED
    assert ledger.get(load.ledger_key).execution is None
    # WHEN the event is redelivered inside the lease THEN it must wait
    busy = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert (busy.outcome, busy.reason) == (
        Outcome.RETRY,
        "another delivery of this event holds the claim",
    )
    # WHEN it is redelivered after the lease THEN the takeover finds the execution and adopts it
    clock.advance(LEASE)
    again = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert again.outcome is Outcome.LAUNCHED and again.adopted
    assert again.execution == load.execution
    assert runner.executions[load.ledger_key] == [load.execution]
    assert written(ledger, again) == {
        "status": Status.LAUNCHED,
        "execution": load.execution,
        "operation": None,  # adopted: the operation of the lost launch is unknown
        "reason": None,
        "ambiguous": False,
        "attempts": 2,
    }


def test_a_failed_rejection_record_still_answers_rejected(dispatcher, ledger, store, runner):
    runner.fail("loader", PermanentRunError("job not found", status=404))
    store.fail("update")
    load = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert (load.outcome, load.reason) == (Outcome.REJECTED, "job not found")
    assert written(ledger, load)["status"] is Status.CLAIMED


def test_a_failed_release_still_asks_for_a_retry(dispatcher, ledger, store, runner, clock):
    runner.fail("loader", RetryableRunError("unavailable", status=503))
    store.fail("update")
    load = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert (load.outcome, load.reason) == (Outcome.RETRY, "unavailable")
    # The claim was not given back: the retry must wait for the lease, then may run.
    assert written(ledger, load)["status"] is Status.CLAIMED
    assert by_rule(dispatcher.dispatch(storage_event()))["load"].outcome is Outcome.RETRY
    clock.advance(LEASE)
    assert by_rule(dispatcher.dispatch(storage_event()))["load"].outcome is Outcome.LAUNCHED
    assert len(runner.executions[load.ledger_key]) == 1


def test_an_unplannable_rule_is_rejected_even_when_the_ledger_is_down(dispatcher, ledger, store):
    event = storage_event(name="strict/a.csv")
    store.fail("create", times=3)
    decision = dispatcher.dispatch(event)
    strict = by_rule(decision)["needs-field"]
    # Retrying cannot make a template render: the answer is final even without a record.
    assert strict.outcome is Outcome.REJECTED and "missing_field" in strict.reason
    assert ledger.get(strict.ledger_key) is None
    assert {o.rule: o.outcome for o in decision.outcomes if o.rule != "needs-field"} == {
        "load": Outcome.RETRY,
        "audit": Outcome.RETRY,
    }


def test_an_unplannable_rule_whose_claim_fails_first_spares_the_ledger_for_the_rest(ledger, store):
    # GIVEN a rule that cannot be planned listed before one that can, and a ledger that fails
    rules = load_text(
        STORAGE_RULES_YAML.replace("rules:\n", "rules:\n" + _STRICT_FIRST, 1), environ={}
    )
    dispatcher = Dispatcher(rules, ledger, ScriptedRunner())
    store.fail("create", StoreUnavailable("down"))
    decision = by_rule(dispatcher.dispatch(storage_event()))
    # THEN the first is rejected all the same; its failed claim is the event's ledger outage,
    # so the others are told to retry without a claim of their own
    assert decision["first"].outcome is Outcome.REJECTED
    assert "missing_field" in decision["first"].reason
    assert decision["load"].outcome is Outcome.RETRY
    assert decision["load"].reason == "ledger unavailable: down (not tried again for this event)"
    assert store.failed == ["create"]
    assert ledger.get(decision["load"].ledger_key) is None


_STRICT_FIRST = """\
  - name: first
    on: storage.finalized
    job: strict
    overrides:
      args: ["{{ event.missing_field }}"]
"""


def test_a_failed_write_is_never_an_exception_for_the_caller(dispatcher, store):
    store.fail("update", StoreUnavailable("boom"), times=2)
    decision = dispatcher.dispatch(storage_event())
    # launched but not recorded: a retry that names each execution, never an exception
    assert {o.outcome for o in decision.outcomes} == {Outcome.RETRY}
    assert all(o.execution for o in decision.outcomes)
    assert store.failed == ["update", "update"]


# --- what the operator reads in the log -------------------------------------------------------


def test_a_failed_write_is_logged_with_the_key_and_the_error(dispatcher, store, caplog):
    store.fail("update", StoreUnavailable("firestore: deadline exceeded"))
    with caplog.at_level(logging.WARNING, logger="triggers.dispatch"):
        load = by_rule(dispatcher.dispatch(storage_event()))["load"]
    assert [r.getMessage() for r in caplog.records] == [
        f"launched {load.execution} for {load.ledger_key} but could not record it:"
        " firestore: deadline exceeded"
    ]


def test_a_claim_taken_over_before_its_write_is_logged(dispatcher, ledger, runner, clock, caplog):
    # GIVEN a run so slow that its claim was taken over before it could record the launch
    request = STORAGE_RULES.get("load").plan(storage_event())

    class SlowRunner(ScriptedRunner):
        def run(self, request, *, validate_only=False):
            clock.advance(LEASE)
            assert ledger.claim(request).kind.value == "takeover"
            return super().run(request)

    slow = Dispatcher(STORAGE_RULES, ledger, SlowRunner())
    with caplog.at_level(logging.WARNING, logger="triggers.dispatch"):
        load = by_rule(slow.dispatch(storage_event()))["load"]
    # THEN the launch is still reported, and the lost write is logged (the taker records it)
    assert load.outcome is Outcome.LAUNCHED
    assert f"claim {request.ledger_key} was taken over before it could be recorded" in [
        r.getMessage() for r in caplog.records
    ]
    assert ledger.get(request.ledger_key).status is Status.CLAIMED


def test_a_failed_claim_of_an_unplannable_rule_is_logged(dispatcher, store, caplog):
    store.fail("create", StoreUnavailable("down"), times=3)
    with caplog.at_level(logging.WARNING, logger="triggers.dispatch"):
        dispatcher.dispatch(storage_event(name="strict/a.csv"))
    messages = [r.getMessage() for r in caplog.records]
    # the first claim that fails is logged; the event's later rules skip the ledger
    assert "ledger claim failed for rule load: down" in messages
    assert store.failed == ["create"]


def test_only_a_launch_says_adopted(dispatcher, runner):
    runner.fail("loader", PermanentRunError("job not found", status=404))
    decision = dispatcher.dispatch(storage_event())
    assert [o.adopted for o in decision.outcomes] == [False, False]
    assert all("adopted" not in rule for rule in decision.as_dict()["rules"])
    again = dispatcher.dispatch(storage_event())  # duplicates
    assert [o.adopted for o in again.outcomes] == [False, False]


def test_content_no_store_can_hold_is_rejected_under_the_replay_scope(dispatcher, ledger, store):
    # GIVEN a store that cannot encode the record (the backstop behind the decoder's checks)
    store.fail("create", UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))
    decision = dispatcher.dispatch(storage_event(), scope="replay-9")
    load = by_rule(decision)["load"]
    # THEN it is a rejection for good, recorded under the replay's identity, never a retry
    assert load.outcome is Outcome.REJECTED and load.reason.startswith("bad_encoding: ")
    assert load.dedup_key.startswith("replay-9/")
    assert written(ledger, load)["status"] is Status.REJECTED
