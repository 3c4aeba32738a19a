"""The exactly-once branches of the dispatcher (issue 11), over the memory ledger and the
scripted runner of tests/fakes.py with one hand-moved clock (pure logic, no I/O).

Every test checks the whole record it leaves (status, reason, execution, operation, ambiguous,
attempts, lease) and the answer, and counts the executions that carry the run key. The same
protocol runs against the real servers in tests/integration/test_chaos.py.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fakes import STORAGE_RULES_YAML, Ambiguous, Clock, ScriptedRunner, storage_event
from triggers.dispatch import AMBIGUOUS_MARGIN, FIND_MARGIN, Dispatcher, Outcome
from triggers.errors import AmbiguousRunError, RetryableRunError
from triggers.ledger import Ledger, Status
from triggers.ledger.memory import MemoryBackend
from triggers.rules import load_text

RULES = load_text(STORAGE_RULES_YAML, environ={})
LEASE = timedelta(minutes=5)
HOLD = timedelta(seconds=40)  # e.g. a 10 s request timeout + the 30 s margin


class FlakyBackend(MemoryBackend):
    """The memory backend, whose next `fail_updates` updates raise (the ledger went away)."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_updates = 0

    def update(self, key, token, changes):
        if self.fail_updates:
            self.fail_updates -= 1
            raise ConnectionError("firestore unavailable")
        return super().update(key, token, changes)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def runner(clock):
    return ScriptedRunner(clock=clock)


@pytest.fixture
def backend():
    return FlakyBackend()


@pytest.fixture
def ledger(backend, clock):
    return Ledger(backend, lease=LEASE, clock=clock)


@pytest.fixture
def dispatcher(ledger, runner):
    return Dispatcher(RULES, ledger, runner, ambiguous_hold=HOLD)


def load_of(decision):
    return {o.rule: o for o in decision.outcomes}["load"]


def load_request():
    return RULES.get("load").plan(storage_event())


def test_ambiguous_attempt_that_started_nothing_keeps_its_claim(dispatcher, ledger, runner, clock):
    started_at = clock()
    runner.fail("loader", Ambiguous(AmbiguousRunError("read timeout"), started=False))
    decision = dispatcher.dispatch(storage_event())
    load = load_of(decision)
    assert decision.retry
    assert load.outcome is Outcome.RETRY and load.reason == "read timeout"
    assert load.execution is None and not load.adopted
    record = ledger.get(load.ledger_key)
    assert record.status is Status.CLAIMED  # not released: nobody may take it over yet
    assert record.ambiguous is True
    assert record.reason == "read timeout"
    assert record.lease_until == started_at + HOLD
    assert record.attempts == 1 and record.execution is None and record.operation is None
    assert runner.started(load_request()) == 0
    assert runner.find_sinces == [started_at - FIND_MARGIN]  # it looked once, from the claim


def test_redelivery_during_the_hold_is_told_to_retry_and_runs_nothing(
    dispatcher, ledger, runner, clock
):
    runner.fail("loader", Ambiguous(AmbiguousRunError("read timeout"), started=False))
    first = load_of(dispatcher.dispatch(storage_event()))
    before = ledger.get(first.ledger_key)
    clock.advance(HOLD - timedelta(seconds=1))
    decision = dispatcher.dispatch(storage_event())
    again = load_of(decision)
    assert decision.retry and again.outcome is Outcome.RETRY
    assert again.reason.startswith("an earlier attempt may have started the run: its claim is")
    assert again.reason.endswith(
        f"held until {(ledger.get(first.ledger_key).lease_until).isoformat()}"
    )
    assert runner.run_calls == 2  # load once, audit once: nothing ran again
    assert ledger.get(first.ledger_key) == before  # BUSY writes nothing


def test_execution_that_appears_late_is_adopted_by_the_takeover_after_the_hold(
    dispatcher, ledger, runner, clock
):
    # The API was still working on the jobs.run when the client gave up: the execution exists
    # only 30 s later, after the attempt looked and found nothing.
    started_at = clock()
    late = Ambiguous(AmbiguousRunError("read timeout"), appears_after=timedelta(seconds=30))
    runner.fail("loader", late)
    first = load_of(dispatcher.dispatch(storage_event()))
    assert first.outcome is Outcome.RETRY
    assert runner.find_calls == 1
    clock.advance(HOLD + timedelta(seconds=1))
    decision = dispatcher.dispatch(storage_event())
    load = load_of(decision)
    assert not decision.retry
    assert load.outcome is Outcome.LAUNCHED and load.adopted
    [execution] = runner.executions[load.ledger_key]
    assert load.execution == execution
    record = ledger.get(load.ledger_key)
    assert record.status is Status.LAUNCHED and record.execution == execution
    assert record.operation is None  # adopted: no operation of ours
    assert record.ambiguous is False and record.reason is None
    assert record.attempts == 2 and record.created_at == started_at
    assert runner.find_sinces[-1] == started_at - FIND_MARGIN


