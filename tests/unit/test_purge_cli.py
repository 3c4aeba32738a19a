"""`triggers purge`: an SQLite ledger drops what has passed its dedup window, records and batch
documents alike, and nothing else; a Firestore ledger is left to its TTL policy."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from tests.batching import a_batch
from triggers.cli import main
from triggers.flow.batching import Batch, BatchStatus, Cursor
from triggers.ledger.base import Record, Status
from triggers.ledger.batchstore import SQLiteBatchStore
from triggers.ledger.sqlite import SQLiteBackend

NOW = datetime.now(UTC)
PAST = NOW - timedelta(days=8)


def record(key: str, expire_at: datetime) -> Record:
    return Record(
        key=key * 64,
        rule="ingest",
        dedup_key=f"ingest/{key}",
        job="projects/p/locations/r/jobs/j",
        status=Status.LAUNCHED,
        token=uuid.uuid4().hex,
        event={"id": key, "source": "//s", "type": "t"},
        request={},
        created_at=PAST,
        updated_at=PAST,
        lease_until=PAST,
        expire_at=expire_at,
    )


def batch(batch_id: str, expire_at: datetime) -> Batch:
    return a_batch(batch_id, PAST, status=BatchStatus.LAUNCHED, expire_at=expire_at)


def purge(path, *more: str, capsys) -> dict:
    assert main(["purge", "--ledger", "sqlite", "--sqlite-path", str(path), "--json", *more]) == 0
    return json.loads(capsys.readouterr().out)


def test_purge_drops_what_expired_and_keeps_the_rest(tmp_path, capsys):
    # GIVEN an SQLite ledger with an expired and a live record, and expired and live batch
    # documents (a batch, a cursor) beside them
    path = tmp_path / "ledger.sqlite3"
    with SQLiteBackend(path) as backend:
        backend.create(record("a", PAST + timedelta(days=7)))
        backend.create(record("b", NOW + timedelta(days=1)))
        store = SQLiteBatchStore(backend)
        store.create_batch(batch("old-g1-0", PAST + timedelta(days=7)))
        store.create_batch(batch("new-g1-0", NOW + timedelta(days=1)))
        cursor = Cursor(rule="ingest", key="raw", generation="g1", seq=1, token="t", expire_at=PAST)
        store.create_cursor(cursor)
    # WHEN it is purged dry THEN it counts what would go and deletes nothing
    assert purge(path, "--dry-run", capsys=capsys) == {"records": 1, "batches": 2, "dry_run": True}
    # WHEN it is purged THEN exactly the expired ones are gone
    assert purge(path, capsys=capsys) == {"records": 1, "batches": 2, "dry_run": False}
    with SQLiteBackend(path) as backend:
        store = SQLiteBatchStore(backend)
        assert backend.get("a" * 64) is None and backend.get("b" * 64) is not None
        assert store.get_batch("old-g1-0") is None and store.get_batch("new-g1-0") is not None
        assert store.get_cursor("ingest", "raw") is None
    # and purging again finds nothing
    assert purge(path, capsys=capsys) == {"records": 0, "batches": 0, "dry_run": False}


def test_a_ledger_file_from_before_batches_purges_its_records(tmp_path, capsys):
    path = tmp_path / "ledger.sqlite3"
    with SQLiteBackend(path) as backend:
        backend.create(replace(record("c", PAST), key="c" * 64))
    assert purge(path, capsys=capsys) == {"records": 1, "batches": 0, "dry_run": False}


def test_a_firestore_ledger_is_left_to_its_ttl_policy(monkeypatch, capsys):
    # Nothing is read or written: the backend's client is never created.
    monkeypatch.setenv("TRIGGERS_LEDGER", "firestore")
    monkeypatch.setenv("TRIGGERS_FIRESTORE_PROJECT", "demo-purge")
    assert main(["purge"]) == 0
    out = capsys.readouterr().out
    assert "nothing to purge" in out and "TTL policy" in out


def test_a_missing_sqlite_file_is_an_error_not_a_new_ledger(tmp_path, capsys):
    path = tmp_path / "absent.sqlite3"
    assert main(["purge", "--ledger", "sqlite", "--sqlite-path", str(path)]) == 1
    assert "no ledger at" in capsys.readouterr().err
    assert not path.exists()
