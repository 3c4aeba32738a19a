"""What the ledger writes, field by field, and what it does when the store fails a write.

The claim algorithm's decisions are in test_ledger_algorithm.py; here the records themselves:
what `release`, `launched`, `rejected` and `reject_input` store (not only their status), how
`find` reads a key or a prefix, the helpers that name events and executions, and every write
failing through `FaultyBackend` (tests/ledger_faults.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.fakes import Clock
from tests.ledger_faults import FaultyBackend, StoreUnavailable
from triggers.events.model import EventRef
from triggers.ledger.base import AmbiguousKey, ClaimKind, Ledger, RecordExists
from triggers.ledger.memory import MemoryBackend
from triggers.ledger.records import (
    INPUT_RULE,
    MAX_REASON_CHARS,
    Record,
    Status,
    event_id_of,
    execution_lookup,
    short_execution,
)
from triggers.plan import Overrides, RunRequest

START = datetime(2026, 1, 1, tzinfo=UTC)
LEASE = timedelta(seconds=540)
WINDOW = 3600
JOB = "projects/demo-project/locations/europe-west1/jobs/csv-loader"
EXECUTION = f"{JOB}/executions/csv-loader-ab1cd"


def run_request(key: str = "raw-data/a.csv#1") -> RunRequest:
    return RunRequest(
        rule="csv-ingest",
        job=JOB,
        overrides=Overrides(args=("--input=gs://raw-data/a.csv",)),
        dedup_key=key,
        dedup_window_seconds=WINDOW,
        event=EventRef(id="1", source="//storage.googleapis.com/buckets/raw-data", type="t"),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def backend() -> FaultyBackend:
    return FaultyBackend()


@pytest.fixture
def ledger(backend: FaultyBackend, clock: Clock) -> Ledger:
    return Ledger(backend, lease=LEASE, clock=clock)


def only_changed(before: Record, after: Record, **expected) -> None:
    """`after` is `before` with exactly the `expected` fields changed (and to those values)."""
    assert after == replace(before, **expected)


# --- what each outcome stores -----------------------------------------------------------------


@pytest.mark.parametrize("ambiguous", [False, True])
def test_release_stores_the_reason_and_the_ambiguous_flag_and_nothing_else(
    ledger, backend, clock, ambiguous
):
    claim = ledger.claim(run_request())
    clock.advance(seconds=2)
    assert ledger.release(claim, "503 unavailable", ambiguous=ambiguous)
    only_changed(
        claim.record,
        backend.get(claim.record.key),
        status=Status.RELEASED,
        reason="503 unavailable",
        ambiguous=ambiguous,
        updated_at=START + timedelta(seconds=2),
    )


def test_launched_stores_execution_and_operation_and_clears_the_previous_attempt(
    ledger, backend, clock
):
    # GIVEN a claim released as ambiguous (the record carries a reason and the flag)
    request = run_request()
    claim = ledger.claim(request)
    assert ledger.release(claim, "deadline exceeded", ambiguous=True)
    stored = backend.get(request.ledger_key)
    assert stored.reason == "deadline exceeded" and stored.ambiguous
    clock.advance(seconds=5)
    # WHEN the same claim records the launch (the execution was found after all)
    assert ledger.launched(claim, EXECUTION, "operations/op-7")
    # THEN the record names the execution and the operation; the old reason and flag are gone
    only_changed(
        stored,
        backend.get(request.ledger_key),
        status=Status.LAUNCHED,
        execution=EXECUTION,
        operation="operations/op-7",
        reason=None,
        ambiguous=False,
        updated_at=START + timedelta(seconds=5),
    )


def test_a_takeover_starts_a_fresh_attempt_that_remembers_only_the_ambiguity(ledger, backend):
    request = run_request()
    first = ledger.claim(request)
    assert ledger.release(first, "deadline exceeded", ambiguous=True)
    taken = ledger.claim(request)
    assert taken.kind is ClaimKind.TAKEOVER
    only_changed(
        first.record,
        backend.get(request.ledger_key),
        token=taken.record.token,
        attempts=2,
        ambiguous=True,
    )


def test_launched_without_an_operation_stores_none(ledger, backend):
    claim = ledger.claim(run_request())
    assert ledger.launched(claim, EXECUTION)
    stored = backend.get(claim.record.key)
    assert stored.execution == EXECUTION and stored.operation is None


def test_rejected_stores_the_reason_and_is_no_longer_ambiguous(ledger, backend, clock):
    request = run_request()
    first = ledger.claim(request)
    clock.advance(seconds=LEASE.total_seconds())  # the claimer crashed: taken over as ambiguous
    taken = ledger.claim(request)
    assert taken.record.ambiguous and taken.record.attempts == 2
    stored = backend.get(request.ledger_key)
    assert ledger.rejected(taken, "job not found")
    only_changed(
        stored,
        backend.get(request.ledger_key),
        status=Status.REJECTED,
        reason="job not found",
        ambiguous=False,
        updated_at=clock.now,
    )
    assert backend.get(request.ledger_key).token != first.record.token


# --- rejected input ---------------------------------------------------------------------------


def test_rejected_input_is_a_full_record_that_expires_after_the_input_window(backend, clock):
    ledger = Ledger(backend, lease=LEASE, clock=clock, input_window=timedelta(days=2))
    body = b'{"message": 1}'
    record = ledger.reject_input(body, "bad_field", "message is not an object", {"form": "push"})
    digest = hashlib.sha256(b"input\x00" + body).hexdigest()
    assert record == Record(
        key=digest,
        rule=INPUT_RULE,
        dedup_key="sha256:" + hashlib.sha256(body).hexdigest(),
        job="",
        status=Status.REJECTED,
        token=record.token,
        event={"form": "push"},
        request={},
        created_at=START,
        updated_at=START,
        lease_until=START,
        expire_at=START + timedelta(days=2),
        reason="bad_field: message is not an object",
    )
    assert len(record.token) == 32 and backend.get(digest) == record
    assert record.event_id is None


def test_rejected_input_is_kept_seven_days_by_default(ledger):
    assert ledger.input_window == timedelta(days=7)
    record = ledger.reject_input(b"x", "bad_json", "not JSON", {})
    assert record.expire_at == START + timedelta(days=7)


def test_rejected_input_stores_its_texts_as_every_backend_can(ledger):
    # GIVEN what a hostile sender's request summarises to: a lone surrogate (a JSON escape no
    # UTF-8 store accepts), a text exactly at the limit, and an overlong message
    summary = {"type": "a\ud800b", "size": 3, "source": "s" * MAX_REASON_CHARS}
    record = ledger.reject_input(b"x", "bad_field", "m" * 3000, summary)
    # THEN each text is escaped or capped (the one at the limit kept whole), other values kept
    assert record.event == {"type": "a\\ud800b", "size": 3, "source": "s" * MAX_REASON_CHARS}
    assert record.reason == ("bad_field: " + "m" * 3000)[: MAX_REASON_CHARS - 3] + "..."
    assert len(record.reason) == MAX_REASON_CHARS


def test_a_repeated_bad_request_returns_the_first_record_counted(ledger, backend, clock):
    first = ledger.reject_input(b"x", "bad_json", "not JSON", {})
    clock.advance(minutes=3)
    again = ledger.reject_input(b"x", "bad_json", "later wording", {"other": True})
    # The first rejection stands (its reason, token and times); only the count moved.
    assert again == first
    assert backend.get(first.key) == replace(
        first, duplicates=1, updated_at=START + timedelta(minutes=3)
    )


class ConflictWithoutRecord(MemoryBackend):
    """A store whose conflict error does not carry the record (as Firestore's does not)."""

    def create(self, record):
        try:
            super().create(record)
        except RecordExists:
            raise RecordExists(None) from None


def test_a_repeated_bad_request_is_read_back_when_the_conflict_has_no_record(clock):
    backend = ConflictWithoutRecord()
    ledger = Ledger(backend, lease=LEASE, clock=clock)
    first = ledger.reject_input(b"x", "bad_json", "not JSON", {})
    again = ledger.reject_input(b"x", "bad_json", "not JSON", {})
    assert again.token == first.token and again.duplicates == 1
    assert backend.calls["get"] == 1


# --- find -------------------------------------------------------------------------------------


def stored_record(key: str, **fields) -> Record:
    values = dict(
        key=key,
        rule="r",
        dedup_key=f"d-{key}",
        job=JOB,
        status=Status.LAUNCHED,
        token="t",
        event={"id": key},
        request={},
        created_at=START,
        updated_at=START,
        lease_until=START,
        expire_at=START + timedelta(days=1),
    )
    values.update(fields)
    return Record(**values)


@pytest.fixture
def keyed(backend):
    """Records with chosen keys: two sharing the prefix 'abcdef01', one whole hex key, and
    records whose keys are not hex at all (older or hand-written documents)."""
    keys = [
        "abcdef01" + "0" * 56,
        "abcdef01" + "1" * 56,
        "abcdef02" + "2" * 56,
        "run-1",
        "xyz",
        "Mixed/Key",
    ]
    for key in keys:
        backend.create(stored_record(key))
    return keys


def test_find_reads_a_whole_key_case_insensitively(ledger, keyed, backend):
    backend.calls.clear()
    assert ledger.find(keyed[2]).key == keyed[2]
    assert ledger.find("  " + keyed[2].upper() + "\n").key == keyed[2]
    assert backend.calls == {"get": 2}  # a whole key is one read, not a range


@pytest.mark.parametrize("key", ["xyz", "run-1", "Mixed/Key"])
def test_find_reads_a_short_non_hex_key_as_a_whole_key(ledger, keyed, backend, key):
    # Not hex, so not a prefix: looked up as it is (case kept), never refused as too short.
    backend.calls.clear()
    assert ledger.find(f" {key} ").key == key
    assert backend.calls == {"get": 1}


def test_find_of_a_short_non_hex_key_that_does_not_exist_is_none(ledger, keyed):
    assert ledger.find("nope") is None
    assert ledger.find("XYZ") is None  # not hex: its case is not folded


def test_find_with_a_unique_prefix_reads_one_range(ledger, keyed, backend):
    backend.calls.clear()
    assert ledger.find("ABCDEF02").key == keyed[2]
    assert ledger.find("abcdef02" + "2" * 55).key == keyed[2]  # 63 characters: still a prefix
    assert backend.calls == {"with_prefix": 2}


def test_find_with_a_prefix_of_no_key_is_none(ledger, keyed):
    assert ledger.find("01234567") is None


def test_find_with_a_shared_prefix_names_the_keys(ledger, keyed):
    with pytest.raises(AmbiguousKey) as info:
        ledger.find("abcdef01")
    assert info.value.prefix == "abcdef01" and info.value.keys == keyed[:2]


def test_find_with_an_ambiguous_prefix_lists_up_to_five_keys(ledger, backend):
    keys = [f"deadbeef{i}" + "0" * 55 for i in range(7)]
    for key in keys:
        backend.create(stored_record(key))
    with pytest.raises(AmbiguousKey) as info:
        ledger.find("DEADBEEF")
    assert info.value.prefix == "deadbeef"
    assert info.value.keys == keys[:5]
    assert "'deadbeef' is the start of 5 or more ledger keys" in str(info.value)


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_find_needs_a_key(ledger, text):
    with pytest.raises(ValueError, match="^a ledger key is needed$"):
        ledger.find(text)


@pytest.mark.parametrize("prefix", ["a", "abcdef0", "1234567"])
def test_find_refuses_a_hex_prefix_under_eight_characters(ledger, keyed, backend, prefix):
    backend.calls.clear()
    with pytest.raises(ValueError, match=f"'{prefix}' is too short: .* at least its first 8"):
        ledger.find(prefix)
    assert backend.calls == {}


def test_find_of_a_hex_text_longer_than_a_key_is_a_whole_key_read(ledger, backend):
    long_key = "ab" * 33
    backend.create(stored_record(long_key))
    backend.calls.clear()
    assert ledger.find(long_key.upper()).key == long_key
    assert backend.calls == {"get": 1}


# --- naming events and executions -------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"id": "e-1"}, "e-1"),
        ({"id": 42}, "42"),
        ({"id": 0}, "0"),  # falsy, but an id
        ({"id": False}, "False"),
        ({"id": ""}, None),
        ({"id": None}, None),
        ({}, None),
        ({"ID": "x"}, None),
        (["id"], None),
        ("id", None),
        (None, None),
    ],
)
def test_event_id_of(event, expected):
    assert event_id_of(event) == expected


