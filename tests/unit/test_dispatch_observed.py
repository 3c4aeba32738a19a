"""What the dispatcher tells an operator besides its answer: the spans of each ledger write, and
the log lines of writes that fail or come too late (memory ledger with `FaultyBackend`, scripted
runner, spans recorded by a pure fake).

An operator reads these to find a record that says less than what happened; a warning on every
healthy write, or one without its ledger key, would hide the ones that matter. Found by
mutating `triggers/dispatch.py`.
"""

from __future__ import annotations

import logging

import pytest

from tests.fakes import Ambiguous, RecordingSpans, ScriptedRunner, storage_event
from tests.ledger_faults import LEASE, StoreUnavailable, faulty_ledger, faulty_store
from tests.unit.conftest import STORAGE_RULES
from triggers.dispatch import Dispatcher, Outcome
from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError
from triggers.ledger import Status

store = pytest.fixture(faulty_store, name="store")
ledger = pytest.fixture(faulty_ledger, name="ledger")


@pytest.fixture
def spans() -> RecordingSpans:
    return RecordingSpans()


@pytest.fixture
def dispatcher(ledger, runner, spans):
    return Dispatcher(STORAGE_RULES, ledger, runner, spans=spans)


def load_outcome(decision):
    return next(o for o in decision.outcomes if o.rule == "load")


# -- spans: one `triggers.record` per ledger write, named by the write --------------------------


@pytest.mark.parametrize(
    ("failure", "write"),
    [
        (PermanentRunError("job not found", status=404), "rejected"),
        (RetryableRunError("quota exceeded", status=429), "release"),
        (Ambiguous(AmbiguousRunError("timed out", status=504), started=False), "hold"),
    ],
    ids=["rejected", "release", "hold"],
)
def test_each_ledger_write_has_a_record_span_named_by_the_write(
    dispatcher, runner, spans, failure, write
):
    runner.fail("loader", failure)
    dispatcher.dispatch(storage_event())
    # `load` fails its run and writes `write`; `audit` (after it) is launched
    assert spans.writes() == [write, "launched"]
    assert [s.name for s in spans.opened if s.name.startswith("triggers.record")] == [
        "triggers.record",
        "triggers.record",
    ]


def test_a_rejected_unplannable_rule_has_a_record_span(dispatcher, spans):
    dispatcher.dispatch(storage_event(name="strict/a.csv"))
    assert spans.writes() == ["launched", "launched", "rejected"]


# -- the log: quiet when a write lands, the key and the error when it does not ------------------


def test_a_write_that_lands_logs_nothing(dispatcher, runner, caplog):
    runner.fail("loader", PermanentRunError("job not found", status=404))
    runner.fail("auditor", RetryableRunError("quota exceeded", status=429))
    with caplog.at_level(logging.WARNING, logger="triggers.dispatch"):
        dispatcher.dispatch(storage_event(name="strict/a.csv"))
    assert caplog.records == []


def test_a_failed_rejection_write_is_logged_with_the_key_and_the_error(dispatcher, store, caplog):
    store.fail("update", StoreUnavailable("firestore: deadline exceeded"))
    dispatcher.runner.fail("loader", PermanentRunError("job not found", status=404))
    with caplog.at_level(logging.WARNING, logger="triggers.dispatch"):
        load = load_outcome(dispatcher.dispatch(storage_event()))
    assert load.outcome is Outcome.REJECTED
    assert [r.getMessage() for r in caplog.records] == [
        f"ledger write failed for {load.ledger_key}: firestore: deadline exceeded"
    ]


def test_a_rejection_whose_claim_was_taken_over_is_logged_with_its_key(ledger, clock, caplog):
    # GIVEN a run so slow that its claim was taken over before it failed for good
    request = STORAGE_RULES.get("load").plan(storage_event())

    class SlowRunner(ScriptedRunner):
        def run(self, request, *, validate_only=False):
            if request.job_id == "loader":
                clock.advance(LEASE)
                assert ledger.claim(request).kind.value == "takeover"
                raise PermanentRunError("job not found", status=404)
            return super().run(request)

    slow = Dispatcher(STORAGE_RULES, ledger, SlowRunner())
    with caplog.at_level(logging.WARNING, logger="triggers.dispatch"):
        load = load_outcome(slow.dispatch(storage_event()))
    # THEN the rejection is answered, its lost write logged, and the taker's claim stands
    assert load.outcome is Outcome.REJECTED
    assert [r.getMessage() for r in caplog.records] == [
        f"claim {request.ledger_key} was taken over before it could be recorded"
    ]
    assert ledger.get(request.ledger_key).status is Status.CLAIMED


def test_a_failed_claim_of_an_unplannable_rule_is_logged_with_the_rule(dispatcher, store, caplog):
    # the rule on its own (as a queue task dispatches it), so its claim is the first to fail
    store.fail("create", StoreUnavailable("down"))
    with caplog.at_level(logging.WARNING, logger="triggers.dispatch"):
        outcome = dispatcher.dispatch_rule(
            STORAGE_RULES.get("needs-field"), storage_event(name="strict/a.csv")
        )
    assert outcome.outcome is Outcome.REJECTED and "missing_field" in outcome.reason
    assert [r.getMessage() for r in caplog.records] == [
        "ledger claim failed for rule needs-field: down"
    ]


# -- a launch the ledger could not record: the answer and the log name the execution ------------


def test_an_adopted_launch_that_cannot_be_recorded_says_so_in_the_answer_and_the_log(
    dispatcher, runner, store, caplog
):
    # GIVEN a run whose response was lost (it started) and a ledger that fails the next write
    runner.fail("loader", AmbiguousRunError("response lost", status=503))
    store.fail("update", StoreUnavailable("deadline exceeded"))
    with caplog.at_level(logging.WARNING, logger="triggers.dispatch"):
        load = load_outcome(dispatcher.dispatch(storage_event()))
    # THEN the lookup adopted the execution, and the answer asks for a retry that will adopt it
    assert (load.outcome, load.adopted) == (Outcome.RETRY, True)
    assert load.reason == (
        f"launched {load.execution} but the ledger write failed (deadline exceeded); a redelivery"
        " after the lease adopts it"
    )
    assert load.as_dict()["adopted"] is True
    # and the error log carries the execution and the key as labels an operator can search
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.labels == {"execution": load.execution, "ledger_key": load.ledger_key}
