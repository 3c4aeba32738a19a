"""`SQLiteBackend`: the ledger in one SQLite file, the embedded default for local use.

Atomicity comes from SQLite itself, so several threads and several processes (`triggers serve`
workers, a CLI listing runs) can share one file:

* create-if-absent is the primary key: the INSERT fails with IntegrityError for all but one;
* compare-and-set is `UPDATE ... WHERE key = ? AND token = ?`, judged by its rowcount;
* WAL mode lets readers run beside the one writer, and a busy timeout makes writers queue
  instead of failing with "database is locked".

Each thread gets its own connection (sqlite3 connections must not be shared mid-transaction),
and a forked child opens its own instead of inheriting its parent's. A thread's connection is
closed once the thread has ended (at the next connection opened): a threaded server starts a
thread per request, and keeping theirs open ran `triggers serve` out of file descriptors.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .base import RecordExists
from .records import Record, Status, event_id_of, execution_lookup, short_execution

DEFAULT_PATH = Path(".triggers") / "ledger.sqlite3"

_COLUMNS = tuple(f.name for f in fields(Record))
# Not Record fields: derived from `event` and `execution` on every write, for `list` to look up.
_DERIVED = ("event_id", "execution_id")
_ROW_COLUMNS = _COLUMNS + _DERIVED
# Columns added since the first version, with their type: `_migrate` adds them to older files.
_ADDED = (
    ("outcome", "TEXT"),
    ("event_id", "TEXT"),
    ("execution_id", "TEXT"),
    ("task", "TEXT"),
    ("batch", "TEXT"),
)
_JSON = frozenset({"event", "request", "event_document", "outcome"})
_TIMES = frozenset({"created_at", "updated_at", "lease_until", "expire_at"})
_UPDATABLE = frozenset(_COLUMNS) - {"key"}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key            TEXT PRIMARY KEY,
    rule           TEXT NOT NULL,
    dedup_key      TEXT NOT NULL,
    job            TEXT NOT NULL,
    status         TEXT NOT NULL,
    token          TEXT NOT NULL,
    event          TEXT NOT NULL,
    request        TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL,
    lease_until    TEXT NOT NULL,
    expire_at      TEXT NOT NULL,
    attempts       INTEGER NOT NULL,
    duplicates     INTEGER NOT NULL,
    execution      TEXT,
    operation      TEXT,
    reason         TEXT,
    ambiguous      INTEGER NOT NULL,
    event_document TEXT,
    outcome        TEXT,
    task           TEXT,
    batch          TEXT,
    event_id       TEXT,
    execution_id   TEXT
);
-- What `list` filters and sorts on: newest first, optionally per rule or per status.
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
CREATE INDEX IF NOT EXISTS runs_rule_created ON runs (rule, created_at);
CREATE INDEX IF NOT EXISTS runs_status_created ON runs (status, created_at);
-- For a periodic purge of expired records (SQLite has no TTL).
CREATE INDEX IF NOT EXISTS runs_expire ON runs (expire_at);
"""
# On columns an older file gains in `_migrate`: created after it.
_LOOKUP_INDEXES = """
CREATE INDEX IF NOT EXISTS runs_event_created ON runs (event_id, created_at);
CREATE INDEX IF NOT EXISTS runs_execution_created ON runs (execution, created_at);
CREATE INDEX IF NOT EXISTS runs_execution_id_created ON runs (execution_id, created_at);
"""

_INSERT = (
    f"INSERT INTO runs ({', '.join(_ROW_COLUMNS)}) VALUES ({', '.join('?' * len(_ROW_COLUMNS))})"
)
_REPLACE = (
    f"UPDATE runs SET {', '.join(f'{c} = ?' for c in _ROW_COLUMNS if c != 'key')}"
    " WHERE key = ? AND token = ?"
)


