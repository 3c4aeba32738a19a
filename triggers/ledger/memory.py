"""`MemoryBackend`: the ledger primitives over a dict and a lock, for unit tests and dry runs.

Records are deep-copied on the way in and out so that a caller mutating the dicts inside a
`Record` (event, request, event document) cannot change what is "stored" behind the ledger's
back: the memory backend must behave like a real store, or tests written against it lie.
"""

from __future__ import annotations

import builtins
import copy
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import fields, replace
from datetime import UTC, datetime
from typing import Any

from .base import RecordExists
from .records import Record, Status, matches, newest_first

# Fields `update` may change. The key is the record's identity; everything else is data.
_UPDATABLE = frozenset(f.name for f in fields(Record)) - {"key"}
_TIMES = ("created_at", "updated_at", "lease_until", "expire_at")


class MemoryBackend:
    """All records in one dict; every primitive holds the lock, so each is atomic."""

    def __init__(self) -> None:
        self._records: dict[str, Record] = {}
        self._lock = threading.Lock()
        # Store round trips per primitive, for tests and the benchmark. A conflicting `create`
        # returns the current record with the error, like SQLite: no extra read is needed.
        self.calls: Counter[str] = Counter()

    def create(self, record: Record) -> None:
        with self._lock:
            self.calls["create"] += 1
            current = self._records.get(record.key)
            if current is not None:
                raise RecordExists(_copy(current))
            self._records[record.key] = _stored(record)

    def get(self, key: str) -> Record | None:
        with self._lock:
            self.calls["get"] += 1
            current = self._records.get(key)
            return None if current is None else _copy(current)

    def replace(self, record: Record, expected_token: str) -> bool:
        with self._lock:
            self.calls["replace"] += 1
            current = self._records.get(record.key)
            if current is None or current.token != expected_token:
                return False
            self._records[record.key] = _stored(record)
            return True

    def update(self, key: str, token: str, changes: dict[str, Any]) -> bool:
        values = _checked_changes(changes)
        with self._lock:
            self.calls["update"] += 1
            current = self._records.get(key)
            if current is None or current.token != token:
                return False
            self._records[key] = replace(current, **values)
            return True

    def count_duplicate(self, key: str, now: datetime) -> None:
        with self._lock:
            self.calls["count_duplicate"] += 1
            current = self._records.get(key)
            # A record that vanished (expired and deleted) has nobody left to count for.
            if current is not None:
                self._records[key] = replace(
                    current, duplicates=current.duplicates + 1, updated_at=_utc(now)
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
        wanted = None if status is None else frozenset(Status(s) for s in status)
        with self._lock:
            self.calls["list"] += 1
            found = [
                r
                for r in self._records.values()
                if matches(
                    r,
                    rule=rule,
                    status=wanted,
                    since=since,
                    until=until,
                    event_id=event_id,
                    execution=execution,
                )
            ]
            # Newest first; the key breaks ties so the order is the same on every backend.
            return [_copy(r) for r in newest_first(found)[: max(limit, 0)]]

    def with_prefix(self, prefix: str, limit: int = 2) -> builtins.list[Record]:
        with self._lock:
            self.calls["with_prefix"] += 1
            keys = sorted(k for k in self._records if k.startswith(prefix))[: max(limit, 0)]
            return [_copy(self._records[k]) for k in keys]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def _checked_changes(changes: dict[str, Any]) -> dict[str, Any]:
    unknown = set(changes) - _UPDATABLE
    if unknown:
        raise ValueError(f"cannot update ledger record fields {sorted(unknown)}")
    if not changes:
        raise ValueError("update needs at least one field to change")
    values = dict(changes)
    if "status" in values:
        values["status"] = Status(values["status"])
    for name in _TIMES:
        if name in values:
            values[name] = _utc(values[name])
    return copy.deepcopy(values)


def _copy(record: Record) -> Record:
    return copy.deepcopy(record)


def _stored(record: Record) -> Record:
    """A private copy, with times in UTC as the other backends return them."""
    times: dict[str, Any] = {name: _utc(getattr(record, name)) for name in _TIMES}
    return replace(_copy(record), **times)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"ledger times must be timezone-aware, not naive {value.isoformat()}")
    return value.astimezone(UTC)
