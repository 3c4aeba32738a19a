"""One conformance suite for every ledger backend: memory, SQLite, Firestore (emulator).

Each test runs against each backend; the Firestore ones share one emulator per session and
isolate themselves with a collection of their own.
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from triggers.events.model import EventRef
from triggers.ledger.base import (
    AmbiguousKey,
    Claim,
    ClaimKind,
    Ledger,
    Record,
    RecordExists,
    Status,
)
from triggers.ledger.firestore import FirestoreBackend, LedgerContention
from triggers.ledger.memory import MemoryBackend
from triggers.ledger.sqlite import SQLiteBackend
from triggers.plan import Overrides, RunRequest

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
BACKENDS = ["memory", "sqlite", "firestore"]


def make_record(key: str = "k" * 64, **changes) -> Record:
    record = Record(
        key=key,
        rule="csv-ingest",
        dedup_key="//storage.googleapis.com/buckets/raw-data#1",
        job="projects/p/locations/europe-west1/jobs/csv-loader",
        status=Status.CLAIMED,
        token=uuid.uuid4().hex,
        event={"id": "1", "source": "//storage.googleapis.com/buckets/raw-data", "type": "t"},
        request={"overrides": {"containerOverrides": [{"args": ["--in=a.csv"], "env": []}]}},
        created_at=T0,
        updated_at=T0,
        lease_until=T0 + timedelta(seconds=540),
        expire_at=T0 + timedelta(days=7),
        # JSON that a Firestore map could not hold: arrays of arrays, reserved and odd keys.
        event_document={"data": {"rows": [[1, 2], [3]], "__name__": "x", "a.b": "é", "n": None}},
    )
    return replace(record, **changes)


def run_request(key: str = "gs://raw-data/incoming/a.csv#1") -> RunRequest:
    return RunRequest(
        rule="csv-ingest",
        job="projects/demo-project/locations/europe-west1/jobs/csv-loader",
        overrides=Overrides(args=("--input=gs://raw-data/incoming/a.csv",)),
        dedup_key=key,
        dedup_window_seconds=3600,
        event=EventRef(id="1", source="//storage.googleapis.com/buckets/raw-data", type="t"),
    )


@pytest.fixture(params=BACKENDS)
def kind(request) -> str:
    return request.param


@pytest.fixture
def store(kind, tmp_path, request):
    """A factory of backend instances over one fresh store: call it twice for two processes'
    (or two function instances') view of the same data."""
    if kind == "memory":
        shared = MemoryBackend()
        yield lambda: shared
    elif kind == "sqlite":
        opened: list[SQLiteBackend] = []

        def open_sqlite() -> SQLiteBackend:
            opened.append(SQLiteBackend(tmp_path / "state" / "ledger.sqlite3"))
            return opened[-1]

        yield open_sqlite
        for backend in opened:
            backend.close()
    else:
        client = request.getfixturevalue("firestore_client")
        collection = f"runs-{uuid.uuid4().hex[:12]}"
        # Duplicate counts are written off the request path: here only when a test settles
        # them (`settle`), never by the flusher in the middle of a test's assertions.
        yield lambda: FirestoreBackend(
            client, collection=collection, duplicate_flush_seconds=CONFORMANCE_FLUSH_SECONDS
        )


@pytest.fixture
def backend(store):
    return store()


CONFORMANCE_FLUSH_SECONDS = 3600.0


def settle(backend) -> None:
    """Write the duplicate counts a backend keeps off the request path (Firestore's); the
    other backends count synchronously."""
    flush = getattr(backend, "flush", None)
    if flush is not None:
        assert flush() == 0


# --- create / get -----------------------------------------------------------------------------


def test_create_then_get_round_trips_every_field(backend):
    record = make_record(
        execution="projects/p/locations/r/jobs/j/executions/e1",
        operation="operations/o1",
        reason="ünïcode reason",
        ambiguous=True,
        attempts=3,
        duplicates=2,
    )
    backend.create(record)
    assert backend.get(record.key) == record
    plain = make_record(key="p" * 64, event_document=None)
    backend.create(plain)
    assert backend.get(plain.key) == plain


def test_get_of_a_missing_key_is_none(backend):
    assert backend.get("0" * 64) is None


def test_create_of_an_existing_key_raises_and_keeps_the_first(kind, backend):
    first = make_record(outcome={"outcome": "succeeded"})
    backend.create(first)
    if kind == "firestore":
        backend.rpcs.clear()
    with pytest.raises(RecordExists) as raised:
        backend.create(make_record(token="second", rule="other"))
    # The conflict carries the current record: SQLite and memory the whole row; Firestore, which
    # must read it, a summary (one masked read) without the big fields a claim never needs.
    if kind == "firestore":
        assert raised.value.record == replace(
            first, event={}, request={}, event_document=None, outcome=None
        )
        assert backend.rpcs == {"commit": 1, "read": 1}
    else:
        assert raised.value.record == first
    assert backend.get(first.key) == first


def test_times_come_back_as_aware_utc_datetimes(backend):
    record = make_record(created_at=T0.astimezone(timezone(timedelta(hours=2))))
    backend.create(record)
    stored = backend.get(record.key)
    assert stored.created_at == T0 and stored.created_at.utcoffset() == timedelta(0)


# --- replace ----------------------------------------------------------------------------------


def test_replace_with_the_stored_token_overwrites(backend):
    first = make_record()
    backend.create(first)
    second = make_record(token="t2", attempts=2, status=Status.CLAIMED, event_document=None)
    assert backend.replace(second, first.token) is True
    assert backend.get(first.key) == second


def test_replace_with_another_token_changes_nothing(backend):
    first = make_record()
    backend.create(first)
    assert backend.replace(make_record(token="t2"), "not-the-token") is False
    assert backend.get(first.key) == first


def test_replace_of_a_missing_record_creates_nothing(backend):
    assert backend.replace(make_record(), "any") is False
    assert backend.get(make_record().key) is None


# --- update -----------------------------------------------------------------------------------


def test_update_with_the_stored_token_applies_the_changes(backend):
    record = make_record()
    backend.create(record)
    later = T0 + timedelta(seconds=5)
    changes = {
        "status": Status.LAUNCHED,
        "updated_at": later,
        "execution": "executions/e1",
        "operation": None,
        "reason": None,
        "ambiguous": False,
    }
    assert backend.update(record.key, record.token, changes) is True
    assert backend.get(record.key) == replace(record, **changes)


def test_update_twice_with_the_same_token(backend):
    # The second update follows our own first one: a backend that remembers its last write
    # (Firestore's precondition path) must still see the token as ours.
    record = make_record()
    backend.create(record)
    assert backend.update(record.key, record.token, {"status": Status.LAUNCHED})
    assert backend.update(record.key, record.token, {"status": Status.SUCCEEDED})
    assert backend.get(record.key).status is Status.SUCCEEDED


def test_update_with_another_token_changes_nothing(backend):
    record = make_record()
    backend.create(record)
    assert backend.update(record.key, "not-the-token", {"status": Status.LAUNCHED}) is False
    assert backend.get(record.key) == record


def test_update_of_a_missing_record_is_false(backend):
    assert backend.update("0" * 64, "t", {"status": Status.LAUNCHED}) is False
    assert backend.get("0" * 64) is None


def test_update_of_an_unknown_field_is_an_error(backend):
    record = make_record()
    backend.create(record)
    with pytest.raises(ValueError, match="colour"):
        backend.update(record.key, record.token, {"colour": "red"})
    assert backend.get(record.key) == record


def test_update_after_a_replace_by_someone_else_is_refused(store):
    # Two instances: ours created the record; the other took it over.
    ours, theirs = store(), store()
    record = make_record()
    ours.create(record)
    assert theirs.replace(make_record(token="theirs"), record.token)
    assert ours.update(record.key, record.token, {"status": Status.LAUNCHED}) is False
    assert ours.get(record.key).token == "theirs"
    assert ours.get(record.key).status is Status.CLAIMED


def test_update_after_a_duplicate_was_counted_still_applies(store):
    ours, theirs = store(), store()
    record = make_record()
    ours.create(record)
    theirs.count_duplicate(record.key, T0 + timedelta(seconds=1))
    settle(theirs)  # the count is written: the record's update time is not ours any more
    assert ours.update(record.key, record.token, {"reason": "late"}) is True
    stored = ours.get(record.key)
    assert stored.reason == "late" and stored.duplicates == 1


# --- count_duplicate --------------------------------------------------------------------------


def test_count_duplicate_increments_and_touches(backend):
    record = make_record(duplicates=4)
    backend.create(record)
    backend.count_duplicate(record.key, T0 + timedelta(minutes=1))
    backend.count_duplicate(record.key, T0 + timedelta(minutes=2))
    settle(backend)
    stored = backend.get(record.key)
    assert stored.duplicates == 6 and stored.updated_at == T0 + timedelta(minutes=2)
    assert replace(stored, duplicates=4, updated_at=T0) == record


def test_count_duplicate_of_a_missing_record_does_nothing(backend):
    backend.count_duplicate("0" * 64, T0)
    settle(backend)  # a record that is gone is nothing to retry
    assert backend.get("0" * 64) is None


# --- list -------------------------------------------------------------------------------------


@pytest.fixture
def listed(backend):
    """Six records over two rules, three statuses and six minutes (two share a minute)."""
    specs = [
        ("a1", "rule-a", Status.LAUNCHED, 0),
        ("a2", "rule-a", Status.REJECTED, 1),
        ("a3", "rule-a", Status.CLAIMED, 2),
        ("b1", "rule-b", Status.LAUNCHED, 2),
        ("b2", "rule-b", Status.LAUNCHED, 3),
        ("b3", "rule-b", Status.CLAIMED, 4),
    ]
    for name, rule, status, minute in specs:
        backend.create(
            make_record(
                key=name * 32, rule=rule, status=status, created_at=T0 + timedelta(minutes=minute)
            )
        )
    return backend


def keys(records: list[Record]) -> list[str]:
    return [r.key[:2] for r in records]


def test_list_is_newest_first_with_ties_broken_by_key(listed):
    assert keys(listed.list()) == ["b3", "b2", "b1", "a3", "a2", "a1"]


def test_list_filters_by_rule_and_status(listed):
    assert keys(listed.list(rule="rule-a")) == ["a3", "a2", "a1"]
    assert keys(listed.list(status=[Status.LAUNCHED])) == ["b2", "b1", "a1"]
    assert keys(listed.list(status=[Status.CLAIMED, Status.REJECTED])) == ["b3", "a3", "a2"]
    assert keys(listed.list(rule="rule-b", status=[Status.LAUNCHED])) == ["b2", "b1"]
    assert listed.list(rule="rule-c") == []
    assert listed.list(status=[]) == []


def test_list_filters_by_time_since_inclusive_until_exclusive(listed):
    since, until = T0 + timedelta(minutes=1), T0 + timedelta(minutes=3)
    assert keys(listed.list(since=since, until=until)) == ["b1", "a3", "a2"]
    assert keys(listed.list(rule="rule-a", since=T0 + timedelta(minutes=2))) == ["a3"]


def test_list_respects_the_limit(listed):
    assert keys(listed.list(limit=2)) == ["b3", "b2"]
    assert keys(listed.list(rule="rule-b", limit=1)) == ["b3"]
    assert listed.list(limit=0) == []


def test_listed_records_are_whole(listed):
    (record,) = listed.list(rule="rule-a", status=[Status.REJECTED])
    assert record == make_record(
        key="a2" * 32,
        rule="rule-a",
        status=Status.REJECTED,
        created_at=T0 + timedelta(minutes=1),
        token=record.token,
    )


# --- list by event id and by execution ----------------------------------------------------------

EXEC = "projects/p/locations/europe-west1/jobs/{job}/executions/{name}"


@pytest.fixture
def looked_up(backend):
    """Records of three events over two rules and two jobs; two executions share a short name
    (under different jobs), one record has no event id (undecodable input), one no execution."""
    specs = [
        # key, rule, status, minute, event id, execution
        ("e1", "rule-a", Status.SUCCEEDED, 0, "ev-1", EXEC.format(job="j", name="j-aaaaa")),
        ("e2", "rule-b", Status.LAUNCHED, 1, "ev-1", EXEC.format(job="k", name="k-bbbbb")),
        ("e3", "rule-a", Status.REJECTED, 2, "ev-2", None),
        ("e4", "rule-b", Status.LAUNCHED, 3, "ev-1", EXEC.format(job="other", name="j-aaaaa")),
        ("e5", "rule-a", Status.LAUNCHED, 4, "12345", EXEC.format(job="j", name="j-ccccc")),
        ("e6", "(input)", Status.REJECTED, 5, None, None),
    ]
    for name, rule, status, minute, event_id, execution in specs:
        event = (
            {"content_type": "text/plain", "bytes": 3}
            if event_id is None
            else {
                "id": event_id,
                "source": "//pubsub.googleapis.com/projects/p/topics/t",
                "type": "t",
            }
        )
        backend.create(
            make_record(
                key=name * 32,
                rule=rule,
                status=status,
                created_at=T0 + timedelta(minutes=minute),
                event=event,
                execution=execution,
            )
        )
    return backend


def test_list_by_event_id_is_newest_first_and_exact(looked_up):
    assert keys(looked_up.list(event_id="ev-1")) == ["e4", "e2", "e1"]
    assert keys(looked_up.list(event_id="ev-2")) == ["e3"]
    assert keys(looked_up.list(event_id="12345")) == ["e5"]
    # Exact, not a prefix or a substring; a record without an event id never matches.
    assert looked_up.list(event_id="ev-") == [] and looked_up.list(event_id="1234") == []
    assert looked_up.list(event_id="") == [] and looked_up.list(event_id="nope") == []


def test_list_by_event_id_with_every_other_filter(looked_up):
    assert keys(looked_up.list(event_id="ev-1", rule="rule-b")) == ["e4", "e2"]
    assert keys(looked_up.list(event_id="ev-1", status=[Status.SUCCEEDED])) == ["e1"]
    assert keys(looked_up.list(event_id="ev-1", status=[Status.LAUNCHED], rule="rule-a")) == []
    minute = timedelta(minutes=1)
    assert keys(looked_up.list(event_id="ev-1", since=T0 + minute)) == ["e4", "e2"]
    assert keys(looked_up.list(event_id="ev-1", until=T0 + minute)) == ["e1"]
    assert keys(looked_up.list(event_id="ev-1", since=T0 + minute, until=T0 + 3 * minute)) == ["e2"]
    assert keys(looked_up.list(event_id="ev-1", limit=2)) == ["e4", "e2"]
    assert looked_up.list(event_id="ev-1", limit=0) == []
    assert looked_up.list(event_id="ev-1", status=[]) == []


def test_list_by_execution_full_name_or_short_name(looked_up):
    # The full name is one execution of one job ...
    assert keys(looked_up.list(execution=EXEC.format(job="j", name="j-aaaaa"))) == ["e1"]
    assert keys(looked_up.list(execution=EXEC.format(job="other", name="j-aaaaa"))) == ["e4"]
    # ... the short name (its last segment) matches it under any job, newest first.
    assert keys(looked_up.list(execution="j-aaaaa")) == ["e4", "e1"]
    assert keys(looked_up.list(execution="k-bbbbb")) == ["e2"]
    # Neither a partial path nor a part of a short name matches.
    assert looked_up.list(execution="executions/j-aaaaa") == []
    assert looked_up.list(execution="j-aaa") == [] and looked_up.list(execution="aaaaa") == []
    assert looked_up.list(execution=EXEC.format(job="k", name="j-aaaaa")) == []


def test_list_by_execution_with_every_other_filter(looked_up):
    assert keys(looked_up.list(execution="j-aaaaa", rule="rule-a")) == ["e1"]
    assert keys(looked_up.list(execution="j-aaaaa", status=[Status.LAUNCHED])) == ["e4"]
    assert keys(looked_up.list(execution="j-aaaaa", since=T0 + timedelta(minutes=1))) == ["e4"]
    assert keys(looked_up.list(execution="j-aaaaa", until=T0 + timedelta(minutes=1))) == ["e1"]
    assert keys(looked_up.list(execution="j-aaaaa", limit=1)) == ["e4"]
    assert keys(looked_up.list(execution="j-aaaaa", event_id="ev-1")) == ["e4", "e1"]
    assert looked_up.list(execution="j-aaaaa", event_id="ev-2") == []
    full = EXEC.format(job="k", name="k-bbbbb")
    assert keys(looked_up.list(execution=full, event_id="ev-1")) == ["e2"]


def test_lookups_follow_the_execution_and_event_a_record_gains(store):
    # GIVEN a claimed record, with no execution yet, as `Ledger.claim` creates it
    ours, theirs = store(), store()
    record = make_record(event={"id": "ev-9", "source": "s", "type": "t"})
    ours.create(record)
    assert ours.list(event_id="ev-9") != [] and ours.list(execution="j-zzzzz") == []
    # WHEN `launched` records its execution (the update path, the fast one on Firestore) ...
    first = EXEC.format(job="j", name="j-zzzzz")
    assert ours.update(record.key, record.token, {"status": Status.LAUNCHED, "execution": first})
    # THEN every instance finds it by either name
    assert keys(theirs.list(execution="j-zzzzz")) == [record.key[:2]]
    assert keys(theirs.list(execution=first)) == [record.key[:2]]
    # WHEN another instance replaces it with another execution and event (a takeover) ...
    second = EXEC.format(job="j", name="j-yyyyy")
    taken = replace(record, token="t2", execution=second, event={"id": "ev-10"})
    assert theirs.replace(taken, record.token)
    # THEN the old names and id find nothing, the new ones find it
    assert ours.list(execution="j-zzzzz") == [] and ours.list(execution=first) == []
    assert ours.list(event_id="ev-9") == []
    assert keys(ours.list(execution="j-yyyyy", event_id="ev-10")) == [record.key[:2]]
    # WHEN an update clears the execution and changes the event (by transaction on Firestore)
    assert ours.update(record.key, "t2", {"execution": None, "event": {"id": "ev-11"}})
    assert ours.list(execution="j-yyyyy") == [] and ours.list(event_id="ev-10") == []
    assert keys(ours.list(event_id="ev-11")) == [record.key[:2]]


# --- with_prefix and Ledger.find --------------------------------------------------------------


@pytest.fixture
def prefixed(backend):
    for key in (
        "0123456789" + "a" * 54,
        "0123456789" + "b" * 54,
        "01234567ff" + "c" * 54,
        "fedcba98" + "0" * 56,
    ):
        backend.create(make_record(key=key))
    return backend


def test_with_prefix_finds_the_keys_that_start_so_in_key_order(prefixed):
    assert [r.key[:11] for r in prefixed.with_prefix("01234567", limit=5)] == [
        "0123456789a",
        "0123456789b",
        "01234567ffc",
    ]
    assert [r.key[:11] for r in prefixed.with_prefix("01234567", limit=2)] == [
        "0123456789a",
        "0123456789b",
    ]
    (only,) = prefixed.with_prefix("0123456789b")
    assert only == make_record(key="0123456789" + "b" * 54, token=only.token)
    assert [r.key[:8] for r in prefixed.with_prefix("fedcba98" + "0" * 56)] == ["fedcba98"]
    assert prefixed.with_prefix("01234568") == [] and prefixed.with_prefix("ff") == []
    assert prefixed.with_prefix("01234567", limit=0) == []


def test_ledger_find_by_key_or_unambiguous_prefix(prefixed):
    ledger = Ledger(prefixed)
    full = "0123456789" + "b" * 54
    assert ledger.find(full).key == full
    assert ledger.find(full.upper()).key == full  # hex is case-insensitive
    assert ledger.find(" fedcba98 ").key == "fedcba98" + "0" * 56
    assert ledger.find("01234567f").key == "01234567ff" + "c" * 54
    assert ledger.find("0123456789b").key == full
    assert ledger.find("99999999") is None and ledger.find("9" * 64) is None
    with pytest.raises(AmbiguousKey) as ambiguous:
        ledger.find("01234567")
    assert ambiguous.value.keys == [
        "0123456789" + "a" * 54,
        "0123456789" + "b" * 54,
        "01234567ff" + "c" * 54,
    ]
    with pytest.raises(ValueError, match="at least its first 8"):
        ledger.find("0123456")
    with pytest.raises(ValueError, match="needed"):
        ledger.find("  ")


# --- the ledger over each backend -------------------------------------------------------------


def test_the_claim_lifecycle_over_the_backend(store):
    # Two instances over one store, as two function instances would see it.
    first, second = Ledger(store()), Ledger(store())
    request = run_request()
    claim = first.claim(request, {"data": {"rows": [[1]]}})
    assert claim.kind is ClaimKind.NEW
    assert second.claim(request).kind is ClaimKind.BUSY
    assert first.release(claim, "quota exceeded", ambiguous=True)
    taken = second.claim(request)
    assert taken.kind is ClaimKind.TAKEOVER
    assert taken.record.attempts == 2 and taken.record.ambiguous
    assert first.launched(claim, "executions/stale") is False
    assert second.launched(taken, "executions/e2") is True
    assert first.claim(request).kind is ClaimKind.DUPLICATE
    settle(first.backend)
    stored = first.get(request.ledger_key)
    assert stored.status is Status.LAUNCHED and stored.execution == "executions/e2"
    assert stored.duplicates == 1 and stored.ambiguous is False
    assert stored.event_document is None  # the takeover carried no document
    assert [r.key for r in first.list(rule="csv-ingest")] == [request.ledger_key]


# Primitive calls per new event (claim + launched) and per duplicate, and for Firestore the
# round trips they cost on the request path. Firestore does not return the current document
# with a conflict: its create reads a summary (one read, no `get` call), and the duplicate's
# count is written later, off the path (one commit per record per flush).
ROUND_TRIPS = {
    "memory": ({"create": 1, "update": 1}, {"create": 1, "count_duplicate": 1}),
    "sqlite": ({"create": 1, "update": 1}, {"create": 1, "count_duplicate": 1}),
    "firestore": ({"create": 1, "update": 1}, {"create": 1, "count_duplicate": 1}),
}
FIRESTORE_RPCS = ({"commit": 2}, {"commit": 1, "read": 1})


def test_round_trips_per_new_event_and_per_duplicate(kind, backend):
    ledger = Ledger(backend)
    new_calls, duplicate_calls = ROUND_TRIPS[kind]
    assert ledger.launched(ledger.claim(run_request()), "executions/e1")
    assert backend.calls == new_calls
    if kind == "firestore":
        assert backend.rpcs == FIRESTORE_RPCS[0]
    backend.calls.clear()
    if kind == "firestore":
        backend.rpcs.clear()
    assert ledger.claim(run_request()).kind is ClaimKind.DUPLICATE
    assert backend.calls == duplicate_calls
    if kind == "firestore":
        assert backend.rpcs == FIRESTORE_RPCS[1]
        settle(backend)  # and off the path, later: one commit
        assert backend.rpcs == {"commit": 2, "read": 1}


# --- concurrency ------------------------------------------------------------------------------


def _claim_all_at_once(ledger: Ledger, request: RunRequest, n: int) -> list[Claim]:
    barrier = threading.Barrier(n)

    def claim(_: int) -> Claim:
        barrier.wait()
        return ledger.claim(request)

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(claim, range(n)))