@pytest.mark.parametrize(
    ("execution", "expected"),
    [
        (EXECUTION, "csv-loader-ab1cd"),
        (EXECUTION + "/", "csv-loader-ab1cd"),
        (EXECUTION + "///", "csv-loader-ab1cd"),
        ("jobs/j/executions/run-X", "run-X"),  # only slashes are stripped, not other letters
        ("csv-loader-ab1cd", "csv-loader-ab1cd"),
        ("executions/", "executions"),
        ("/", None),
        ("", None),
        (None, None),
    ],
)
def test_short_execution(execution, expected):
    assert short_execution(execution) == expected


def test_a_records_event_id_and_execution_id_come_from_its_fields():
    record = stored_record("k", event={"id": 7}, execution=EXECUTION)
    assert record.event_id == "7" and record.execution_id == "csv-loader-ab1cd"
    bare = stored_record("k", event={}, execution=None)
    assert bare.event_id is None and bare.execution_id is None


def test_execution_lookup_tells_a_full_name_from_a_short_one():
    assert execution_lookup(EXECUTION) == ("execution", EXECUTION)
    assert execution_lookup("csv-loader-ab1cd") == ("execution_id", "csv-loader-ab1cd")


def test_list_by_execution_takes_a_full_name_or_its_last_segment(ledger, backend):
    backend.create(stored_record("a", execution=EXECUTION))
    backend.create(stored_record("b", execution=f"{JOB}/executions/other"))
    assert [r.key for r in ledger.list(execution=EXECUTION)] == ["a"]
    assert [r.key for r in ledger.list(execution="csv-loader-ab1cd")] == ["a"]
    assert ledger.list(execution="jobs/csv-loader/executions/csv-loader-ab1cd") == []