def test_takeover_after_a_hold_that_started_nothing_launches_once(
    dispatcher, ledger, runner, clock
):
    runner.fail("loader", Ambiguous(AmbiguousRunError("503 before acting"), started=False))
    dispatcher.dispatch(storage_event())
    clock.advance(HOLD + timedelta(seconds=1))
    load = load_of(dispatcher.dispatch(storage_event()))
    assert load.outcome is Outcome.LAUNCHED and not load.adopted
    record = ledger.get(load.ledger_key)
    assert record.status is Status.LAUNCHED and record.execution == load.execution
    assert record.operation is not None and record.ambiguous is False and record.attempts == 2
    assert runner.started(load_request()) == 1
    assert runner.find_calls == 2  # once after the failure, once on the takeover


def test_hold_defaults_to_the_runner_timeout_plus_the_margin(ledger, clock):
    class TimedRunner(ScriptedRunner):
        timeout = 12.0

    runner = TimedRunner(clock=clock)
    dispatcher = Dispatcher(RULES, ledger, runner)
    assert dispatcher.ambiguous_hold == timedelta(seconds=12) + AMBIGUOUS_MARGIN
    runner.fail("loader", Ambiguous(AmbiguousRunError("timeout"), started=False))
    load = load_of(dispatcher.dispatch(storage_event()))
    assert ledger.get(load.ledger_key).lease_until == clock() + timedelta(seconds=42)


def test_ambiguous_takeover_whose_lookup_fails_releases_and_never_runs(
    dispatcher, ledger, runner, clock
):
    runner.fail("loader", Ambiguous(AmbiguousRunError("timeout"), started=False))
    dispatcher.dispatch(storage_event())
    clock.advance(HOLD + timedelta(seconds=1))
    runner.fail_find(RetryableRunError("ListExecutions: 503", status=503))
    decision = dispatcher.dispatch(storage_event())
    load = load_of(decision)
    assert decision.retry and load.outcome is Outcome.RETRY
    assert load.reason.startswith("cannot look for a previous run: ListExecutions: 503")
    record = ledger.get(load.ledger_key)
    assert record.status is Status.RELEASED and record.ambiguous is True
    assert record.attempts == 2 and record.execution is None
    assert runner.started(load_request()) == 0
    # the next delivery (at once: released) looks again, finds nothing and launches once
    again = load_of(dispatcher.dispatch(storage_event()))
    assert again.outcome is Outcome.LAUNCHED and not again.adopted
    record = ledger.get(load.ledger_key)
    assert record.status is Status.LAUNCHED and record.attempts == 3
    assert runner.started(load_request()) == 1


def test_lost_response_is_adopted_by_the_same_attempt(dispatcher, ledger, runner):
    runner.fail("loader", Ambiguous(AmbiguousRunError("connection closed"), started=True))
    decision = dispatcher.dispatch(storage_event())
    load = load_of(decision)
    assert not decision.retry and load.outcome is Outcome.LAUNCHED and load.adopted
    record = ledger.get(load.ledger_key)
    assert record.status is Status.LAUNCHED and record.execution == load.execution
    assert record.ambiguous is False and record.attempts == 1 and record.operation is None


def test_lookup_after_an_ambiguous_failure_that_fails_holds_the_claim(
    dispatcher, ledger, runner, clock
):
    runner.fail("loader", Ambiguous(AmbiguousRunError("timeout"), started=True))
    runner.fail_find(RetryableRunError("ListExecutions: 500", status=500))
    load = load_of(dispatcher.dispatch(storage_event()))
    assert load.outcome is Outcome.RETRY
    record = ledger.get(load.ledger_key)
    assert record.status is Status.CLAIMED and record.ambiguous is True
    assert record.lease_until == clock() + HOLD
    clock.advance(HOLD + timedelta(seconds=1))
    again = load_of(dispatcher.dispatch(storage_event()))
    assert again.outcome is Outcome.LAUNCHED and again.adopted
    assert runner.started(load_request()) == 1


