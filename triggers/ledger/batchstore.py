"""Batch stores: the storage primitives of batching (`triggers.flow.batching.BatchStore`) over
each ledger backend's own store, so batches live beside the records of their members.

Every backend stores the same thing: one document per batch or cursor, keyed by its id, with
`kind`, `rule`, `opened_at` (for listing), the `token` compare-and-set is judged on, and the body
as JSON text. Three raw primitives per backend (create-if-absent, get, replace-if-token) and a
listing; `batchdocs.DocumentBatchStore` turns them into batches and cursors.

    memory    a dict under a lock                         (`MemoryBatchStore`)
    SQLite    a `batches` table in the ledger's file       (`SQLiteBatchStore`)
    Firestore a collection of its own, `triggers-batches` (`firestore_batches.py`)
"""

from __future__ import annotations

import builtins
import sqlite3
import threading
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from ..flow.batching import decode_document, encode_document
from .base import Record
from .batchdocs import DocumentBatchStore
from .memory import MemoryBackend
from .sqlite import SQLiteBackend, _from_row

# SQLite's default limit on host parameters is 999 (older builds): read records in chunks.
_SQLITE_CHUNK = 500


class MemoryBatchStore(DocumentBatchStore):
    """For unit tests and dry runs: documents as JSON text, so nothing is shared by reference."""

    def __init__(self, records: MemoryBackend | None = None) -> None:
        self.records = records if records is not None else MemoryBackend()
        # Kept on the backend, as the other stores keep batches beside the records: every
        # store over one memory backend (the function's, `show`'s, the reconciler's) sees them.
        shared = self.records.__dict__.setdefault("_batch_documents", ({}, threading.Lock()))
        self._docs: dict[str, tuple[str, str]] = shared[0]  # id -> (kind, JSON body)
        self._lock: threading.Lock = shared[1]

    def _create(self, doc_id: str, kind: str, rule: str, opened_at: Any, doc: dict) -> bool:
        with self._lock:
            if doc_id in self._docs:
                return False
            self._docs[doc_id] = (kind, encode_document(doc))
            return True

    def _get(self, doc_id: str) -> dict[str, Any] | None:
        with self._lock:
            stored = self._docs.get(doc_id)
        return None if stored is None else decode_document(stored[1])

    def _replace(self, doc_id: str, doc: dict[str, Any], expected_token: str) -> bool:
        with self._lock:
            stored = self._docs.get(doc_id)
            if stored is None or decode_document(stored[1])["token"] != expected_token:
                return False
            self._docs[doc_id] = (stored[0], encode_document(doc))
            return True

    def _list(self, rule: str | None, limit: int) -> builtins.list[dict[str, Any]]:
        with self._lock:
            found = [decode_document(body) for kind, body in self._docs.values() if kind == "batch"]
        found = [d for d in found if rule is None or d["rule"] == rule]
        found.sort(key=lambda d: (d["opened_at"], d["id"]), reverse=True)
        return found[:limit]

    def get_records(self, keys: Iterable[str]) -> dict[str, Record]:
        found = {key: self.records.get(key) for key in keys}
        return {key: record for key, record in found.items() if record is not None}


_SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id        TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    rule      TEXT NOT NULL,
    opened_at TEXT,
    token     TEXT NOT NULL,
    body      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_kind_opened ON batches (kind, opened_at);
CREATE INDEX IF NOT EXISTS batches_rule_opened ON batches (rule, opened_at);
"""


class SQLiteBatchStore(DocumentBatchStore):
    """A `batches` table in the ledger's own file (created on first use; older files just gain
    it). Create-if-absent is the primary key; compare-and-set is `UPDATE ... AND token = ?`."""

    def __init__(self, records: SQLiteBackend) -> None:
        self.records = records
        self._ready = False

    def _db(self) -> sqlite3.Connection:
        db = self.records._db()
        if not self._ready:
            db.executescript(_SQLITE_SCHEMA)
            self._ready = True
        return db

    def _create(self, doc_id: str, kind: str, rule: str, opened_at: Any, doc: dict) -> bool:
        opened = None if opened_at is None else opened_at.isoformat()
        try:
            self._db().execute(
                "INSERT INTO batches (id, kind, rule, opened_at, token, body)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (doc_id, kind, rule, opened, doc["token"], encode_document(doc)),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def _get(self, doc_id: str) -> dict[str, Any] | None:
        row = self._db().execute("SELECT body FROM batches WHERE id = ?", (doc_id,)).fetchone()
        return None if row is None else decode_document(row[0])

    def _replace(self, doc_id: str, doc: dict[str, Any], expected_token: str) -> bool:
        cursor = self._db().execute(
            "UPDATE batches SET token = ?, body = ? WHERE id = ? AND token = ?",
            (doc["token"], encode_document(doc), doc_id, expected_token),
        )
        return cursor.rowcount == 1

    def _list(self, rule: str | None, limit: int) -> builtins.list[dict[str, Any]]:
        sql = "SELECT body FROM batches WHERE kind = 'batch'"
        params: list[Any] = []
        if rule is not None:
            sql += " AND rule = ?"
            params.append(rule)
        sql += " ORDER BY opened_at DESC, id DESC LIMIT ?"
        params.append(limit)
        return [decode_document(row[0]) for row in self._db().execute(sql, params)]

    def purge_expired(self, now: datetime, *, dry_run: bool = False) -> int:
        """Delete the batch and cursor documents past their `expire_at`, which Firestore's TTL
        policy does on its own; how many (with `dry_run`, how many would be). A file without
        batches has none."""
        db = self.records._db()
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'batches'").fetchone() is None:
            return 0
        expired = [
            doc_id
            for doc_id, body in db.execute("SELECT id, body FROM batches")
            if _expired(decode_document(body), now)
        ]
        if not dry_run:
            for start in range(0, len(expired), _SQLITE_CHUNK):
                chunk = expired[start : start + _SQLITE_CHUNK]
                marks = ", ".join("?" * len(chunk))
                db.execute(f"DELETE FROM batches WHERE id IN ({marks})", chunk)
        return len(expired)

    def get_records(self, keys: Iterable[str]) -> dict[str, Record]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Record] = {}
        db = self.records._db()
        for start in range(0, len(wanted), _SQLITE_CHUNK):
            chunk = wanted[start : start + _SQLITE_CHUNK]
            marks = ", ".join("?" * len(chunk))
            for row in db.execute(f"SELECT * FROM runs WHERE key IN ({marks})", chunk):
                record = _from_row(row)
                found[record.key] = record
        return found


def _expired(document: dict[str, Any], now: datetime) -> bool:
    expire_at = document.get("expire_at")
    return isinstance(expire_at, datetime) and expire_at <= now


def batch_store_for(backend: Any) -> DocumentBatchStore:
    """The batch store that lives beside a ledger backend's records."""
    if isinstance(backend, MemoryBackend):
        return MemoryBatchStore(backend)
    if isinstance(backend, SQLiteBackend):
        return SQLiteBatchStore(backend)
    from .firestore import FirestoreBackend

    if isinstance(backend, FirestoreBackend):
        from .firestore_batches import FirestoreBatchStore

        return FirestoreBatchStore(backend)
    raise TypeError(f"no batch store for ledger backend {type(backend).__name__}")
