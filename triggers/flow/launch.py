"""The launch task: a queued record, launched exactly once when its queue task calls back.

Cloud Tasks POSTs `{"kind": "launch", "rule": R, "ledger_key": K}` to the function's TASK_PATH
at the pace of the rule's queue. `TaskLauncher.launch(body)` then:

    claim_queued(K)          the `queued` record becomes an owned claim (CAS on its token);
                             a duplicate (already launched, skipped...) answers 200, a live
                             claim elsewhere 503
    plan again               from the record's stored event document and the rule as loaded
                             now, under the record's own dedup key (a replay's scope kept)
    adopt                    a takeover of an attempt that may have launched looks first
    max_running              count the job's running executions (cached briefly); at the
                             limit: skip | queue (until max_wait) | replace
    launch                   the dispatcher's run -> find -> hold -> record, where a retryable
                             failure (the API's 429) puts the record back to `queued`

and answers the queue: 200 when it is done for good (launched, duplicate, skipped, rejected),
503 when the task should be retried with the queue's backoff. A task that can never succeed
(a body that is not a launch, a record or rule that is gone) is answered 200 and logged as a
rejection: a 4xx or 5xx would make Cloud Tasks retry it forever (queues retry without limit).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..dispatch import Dispatcher, Outcome, RuleOutcome
from ..errors import RenderError, RunError
from ..events.stored import stored_event
from ..ledger.base import Claim, ClaimKind, Record
from ..plan import RunRequest
from ..rules.rule import Rule
from .spec import Limits, WhenBusy

log = logging.getLogger("triggers.flow.launch")

LAUNCH = "launch"


@dataclass(frozen=True, slots=True)
class TaskAnswer:
    """What the task handler answers Cloud Tasks, and what to dead-letter (`rejected`)."""

    status: int  # 200 done; 503 retry this task later
    body: dict[str, Any]
    rejected: str | None = None  # the reason, when this launch was rejected for good
    record: Record | None = None

    @property
    def retry(self) -> bool:
        return self.status >= 300


class RunningCounts:
    """How many executions of a job are running, from the job API, cached per instance.

    The count is read at most every ``ttl`` seconds per job (ListExecutions pages cost time
    and quota); our own launches add one to it meanwhile, so a burst on one instance cannot
    overshoot on a stale count. Other instances' launches are seen at the next read: with a
    queue of `max_concurrent_dispatches: 1` only one task of the rule runs at a time anyway
    (docs/flow-control.md, "The count-then-launch race").
    """

    def __init__(self, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def count(self, job: str, list_running: Callable[[str], list[str]]) -> int:
        now = self.clock()
        with self._lock:
            cached = self._cache.get(job)
            if cached is not None and cached[0] > now:
                return cached[1]
        count = len(list_running(job))
        with self._lock:
            self._cache[job] = (now + self.ttl, count)
        return count

    def launched(self, job: str) -> None:
        with self._lock:
            cached = self._cache.get(job)
            if cached is not None:
                self._cache[job] = (cached[0], cached[1] + 1)

    def forget(self, job: str) -> None:
        with self._lock:
            self._cache.pop(job, None)


class TaskLauncher:
    """Launches queued records for their queue tasks, through ``dispatcher``'s ledger, runner
    and launch code (the same exactly-once machinery as an event's launch)."""

    def __init__(self, dispatcher: Dispatcher, counts: RunningCounts | None = None) -> None:
        self.dispatcher = dispatcher
        self.counts = counts if counts is not None else RunningCounts()

    def launch(self, body: Mapping[str, Any]) -> TaskAnswer:
        key, rule_name = body.get("ledger_key"), body.get("rule")
        if not isinstance(key, str) or not key or not isinstance(rule_name, str):
            return _rejected(
                None, "task_rejected: a launch task needs string `rule` and `ledger_key` fields"
            )
        ledger = self.dispatcher.ledger
        try:
            claim = ledger.claim_queued(key)
        except Exception as exc:  # the ledger is down: the task comes back
            return _retry(f"ledger unavailable: {exc}")
        if claim is None:
            return _rejected(None, f"task_rejected: no ledger record {key}", rule=rule_name)
        record = claim.record
        if claim.kind is ClaimKind.DUPLICATE:
            return _done(record, Outcome.DUPLICATE, f"already {record.status.value}")
        if claim.kind is ClaimKind.BUSY:
            return _retry(
                f"the claim is held until {record.lease_until.isoformat()}", record=record
            )
        rule = self.dispatcher.rules.get(record.rule)
        if rule is None or record.rule != rule_name:
            why = (
                f"the task names rule {rule_name!r}, the record {record.rule!r}"
                if record.rule != rule_name
                else f"rule {record.rule!r} is no longer in the rules"
            )
            return self._reject(claim, f"task_rejected: {why}")
        try:
            request = self._plan(rule, record)
        except (RenderError, ValueError) as exc:
            return self._reject(claim, f"cannot plan the queued launch again: {exc}")
        outcome = self.dispatcher.adopt(claim, request)
        if outcome is None and rule.flow is not None and rule.flow.limits.max_running:
            outcome = self._when_busy(claim, request, rule.flow.limits)
        if outcome is None:
            outcome = self.dispatcher.launch_claimed(claim, request)
        if outcome.outcome is Outcome.LAUNCHED:
            self.counts.launched(request.job)
        return _answer(claim, outcome)

    def _plan(self, rule: Rule, record: Record) -> RunRequest:
        """The request the record was claimed for, planned again from its stored event (under
        the record's own dedup key: a replay's scope, or the key the rules made then)."""
        if not isinstance(record.event_document, dict):
            raise ValueError(
                "the ledger did not keep the event (its document was over the ledger's size limit)"
            )
        request = replace(
            rule.plan(stored_event(record.event_document, record.event)),
            dedup_key=record.dedup_key,
        )
        if request.ledger_key != record.key:
            raise ValueError(f"the rule {rule.name!r} now plans another job or identity")
        return request

    def _when_busy(self, claim: Claim, request: RunRequest, limits: Limits) -> RuleOutcome | None:
        """None when there is room to launch (or room was made); else what to answer."""
        assert limits.max_running is not None
        runner = self.dispatcher.runner
        ledger = self.dispatcher.ledger
        try:
            running = self.counts.count(request.job, runner.running)
        except RunError as exc:
            return self._requeue(claim, request, f"cannot count running executions: {exc}")
        if running < limits.max_running:
            return None
        busy = (
            f"{running} execution(s) of {request.job_id} running (max_running {limits.max_running})"
        )
        if limits.when_busy is WhenBusy.SKIP:
            self.dispatcher.write(ledger.skipped, claim, f"skipped: {busy}")
            return RuleOutcome(
                request.rule, Outcome.SKIPPED, busy, request.dedup_key, request.ledger_key
            )
        if limits.when_busy is WhenBusy.REPLACE:
            try:
                for execution in runner.running(request.job):
                    runner.cancel(execution)
            except RunError as exc:
                return self._requeue(claim, request, f"cannot replace the running: {exc}")
            finally:
                self.counts.forget(request.job)
            log.info("%s: cancelled the running executions of %s", request.rule, request.job)
            return None
        waited = (ledger.clock() - claim.record.created_at).total_seconds()
        if waited > limits.max_wait_seconds:
            reason = (
                f"waited more than {limits.max_wait_seconds}s for a free slot"
                f" ({busy}); max_wait reached"
            )
            self.dispatcher.write(ledger.rejected, claim, reason)
            return RuleOutcome(
                request.rule, Outcome.REJECTED, reason, request.dedup_key, request.ledger_key
            )
        return self._requeue(claim, request, f"waiting for a free slot: {busy}")

    def _requeue(self, claim: Claim, request: RunRequest, reason: str) -> RuleOutcome:
        self.dispatcher.write(self.dispatcher.ledger.requeue, claim, reason)
        return RuleOutcome(request.rule, Outcome.RETRY, reason, request.dedup_key, claim.record.key)

    def _reject(self, claim: Claim, reason: str) -> TaskAnswer:
        self.dispatcher.write(self.dispatcher.ledger.rejected, claim, reason)
        return _rejected(claim.record, reason)


def _answer(claim: Claim, outcome: RuleOutcome) -> TaskAnswer:
    body = {"decision": "retry" if outcome.outcome is Outcome.RETRY else "ack", **outcome.as_dict()}
    if outcome.outcome is Outcome.RETRY:
        return TaskAnswer(503, body, record=claim.record)
    rejected = outcome.reason if outcome.outcome is Outcome.REJECTED else None
    return TaskAnswer(200, body, rejected=rejected, record=claim.record)


def _done(record: Record, outcome: Outcome, reason: str) -> TaskAnswer:
    body = {
        "decision": "ack",
        "rule": record.rule,
        "outcome": outcome.value,
        "reason": reason,
        "ledger_key": record.key,
    }
    if record.execution:
        body["execution"] = record.execution
    return TaskAnswer(200, body, record=record)


def _retry(reason: str, record: Record | None = None) -> TaskAnswer:
    return TaskAnswer(503, {"decision": "retry", "reason": reason}, record=record)


def _rejected(record: Record | None, reason: str, rule: str | None = None) -> TaskAnswer:
    log.error(
        "rejected a task for good (answered 200 so that the queue stops retrying it): %s",
        reason,
        extra={"labels": {"kind": "task_rejected", "outcome": "rejected"}},
    )
    body: dict[str, Any] = {"decision": "rejected", "outcome": "rejected", "reason": reason}
    name = record.rule if record is not None else rule
    if name:
        body["rule"] = name
    if record is not None:
        body["ledger_key"] = record.key
    return TaskAnswer(200, body, rejected=reason, record=record)
