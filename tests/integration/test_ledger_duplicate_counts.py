"""A duplicate on the Firestore ledger: two round trips on the request path, counted later.

Against the official Firestore emulator (the session's `firestore_emulator`): the failed create
and one masked read decide a duplicate; its count on the record is written off the path by the
backend's flusher (triggers/ledger/duplicate_counts.py), exactly, whether `flush()` or the
interval writes it, and it survives a failed write (the emulator behind a cut TCP proxy).
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import make_firestore_client
from tests.integration.conftest import eventually
from tests.integration.tcpproxy import TcpProxy
from tests.integration.test_ledger_backends import run_request
from triggers.ledger.base import Claim, ClaimKind, Ledger, Status
from triggers.ledger.firestore import FirestoreBackend

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EXECUTION = "projects/p/locations/europe-west1/jobs/csv-loader/executions/csv-loader-ab1cd"
NEVER = 3600.0  # a flush interval no test outlives: counts arrive only through flush()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def backend_over(client: Any, **options: Any) -> FirestoreBackend:
    return FirestoreBackend(client, collection=f"dups-{uuid.uuid4().hex[:12]}", **options)


def launched(ledger: Ledger) -> Claim:
    """A launched record, with an event document: the big fields a summary leaves out."""
    claim = ledger.claim(run_request(), {"data": {"bucket": "raw-data", "name": "a.csv"}})
    assert claim.kind is ClaimKind.NEW
    assert ledger.launched(claim, EXECUTION, "operations/o1")
    return claim


def duplicates_at_once(ledger: Ledger, n: int) -> list[Claim]:
    barrier = threading.Barrier(n)

    def claim(_: int) -> Claim:
        barrier.wait()
        return ledger.claim(run_request())

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(claim, range(n)))


def test_a_duplicate_costs_one_commit_and_one_read_and_still_answers_its_execution(
    firestore_client,
):
    clock = Clock()
    backend = backend_over(firestore_client, duplicate_flush_seconds=NEVER)
    ledger = Ledger(backend, clock=clock)
    first = launched(ledger)
    backend.calls.clear()
    backend.rpcs.clear()

    # WHEN the event is delivered again
    clock.now = T0 + timedelta(seconds=5)
    duplicate = ledger.claim(run_request())

    # THEN it is decided by the failed create and one read, and its count is not written yet
    assert duplicate.kind is ClaimKind.DUPLICATE
    assert backend.rpcs == {"commit": 1, "read": 1}
    assert backend.calls == {"create": 1, "count_duplicate": 1}
    # its answer carries the execution (and everything else a claim decides on) ...
    assert duplicate.record.execution == EXECUTION and duplicate.record.operation == "operations/o1"
    assert (
        duplicate.record.status is Status.LAUNCHED and duplicate.record.token == first.record.token
    )
    # ... from a summary: the big fields were not read
    stored = ledger.get(first.record.key)
    assert stored.event_document == {"data": {"bucket": "raw-data", "name": "a.csv"}}
    assert duplicate.record == replace(stored, event={}, request={}, event_document=None)
    assert stored.duplicates == 0 and backend.duplicates.pending() == {first.record.key: 1}

    # WHEN the counts are flushed: one commit, off the path
    backend.rpcs.clear()
    assert backend.flush() == 0
    assert backend.rpcs == {"commit": 1}
    counted = ledger.get(first.record.key)
    assert counted == replace(stored, duplicates=1, updated_at=clock.now)


def test_counts_of_concurrent_duplicates_arrive_exactly_after_flush_in_one_write(
    firestore_client,
):
    clock = Clock()
    backend = backend_over(firestore_client, duplicate_flush_seconds=NEVER)
    ledger = Ledger(backend, clock=clock)
    key = launched(ledger).record.key
    clock.now = T0 + timedelta(minutes=1)
    # WHEN 40 deliveries of the launched event arrive at the same moment
    claims = duplicates_at_once(ledger, 40)
    assert Counter(c.kind for c in claims) == {ClaimKind.DUPLICATE: 40}
    assert {c.record.execution for c in claims} == {EXECUTION}
    assert backend.duplicates.pending() == {key: 40}
    assert ledger.get(key).duplicates == 0
    # THEN one flush writes all 40 with one commit
    writes = backend.duplicates.stats["writes"]
    assert backend.flush() == 0
    assert backend.duplicates.stats["writes"] == writes + 1
    record = ledger.get(key)
    assert record.duplicates == 40 and record.updated_at == clock.now
    assert backend.duplicates.pending() == {}
    assert backend.flush() == 0 and ledger.get(key).duplicates == 40  # nothing twice


def test_counts_arrive_after_the_interval_without_a_flush(firestore_client):
    backend = backend_over(firestore_client, duplicate_flush_seconds=0.2)
    ledger = Ledger(backend)
    key = launched(ledger).record.key
    claims = duplicates_at_once(ledger, 25)
    assert Counter(c.kind for c in claims) == {ClaimKind.DUPLICATE: 25}
    # THEN the flusher writes them by itself, exactly (polled, with a deadline)
    eventually(
        lambda: ledger.get(key).duplicates == 25,
        timeout=15,
        what="the flusher to write 25 duplicate counts",
        context=lambda: f"stored {ledger.get(key).duplicates}, stats {backend.duplicates.stats}",
    )
    assert backend.duplicates.pending() == {}
    # and a later duplicate starts it again once it has gone idle
    assert ledger.claim(run_request()).kind is ClaimKind.DUPLICATE
    eventually(
        lambda: ledger.get(key).duplicates == 26,
        timeout=15,
        what="the 26th duplicate count",
    )


def test_a_record_deleted_before_the_flush_is_ignored(firestore_client):
    backend = backend_over(firestore_client, duplicate_flush_seconds=NEVER)
    ledger = Ledger(backend)
    key = launched(ledger).record.key
    assert ledger.claim(run_request()).kind is ClaimKind.DUPLICATE
    # GIVEN the TTL policy deletes the record before its count is written
    firestore_client.collection(backend.collection).document(key).delete()
    # THEN the flush counts nothing, creates nothing, and keeps nothing to retry
    assert backend.flush() == 0
    assert ledger.get(key) is None
    assert backend.duplicates.stats["gone"] == 1 and backend.duplicates.pending() == {}


def test_a_zero_interval_still_writes_the_count_synchronously(firestore_client):
    backend = backend_over(firestore_client, duplicate_flush_seconds=0)
    ledger = Ledger(backend)
    key = launched(ledger).record.key
    backend.rpcs.clear()
    assert ledger.claim(run_request()).kind is ClaimKind.DUPLICATE
    assert backend.rpcs == {"commit": 2, "read": 1}  # the count, on the path
    assert ledger.get(key).duplicates == 1
    assert backend.duplicates is None and backend.flush() == 0


# -- a flush that fails -----------------------------------------------------------------------


@pytest.fixture
def proxy(firestore_emulator: str) -> Iterator[TcpProxy]:
    host, port = firestore_emulator.rsplit(":", 1)
    with TcpProxy(host, int(port)) as proxy:
        yield proxy


def test_a_failed_flush_keeps_the_counts_for_the_next_one(proxy, caplog):
    client = make_firestore_client(proxy.address, "demo-triggers-duplicates")
    try:
        backend = backend_over(
            client, duplicate_flush_seconds=NEVER, deadline=1.0, retry_seconds=0.3
        )
        ledger = Ledger(backend)
        key = launched(ledger).record.key
        for _ in range(3):
            assert ledger.claim(run_request()).kind is ClaimKind.DUPLICATE
        # WHEN Firestore goes away before the counts are written
        proxy.cut("reset")
        with caplog.at_level(logging.WARNING, logger="triggers.ledger"):
            assert backend.flush() == 1  # THEN they are kept, and the failure is logged
        assert backend.duplicates.pending() == {key: 3}
        assert backend.duplicates.stats["failed"] == 1
        assert f"could not write 3 duplicate count(s) of {key}" in caplog.text
        # WHEN it is back, and one more duplicate arrives meanwhile
        proxy.restore()
        eventually(
            lambda: _answers(ledger, key),
            timeout=30,
            what="the ledger to answer again after the cut",
        )
        assert ledger.claim(run_request()).kind is ClaimKind.DUPLICATE
        # THEN the next flush writes all four, once
        assert backend.flush() == 0
        assert ledger.get(key).duplicates == 4
    finally:
        client.close()


def _answers(ledger: Ledger, key: str) -> bool:
    try:
        return ledger.get(key) is not None
    except Exception:
        return False


# -- at exit ----------------------------------------------------------------------------------

_EXITING_WORKER = """
import sys
from datetime import UTC, datetime
from tests.conftest import make_firestore_client
from triggers.ledger.firestore import FirestoreBackend

host, collection, key = sys.argv[1:4]
client = make_firestore_client(host, "demo-triggers-ledger")
backend = FirestoreBackend(client, collection=collection, duplicate_flush_seconds=3600)
for _ in range(2):
    backend.count_duplicate(key, datetime.now(UTC))
sys.exit(0)  # what a gunicorn worker does on SIGTERM: atexit handlers run
"""


def test_counts_still_pending_are_written_when_the_process_exits(
    firestore_emulator, firestore_client
):
    backend = backend_over(firestore_client, duplicate_flush_seconds=NEVER)
    key = launched(Ledger(backend)).record.key
    done = subprocess.run(
        [sys.executable, "-c", _EXITING_WORKER, firestore_emulator, backend.collection, key],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert backend.get(key).duplicates == 2