def test_fifty_threads_claiming_one_request_yield_exactly_one_new(backend):
    ledger = Ledger(backend)
    request = run_request()
    # WHEN 50 deliveries of one event claim it at the same moment
    first_wave = _claim_all_at_once(ledger, request, 50)
    # THEN exactly one owns it; the 49 others are told to retry later (nothing is finished yet)
    assert Counter(c.kind for c in first_wave) == {ClaimKind.NEW: 1, ClaimKind.BUSY: 49}
    (winner,) = [c for c in first_wave if c.owned]
    assert backend.get(request.ledger_key).token == winner.record.token
    # WHEN the winner records its launch and 50 more deliveries arrive at once
    assert ledger.launched(winner, "executions/e1")
    second_wave = _claim_all_at_once(ledger, request, 50)
    # THEN all are duplicates, and every one is counted
    assert Counter(c.kind for c in second_wave) == {ClaimKind.DUPLICATE: 50}
    settle(backend)
    stored = backend.get(request.ledger_key)
    assert stored.duplicates == 50 and stored.status is Status.LAUNCHED
    assert stored.token == winner.record.token and stored.execution == "executions/e1"
    assert backend.calls["count_duplicate"] == 50


# What each process runs. The target is `exec` of this source, not a function of this module:
# a spawned child must import its target by name, and under --import-mode=importlib this test
# module is not importable by name.
_CLAIMER = """
from triggers.events.model import EventRef
from triggers.ledger.base import Ledger
from triggers.ledger.sqlite import SQLiteBackend
from triggers.plan import Overrides, RunRequest

backend = SQLiteBackend(path)
ledger = Ledger(backend)
requests = [
    RunRequest(rule="csv-ingest", job=job, overrides=Overrides(), dedup_key=key,
               dedup_window_seconds=3600, event=EventRef(id="1", source="s", type="t"))
    for key in keys
]
barrier.wait()
results.put([ledger.claim(request).kind.value for request in requests])
backend.close()
"""


