"""The flow-control writes of the ledger on every backend (memory, SQLite, the Firestore
emulator): `queued`, `claim_queued`, `requeue`, `skipped`, with the same CAS on the token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.test_ledger_backends import (  # noqa: F401 (fixtures)
    backend,
    kind,
    run_request,
    store,
)
from triggers.ledger import ClaimKind, Ledger, Status

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 5, 4, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ledger(backend, clock):  # noqa: F811
    return Ledger(backend, lease=timedelta(minutes=5), clock=clock)


def test_queued_then_claimed_by_the_task_then_launched(ledger, store):  # noqa: F811
    claim = ledger.claim(run_request(), {"id": "1", "data": {"name": "a.csv"}})
    assert ledger.queued(claim, "l-task")
    stored = ledger.get(claim.record.key)
    assert (stored.status, stored.task, stored.attempts) == (Status.QUEUED, "l-task", 1)
    # a redelivery of the event is a duplicate of the queued record
    assert ledger.claim(run_request()).kind is ClaimKind.DUPLICATE
    taken = Ledger(store(), lease=ledger.lease, clock=ledger.clock).claim_queued(claim.record.key)
    assert taken.kind is ClaimKind.NEW and taken.record.token != claim.record.token
    assert not ledger.launched(claim, "e-stale")  # the event's claim no longer owns it
    assert ledger.claim_queued(claim.record.key).kind is ClaimKind.BUSY
    assert ledger.launched(taken, "projects/p/locations/r/jobs/j/executions/e1")
    stored = ledger.get(claim.record.key)
    assert (stored.status, stored.task, stored.execution, stored.attempts) == (
        Status.LAUNCHED,
        "l-task",
        "projects/p/locations/r/jobs/j/executions/e1",
        1,
    )
    assert ledger.claim_queued(claim.record.key).kind is ClaimKind.DUPLICATE


def test_requeue_and_skipped(ledger):
    claim = ledger.claim(run_request(), {"id": "1"})
    ledger.queued(claim, "l-task")
    taken = ledger.claim_queued(claim.record.key)
    assert ledger.requeue(taken, "429 quota")
    stored = ledger.get(claim.record.key)
    assert (stored.status, stored.reason, stored.task) == (Status.QUEUED, "429 quota", "l-task")
    again = ledger.claim_queued(claim.record.key)
    assert again.kind is ClaimKind.NEW
    assert ledger.skipped(again, "skipped: busy")
    stored = ledger.get(claim.record.key)
    assert (stored.status, stored.reason) == (Status.SKIPPED, "skipped: busy")
    assert not ledger.requeue(taken, "stale token")  # CAS: an old claim changes nothing


def test_a_claim_of_a_dead_task_is_taken_over_as_ambiguous_after_its_lease(ledger, clock):
    claim = ledger.claim(run_request(), {"id": "1"})
    ledger.queued(claim, "l-task")
    ledger.claim_queued(claim.record.key)  # the task's instance dies here
    clock.now += timedelta(minutes=6)
    taken = ledger.claim_queued(claim.record.key)
    assert taken.kind is ClaimKind.TAKEOVER
    assert (taken.record.ambiguous, taken.record.attempts) == (True, 2)
    assert ledger.get(claim.record.key).status is Status.CLAIMED


def test_claim_queued_of_a_missing_record_is_none(ledger):
    assert ledger.claim_queued("f" * 64) is None