class SQLiteBackend:
    """The ledger primitives over one SQLite file (created, with its parent dirs, on first use)."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_PATH, *, busy_timeout: float = 30.0):
        # Absolute now: a later chdir must not move the ledger (nothing is opened yet).
        self.path = Path(path).expanduser().absolute()
        self.busy_timeout = busy_timeout
        # Store round trips per primitive, for tests and the benchmark. A conflicting `create`
        # reads the current row in the same transaction, so a duplicate needs no extra `get`.
        self.calls: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._local = threading.local()
        # (pid, thread, connection): every connection opened, to close them all, and a dead
        # thread's when the next one is opened.
        self._connections: list[tuple[int, threading.Thread, sqlite3.Connection]] = []
        self._connections_lock = threading.Lock()
        self._schema_ready = False

    # -- primitives -------------------------------------------------------------------------

    def create(self, record: Record) -> None:
        self._count("create")
        db = self._db()
        row = _to_row(record)
        # IMMEDIATE takes the write lock up front, so the conflicting row we read back is the
        # one that beat us, not a later version; and a writer never has to upgrade a read lock
        # (the upgrade cannot wait on the busy timeout and would fail with SQLITE_BUSY).
        db.execute("BEGIN IMMEDIATE")
        try:
            try:
                db.execute(_INSERT, row)
                current = None
            except sqlite3.IntegrityError as exc:
                current = db.execute("SELECT * FROM runs WHERE key = ?", (record.key,)).fetchone()
                if current is None:  # not the key: a broken record (NOT NULL), say so
                    raise ValueError(f"cannot store ledger record {record.key}: {exc}") from exc
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        if current is not None:
            raise RecordExists(_from_row(current))

    def get(self, key: str) -> Record | None:
        self._count("get")
        row = self._db().execute("SELECT * FROM runs WHERE key = ?", (key,)).fetchone()
        return None if row is None else _from_row(row)

    def replace(self, record: Record, expected_token: str) -> bool:
        self._count("replace")
        values = [v for c, v in zip(_ROW_COLUMNS, _to_row(record), strict=True) if c != "key"]
        cursor = self._db().execute(_REPLACE, (*values, record.key, expected_token))
        return cursor.rowcount == 1

    def update(self, key: str, token: str, changes: dict[str, Any]) -> bool:
        unknown = set(changes) - _UPDATABLE
        if unknown:
            raise ValueError(f"cannot update ledger record fields {sorted(unknown)}")
        if not changes:
            raise ValueError("update needs at least one field to change")
        self._count("update")
        values = {name: _encode(name, value) for name, value in changes.items()}
        if "event" in changes:
            values["event_id"] = event_id_of(changes["event"])
        if "execution" in changes:
            values["execution_id"] = short_execution(changes["execution"])
        # Column names come from the whitelist above, never from the caller's strings.
        names = sorted(values)
        sql = f"UPDATE runs SET {', '.join(f'{n} = ?' for n in names)} WHERE key = ? AND token = ?"
        params = [values[n] for n in names]
        return self._db().execute(sql, (*params, key, token)).rowcount == 1

    def count_duplicate(self, key: str, now: datetime) -> None:
        self._count("count_duplicate")
        self._db().execute(
            "UPDATE runs SET duplicates = duplicates + 1, updated_at = ? WHERE key = ?",
            (_time(now), key),
        )

    def list(
        self,
        *,
        rule: str | None = None,
        status: Iterable[Status] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        event_id: str | None = None,
        execution: str | None = None,
        limit: int = 100,
    ) -> list[Record]:
        where: list[str] = []
        params: list[Any] = []
        if rule is not None:
            where.append("rule = ?")
            params.append(rule)
        if status is not None:
            wanted = sorted({Status(s).value for s in status})
            if not wanted:
                return []
            where.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if since is not None:
            where.append("created_at >= ?")
            params.append(_time(since))
        if until is not None:
            where.append("created_at < ?")
            params.append(_time(until))
        if event_id is not None:
            where.append("event_id = ?")
            params.append(str(event_id))
        if execution is not None:
            column, value = execution_lookup(execution)  # "execution" or "execution_id"
            where.append(f"{column} = ?")
            params.append(value)
        sql = "SELECT * FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # ISO text of fixed width sorts like the times it spells; the key breaks ties so the
        # order is the same on every backend.
        sql += " ORDER BY created_at DESC, key DESC LIMIT ?"
        params.append(max(limit, 0))
        self._count("list")
        return [_from_row(row) for row in self._db().execute(sql, params)]

    def with_prefix(self, prefix: str, limit: int = 2) -> builtins.list[Record]:
        self._count("with_prefix")
        # A range on the primary key, not LIKE (case-insensitive, and it would scan the table).
        rows = self._db().execute(
            "SELECT * FROM runs WHERE key >= ? AND key < ? ORDER BY key LIMIT ?",
            (prefix, prefix + "\uffff", max(limit, 0)),
        )
        return [_from_row(row) for row in rows]

    # -- housekeeping -----------------------------------------------------------------------

    def purge_expired(self, now: datetime, *, dry_run: bool = False) -> int:
        """Delete records past `expire_at` (what Firestore's TTL policy does on its own); how
        many (with `dry_run`, how many would be). `triggers purge` also purges the batches."""
        if dry_run:
            found = self._db().execute(
                "SELECT COUNT(*) FROM runs WHERE expire_at <= ?", (_time(now),)
            )
            return int(found.fetchone()[0])
        return self._db().execute("DELETE FROM runs WHERE expire_at <= ?", (_time(now),)).rowcount

    def close(self) -> None:
        """Close every connection this backend opened, in any thread."""
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for _, _, connection in connections:
            connection.close()
        self._local = threading.local()

    def __enter__(self) -> SQLiteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, primitive: str) -> None:
        with self._calls_lock:
            self.calls[primitive] += 1

    def _db(self) -> sqlite3.Connection:
        local = self._local
        pid = os.getpid()
        if getattr(local, "pid", None) != pid:  # first use in this thread, or a forked child
            local.connection = self._connect()
            local.pid = pid
        return local.connection

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: autocommit, each statement is its own transaction unless we
        # BEGIN one; check_same_thread=False only so that close() may run from another thread.
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        connection.row_factory = sqlite3.Row
        try:
            self._prepare(connection)
        except sqlite3.Error as exc:
            connection.close()
            raise sqlite3.OperationalError(f"cannot open the ledger at {self.path}: {exc}") from exc
        pid, thread = os.getpid(), threading.current_thread()
        with self._connections_lock:
            # Only this process's: a forked child never touches its parent's connections.
            ended = [c for c in self._connections if c[0] == pid and not c[1].is_alive()]
            self._connections = [c for c in self._connections if c not in ended]
            self._connections.append((pid, thread, connection))
        for _, _, old in ended:
            old.close()
        return connection

    def _prepare(self, connection: sqlite3.Connection) -> None:
        # Switching a new file to WAL (and recovering a WAL another process left) can report
        # "database is locked" without waiting on the busy handler when several processes open
        # the file at once; so retry the setup ourselves, within the same time budget.
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            try:
                # WAL persists in the file: only the first opener has to switch it.
                mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
                if mode.lower() != "wal":
                    connection.execute("PRAGMA journal_mode = WAL")
                if not self._schema_ready:
                    connection.executescript(_SCHEMA)
                    _migrate(connection)
                    connection.executescript(_LOOKUP_INDEXES)
                    self._schema_ready = True
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
        # In WAL mode NORMAL loses no committed data on an application crash, only on power
        # loss, and saves an fsync per commit: right for a local development ledger.
        connection.execute("PRAGMA synchronous = NORMAL")

    def __repr__(self) -> str:
        return f"SQLiteBackend({str(self.path)!r})"


# -- encoding ---------------------------------------------------------------------------------


def _time(value: datetime) -> str:
    """UTC, fixed width, microseconds always present: text order is time order."""
    if value.tzinfo is None:
        raise ValueError(f"ledger times must be timezone-aware, not naive {value.isoformat()}")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _migrate(connection: sqlite3.Connection) -> None:
    """Bring a ledger file made by an older version up to date: add the columns Record (and
    `list`) gained since, and fill the derived lookup columns of the rows it already holds.

    Additive only, so an older version can still read the file. Under the write lock, and
    checked again once holding it: several processes may open one old file at the same time.
    """
    if not _missing_columns(connection):
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        missing = _missing_columns(connection)
        for column, kind in _ADDED:
            if column in missing:
                connection.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
        if missing & set(_DERIVED):
            rows = connection.execute("SELECT key, event, execution FROM runs").fetchall()
            connection.executemany(
                "UPDATE runs SET event_id = ?, execution_id = ? WHERE key = ?",
                [
                    (event_id_of(json.loads(event)), short_execution(execution), key)
                    for key, event, execution in rows
                ],
            )
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _missing_columns(connection: sqlite3.Connection) -> set[str]:
    present = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
    return {column for column, _ in _ADDED} - present


def _encode(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _JSON:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    if name in _TIMES:
        return _time(value)
    if name == "status":
        return Status(value).value
    if name == "ambiguous":
        return int(bool(value))
    return value


def _to_row(record: Record) -> tuple[Any, ...]:
    """The values of `_ROW_COLUMNS`: the record's fields, then the derived lookup columns."""
    return (
        *(_encode(name, getattr(record, name)) for name in _COLUMNS),
        record.event_id,
        record.execution_id,
    )


def _from_row(row: sqlite3.Row) -> Record:
    values: dict[str, Any] = {}
    for name in _COLUMNS:
        value = row[name]
        if value is not None:
            if name in _JSON:
                value = json.loads(value)
            elif name in _TIMES:
                value = datetime.fromisoformat(value)
            elif name == "status":
                value = Status(value)
            elif name == "ambiguous":
                value = bool(value)
        values[name] = value
    return Record(**values)
