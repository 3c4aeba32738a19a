"""A ledger record and its vocabulary: statuses, the record itself, and the small pure helpers
every backend shares (lookups by event id or execution, filtering and ordering a listing,
text a backend can always store). No I/O; `Ledger` (base.py) owns the algorithm over them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The `rule` of records about requests that never became an event (they match no rule).
INPUT_RULE = "(input)"


class Status(str, enum.Enum):
    CLAIMED = "claimed"
    LAUNCHED = "launched"
    REJECTED = "rejected"
    RELEASED = "released"
    # Flow control (triggers/flow): the launch was handed to a queue task, or the event joined
    # a batch; both are decided (a redelivery is a duplicate) but not finished.
    QUEUED = "queued"
    BATCHED = "batched"
    SKIPPED = "skipped"  # max_running reached and the rule says `when_busy: skip`
    # Set later by the reconciler from the execution itself.
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = frozenset(
    {
        Status.LAUNCHED,
        Status.REJECTED,
        Status.SKIPPED,
        Status.SUCCEEDED,
        Status.FAILED,
        Status.CANCELLED,
    }
)
# Records a redelivery of their event is a duplicate of: finished, or handed to flow control
# (the queue task or the batch will launch them; the event itself must not again).
DECIDED = FINISHED | {Status.QUEUED, Status.BATCHED}


@dataclass(frozen=True, slots=True)
class Record:
    """One ledger document: a (rule, dedup key) and everything decided about it."""

    key: str
    rule: str
    dedup_key: str
    job: str
    status: Status
    token: str
    event: dict[str, Any]
    request: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    lease_until: datetime
    expire_at: datetime
    attempts: int = 1
    duplicates: int = 0
    execution: str | None = None
    operation: str | None = None
    reason: str | None = None
    ambiguous: bool = False  # the last attempt may have started an execution
    event_document: dict[str, Any] | None = None
    # How the execution ended (set by the reconciler): outcome, task counts, times, log URI.
    outcome: dict[str, Any] | None = None
    # Flow control: the queue task that launches it (`queued`), the batch it joined (`batched`).
    task: str | None = None
    batch: str | None = None

    def lease_live(self, now: datetime) -> bool:
        return self.status is Status.CLAIMED and self.lease_until > now

    @property
    def event_id(self) -> str | None:
        """The event's id (`event["id"]`) as text; None for records without one (bad input)."""
        return event_id_of(self.event)

    @property
    def execution_id(self) -> str | None:
        """The last segment of the execution name (`csv-loader-ab1cd`), or None."""
        return short_execution(self.execution)

    def as_dict(self) -> dict[str, Any]:
        return {
            name: (value.value if isinstance(value, Status) else value)
            for name, value in ((f, getattr(self, f)) for f in self.__dataclass_fields__)
        }


def event_id_of(event: Any) -> str | None:
    """`event["id"]` as text, what `list(event_id=...)` compares with; None when absent or empty."""
    value = event.get("id") if isinstance(event, dict) else None
    return None if value is None or value == "" else str(value)


def short_execution(execution: str | None) -> str | None:
    """`projects/P/locations/R/jobs/J/executions/E` -> `E`; None for no (or an empty) name."""
    if not execution:
        return None
    return execution.rstrip("/").rsplit("/", 1)[-1] or None


def execution_lookup(execution: str) -> tuple[str, str]:
    """How `list(execution=...)` matches: a name with a `/` is a full execution name and must
    equal the record's `execution`; a name without one is compared with its last segment
    (`execution_id`). Returns (which of the two, the value to compare with)."""
    if "/" in execution:
        return "execution", execution
    return "execution_id", execution


def matches(
    record: Record,
    *,
    rule: str | None = None,
    status: frozenset[Status] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    event_id: str | None = None,
    execution: str | None = None,
) -> bool:
    """Whether `record` passes `list`'s filters (what the memory backend, and the Firestore
    backend for what it filters on the client, apply)."""
    if execution is not None:
        name, value = execution_lookup(execution)
        if getattr(record, name) != value:
            return False
    return (
        (rule is None or record.rule == rule)
        and (status is None or record.status in status)
        and (since is None or record.created_at >= since)
        and (until is None or record.created_at < until)
        and (event_id is None or record.event_id == str(event_id))
    )


def newest_first(records: Iterable[Record]) -> list[Record]:
    """`list`'s order on every backend: created_at descending, ties broken by key descending."""
    return sorted(records, key=lambda r: (r.created_at, r.key), reverse=True)


# A reason is for people and logs; what caused it is in the event. Bounded so that a message
# quoting a huge value cannot make the record too large to write.
MAX_REASON_CHARS = 2000


def storable_text(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """`text` as every backend can store it: a character UTF-8 cannot encode (a lone surrogate
    from a JSON escape) written as its escape, and at most `limit` characters."""
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."
