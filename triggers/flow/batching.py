"""Batches as stored: pure values, their identities, and the storage primitives they need.

`batches.py` owns the algorithm (as `ledger/base.py` owns the claim algorithm); a ledger
backend offers a `BatchStore` over its own store: three compare-and-set primitives on two
kinds of document, plus a bulk read of ledger records for the manifest.

    Batch    {id, rule, key, status open|sealed|launched|rejected, opened_at, closes_at,
              members (member ledger keys, in join order), token, ...}
    Cursor   one per (rule, batch key): the generation of its batch ids and a hint of the
             sequence number of the open batch (it may lag: readers walk forward from it)

Batch ids are `<digest of rule and key>-<generation>-<sequence>`: the next batch's id follows
from the previous one, so concurrent openers of "the next batch" compute the same id and collide
on create (one wins, the others join it). The generation, drawn when the cursor is created,
keeps ids unique if a cursor ever expires and is created anew (an id must never be reused: the
batch's ledger record `batch/<id>` and its Cloud Tasks names would dedup the new batch away).
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from ..ledger.base import Record

# Cloud Run's cap on the tasks of one execution.
MAX_TASK_COUNT = 10_000
# How long a batch document (and its cursor) is kept after its window closes: long enough for
# `triggers runs/show` and for any late retry of its task.
BATCH_RETENTION_DAYS = 7


class BatchStatus(str, enum.Enum):
    OPEN = "open"  # members may join (not full); the timer seals it at closes_at
    SEALED = "sealed"  # membership is final; the launch is being made
    LAUNCHED = "launched"  # its execution exists (and is recorded on the batch run record)
    REJECTED = "rejected"  # its run can never be made (the job refused it for good)


@dataclass(frozen=True, slots=True)
class Batch:
    id: str
    rule: str
    key: str
    status: BatchStatus
    token: str
    opened_at: datetime
    closes_at: datetime
    max_events: int
    expire_at: datetime
    members: tuple[str, ...] = ()
    timer: bool = False  # the window's timer task (`b-<id>`) is known to exist
    sealed_at: datetime | None = None
    run: str | None = None  # ledger key of the batch's own run record (`batch/<id>`)
    execution: str | None = None
    task_count: int | None = None
    manifest: str | None = None  # "inline" or the manifest object's URI
    reason: str | None = None

    @property
    def full(self) -> bool:
        return len(self.members) >= self.max_events

    @property
    def joinable(self) -> bool:
        """Open and not full. Deliberately no clock here: a batch past `closes_at` but not yet
        sealed still takes members, so whether a member may join is decided by the stored
        document alone, and the seal (a CAS) is the one moment membership ends."""
        return self.status is BatchStatus.OPEN and not self.full

    def as_document(self) -> dict[str, Any]:
        document = asdict(self)
        document["status"] = self.status.value
        document["members"] = list(self.members)
        return document

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Batch:
        values = dict(document)
        values["status"] = BatchStatus(values["status"])
        values["members"] = tuple(values.get("members") or ())
        return cls(**{name: values[name] for name in _BATCH_FIELDS if name in values})


@dataclass(frozen=True, slots=True)
class Cursor:
    rule: str
    key: str
    generation: str
    seq: int
    token: str
    expire_at: datetime
    id: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", cursor_id(self.rule, self.key))

    def as_document(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "key": self.key,
            "generation": self.generation,
            "seq": self.seq,
            "token": self.token,
            "expire_at": self.expire_at,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Cursor:
        return cls(
            rule=document["rule"],
            key=document["key"],
            generation=document["generation"],
            seq=int(document["seq"]),
            token=document["token"],
            expire_at=document["expire_at"],
        )


_BATCH_FIELDS = tuple(Batch.__dataclass_fields__)
_TIME_FIELDS = frozenset({"opened_at", "closes_at", "expire_at", "sealed_at"})


def encode_document(document: dict[str, Any]) -> str:
    """A batch or cursor document as JSON text (times as ISO 8601 UTC): how every backend
    stores the body, so that a member list is one value, not thousands of index entries."""
    return json.dumps(
        {
            k: v.isoformat() if k in _TIME_FIELDS and v is not None else v
            for k, v in document.items()
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def decode_document(text: str) -> dict[str, Any]:
    document = json.loads(text)
    for name in _TIME_FIELDS & set(document):
        if document[name] is not None:
            document[name] = datetime.fromisoformat(document[name]).astimezone(UTC)
    return document


def _digest(rule: str, key: str) -> str:
    return hashlib.sha256(f"{rule}\x00{key}".encode()).hexdigest()


def cursor_id(rule: str, key: str) -> str:
    return "c-" + _digest(rule, key)[:40]


def batch_id(rule: str, key: str, generation: str, seq: int) -> str:
    """Letters, digits and hyphens only: it is also part of Cloud Tasks task names."""
    return f"{_digest(rule, key)[:20]}-{generation}-{seq}"


def task_count(members: int, per_task: int) -> int:
    """`min(ceil(members / per_task), 10000)`, at least 1 (an execution has one task or more)."""
    if per_task < 1:
        raise ValueError("per_task must be at least 1")
    return max(1, min(math.ceil(members / per_task), MAX_TASK_COUNT))


def timer_task_name(batch: str) -> str:
    return f"b-{batch}"


def seal_task_name(batch: str) -> str:
    return f"s-{batch}"


def batch_dedup_key(batch: str) -> str:
    """The dedup key of a batch's own run record: one launch per batch, however often its
    task is delivered."""
    return f"batch/{batch}"


BATCH_DEDUP_PREFIX = "batch/"


class BatchStore(Protocol):
    """What the batch algorithm needs of a store. Every write is atomic on one document; the
    replaces are compare-and-set on the document's `token`."""

    def create_batch(self, batch: Batch) -> bool:
        """Insert if absent: True if created, False if a batch of this id exists."""

    def get_batch(self, batch_id: str) -> Batch | None: ...

    def replace_batch(self, batch: Batch, expected_token: str) -> bool:
        """Overwrite if the stored token is still `expected_token`."""

    def create_cursor(self, cursor: Cursor) -> bool: ...

    def get_cursor(self, rule: str, key: str) -> Cursor | None: ...

    def replace_cursor(self, cursor: Cursor, expected_token: str) -> bool: ...

    def list_batches(self, *, rule: str | None = None, limit: int = 100) -> builtins.list[Batch]:
        """Newest first (opened_at, then id, descending)."""

    def get_records(self, keys: Iterable[str]) -> dict[str, Record]:
        """The ledger records of these keys that exist (one bulk read where the store has one)."""