def _gather(results, processes, timeout: float) -> list:
    """One result per process; fail at once, not at the timeout, if one of them died."""
    outcomes: list = []
    deadline = time.monotonic() + timeout
    while len(outcomes) < len(processes):
        try:
            outcomes.append(results.get(timeout=0.2))
        except queue.Empty:
            crashed = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            assert not crashed, f"a claiming process died with exit codes {crashed}"
            assert time.monotonic() < deadline, "the claiming processes did not finish"
    return outcomes


def test_sqlite_processes_claiming_at_once_yield_exactly_one_new_per_key(tmp_path: Path):
    # GIVEN four processes that open one new SQLite ledger file at the same time
    path = str(tmp_path / "shared" / "ledger.sqlite3")
    keys = [f"gs://raw-data/incoming/{i}.csv#1" for i in range(25)]
    context = multiprocessing.get_context("spawn")  # no fork: the session may hold gRPC threads
    barrier, results = context.Barrier(4), context.Queue()
    namespace = {
        "path": path,
        "keys": keys,
        "barrier": barrier,
        "results": results,
        "job": run_request().job,
    }
    processes = [context.Process(target=exec, args=(_CLAIMER, namespace)) for _ in range(4)]
    # WHEN they all claim the same 25 requests at the same moment
    for process in processes:
        process.start()
    try:
        outcomes = _gather(results, processes, timeout=60)
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]
    # THEN each request was won by exactly one process, and lost by the three others
    for i, key in enumerate(keys):
        kinds = Counter(outcome[i] for outcome in outcomes)
        assert kinds == {"new": 1, "busy": 3}, (key, kinds)
    with SQLiteBackend(path) as backend:
        assert len(backend.list(limit=100)) == 25


