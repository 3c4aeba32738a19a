"""The ledger: at most one execution per (rule, dedup key), and a record of every decision.

`Ledger` owns the claim algorithm; a backend (Firestore, SQLite, memory) implements five small
storage primitives. The algorithm, in one place so every backend behaves the same:

    claim(request)
      create-if-absent(record: claimed, token T, lease)           -> Claim.NEW        (run it)
      exists, token == T (our own commit, retried by the client)   -> Claim.NEW
      exists, launched / rejected / finished                      -> Claim.DUPLICATE  (ack, counted)
      exists, claimed and lease live                              -> Claim.BUSY       (retry later)
      exists, claimed and lease expired, or released              -> replace-if-token-unchanged
                                                                     -> Claim.TAKEOVER (look for an
                                                                        execution first, then run)
      exists, finished and past its dedup window                  -> replace -> Claim.NEW

A takeover is the only path that may find an execution already started by someone else (a crash
after jobs.run, a lost response), which is why the runner looks before it launches again.
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..plan import RunIdentity, RunRequest
from .records import DECIDED, FINISHED, INPUT_RULE, Record, Status, storable_text


class ClaimKind(str, enum.Enum):
    NEW = "new"
    TAKEOVER = "takeover"
    DUPLICATE = "duplicate"
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class Claim:
    """What `Ledger.claim` decided, and the record it decided on.

    An owned claim (NEW, TAKEOVER) always carries a whole record: the one it wrote. A
    DUPLICATE or BUSY claim carries the stored record as the backend's conflict returned it,
    which may be a summary (Firestore: see `RecordExists`): every field but `event`,
    `request`, `event_document` and `outcome`, which are empty ({} / None)."""

    kind: ClaimKind
    record: Record
    # The planned request (its system's exact body), once the owner has planned it: claims are
    # made before planning (a duplicate renders nothing), so the record's `request` is written
    # with the owner's next write (`launched`, `queued`, `rejected`...) instead of the create.
    request: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def owned(self) -> bool:
        """Whether this caller now holds the claim and must run, then record."""
        return self.kind in (ClaimKind.NEW, ClaimKind.TAKEOVER)

    def planned(self, request: RunRequest) -> Claim:
        """This claim, carrying `request`'s body for the record's next write."""
        return replace(self, request=request.request_body())


_CLAIM_PASSES = 3
# Ledger keys are sha256 hex digests (`RunRequest.ledger_key`, `reject_input`).
KEY_LENGTH = 64
MIN_KEY_PREFIX = 8
_HEX = re.compile(r"[0-9a-f]+")


class LedgerContention(RuntimeError):
    """A record kept changing under us, or a backend transaction ran out of attempts.

    Nothing was decided (or written): the caller must treat it as a failed call and retry later.
    """


class AmbiguousKey(LookupError):
    """`Ledger.find` was given a key prefix that more than one record's key starts with."""

    def __init__(self, prefix: str, keys: list[str]) -> None:
        super().__init__(f"{prefix!r} is the start of {len(keys)} or more ledger keys")
        self.prefix = prefix
        self.keys = keys


class RecordExists(Exception):
    """Raised by `Backend.create` when the key exists. Carries the record when the store
    returned it with the conflict (saves a read), else None (the record vanished meanwhile, or
    the store cannot say: the ledger reads it).

    The record may be a summary: a backend that must read it separately (Firestore) reads only
    what a claim decision and a duplicate's answer need, so its `event`, `request`,
    `event_document` and `outcome` are empty ({} / None). Never hand it out as an owned claim's
    record (`Ledger.get` reads the whole record)."""

    def __init__(self, record: Record | None = None) -> None:
        super().__init__("record exists")
        self.record = record