def test_as_dict_is_every_field_with_the_status_as_text():
    record = stored_record("k", reason="why", ambiguous=True)
    out = record.as_dict()
    assert type(out["status"]) is str and out["status"] == "launched"  # not the enum
    assert set(out) == set(Record.__dataclass_fields__)
    assert out["reason"] == "why" and out["ambiguous"] is True and out["key"] == "k"


# --- the store fails a write ------------------------------------------------------------------


def test_the_fault_switch_refuses_what_no_store_could_do(backend):
    with pytest.raises(ValueError, match="no ledger primitive 'delete'"):
        backend.fail("delete")
    with pytest.raises(ValueError, match="get writes nothing"):
        backend.fail("get", committed=True)


def test_a_failed_create_raises_and_stores_nothing(ledger, backend):
    backend.fail("create")
    with pytest.raises(StoreUnavailable):
        ledger.claim(run_request())
    assert backend.get(run_request().ledger_key) is None
    # The store is back: the redelivery claims it as new.
    assert ledger.claim(run_request()).kind is ClaimKind.NEW


def test_a_create_committed_with_its_reply_lost_is_taken_over_as_ambiguous(ledger, backend, clock):
    # GIVEN a claim whose create committed but whose caller saw an error (and gave up)
    request = run_request()
    backend.fail("create", committed=True)
    with pytest.raises(StoreUnavailable):
        ledger.claim(request)
    orphan = backend.get(request.ledger_key)
    assert orphan.status is Status.CLAIMED and orphan.lease_until == START + LEASE
    # WHEN the event is redelivered, inside the lease and after it
    assert ledger.claim(request).kind is ClaimKind.BUSY
    clock.advance(seconds=LEASE.total_seconds())
    taken = ledger.claim(request)
    # THEN nobody knows whether it ran, so the takeover says so
    assert taken.kind is ClaimKind.TAKEOVER
    assert taken.record.ambiguous is True and taken.record.attempts == 2