# --- SQLite specifics -------------------------------------------------------------------------


def test_sqlite_creates_its_file_on_first_use_in_wal_mode(tmp_path):
    path = tmp_path / "a" / "b" / "ledger.sqlite3"
    backend = SQLiteBackend(path)
    assert not path.parent.exists()  # constructing it touches nothing
    record = make_record()
    with backend:
        backend.create(record)
        assert path.exists()
        assert backend._db().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with SQLiteBackend(path) as reopened:  # and what it wrote is there for the next process
        assert reopened.get(record.key) == record


def test_sqlite_closes_the_connection_of_a_thread_that_has_ended(tmp_path):
    # A threaded server (werkzeug under `triggers serve`) runs each request on a new thread;
    # keeping every thread's connection open ran the process out of file descriptors after
    # about 10,000 requests (benchmarks/flow_burst.py found it).
    def open_descriptors() -> int:
        return len(list(Path("/proc/self/fd").iterdir()))

    with SQLiteBackend(tmp_path / "ledger.sqlite3") as backend:
        backend.create(make_record("warm" * 16))
        before = open_descriptors()
        for i in range(200):  # one short-lived thread per "request", one after the other
            worker = threading.Thread(target=backend.create, args=(make_record(f"{i:064d}"),))
            worker.start()
            worker.join()
        # Each thread's connection (its file and WAL: two descriptors) is closed when the next
        # thread opens one: at most the last thread's is still open.
        assert open_descriptors() - before <= 4
        assert len(backend.list(rule="csv-ingest", limit=1000)) == 201  # every write kept
    # And a live thread's connection is left alone: two threads alternating keep working.
    with SQLiteBackend(tmp_path / "ledger.sqlite3") as backend:
        ready, go = threading.Event(), threading.Event()
        found: list[object] = []

        def long_lived() -> None:
            backend.get("0" * 64)
            ready.set()
            go.wait(10)
            found.append(backend.get("1".zfill(64)))  # on its first connection, still open

        keeper = threading.Thread(target=long_lived)
        keeper.start()
        ready.wait(10)
        for i in range(5):
            worker = threading.Thread(target=backend.get, args=(f"{i:064d}",))
            worker.start()
            worker.join()
        go.set()
        keeper.join(10)
        assert len(found) == 1 and found[0] is not None


