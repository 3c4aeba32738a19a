"""`FaultyBackend`: the memory ledger backend with a switch that makes any primitive fail.

A real store fails in two ways that matter to the claim algorithm and the dispatcher: the call
fails before anything is written (the store is down, a deadline passed before the commit), or
the write commits and the reply is lost (the client sees an error for a write that happened).
`fail(primitive, error, committed=...)` queues one of those for the next call of `primitive`;
the queue is consumed in order, and a primitive without queued faults behaves normally.
Pure logic, no I/O: it is the memory backend with a failure queue in front of it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from triggers.ledger.base import Ledger, Record, Status
from triggers.ledger.memory import MemoryBackend

PRIMITIVES = ("create", "get", "replace", "update", "count_duplicate", "list", "with_prefix")
# Primitives that write: a fault on them may be "committed" (applied, then the reply lost).
WRITES = frozenset({"create", "replace", "update", "count_duplicate"})


class StoreUnavailable(ConnectionError):
    """What a faulty primitive raises unless the test gives its own error."""


@dataclass(frozen=True)
class Fault:
    error: BaseException
    committed: bool  # the write happened before the error was raised


class FaultyBackend(MemoryBackend):
    """MemoryBackend whose primitives raise the faults queued with `fail`."""

    def __init__(self) -> None:
        super().__init__()
        self.faults: dict[str, list[Fault]] = {}
        self.failed: list[str] = []  # the primitives that raised, in order

    def fail(
        self,
        primitive: str,
        error: BaseException | None = None,
        *,
        times: int = 1,
        committed: bool = False,
    ) -> None:
        """Make the next `times` calls of `primitive` raise `error` (default StoreUnavailable);
        with `committed`, a write is applied first (its reply was lost)."""
        if primitive not in PRIMITIVES:
            raise ValueError(f"no ledger primitive {primitive!r}; one of {PRIMITIVES}")
        if committed and primitive not in WRITES:
            raise ValueError(f"{primitive} writes nothing, so nothing can be committed")
        fault = Fault(
            error or StoreUnavailable(f"ledger store unavailable ({primitive})"), committed
        )
        self.faults.setdefault(primitive, []).extend([fault] * times)

    def _call(self, primitive: str, apply: Any) -> Any:
        queued = self.faults.get(primitive)
        if not queued:
            return apply()
        fault = queued.pop(0)
        self.failed.append(primitive)
        if fault.committed:
            apply()
        raise fault.error

    def create(self, record: Record) -> None:
        return self._call("create", lambda: super(FaultyBackend, self).create(record))

    def get(self, key: str) -> Record | None:
        return self._call("get", lambda: super(FaultyBackend, self).get(key))

    def replace(self, record: Record, expected_token: str) -> bool:
        return self._call(
            "replace", lambda: super(FaultyBackend, self).replace(record, expected_token)
        )

    def update(self, key: str, token: str, changes: dict[str, Any]) -> bool:
        return self._call("update", lambda: super(FaultyBackend, self).update(key, token, changes))

    def count_duplicate(self, key: str, now: datetime) -> None:
        return self._call(
            "count_duplicate", lambda: super(FaultyBackend, self).count_duplicate(key, now)
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
        filters = dict(
            rule=rule,
            status=status,
            since=since,
            until=until,
            event_id=event_id,
            execution=execution,
            limit=limit,
        )
        return self._call("list", lambda: super(FaultyBackend, self).list(**filters))

    def with_prefix(self, prefix: str, limit: int = 2) -> list[Record]:
        return self._call(
            "with_prefix", lambda: super(FaultyBackend, self).with_prefix(prefix, limit)
        )


# The claim lease of the dispatch tests that fail the store on purpose (test_dispatch_records.py,
# test_dispatch_observed.py): short, so that a test can move its clock past it.
LEASE = timedelta(minutes=5)


def faulty_store() -> FaultyBackend:
    """The `store` fixture of those tests: a FaultyBackend, switched on by the test."""
    return FaultyBackend()


def faulty_ledger(store: FaultyBackend, clock: Any) -> Ledger:
    """Their `ledger` fixture: the ledger over `store`, on the test's clock, with `LEASE`."""
    return Ledger(store, lease=LEASE, clock=clock)