def test_a_failed_duplicate_count_raises_and_counts_nothing(ledger, backend):
    request = run_request()
    assert ledger.launched(ledger.claim(request), EXECUTION)
    backend.fail("count_duplicate")
    with pytest.raises(StoreUnavailable):
        ledger.claim(request)
    assert backend.get(request.ledger_key).duplicates == 0
    assert ledger.claim(request).kind is ClaimKind.DUPLICATE
    assert backend.get(request.ledger_key).duplicates == 1


def test_a_failed_takeover_raises_and_leaves_the_release_as_it_was(ledger, backend, clock):
    request = run_request()
    assert ledger.release(ledger.claim(request), "unavailable")
    released = backend.get(request.ledger_key)
    backend.fail("replace")
    with pytest.raises(StoreUnavailable):
        ledger.claim(request)
    assert backend.get(request.ledger_key) == released
    assert ledger.claim(request).record.attempts == 2


def test_a_failed_outcome_write_leaves_the_claim_live_until_its_lease_ends(ledger, backend, clock):
    # GIVEN a claim whose `launched` write fails
    request = run_request()
    claim = ledger.claim(request)
    backend.fail("update")
    with pytest.raises(StoreUnavailable):
        ledger.launched(claim, EXECUTION, "operations/op-1")
    # THEN the record still says claimed, with nothing of the launch in it
    assert backend.get(request.ledger_key) == claim.record
    # AND a redelivery after the lease takes it over knowing an execution may exist
    clock.advance(seconds=LEASE.total_seconds() + 1)
    taken = ledger.claim(request)
    assert taken.kind is ClaimKind.TAKEOVER and taken.record.ambiguous is True