def test_sqlite_purges_expired_records(tmp_path):
    with SQLiteBackend(tmp_path / "ledger.sqlite3") as backend:
        backend.create(make_record(key="old" + "0" * 61, expire_at=T0))
        backend.create(make_record(key="new" + "0" * 61, expire_at=T0 + timedelta(seconds=1)))
        assert backend.purge_expired(T0) == 1
        assert [r.key[:3] for r in backend.list()] == ["new"]


def test_sqlite_rejects_naive_times(tmp_path):
    with SQLiteBackend(tmp_path / "ledger.sqlite3") as backend:
        with pytest.raises(ValueError, match="timezone-aware"):
            backend.create(make_record(created_at=datetime(2026, 1, 1)))
        assert backend.get(make_record().key) is None


# What the `runs` table looked like before `outcome` (the first version), and before the lookup
# columns `event_id` and `execution_id` (the previous one).
_OLD_COLUMNS = (
    "key TEXT PRIMARY KEY, rule TEXT NOT NULL, dedup_key TEXT NOT NULL, job TEXT NOT NULL,"
    " status TEXT NOT NULL, token TEXT NOT NULL, event TEXT NOT NULL, request TEXT NOT NULL,"
    " created_at TEXT NOT NULL, updated_at TEXT NOT NULL, lease_until TEXT NOT NULL,"
    " expire_at TEXT NOT NULL, attempts INTEGER NOT NULL, duplicates INTEGER NOT NULL,"
    " execution TEXT, operation TEXT, reason TEXT, ambiguous INTEGER NOT NULL,"
    " event_document TEXT"
)


