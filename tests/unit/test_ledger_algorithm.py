"""The claim algorithm of `Ledger`, over `MemoryBackend` and a clock the tests move by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import Clock
from triggers.events.model import EventRef
from triggers.ledger.base import ClaimKind, Ledger, LedgerContention, RecordExists, Status
from triggers.ledger.memory import MemoryBackend
from triggers.plan import Overrides, RunRequest

START = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=540)
WINDOW = 3600


def run_request(key: str = "gs://raw-data/incoming/a.csv#1", window: int = WINDOW) -> RunRequest:
    return RunRequest(
        rule="csv-ingest",
        job="projects/demo-project/locations/europe-west1/jobs/csv-loader",
        overrides=Overrides(args=("--input=gs://raw-data/incoming/a.csv",)),
        dedup_key=key,
        dedup_window_seconds=window,
        event=EventRef(id="1", source="//storage.googleapis.com/buckets/raw-data", type="t"),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def ledger(backend: MemoryBackend, clock: Clock) -> Ledger:
    return Ledger(backend, lease=LEASE, clock=clock)


# --- NEW --------------------------------------------------------------------------------------


def test_a_first_claim_is_new_and_stores_a_claimed_record_with_a_lease(ledger, backend, clock):
    # GIVEN an empty ledger
    request = run_request()
    # WHEN a request is claimed
    claim = ledger.claim(request, {"id": "1", "data": {"bucket": "raw-data"}})
    # THEN the caller owns a fresh claim, stored as claimed with a lease and a dedup window
    assert claim.kind is ClaimKind.NEW and claim.owned
    stored = backend.get(request.ledger_key)
    assert stored == claim.record
    assert stored.status is Status.CLAIMED
    assert stored.key == request.ledger_key and stored.rule == "csv-ingest"
    assert stored.dedup_key == request.dedup_key and stored.job == request.job
    assert stored.lease_until == START + LEASE
    assert stored.expire_at == START + timedelta(seconds=WINDOW)
    assert stored.attempts == 1 and stored.duplicates == 0 and not stored.ambiguous
    assert stored.request == request.run_job_body()
    assert stored.event == request.event.as_dict()
    assert stored.event_document == {"id": "1", "data": {"bucket": "raw-data"}}


def test_different_dedup_keys_are_independent_claims(ledger):
    assert ledger.claim(run_request("a#1")).kind is ClaimKind.NEW
    assert ledger.claim(run_request("a#2")).kind is ClaimKind.NEW


# --- DUPLICATE --------------------------------------------------------------------------------


@pytest.mark.parametrize("finish", ["launched", "rejected"])
def test_a_claim_of_a_finished_record_is_a_counted_duplicate(ledger, backend, clock, finish):
    # GIVEN a request that was claimed and then launched (or rejected)
    request = run_request()
    first = ledger.claim(request)
    if finish == "launched":
        assert ledger.launched(first, "executions/e1", "operations/o1")
    else:
        assert ledger.rejected(first, "job not found")
    # WHEN the same event is delivered twice more, long after the lease but inside the window
    clock.advance(seconds=WINDOW - 1)
    second = ledger.claim(request)
    third = ledger.claim(request)
    # THEN both are duplicates that do not own the claim, and the record counts them
    assert second.kind is third.kind is ClaimKind.DUPLICATE
    assert not second.owned
    assert second.record.token == first.record.token
    stored = backend.get(request.ledger_key)
    assert stored.duplicates == 2 and stored.updated_at == clock.now
    assert stored.status is Status(finish) and stored.token == first.record.token
    if finish == "launched":
        assert second.record.execution == "executions/e1"
        assert stored.operation == "operations/o1"
    else:
        assert stored.reason == "job not found"


def test_a_launched_record_keeps_what_the_claim_recorded(ledger, backend, clock):
    # GIVEN a claim
    claim = ledger.claim(run_request())
    clock.advance(seconds=3)
    # WHEN it is recorded as launched
    assert ledger.launched(claim, "executions/e1")
    # THEN the record says so, when, and that it is no longer ambiguous
    stored = backend.get(claim.record.key)
    assert stored.status is Status.LAUNCHED and stored.execution == "executions/e1"
    assert stored.updated_at == START + timedelta(seconds=3) and stored.created_at == START
    assert stored.ambiguous is False and stored.reason is None


# --- BUSY -------------------------------------------------------------------------------------


def test_a_claim_during_a_live_lease_is_busy_and_changes_nothing(ledger, backend, clock):
    # GIVEN a claim whose claimer is still working
    request = run_request()
    first = ledger.claim(request)
    # WHEN the event is redelivered just before the lease runs out
    clock.advance(seconds=LEASE.total_seconds() - 1)
    second = ledger.claim(request)
    # THEN the redelivery is told to retry later, and the record is untouched (not counted)
    assert second.kind is ClaimKind.BUSY and not second.owned
    assert backend.get(request.ledger_key) == first.record


# --- TAKEOVER ---------------------------------------------------------------------------------


def test_an_expired_lease_is_taken_over_as_ambiguous(ledger, backend, clock):
    # GIVEN a claim whose claimer crashed (it never recorded anything)
    request = run_request()
    first = ledger.claim(request)
    # WHEN the event is redelivered at the moment the lease ends
    clock.advance(seconds=LEASE.total_seconds())
    second = ledger.claim(request)
    # THEN the redelivery takes it over; it may have run, so the takeover is ambiguous
    assert second.kind is ClaimKind.TAKEOVER and second.owned
    taken = second.record
    assert taken.token != first.record.token
    assert taken.attempts == 2 and taken.ambiguous is True
    assert taken.created_at == START and taken.lease_until == clock.now + LEASE
    assert taken.status is Status.CLAIMED
    assert backend.get(request.ledger_key) == taken


def test_a_released_claim_is_taken_over_at_once_and_not_ambiguous(ledger, backend, clock):
    # GIVEN a claim released after a transient error before the request left
    request = run_request()
    first = ledger.claim(request)
    assert ledger.release(first, "quota exceeded")
    assert backend.get(request.ledger_key).status is Status.RELEASED
    # WHEN the event is redelivered one second later, well inside the lease
    clock.advance(seconds=1)
    second = ledger.claim(request)
    # THEN it is taken over without waiting for the lease, and nothing may have run
    assert second.kind is ClaimKind.TAKEOVER
    assert second.record.attempts == 2 and second.record.ambiguous is False


def test_an_ambiguous_release_stays_ambiguous_through_the_takeover(ledger, clock):
    # GIVEN a claim released after a timeout that may have started the execution
    request = run_request()
    assert ledger.release(ledger.claim(request), "deadline exceeded", ambiguous=True)
    # WHEN it is taken over
    second = ledger.claim(request)
    # THEN the taker knows to look for an execution before launching
    assert second.kind is ClaimKind.TAKEOVER and second.record.ambiguous is True


def test_attempts_count_every_takeover(ledger, clock):
    request = run_request()
    claim = ledger.claim(request)
    for attempt in (2, 3, 4):
        assert ledger.release(claim, "unavailable")
        claim = ledger.claim(request)
        assert claim.kind is ClaimKind.TAKEOVER and claim.record.attempts == attempt


def test_a_takeover_keeps_the_duplicate_count(ledger, backend, clock):
    # GIVEN a record with duplicates counted, whose owner later lost it (released by hand)
    request = run_request()
    claim = ledger.claim(request)
    assert ledger.launched(claim, "executions/e1")
    ledger.claim(request)
    assert backend.update(claim.record.key, claim.record.token, {"status": Status.RELEASED})
    # WHEN it is taken over
    taken = ledger.claim(request)
    # THEN the count survives
    assert taken.kind is ClaimKind.TAKEOVER and taken.record.duplicates == 1


# --- past the dedup window --------------------------------------------------------------------


def test_a_finished_record_past_its_window_is_new_again(ledger, backend, clock):
    # GIVEN a launched record that was counted as duplicated once
    request = run_request()
    first = ledger.claim(request)
    assert ledger.launched(first, "executions/e1")
    ledger.claim(request)
    # WHEN the same key arrives once the window is over (the TTL has not deleted it yet)
    clock.advance(seconds=WINDOW)
    again = ledger.claim(request)
    # THEN it is a new occurrence with a fresh record
    assert again.kind is ClaimKind.NEW
    stored = backend.get(request.ledger_key)
    assert stored.token == again.record.token != first.record.token
    assert stored.status is Status.CLAIMED and stored.execution is None
    assert stored.attempts == 1 and stored.duplicates == 0
    assert stored.created_at == clock.now
    assert stored.expire_at == clock.now + timedelta(seconds=WINDOW)


def test_a_live_claim_past_a_short_window_stays_busy(ledger, clock):
    # GIVEN a rule whose window (60 s) is shorter than the lease, and a claim still running
    request = run_request(window=60)
    ledger.claim(request)
    # WHEN the event is redelivered after the window but inside the lease
    clock.advance(seconds=61)
    # THEN it must not run again
    assert ledger.claim(request).kind is ClaimKind.BUSY


def test_a_crashed_claim_past_its_window_is_taken_over_not_new(ledger, clock):
    # GIVEN a 60 s window and a claimer that crashed before recording anything
    request = run_request(window=60)
    first = ledger.claim(request)
    # WHEN the event is redelivered after both the window and the lease
    clock.advance(seconds=LEASE.total_seconds() + 1)
    again = ledger.claim(request)
    # THEN it is a takeover that knows an execution may exist, with a renewed window
    assert again.kind is ClaimKind.TAKEOVER and again.record.ambiguous
    assert again.record.attempts == 2 and again.record.token != first.record.token
    assert again.record.expire_at == clock.now + timedelta(seconds=60)


# --- races and retried commits ----------------------------------------------------------------


class RetriedCommitBackend(MemoryBackend):
    """A create whose first try committed but whose reply was lost: the client's retry then
    reports AlreadyExists for our own write, without the record (as Firestore does)."""

    def create(self, record):
        super().create(record)
        raise RecordExists(None)


def test_a_retried_commit_of_our_own_create_is_new_not_duplicate(clock):
    # GIVEN a store whose create commits but reports a conflict
    backend = RetriedCommitBackend()
    ledger = Ledger(backend, lease=LEASE, clock=clock)
    # WHEN a request is claimed
    claim = ledger.claim(run_request())
    # THEN the ledger reads the record, recognises its own token and owns the claim
    assert claim.kind is ClaimKind.NEW and claim.owned
    stored = backend.get(claim.record.key)
    assert stored.token == claim.record.token and stored.duplicates == 0
    assert backend.calls["get"] == 2  # the ledger's read, and ours just above
    assert ledger.launched(claim, "executions/e1")


class SummaryConflictBackend(MemoryBackend):
    """Firestore's retried commit: our create committed, and the conflict the retry reports
    carries a summary of it (one masked read: no event, request, event document, outcome)."""

    def create(self, record):
        super().create(record)
        raise RecordExists(replace(record, event={}, request={}, event_document=None, outcome=None))


def test_our_own_create_seen_as_a_summary_is_owned_with_the_whole_record(clock):
    # GIVEN a store whose conflict returns only a summary of the stored record
    backend = SummaryConflictBackend()
    ledger = Ledger(backend, lease=LEASE, clock=clock)
    # WHEN a request is claimed and the conflict turns out to be our own create
    claim = ledger.claim(run_request(), {"data": {"name": "a.csv"}})
    # THEN the owner gets the whole record it wrote, never the summary
    assert claim.kind is ClaimKind.NEW
    assert claim.record == backend.get(claim.record.key)
    assert claim.record.event and claim.record.request
    assert claim.record.event_document == {"data": {"name": "a.csv"}}
    assert backend.calls["get"] == 1  # ours, just above: the summary needed no read


class VanishingBackend(MemoryBackend):
    """A conflict on a record that is deleted (TTL) before the ledger can read it."""

    def __init__(self):
        super().__init__()
        self.conflicts = 1

    def create(self, record):
        if self.conflicts:
            self.conflicts -= 1
            self.calls["create"] += 1
            raise RecordExists(None)
        super().create(record)


def test_a_record_deleted_between_conflict_and_read_is_claimed_again(clock):
    backend = VanishingBackend()
    claim = Ledger(backend, lease=LEASE, clock=clock).claim(run_request())
    assert claim.kind is ClaimKind.NEW
    assert backend.get(claim.record.key).token == claim.record.token
    assert backend.calls["create"] == 2


def test_a_record_that_keeps_vanishing_is_contention_not_endless_retrying(clock):
    backend = VanishingBackend()
    backend.conflicts = 10**6
    with pytest.raises(LedgerContention, match="kept changing"):
        Ledger(backend, lease=LEASE, clock=clock).claim(run_request())
    assert backend.calls["create"] == 3


class RivalBackend(MemoryBackend):
    """Lets a rival run `rival()` just before our replace reaches the store."""

    rival = None

    def replace(self, record, expected_token):
        if self.rival is not None:
            rival, self.rival = self.rival, None
            rival()
        return super().replace(record, expected_token)


@pytest.fixture
def rival_backend() -> RivalBackend:
    return RivalBackend()


def test_losing_the_race_to_take_over_a_lease_is_busy(rival_backend, clock):
    # GIVEN an expired lease, and a rival delivery that takes it over just before we do
    ledger = Ledger(rival_backend, lease=LEASE, clock=clock)
    request = run_request()
    ledger.claim(request)
    clock.advance(seconds=LEASE.total_seconds() + 1)
    rival_claims = []
    rival_backend.rival = lambda: rival_claims.append(ledger.claim(request))
    # WHEN we try to take it over
    ours = ledger.claim(request)
    # THEN the rival owns it and we are told to retry later; the store holds the rival's token
    assert [c.kind for c in rival_claims] == [ClaimKind.TAKEOVER]
    assert ours.kind is ClaimKind.BUSY and not ours.owned
    assert ours.record.token == rival_claims[0].record.token
    assert rival_backend.get(request.ledger_key).token == rival_claims[0].record.token


def test_losing_the_race_to_a_rival_that_already_launched_is_a_counted_duplicate(
    rival_backend, clock
):
    # GIVEN a released claim that a rival takes over and launches just before our replace
    ledger = Ledger(rival_backend, lease=LEASE, clock=clock)
    request = run_request()
    assert ledger.release(ledger.claim(request), "unavailable")

    def rival():
        taken = ledger.claim(request)
        assert ledger.launched(taken, "executions/rival")

    rival_backend.rival = rival
    # WHEN we try to take it over
    ours = ledger.claim(request)
    # THEN we see the rival's launch as a duplicate, and it is counted
    assert ours.kind is ClaimKind.DUPLICATE and ours.record.execution == "executions/rival"
    assert rival_backend.get(request.ledger_key).duplicates == 1


def test_losing_the_race_to_renew_an_expired_record_is_busy(rival_backend, clock):
    # GIVEN a finished record past its window, renewed by a rival just before we renew it
    ledger = Ledger(rival_backend, lease=LEASE, clock=clock)
    request = run_request()
    assert ledger.launched(ledger.claim(request), "executions/old")
    clock.advance(seconds=WINDOW + 1)
    rival_claims = []
    rival_backend.rival = lambda: rival_claims.append(ledger.claim(request))
    # WHEN we claim it
    ours = ledger.claim(request)
    # THEN exactly one of us has it as NEW; we are told to retry later
    assert [c.kind for c in rival_claims] == [ClaimKind.NEW]
    assert ours.kind is ClaimKind.BUSY
    assert rival_backend.get(request.ledger_key).token == rival_claims[0].record.token


# --- a claimer that lost its claim cannot write -----------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        lambda ledger, claim: ledger.launched(claim, "executions/late"),
        lambda ledger, claim: ledger.rejected(claim, "too late"),
        lambda ledger, claim: ledger.release(claim, "too late", ambiguous=True),
    ],
    ids=["launched", "rejected", "release"],
)
def test_a_claimer_whose_lease_was_taken_over_cannot_record(ledger, backend, clock, record):
    # GIVEN a slow claimer whose lease expired and was taken over by a redelivery
    request = run_request()
    slow = ledger.claim(request)
    clock.advance(seconds=LEASE.total_seconds() + 1)
    taker = ledger.claim(request)
    assert taker.kind is ClaimKind.TAKEOVER
    # WHEN the slow claimer finally tries to record its outcome
    written = record(ledger, slow)
    # THEN the write is refused and the taker's claim is intact
    assert written is False
    stored = backend.get(request.ledger_key)
    assert stored == taker.record
    # AND the taker can still record its own outcome
    assert ledger.launched(taker, "executions/taker")
    assert backend.get(request.ledger_key).execution == "executions/taker"


def test_recording_twice_with_the_same_claim_is_allowed(ledger, backend):
    # The token is the claim's identity, not a one-shot: the reconciler may write later.
    claim = ledger.claim(run_request())
    assert ledger.launched(claim, "executions/e1")
    assert ledger.rejected(claim, "cancelled by operator")
    assert backend.get(claim.record.key).status is Status.REJECTED


# --- event documents --------------------------------------------------------------------------


def test_event_documents_above_the_size_limit_are_dropped_and_the_reference_kept(backend, clock):
    # GIVEN a ledger that keeps event documents of up to 1 KiB
    ledger = Ledger(backend, lease=LEASE, clock=clock, max_event_bytes=1024)
    small = {"id": "1", "data": "x" * 100}
    big = {"id": "2", "data": "x" * 2000}
    # WHEN a small and a big event are claimed
    kept = ledger.claim(run_request("small#1"), small)
    dropped = ledger.claim(run_request("big#2"), big)
    # THEN the small body is stored, the big one is not, and both keep the event reference
    assert backend.get(kept.record.key).event_document == small
    assert backend.get(dropped.record.key).event_document is None
    assert backend.get(dropped.record.key).event == run_request().event.as_dict()


def test_the_size_limit_is_inclusive(backend, clock):
    document = {"data": "x" * 50}
    size = len('{"data": "' + "x" * 50 + '"}')
    ledger = Ledger(backend, lease=LEASE, clock=clock, max_event_bytes=size)
    assert ledger.claim(run_request(), document).record.event_document == document
    ledger = Ledger(MemoryBackend(), lease=LEASE, clock=clock, max_event_bytes=size - 1)
    assert ledger.claim(run_request(), document).record.event_document is None


# --- store round trips ------------------------------------------------------------------------


def test_a_new_event_costs_one_create_and_one_update(ledger, backend):
    claim = ledger.claim(run_request())
    assert ledger.launched(claim, "executions/e1")
    assert backend.calls == {"create": 1, "update": 1}


def test_a_duplicate_costs_one_failed_create_and_one_count(ledger, backend):
    assert ledger.launched(ledger.claim(run_request()), "executions/e1")
    backend.calls.clear()
    assert ledger.claim(run_request()).kind is ClaimKind.DUPLICATE
    # The memory store returns the current record with the conflict: no read needed.
    assert backend.calls == {"create": 1, "count_duplicate": 1}


def test_a_busy_claim_writes_nothing(ledger, backend):
    ledger.claim(run_request())
    backend.calls.clear()
    assert ledger.claim(run_request()).kind is ClaimKind.BUSY
    assert backend.calls == {"create": 1}


# --- the memory store behaves like a store ----------------------------------------------------


def test_records_read_back_are_copies(ledger, backend):
    claim = ledger.claim(run_request(), {"data": {"n": 1}})
    claim.record.event_document["data"]["n"] = 2
    backend.get(claim.record.key).event_document["data"]["n"] = 3
    assert backend.get(claim.record.key).event_document == {"data": {"n": 1}}


def test_updating_an_unknown_field_is_an_error(ledger, backend):
    claim = ledger.claim(run_request())
    with pytest.raises(ValueError, match="colour"):
        backend.update(claim.record.key, claim.record.token, {"colour": "red"})
    with pytest.raises(ValueError, match="key"):
        backend.update(claim.record.key, claim.record.token, {"key": "other"})


def test_undecodable_input_is_recorded_once_per_body_and_counted(ledger, backend):
    first = ledger.reject_input(b"not json", "bad_json", "body is not JSON", {"form": "unknown"})
    assert first.status is Status.REJECTED and first.rule == "(input)"
    assert first.reason == "bad_json: body is not JSON"
    again = ledger.reject_input(b"not json", "bad_json", "body is not JSON", {"form": "unknown"})
    assert again.key == first.key
    assert backend.get(first.key).duplicates == 1
    other = ledger.reject_input(b"other", "bad_json", "body is not JSON", {})
    assert other.key != first.key
