"""Batching: many matching events, one execution. This module owns the algorithm; the stores
(`triggers/ledger/batchstore.py`, `firestore_batches.py`) only offer compare-and-set primitives.

A member (an event of a batched rule, its ledger claim owned) joins exactly once:

    1. find the target: the cursor of (rule, batch key) gives the generation and a hint of the
       open batch's sequence number; walk forward past sealed or full batches;
    2. write the intent `batch = B` on its own claimed record (CAS on the claim token);
    3. append its ledger key to B (CAS on B's token; B still open and not full), or create B
       with itself as first member (create-if-absent: concurrent openers collide);
    4. make sure B's tasks exist: the window timer `b-<B>` at closes_at (enqueued by whoever sees
       `timer` unconfirmed; names dedup), and `s-<B>` now once B is full;
    5. record itself `batched` (decided: a redelivery of its event is a duplicate).

A crash anywhere leaves its claim live (or released); the takeover carries the intent, finds
itself in B's members if step 3 happened, and else joins anew. Membership ends with one CAS, the
seal, so a member is never in two batches and never in none. The batch task (`handle_batch_task`)
seals, writes the manifest and launches the batch's own ledger record `batch/<B>` through the
dispatcher's exactly-once path. docs/flow-control.md, "Batching", tells the whole story.
"""

from __future__ import annotations

import logging
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from ..dispatch import Dispatcher, Outcome, RuleOutcome
from ..errors import RenderError
from ..events.model import Event
from ..ledger.base import Claim, Ledger, LedgerContention, Record, Status, utcnow
from ..plan import RunRequest
from ..rules.rule import Rule
from .batching import (
    BATCH_RETENTION_DAYS,
    Batch,
    BatchStatus,
    BatchStore,
    Cursor,
    batch_dedup_key,
    batch_id,
    seal_task_name,
    task_count,
    timer_task_name,
)
from .manifest import (
    BATCH_ID_ENV,
    BATCH_SIZE_ENV,
    MANIFEST_ENV,
    ManifestWriter,
    build_manifest,
)
from .members import empty_event, event_of, manifest_members
from .queue import Task, TaskQueue

log = logging.getLogger("triggers.flow.batches")

# How often a member retries its compare-and-set on a contended batch before it gives up (its
# claim is released and the event redelivered); thousands of events a second on one batch key
# stay well below it.
JOIN_PASSES = 64
# A batch task that cannot finish now is retried by Cloud Tasks; this is the hint it is given.
RETRY_AFTER_SECONDS = 10


class ClaimLost(Exception):
    """The member's claim was taken over by another delivery while it was joining."""