def _old_ledger_file(path: Path, records: list[Record], *, with_outcome: bool) -> None:
    import json
    import sqlite3

    def text(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    columns = _OLD_COLUMNS + (", outcome TEXT" if with_outcome else "")
    with sqlite3.connect(path) as old:
        old.execute(f"CREATE TABLE runs ({columns})")
        old.execute("CREATE INDEX runs_created ON runs (created_at)")
        for r in records:
            values = [
                r.key,
                r.rule,
                r.dedup_key,
                r.job,
                r.status.value,
                r.token,
                json.dumps(r.event),
                json.dumps(r.request),
                text(r.created_at),
                text(r.updated_at),
                text(r.lease_until),
                text(r.expire_at),
                r.attempts,
                r.duplicates,
                r.execution,
                r.operation,
                r.reason,
                int(r.ambiguous),
                None if r.event_document is None else json.dumps(r.event_document),
            ]
            if with_outcome:
                values.append(None if r.outcome is None else json.dumps(r.outcome))
            old.execute(f"INSERT INTO runs VALUES ({', '.join('?' * len(values))})", values)
    old.close()


@pytest.mark.parametrize("with_outcome", [False, True], ids=["first-version", "with-outcome"])
def test_sqlite_an_older_ledger_file_gains_the_lookup_columns(tmp_path, with_outcome):
    # GIVEN a ledger file of an older version, with records in it
    path = tmp_path / "old.sqlite3"
    launched = make_record(
        key="1" * 64,
        status=Status.LAUNCHED,
        event={"id": "ev-old", "source": "s", "type": "t"},
        execution=EXEC.format(job="j", name="j-olddd"),
    )
    rejected = make_record(
        key="2" * 64,
        status=Status.REJECTED,
        reason="bad",
        created_at=T0 + timedelta(minutes=1),
        event={"bytes": 3},
    )
    _old_ledger_file(path, [launched, rejected], with_outcome=with_outcome)
    # WHEN this version opens it
    with SQLiteBackend(path) as backend:
        # THEN its records are intact, and found by event id and by execution name
        assert backend.get(launched.key) == launched and backend.get(rejected.key) == rejected
        assert keys(backend.list(event_id="ev-old")) == ["11"]
        assert keys(backend.list(execution="j-olddd")) == ["11"]
        assert keys(backend.list(execution=launched.execution)) == ["11"]
        assert keys(backend.list()) == ["22", "11"]
        # and what is written from now on is found the same way
        backend.create(make_record(key="3" * 64, event={"id": "ev-new"}))
        assert backend.update(
            "3" * 64,
            backend.get("3" * 64).token,
            {
                "execution": EXEC.format(job="j", name="j-newww"),
                "outcome": {"outcome": "succeeded"},
            },
        )
        assert keys(backend.list(event_id="ev-new", execution="j-newww")) == ["33"]
        db = backend._db()
        columns = [row[1] for row in db.execute("PRAGMA table_info(runs)")]
        indexes = {row[1] for row in db.execute("PRAGMA index_list(runs)")}
    assert columns[-5:] == ["outcome", "event_id", "execution_id", "task", "batch"]
    assert {"runs_event_created", "runs_execution_created", "runs_execution_id_created"} <= indexes
    # AND opening it again migrates nothing twice
    with SQLiteBackend(path) as again:
        assert keys(again.list(execution="j-olddd")) == ["11"]


def test_sqlite_processes_opening_one_old_file_at_once_migrate_it_once(tmp_path):
    # GIVEN an old file that eight backends (as many threads) open at the same moment
    path = tmp_path / "old.sqlite3"
    record = make_record(key="1" * 64, execution=EXEC.format(job="j", name="j-olddd"))
    _old_ledger_file(path, [record], with_outcome=False)
    backends = [SQLiteBackend(path) for _ in range(8)]
    barrier = threading.Barrier(len(backends))

    def open_and_look(backend: SQLiteBackend) -> list[str]:
        barrier.wait()
        return keys(backend.list(execution="j-olddd"))

    try:
        with ThreadPoolExecutor(max_workers=len(backends)) as pool:
            found = list(pool.map(open_and_look, backends))
    finally:
        for backend in backends:
            backend.close()
    # THEN every one of them works (none trips over another's ALTER TABLE)
    assert found == [["11"]] * len(backends)


# --- Firestore specifics ----------------------------------------------------------------------


def test_firestore_contention_that_exhausts_retries_is_an_error(firestore_client):
    # GIVEN a record that a rival transaction has read (and so locked) and not yet committed
    backend = FirestoreBackend(
        firestore_client, collection=f"runs-{uuid.uuid4().hex[:12]}", transaction_attempts=1
    )
    record = make_record()
    backend.create(record)
    rival = firestore_client.transaction()
    rival._begin()  # what @transactional does: the rival is mid-transaction
    backend._doc(record.key).get(transaction=rival)
    try:
        # WHEN we compare-and-set it and the only attempt aborts on the lock
        with pytest.raises(LedgerContention, match="nothing was written"):
            backend.replace(make_record(token="ours"), record.token)
    finally:
        rival._rollback()
    # THEN nothing changed, and a later attempt goes through
    assert backend.get(record.key) == record
    assert backend.replace(make_record(token="ours"), record.token) is True


def test_firestore_module_is_not_imported_by_the_backend_module():
    import subprocess
    import sys

    code = (
        "import sys, triggers.ledger.firestore as f; f.FirestoreBackend(project='p');"
        "print('google.cloud.firestore' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_firestore_documents_carry_top_level_lookup_fields(firestore_client):
    # `event` is exempt from indexing (terraform/firestore.tf), so `event.id` cannot be queried
    # in production: the backend writes `event_id` (and `execution_id`) beside it.
    collection = f"runs-{uuid.uuid4().hex[:12]}"
    backend = FirestoreBackend(firestore_client, collection=collection)
    record = make_record(event={"id": "ev-1", "source": "s", "type": "t"})
    backend.create(record)
    raw = firestore_client.collection(collection).document(record.key).get().to_dict()
    # fields without a value are left out of a new document (read back as None all the same)
    assert raw["event_id"] == "ev-1" and "execution_id" not in raw and "execution" not in raw
    execution = EXEC.format(job="j", name="j-aaaaa")
    assert backend.update(record.key, record.token, {"execution": execution})
    raw = firestore_client.collection(collection).document(record.key).get().to_dict()
    assert raw["execution_id"] == "j-aaaaa" and raw["execution"] == execution
    assert backend.get(record.key) == replace(record, execution=execution)  # not Record fields
    # One query per lookup, as for any list.
    backend.rpcs.clear()
    assert keys(backend.list(event_id="ev-1", rule="csv-ingest", since=T0)) == [record.key[:2]]
    assert keys(backend.list(execution="j-aaaaa")) == [record.key[:2]]
    assert backend.rpcs == {"query": 2}


def test_firestore_documents_written_before_the_lookup_fields(firestore_client):
    from google.cloud import firestore

    # GIVEN a document as the previous version wrote it: no `event_id`, no `execution_id`
    collection = f"runs-{uuid.uuid4().hex[:12]}"
    backend = FirestoreBackend(firestore_client, collection=collection)
    execution = EXEC.format(job="j", name="j-olddd")
    record = make_record(event={"id": "ev-old"}, execution=execution, status=Status.LAUNCHED)
    backend.create(record)
    firestore_client.collection(collection).document(record.key).update(
        {"event_id": firestore.DELETE_FIELD, "execution_id": firestore.DELETE_FIELD}
    )
    # THEN it is still read whole, listed, and found by its full execution name (a field of its
    # own) and by key; the event id and the short name find it only once it is written again
    assert backend.get(record.key) == record
    assert keys(backend.list(rule="csv-ingest")) == [record.key[:2]]
    assert keys(backend.list(execution=execution)) == [record.key[:2]]
    assert backend.list(event_id="ev-old") == [] and backend.list(execution="j-olddd") == []
    assert backend.update(record.key, record.token, {"status": Status.SUCCEEDED})
    assert backend.list(execution="j-olddd") == []
    assert backend.update(record.key, record.token, {"execution": execution})
    assert keys(backend.list(execution="j-olddd")) == [record.key[:2]]