class Backend(Protocol):
    """The storage primitives a ledger needs. Each must be atomic on one record."""

    def create(self, record: Record) -> None:
        """Insert if absent; raise RecordExists otherwise."""

    def get(self, key: str) -> Record | None: ...

    def replace(self, record: Record, expected_token: str) -> bool:
        """Overwrite the record if its stored token is still `expected_token`."""

    def update(self, key: str, token: str, changes: dict[str, Any]) -> bool:
        """Apply changes if the stored token is still `token` (the caller still owns it)."""

    def count_duplicate(self, key: str, now: datetime) -> None: ...

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
        """Newest first (ties: key descending), at most `limit`. `since` is inclusive, `until`
        exclusive (on `created_at`); `event_id` is `event["id"]`; `execution` is a full
        execution name or its last segment (see `execution_lookup`)."""

    def with_prefix(self, prefix: str, limit: int = 2) -> builtins.list[Record]:
        """The records whose key starts with `prefix`, in key order, at most `limit`."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Ledger:
    backend: Backend
    lease: timedelta = timedelta(seconds=540)  # Cloud Functions' default timeout, and then some
    max_event_bytes: int = 256 * 1024
    input_window: timedelta = timedelta(days=7)  # how long rejected input is kept
    clock: Any = field(default=utcnow)

    def claim(
        self, request: RunRequest | RunIdentity, event_document: dict[str, Any] | None = None
    ) -> Claim:
        now = self.clock()
        record = self._new_record(request, event_document, now)
        # A pass ends undecided only when the record changed under us (a rival's replace won,
        # or the record vanished between our create and our read); the next pass sees it anew.
        for _ in range(_CLAIM_PASSES):
            claim = self._claim_pass(record, now)
            if claim is not None:
                return claim
        raise LedgerContention(
            f"record {record.key} kept changing during {_CLAIM_PASSES} claim attempts"
        )

    def _claim_pass(self, record: Record, now: datetime) -> Claim | None:
        try:
            self.backend.create(record)
            return Claim(ClaimKind.NEW, record)
        except RecordExists as exists:
            current = exists.record or self.backend.get(record.key)
        if current is None:
            return None
        if current.token == record.token:  # our own create, committed by a client-side retry
            # Ours, with the same content; `current` may be only a summary of it.
            return Claim(ClaimKind.NEW, record)
        if current.expire_at <= now and current.status in FINISHED:
            # Past its dedup window (TTL not yet applied): a new occurrence, a fresh record.
            # Only a finished record ages out: one still claimed or released past a short window
            # (1 min < the lease) must stay BUSY or be taken over below, which looks for the
            # execution a crashed claimer may have started; a NEW here could run it twice.
            return (
                Claim(ClaimKind.NEW, record)
                if self.backend.replace(record, current.token)
                else None
            )
        if current.status in DECIDED:
            self.backend.count_duplicate(current.key, now)
            return Claim(ClaimKind.DUPLICATE, current)
        if current.lease_live(now):
            return Claim(ClaimKind.BUSY, current)
        # Released for retry, or a lease that expired (the claimer crashed): take it over.
        taken = replace(
            record,
            created_at=current.created_at,
            attempts=current.attempts + 1,
            duplicates=current.duplicates,
            ambiguous=current.ambiguous or current.status is Status.CLAIMED,
            # A batch member's intent (the batch it was joining when it crashed) survives the
            # takeover: the new owner looks there first, so it never joins two batches.
            batch=current.batch,
        )
        return (
            Claim(ClaimKind.TAKEOVER, taken) if self.backend.replace(taken, current.token) else None
        )

    def launched(self, claim: Claim, execution: str, operation: str | None = None) -> bool:
        return self._finish(
            claim,
            Status.LAUNCHED,
            execution=execution,
            operation=operation,
            reason=None,
            ambiguous=False,
        )

    def rejected(self, claim: Claim, reason: str) -> bool:
        return self._finish(claim, Status.REJECTED, reason=reason, ambiguous=False)

    def release(self, claim: Claim, reason: str, *, ambiguous: bool = False) -> bool:
        """Give the claim back so a redelivery can retry at once (not after the lease)."""
        return self._finish(claim, Status.RELEASED, reason=reason, ambiguous=ambiguous)

    def hold(self, claim: Claim, reason: str, *, hold: timedelta) -> bool:
        """Keep an ambiguous attempt's claim for ``hold`` from now, then let it be taken over.

        After a `jobs.run` whose outcome is unknown the API may still be working on the
        request, so nobody may launch again until it can no longer create the execution: the
        record stays ``claimed`` (a redelivery is BUSY, told to retry) with its lease set to
        now + ``hold``, and ``ambiguous``, so the takeover after it looks for the execution
        first. ``hold`` must cover the runner's request timeout plus a margin (docs/ledger.md).
        """
        return self._finish(
            claim,
            Status.CLAIMED,
            reason=reason,
            ambiguous=True,
            lease_until=self.clock() + hold,
        )

    # -- flow control (triggers/flow, docs/flow-control.md) ----------------------------------

    def queued(self, claim: Claim, task: str) -> bool:
        """Record that the launch was handed to queue task ``task``: decided (a redelivery of
        the event is a duplicate), launched later by that task through `claim_queued`."""
        return self._finish(claim, Status.QUEUED, task=task, reason=None, ambiguous=False)

    def requeue(self, claim: Claim, reason: str) -> bool:
        """Give a claim taken by a queue task back to the queue (`queued`): the task is retried
        with the queue's backoff (the job API's 429, `when_busy: queue` at the limit)."""
        return self._finish(claim, Status.QUEUED, reason=reason, ambiguous=False)

    def skipped(self, claim: Claim, reason: str) -> bool:
        """`max_running` was reached and the rule says `when_busy: skip`: finished, not run."""
        return self._finish(claim, Status.SKIPPED, reason=reason, ambiguous=False)

    def claim_queued(self, key: str) -> Claim | None:
        """The claim a queue task takes on the `queued` record ``key`` before launching it.

        The same CAS as `claim`, on a record that exists (None when it does not):
            queued                                 -> Claim.NEW      (launch it)
            claimed and lease live                 -> Claim.BUSY     (its owner may be in
                                                                      jobs.run: retry later)
            claimed and lease expired, or released -> Claim.TAKEOVER (ambiguous when claimed:
                                                                      look for an execution)
            anything else (launched, skipped, ...) -> Claim.DUPLICATE
        A `claimed` record is also one whose event-side claimer crashed after creating the task
        and before writing `queued`: the task waits out that lease, then takes it over and
        looks for an execution first, like a redelivery would.
        """
        now = self.clock()
        for _ in range(_CLAIM_PASSES):
            current = self.backend.get(key)
            if current is None:
                return None
            if current.status is Status.QUEUED:
                kind = ClaimKind.NEW
            elif current.status in DECIDED:
                return Claim(ClaimKind.DUPLICATE, current)
            elif current.lease_live(now):
                return Claim(ClaimKind.BUSY, current)
            else:
                kind = ClaimKind.TAKEOVER
            taken = replace(
                current,
                status=Status.CLAIMED,
                token=uuid.uuid4().hex,
                updated_at=now,
                lease_until=now + self.lease,
                attempts=current.attempts + (kind is ClaimKind.TAKEOVER),
                ambiguous=current.ambiguous or current.status is Status.CLAIMED,
            )
            if self.backend.replace(taken, current.token):
                return Claim(kind, taken)
        raise LedgerContention(f"record {key} kept changing during {_CLAIM_PASSES} claim attempts")

    def _finish(self, claim: Claim, status: Status, **changes: Any) -> bool:
        now = self.clock()
        if changes.get("reason") is not None:
            changes["reason"] = storable_text(changes["reason"])
        if claim.request is not None:
            changes.setdefault("request", claim.request)
        return self.backend.update(
            claim.record.key, claim.record.token, {"status": status, "updated_at": now, **changes}
        )

    def reject_input(
        self, body: bytes, reason: str, message: str, summary: dict[str, Any]
    ) -> Record:
        """Record a request that could not be decoded: no rule or job, just why, once per body.

        Keyed by the body's digest, so a sender retrying the same bad request is counted as a
        duplicate of the first rejection instead of piling up records. Returns the record: for
        a repeat, the first one as the backend's conflict carried it, which on Firestore is its
        summary (`event` and `request` empty; `get` reads the whole record).
        """
        now = self.clock()
        digest = hashlib.sha256(b"input\x00" + body).hexdigest()
        record = Record(
            key=digest,
            rule=INPUT_RULE,
            dedup_key=f"sha256:{hashlib.sha256(body).hexdigest()}",
            job="",
            status=Status.REJECTED,
            token=uuid.uuid4().hex,
            event={
                name: storable_text(value) if isinstance(value, str) else value
                for name, value in summary.items()
            },
            request={},
            created_at=now,
            updated_at=now,
            lease_until=now,
            expire_at=now + self.input_window,
            reason=storable_text(f"{reason}: {message}"),
        )
        try:
            self.backend.create(record)
            return record
        except RecordExists as exists:
            self.backend.count_duplicate(digest, now)
            return exists.record or self.backend.get(digest) or record

    def get(self, key: str) -> Record | None:
        return self.backend.get(key)

    def find(self, key: str) -> Record | None:
        """The record with this ledger key, or the one whose key starts with this prefix.

        A hex string shorter than a key (64 characters) is a prefix: it must have at least
        `MIN_KEY_PREFIX` characters (else ValueError) and start exactly one key (else
        AmbiguousKey, with up to five of them); it costs one indexed range read on every
        backend. Anything else is looked up as a whole key with one `get`. Hex is
        case-insensitive (keys are lowercase).
        """
        text = key.strip()
        if not text:
            raise ValueError("a ledger key is needed")
        lowered = text.lower()
        if not _HEX.fullmatch(lowered) or len(lowered) >= KEY_LENGTH:
            return self.backend.get(lowered if _HEX.fullmatch(lowered) else text)
        if len(lowered) < MIN_KEY_PREFIX:
            raise ValueError(
                f"{text!r} is too short: give the whole ledger key ({KEY_LENGTH} hex characters)"
                f" or at least its first {MIN_KEY_PREFIX}"
            )
        found = self.backend.with_prefix(lowered, limit=5)
        if len(found) > 1:
            raise AmbiguousKey(lowered, [r.key for r in found])
        return found[0] if found else None

    def list(self, **filters: Any) -> list[Record]:
        return self.backend.list(**filters)

    # -- batching (triggers/flow/batches.py owns the algorithm) --------------------------------

    def intend_batch(self, claim: Claim, batch: str) -> bool:
        """Write down the batch this claimed member is about to join, before joining it: a
        takeover after a crash reads it and looks in that batch first (docs/flow-control.md,
        "Batching")."""
        return self.backend.update(
            claim.record.key, claim.record.token, {"batch": batch, "updated_at": self.clock()}
        )

    def batched(self, claim: Claim, batch: str, *, keep_until: datetime | None = None) -> bool:
        """The member is in `batch` for good: decided (a redelivery is a duplicate). With
        `keep_until` later than the record's dedup window, the record is kept that long: its
        batch reads it for the manifest, and a TTL must not delete it first."""
        changes: dict[str, Any] = {"batch": batch, "reason": None, "ambiguous": False}
        if keep_until is not None and keep_until > claim.record.expire_at:
            changes["expire_at"] = keep_until
        return self._finish(claim, Status.BATCHED, **changes)

    def _new_record(
        self,
        request: RunRequest | RunIdentity,
        event_document: dict[str, Any] | None,
        now: datetime,
    ) -> Record:
        document = event_document
        if document is not None and _json_size(document) > self.max_event_bytes:
            document = None  # the event reference is kept; the body would not fit a document
        return Record(
            key=request.ledger_key,
            rule=request.rule,
            dedup_key=request.dedup_key,
            job=request.job,
            status=Status.CLAIMED,
            token=uuid.uuid4().hex,
            event=request.event.as_dict(),
            # Claimed before planning (dispatch): the owner's next write adds the request.
            request=request.request_body() if isinstance(request, RunRequest) else {},
            created_at=now,
            updated_at=now,
            lease_until=now + self.lease,
            expire_at=now + timedelta(seconds=request.dedup_window_seconds),
            event_document=document,
        )


def _json_size(value: Any) -> int:
    import json

    return len(json.dumps(value, default=str))