@pytest.mark.parametrize(
    ("write", "status", "fields"),
    [
        (
            lambda ledger, claim: ledger.launched(claim, EXECUTION, "operations/op-1"),
            Status.LAUNCHED,
            {"execution": EXECUTION, "operation": "operations/op-1"},
        ),
        (
            lambda ledger, claim: ledger.release(claim, "timeout", ambiguous=True),
            Status.RELEASED,
            {"reason": "timeout", "ambiguous": True},
        ),
    ],
    ids=["launched", "release"],
)
def test_an_outcome_write_committed_with_its_reply_lost_is_stored(
    ledger, backend, write, status, fields
):
    claim = ledger.claim(run_request())
    backend.fail("update", committed=True)
    with pytest.raises(StoreUnavailable):
        write(ledger, claim)
    stored = backend.get(claim.record.key)
    assert stored.status is status
    assert {name: getattr(stored, name) for name in fields} == fields


def test_a_failed_input_rejection_raises_and_a_retry_records_it(ledger, backend):
    backend.fail("create")
    with pytest.raises(StoreUnavailable):
        ledger.reject_input(b"x", "bad_json", "not JSON", {})
    assert ledger.reject_input(b"x", "bad_json", "not JSON", {}).duplicates == 0


def test_a_failed_count_of_a_repeated_bad_request_raises(ledger, backend):
    first = ledger.reject_input(b"x", "bad_json", "not JSON", {})
    backend.fail("count_duplicate", TimeoutError("deadline"))
    with pytest.raises(TimeoutError):
        ledger.reject_input(b"x", "bad_json", "not JSON", {})
    assert backend.get(first.key).duplicates == 0


def test_faults_are_used_up_in_order(ledger, backend):
    backend.fail("with_prefix", times=2)
    for _ in range(2):
        with pytest.raises(StoreUnavailable):
            ledger.find("abcdef01")
    assert ledger.find("abcdef01") is None
    assert backend.failed == ["with_prefix", "with_prefix"]


def test_list_filters_on_creation_time_from_since_inclusive_to_until_exclusive(ledger, backend):
    for minute in range(4):
        backend.create(stored_record(f"k{minute}", created_at=START + timedelta(minutes=minute)))
    since, until = START + timedelta(minutes=1), START + timedelta(minutes=3)
    assert [r.key for r in ledger.list(since=since)] == ["k3", "k2", "k1"]
    assert [r.key for r in ledger.list(until=until)] == ["k2", "k1", "k0"]
    assert [r.key for r in ledger.list(since=since, until=until)] == ["k2", "k1"]


def test_list_by_event_id_compares_it_as_text(ledger, backend):
    backend.create(stored_record("a", event={"id": "7"}))
    backend.create(stored_record("b", event={"id": 8}))
    backend.create(stored_record("c", event={}))
    assert [r.key for r in ledger.list(event_id="7")] == ["a"]
    assert [r.key for r in ledger.list(event_id=8)] == ["b"]
    assert [r.key for r in ledger.list(event_id="8")] == ["b"]
    assert ledger.list(event_id="9") == []


def test_a_conflict_says_what_it_is():
    assert str(RecordExists()) == "record exists" and RecordExists().record is None


def test_a_conflict_without_the_record_is_read_back_for_a_claim(clock):
    # Firestore's AlreadyExists does not carry the document: the claim must read it by its key.
    backend = ConflictWithoutRecord()
    ledger = Ledger(backend, lease=LEASE, clock=clock)
    first = ledger.claim(run_request())
    again = ledger.claim(run_request())
    assert again.kind is ClaimKind.BUSY and again.record.token == first.record.token
    assert backend.calls["get"] == 1


def test_renewing_a_record_past_its_window_costs_one_create_and_one_replace(ledger, backend, clock):
    request = run_request()
    assert ledger.launched(ledger.claim(request), EXECUTION)
    clock.advance(seconds=WINDOW)
    backend.calls.clear()
    assert ledger.claim(request).kind is ClaimKind.NEW
    assert backend.calls == {"create": 1, "replace": 1}