@dataclass
class Batches:
    """Both sides of batching: `join` (a member, from the dispatcher) and `run_task` (the batch
    task, from the task handler)."""

    store: BatchStore
    queue: TaskQueue
    ledger: Ledger
    manifests: ManifestWriter = field(default_factory=ManifestWriter)
    clock: Callable[[], datetime] = utcnow
    passes: int = JOIN_PASSES

    @classmethod
    def over(
        cls, ledger: Ledger, queue: TaskQueue, *, manifest_bucket: str | None = None
    ) -> Batches:
        """Batching beside `ledger`'s records (its backend's batch store), tasks on `queue`,
        large manifests in `manifest_bucket` (None: a local directory): what the function,
        `triggers serve` and `triggers replay` give their dispatcher as `batcher`."""
        from ..ledger.batchstore import batch_store_for

        store = batch_store_for(ledger.backend)
        return cls(store, queue, ledger, ManifestWriter(bucket=manifest_bucket), ledger.clock)

    # -- a member joins ---------------------------------------------------------------------

    def join(self, rule: Rule, event: Event, claim: Claim, request: RunRequest) -> RuleOutcome:
        assert rule.flow is not None and rule.flow.batch is not None
        try:
            key = self.batch_key(rule, event)
        except RenderError as exc:
            self._write(self.ledger.rejected, claim, str(exc))
            return _outcome(request, Outcome.REJECTED, str(exc))
        try:
            batch = self._member_of(rule, key, claim)
            self._ensure_tasks(rule, batch)
        except ClaimLost:
            return _outcome(request, Outcome.RETRY, "the claim was taken over while joining")
        except Exception as exc:  # contention, the queue or the store down: nothing is lost
            # The claim (with its intent) is released, or, if even that fails, its lease runs
            # out: the redelivery takes it over and finds itself in the batch if it got there.
            reason = f"could not join a batch: {type(exc).__name__}: {exc}"
            self._write(self.ledger.release, claim, reason)
            return _outcome(request, Outcome.RETRY, reason)
        try:
            if not self.ledger.batched(claim, batch.id, keep_until=batch.expire_at):
                log.warning("claim %s was taken over after joining %s", claim.record.key, batch.id)
        except Exception as exc:
            # In the batch, not yet recorded so: the takeover after the lease finds it there.
            return _outcome(request, Outcome.RETRY, f"joined {batch.id}, not recorded: {exc}")
        position = batch.members.index(claim.record.key) + 1
        return _outcome(
            request,
            Outcome.BATCHED,
            f"batch {batch.id} (member {position} of at most {batch.max_events})",
        )

    @staticmethod
    def batch_key(rule: Rule, event: Event) -> str:
        if rule.batch_key is None:
            return ""
        try:
            return rule.batch_key.render(event.document)
        except Exception as exc:
            line = rule.template_lines.get("batch.key", rule.location.line)
            where = rule.location.file if line is None else f"{rule.location.file}:{line}"
            raise RenderError(
                rule.name, "batch.key", where, f"{type(exc).__name__}: {exc}"
            ) from None

    def _member_of(self, rule: Rule, key: str, claim: Claim) -> Batch:
        """The batch this member is in, joining one if it is in none: steps 1 to 3."""
        member = claim.record.key
        intent = claim.record.batch
        if intent:  # a takeover (or a retry) of a member that was joining `intent`
            known = self.store.get_batch(intent)
            if known is not None and member in known.members:
                return known
        cursor = self._cursor(rule.name, key)
        seq = cursor.seq
        for attempt in range(self.passes):
            target = batch_id(rule.name, key, cursor.generation, seq)
            current = self.store.get_batch(target)
            if current is not None and member in current.members:
                return current
            if current is not None and not current.joinable:
                seq += 1  # sealed or full: the next one (its id follows from this one)
                continue
            if intent != target:
                if not self.ledger.intend_batch(claim, target):
                    raise ClaimLost(member)
                intent = target
            joined = self._create(rule, key, target, member) if current is None else None
            if joined is None and current is not None:
                grown = replace(current, members=(*current.members, member), token=_token())
                joined = grown if self.store.replace_batch(grown, current.token) else None
            if joined is not None:
                self._advance(cursor, seq)
                return joined
            time.sleep(random.uniform(0, 0.001 * min(attempt, 20)))  # let the winner finish
        raise LedgerContention(f"batch {rule.name}/{key!r} kept changing: tried {self.passes}x")

    def _create(self, rule: Rule, key: str, target: str, member: str) -> Batch | None:
        assert rule.flow is not None and rule.flow.batch is not None
        now = self.clock()
        closes = now + timedelta(seconds=rule.flow.batch.window_seconds)
        batch = Batch(
            id=target,
            rule=rule.name,
            key=key,
            status=BatchStatus.OPEN,
            token=_token(),
            opened_at=now,
            closes_at=closes,
            max_events=rule.flow.batch.max_events,
            expire_at=closes + timedelta(days=BATCH_RETENTION_DAYS),
            members=(member,),
        )
        return batch if self.store.create_batch(batch) else None

    def _cursor(self, rule: str, key: str) -> Cursor:
        cursor = self.store.get_cursor(rule, key)
        if cursor is not None:
            return cursor
        fresh = Cursor(
            rule=rule,
            key=key,
            generation=uuid.uuid4().hex[:8],
            seq=0,
            token=_token(),
            expire_at=self.clock() + timedelta(days=BATCH_RETENTION_DAYS * 4),
        )
        if self.store.create_cursor(fresh):
            return fresh
        cursor = self.store.get_cursor(rule, key)
        if cursor is None:
            raise LedgerContention(f"the batch cursor of {rule}/{key!r} vanished")
        return cursor

    def _advance(self, cursor: Cursor, seq: int) -> None:
        """Move the hint forward (never back); losing this race only costs a later reader a
        read or two, so a failed CAS is not retried."""
        if seq > cursor.seq:
            moved = replace(
                cursor,
                seq=seq,
                token=_token(),
                expire_at=self.clock() + timedelta(days=BATCH_RETENTION_DAYS * 4),
            )
            self.store.replace_cursor(moved, cursor.token)

    def _ensure_tasks(self, rule: Rule, batch: Batch) -> None:
        """Step 4. Enqueue first, then confirm: a crash between leaves `timer` unconfirmed and
        the next member (or this one's takeover) enqueues again, which the task name dedups."""
        assert rule.flow is not None
        queue = rule.flow.limits.queue
        body = {"kind": "batch", "rule": rule.name, "batch": batch.id}
        if batch.status is BatchStatus.OPEN and not batch.timer:
            self.queue.enqueue(Task(queue, timer_task_name(batch.id), body, batch.closes_at))
            current = batch
            for _ in range(3):  # confirm; a lost race with other members is harmless
                if current.timer or self.store.replace_batch(
                    replace(current, timer=True, token=_token()), current.token
                ):
                    break
                current = self.store.get_batch(batch.id) or current
        if batch.status is BatchStatus.OPEN and batch.full:
            self.queue.enqueue(Task(queue, seal_task_name(batch.id), body, None))

    def _write(self, method: Callable[..., bool], claim: Claim, reason: str) -> None:
        try:
            method(claim, reason)
        except Exception as exc:  # the lease expires and a takeover redoes it
            log.warning("ledger write failed for %s: %s", claim.record.key, exc)

    # -- the batch task -----------------------------------------------------------------------

    def run_task(self, dispatcher: Dispatcher, body: Any) -> tuple[int, dict[str, Any]]:
        """Seal, write the manifest, launch once, record. (status, answer): 200 done for good,
        503 retry (the answer's `retry_after` in seconds)."""
        if not isinstance(body, dict) or not all(
            isinstance(body.get(name), str) and body.get(name) for name in ("rule", "batch")
        ):
            return 200, {"outcome": "rejected", "reason": "a batch task names a rule and a batch"}
        bid, rule = body["batch"], dispatcher.rules.get(body["rule"])
        answer: dict[str, Any] = {"batch": bid, "rule": body["rule"]}
        if rule is None or rule.flow is None or rule.flow.batch is None:
            reason = f"no batched rule {body['rule']!r} is loaded"
            log.error("batch %s: %s; its members stay recorded as batched", bid, reason)
            return 200, {**answer, "outcome": "rejected", "reason": reason}
        try:
            return self._run(dispatcher, rule, bid, answer)
        except Exception as exc:  # contention, storage or the store down: the task is retried
            return _retry(answer, f"{type(exc).__name__}: {exc}")

    def _run(
        self, dispatcher: Dispatcher, rule: Rule, bid: str, answer: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        assert rule.flow is not None and rule.flow.batch is not None
        stored = self.store.get_batch(bid)
        if stored is None or stored.rule != rule.name:
            return 200, {**answer, "outcome": "rejected", "reason": "no such batch"}
        batch = self._sealed(stored)
        if isinstance(batch, int):
            return _retry(answer, "the window is still open", retry_after=batch)
        answer["members"] = len(batch.members)
        if batch.status is BatchStatus.REJECTED:
            return 200, {**answer, "outcome": "rejected", "reason": batch.reason}
        if batch.status is BatchStatus.LAUNCHED:
            return 200, {**answer, "outcome": "duplicate", "execution": batch.execution}
        records = self.store.get_records(batch.members)
        members = manifest_members(batch, records, rule.flow.batch.fields)
        count = task_count(len(members), rule.flow.batch.per_task)
        manifest = build_manifest(batch.id, rule.name, batch.key, members, count)
        manifest_env = self.manifests.write(manifest)
        location = "inline" if manifest_env[0][0] == MANIFEST_ENV else manifest_env[0][1]
        answer.update(task_count=count, manifest=location)
        try:
            request = self._plan(rule, batch, records, count, manifest_env)
        except RenderError as exc:
            self._finish(batch, BatchStatus.REJECTED, reason=str(exc))
            return 200, {**answer, "outcome": "rejected", "reason": str(exc)}
        outcome = dispatcher.launch_planned(request, None)
        answer["run"] = request.ledger_key
        if outcome.outcome is Outcome.RETRY:
            return _retry(answer, outcome.reason or "the launch is to be retried")
        execution = outcome.execution
        if outcome.outcome is Outcome.DUPLICATE and execution is None:
            recorded = self.ledger.get(request.ledger_key)
            if recorded is not None and recorded.status is Status.REJECTED:
                outcome = replace(outcome, outcome=Outcome.REJECTED, reason=recorded.reason)
        if outcome.outcome is Outcome.REJECTED:
            self._finish(batch, BatchStatus.REJECTED, reason=outcome.reason)
            return 200, {**answer, "outcome": "rejected", "reason": outcome.reason}
        self._finish(
            batch,
            BatchStatus.LAUNCHED,
            execution=execution,
            run=request.ledger_key,
            task_count=count,
            manifest=location,
        )
        self._point_members(records, bid, execution)
        return 200, {**answer, "outcome": outcome.outcome.value, "execution": execution}

    def close(self, batch_id: str) -> Batch | None:
        """Seal an open batch now, before its window ends (an operator's "close it now"): the
        timer's own CAS, so a member that comes later opens the next batch, exactly as after the
        window. Its timer task run now (RunTask, `gcloud tasks run`) then launches it; run
        early without this, it is answered 503 until `closes_at`. None: no such batch."""
        batch = self.store.get_batch(batch_id)
        sealed = None if batch is None else self._sealed(batch, now_is_due=True)
        return sealed if isinstance(sealed, Batch) else None

    def close_now(self, batch_id: str, queue: str) -> tuple[Batch, bool] | None:
        """An operator's "close it and launch it now" (`triggers close-batch`): seal the batch
        (`close`), then hand its launch to queue `queue` at once, with the seal task a full
        batch gets (same name, so a seal task already enqueued is not doubled and the launch
        stays the batch task's one CAS-guarded run). Returns the batch as it now is and whether
        a task was enqueued (False: one of that name exists, or the batch was already launched
        or rejected); None when there is no such batch. Raises QueueUnavailable when the queue
        cannot be reached: the batch is sealed then and its timer still launches it."""
        batch = self.close(batch_id)
        if batch is None:
            return None
        if batch.status is not BatchStatus.SEALED:
            return batch, False  # launched or rejected already: nothing to launch
        body = {"kind": "batch", "rule": batch.rule, "batch": batch.id}
        return batch, self.queue.enqueue(Task(queue, seal_task_name(batch.id), body, None))

    def _sealed(self, batch: Batch, *, now_is_due: bool = False) -> Batch | int:
        """The batch, sealed (a CAS: the one moment membership ends); or, when it is open and
        neither full nor past its window (nor `now_is_due`), the seconds until it is due."""
        for _ in range(self.passes):
            if batch.status is not BatchStatus.OPEN:
                return batch
            now = self.clock()
            if not now_is_due and not batch.full and now < batch.closes_at:
                return max(1, math.ceil((batch.closes_at - now).total_seconds()))
            sealed = replace(batch, status=BatchStatus.SEALED, sealed_at=now, token=_token())
            if self.store.replace_batch(sealed, batch.token):
                return sealed
            batch = self.store.get_batch(batch.id) or batch
        raise LedgerContention(f"batch {batch.id} kept changing while being sealed")

    def _plan(
        self,
        rule: Rule,
        batch: Batch,
        records: dict[str, Record],
        count: int,
        manifest_env: tuple[tuple[str, str], ...],
    ) -> RunRequest:
        """The rule's overrides rendered against the first member's event, plus the batch's
        env and task count; its identity is `batch/<id>`: one launch per batch."""
        first = next((records[k] for k in batch.members if k in records), None)
        event = event_of(first) if first is not None else empty_event(batch)
        planned = rule.plan(event)
        env = (
            *planned.overrides.env,
            (BATCH_ID_ENV, batch.id),
            (BATCH_SIZE_ENV, str(len(batch.members))),
            *manifest_env,
        )
        overrides = replace(planned.overrides, env=env, task_count=count)
        return replace(planned, overrides=overrides, dedup_key=batch_dedup_key(batch.id))

    def _finish(self, batch: Batch, status: BatchStatus, **changes: Any) -> None:
        for _ in range(self.passes):
            done = replace(batch, status=status, token=_token(), **changes)
            if self.store.replace_batch(done, batch.token):
                return
            current = self.store.get_batch(batch.id)
            if current is None or current.status is status:
                return
            batch = current

    def _point_members(self, records: dict[str, Record], bid: str, execution: str | None) -> None:
        """Best effort: `show` of a member resolves the execution through its batch anyway."""
        if not execution:
            return
        for record in records.values():
            if record.batch != bid or record.execution == execution:
                continue
            try:
                self.ledger.backend.update(record.key, record.token, {"execution": execution})
            except Exception as exc:
                log.info("could not point member %s at %s: %s", record.key, execution, exc)
                return


def handle_batch_task(context: Any, body: Any) -> tuple[int, dict[str, Any]]:
    """The task handler's `kind == "batch"` (contract): `context.dispatcher` is the function's
    dispatcher, whose `batcher` is a `Batches`. Returns (HTTP status, answer)."""
    dispatcher = context.dispatcher
    batches = getattr(dispatcher, "batcher", None)
    if not isinstance(batches, Batches):
        return _retry({"outcome": "retry"}, "batching is not configured in this function")
    return batches.run_task(dispatcher, body)


def _retry(
    answer: dict[str, Any], reason: str, retry_after: int = RETRY_AFTER_SECONDS
) -> tuple[int, dict[str, Any]]:
    return 503, {**answer, "outcome": "retry", "reason": reason, "retry_after": retry_after}


def _outcome(request: RunRequest, outcome: Outcome, reason: str | None = None) -> RuleOutcome:
    return RuleOutcome(
        rule=request.rule,
        outcome=outcome,
        reason=reason,
        dedup_key=request.dedup_key,
        ledger_key=request.ledger_key,
    )


def _token() -> str:
    return uuid.uuid4().hex