def test_launched_but_not_recorded_keeps_the_claim_and_is_adopted_never_relaunched(
    dispatcher, ledger, backend, runner, clock
):
    claimed_at = clock()
    backend.fail_updates = 1  # the write after a successful jobs.run fails (load goes first)
    decision = dispatcher.dispatch(storage_event())
    load = load_of(decision)
    # the answer asks for a retry and names the execution that did start
    assert decision.retry and load.outcome is Outcome.RETRY
    [execution] = runner.executions[load.ledger_key]
    assert load.execution == execution
    assert load.reason.startswith(f"launched {execution} but the ledger write failed")
    assert decision.as_dict()["rules"][0]["execution"] == execution
    # the record is still the claim, with its full lease: nobody may launch meanwhile
    record = ledger.get(load.ledger_key)
    assert record.status is Status.CLAIMED and record.execution is None
    assert record.lease_until == claimed_at + LEASE and record.attempts == 1
    busy = load_of(dispatcher.dispatch(storage_event()))
    assert busy.outcome is Outcome.RETRY and runner.started(load_request()) == 1
    # after the lease the takeover finds the execution by its run key and records it
    clock.advance(LEASE + timedelta(seconds=1))
    decision = dispatcher.dispatch(storage_event())
    adopted = load_of(decision)
    assert not decision.retry
    assert adopted.outcome is Outcome.LAUNCHED and adopted.adopted
    assert adopted.execution == execution
    record = ledger.get(load.ledger_key)
    assert record.status is Status.LAUNCHED and record.execution == execution
    assert record.ambiguous is False and record.attempts == 2 and record.reason is None
    assert record.operation is None  # adopted by run key: the operation was never recorded
    assert runner.started(load_request()) == 1


def test_hold_that_cannot_be_written_leaves_the_longer_lease(dispatcher, ledger, backend, runner):
    runner.fail("loader", Ambiguous(AmbiguousRunError("timeout"), started=False))
    backend.fail_updates = 1
    claimed_at = ledger.clock()
    load = load_of(dispatcher.dispatch(storage_event()))
    assert load.outcome is Outcome.RETRY
    record = ledger.get(load.ledger_key)
    # unwritten, the record is the plain claim: its lease (5 min) outlasts the hold anyway
    assert record.status is Status.CLAIMED and record.lease_until == claimed_at + LEASE
    assert LEASE > HOLD
    assert load_of(dispatcher.dispatch(storage_event())).outcome is Outcome.RETRY
    assert runner.started(load_request()) == 0


def test_find_is_asked_from_the_first_claim_minus_the_margin(ledger, runner, clock):
    dispatcher = Dispatcher(
        RULES, ledger, runner, ambiguous_hold=HOLD, find_margin=timedelta(seconds=7)
    )
    first_claim = clock()
    runner.fail("loader", Ambiguous(AmbiguousRunError("timeout"), started=False))
    dispatcher.dispatch(storage_event())
    clock.advance(minutes=3)
    dispatcher.dispatch(storage_event())
    assert runner.find_sinces == [first_claim - timedelta(seconds=7)] * 2


class DownBackend(MemoryBackend):
    """A ledger that is unreachable: every create fails (after its deadline, in real life)."""

    def __init__(self) -> None:
        super().__init__()
        self.creates = 0

    def create(self, record):
        self.creates += 1
        raise TimeoutError("Timeout of 3.0s exceeded")


def test_an_outage_costs_one_ledger_deadline_per_event_not_one_per_rule(runner, clock):
    backend = DownBackend()
    dispatcher = Dispatcher(RULES, Ledger(backend, clock=clock), runner, ambiguous_hold=HOLD)
    decision = dispatcher.dispatch(storage_event(name="strict/a.csv"))  # load, audit, strict
    assert backend.creates == 1  # the first rule's claim; the others are not tried
    assert decision.retry
    by_rule = {o.rule: o for o in decision.outcomes}
    assert by_rule["load"].reason == "ledger unavailable: Timeout of 3.0s exceeded"
    assert by_rule["audit"].outcome is Outcome.RETRY
    assert by_rule["audit"].reason == (
        "ledger unavailable: Timeout of 3.0s exceeded (not tried again for this event)"
    )
    # a rule whose template fails is still rejected for good, without the ledger
    assert by_rule["needs-field"].outcome is Outcome.REJECTED
    assert runner.run_calls == 0
