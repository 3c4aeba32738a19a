"""Dispatch: for every rule an event matches, claim → run → record; then one decision.

The decision is what the HTTP layer turns into a status for the sender's retry logic:

    ack    every match was launched, was a duplicate, or can never succeed (rejected)
    retry  at least one match may succeed later (API busy or down, a live claim elsewhere,
           the ledger unreachable)

Retrying a whole event is safe because dedup is per (rule, dedup key): the matches that were
launched come back as duplicates, only the others run.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from .errors import AmbiguousRunError, PermanentRunError, RenderError, RunError
from .events.model import Event
from .flow.naming import launch_task_name
from .flow.queue import QueueUnavailable, Task, TaskQueue, TaskQueueError
from .ledger.base import Claim, ClaimKind, Ledger, Record, Status
from .plan import RunIdentity, RunRequest
from .rules.rule import Rule
from .rules.ruleset import RuleSet
from .runners.base import Launch, Runner
from .spans import NO_SPANS, Spans

log = logging.getLogger("triggers.dispatch")

# Executions are looked for from a little before the claim was first made: clocks differ.
FIND_MARGIN = timedelta(minutes=2)
# After an ambiguous jobs.run the claim is kept for the runner's request timeout plus this: the
# time the API may still take to act on a request its client gave up on (docs/ledger.md).
AMBIGUOUS_MARGIN = timedelta(seconds=30)
# The request timeout assumed for a runner that does not say (`timeout` attribute).
_DEFAULT_RUN_TIMEOUT = 30.0
# What a rule with `limits:` answers when the function was given no task queue.
NO_QUEUE = (
    "flow control is not configured: set TRIGGERS_TASK_TARGET_URL (and TRIGGERS_TASKS_PROJECT,"
    " TRIGGERS_TASKS_LOCATION) so that rules with `limits:` can queue their launches"
)


class Outcome(str, enum.Enum):
    LAUNCHED = "launched"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    RETRY = "retry"
    # Flow control (acknowledged: a queue task or a batch launches it later, exactly once).
    QUEUED = "queued"
    BATCHED = "batched"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class RuleOutcome:
    rule: str
    outcome: Outcome
    reason: str | None = None
    dedup_key: str | None = None
    ledger_key: str | None = None
    execution: str | None = None
    adopted: bool = False

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "outcome": self.outcome.value}
        for name in ("reason", "dedup_key", "ledger_key", "execution"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.adopted:
            out["adopted"] = True
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    event_id: str
    outcomes: tuple[RuleOutcome, ...]

    @property
    def retry(self) -> bool:
        return any(o.outcome is Outcome.RETRY for o in self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event": self.event_id,
            "decision": "retry" if self.retry else "ack",
            "rules": [o.as_dict() for o in self.outcomes],
        }


class BatchJoiner(Protocol):
    """Batching's side of dispatch (triggers.flow.batches.Batches): puts an owned claim of a
    batched rule into its open batch, exactly once, and records it `batched`."""

    def join(self, rule: Rule, event: Event, claim: Claim, request: RunRequest) -> RuleOutcome: ...


class Dispatcher:
    """Claims, runs and records every rule an event matches.

    find_margin: `find` looks for executions created from the claim's first time minus this
        (clock skew between this host and the API).
    ambiguous_hold: how long an ambiguous attempt keeps its claim (default: the runner's
        `timeout` plus `AMBIGUOUS_MARGIN`); it must be at least the longest time the API may
        still act on a request after the client gave up on it.
    queue: where rules with `limits:` hand their launches (Cloud Tasks); None: such a rule
        answers RETRY with `NO_QUEUE` (the App refuses to start that way, see
        docs/flow-control.md; this is the backstop for a dispatcher built by hand).
    """

    def __init__(
        self,
        rules: RuleSet,
        ledger: Ledger,
        runner: Runner,
        *,
        batcher: BatchJoiner | None = None,
        find_margin: timedelta = FIND_MARGIN,
        ambiguous_hold: timedelta | None = None,
        spans: Spans = NO_SPANS,
        queue: TaskQueue | None = None,
    ) -> None:
        self.batcher = batcher  # batched rules' members join batches through it (flow/batches)
        self.rules = rules
        self.queue = queue
        self.ledger = ledger
        self.runner = runner
        self.spans = spans
        self.find_margin = find_margin
        if ambiguous_hold is None:
            timeout = getattr(runner, "timeout", None)
            seconds = timeout if isinstance(timeout, int | float) else _DEFAULT_RUN_TIMEOUT
            ambiguous_hold = timedelta(seconds=seconds) + AMBIGUOUS_MARGIN
        self.ambiguous_hold = ambiguous_hold

    def dispatch(self, event: Event, *, scope: str | None = None) -> Decision:
        """Every matching rule, claimed, run and recorded. `scope` (replays) gives each run a
        new dedup identity: see `RunRequest.in_scope`."""
        # After one claim fails on the ledger the others of this event are not tried: each
        # would wait out its own deadline, and an event matching several rules would then be
        # answered after several deadlines, past the sender's. The retry comes back for all.
        outage: list[str] = []
        with self.spans.span("triggers.route") as span:
            matched = self.rules.route(event)
            span.set("rules", len(matched))
        outcomes = tuple(
            self.dispatch_rule(rule, event, scope=scope, outage=outage) for rule in matched
        )
        return Decision(event.id, outcomes)

    def dispatch_rule(
        self,
        rule: Rule,
        event: Event,
        *,
        scope: str | None = None,
        outage: list[str] | None = None,
    ) -> RuleOutcome:
        """Claim, run and record one rule. ``outage``, shared by the rules of one event,
        collects a ledger failure; once it holds one, the ledger is not called again."""
        with self.spans.span("triggers.rule", rule=rule.name) as span:
            outcome = self._dispatch_rule(rule, event, scope, outage)
            span.set("outcome", outcome.outcome.value)
            if outcome.execution:
                span.set("execution", outcome.execution)
            return outcome

    def _dispatch_rule(
        self, rule: Rule, event: Event, scope: str | None, outage: list[str] | None
    ) -> RuleOutcome:
        # Claim first, plan after: only the dedup key is rendered before the ledger says
        # whether this delivery is a duplicate (the common redelivery renders nothing else).
        try:
            identity = rule.identify(event).in_scope(scope)
        except RenderError as exc:
            return self._reject_unplanned(rule, event, str(exc), scope, outage)
        if outage:
            unplannable = _render_error(rule, event, identity)
            if unplannable is not None:  # permanent: no retry can help, ledger or not
                return self._reject_unplanned(rule, event, unplannable, scope, outage)
            return _outcome(
                identity,
                Outcome.RETRY,
                f"ledger unavailable: {outage[0]} (not tried again for this event)",
            )
        try:
            with self.spans.span("triggers.claim") as span:
                claim = self.ledger.claim(identity, dict(event.document))
                span.set("claim", claim.kind.value)
        except UnicodeError as exc:
            # Content no store can hold (the decoder and the planner refuse it first; this is
            # the backstop): the same on every delivery, so a rejection, never a retry.
            return self._reject_unplanned(rule, event, f"bad_encoding: {exc}", scope)
        except Exception as exc:  # the ledger is down: nothing was decided, try again later
            log.warning("ledger claim failed for rule %s: %s", rule.name, exc)
            if outage is not None:
                outage.append(str(exc))
            unplannable = _render_error(rule, event, identity)
            if unplannable is not None:
                return self._reject_unplanned(rule, event, unplannable, scope, [str(exc)])
            return _outcome(identity, Outcome.RETRY, f"ledger unavailable: {exc}")

        if claim.kind is ClaimKind.DUPLICATE:
            return _duplicate(identity, claim.record)
        if claim.kind is ClaimKind.BUSY:
            held = claim.record.ambiguous
            return _outcome(
                identity,
                Outcome.RETRY,
                (
                    "an earlier attempt may have started the run: its claim is held until "
                    f"{claim.record.lease_until.isoformat()}"
                    if held
                    else "another delivery of this event holds the claim"
                ),
            )
        try:
            request = rule.plan(event, identity)
        except RenderError as exc:
            # Permanent for this event, but not for a dedup key that other events share: one of
            # them may render. Such a claim is given back and the rejection recorded under the
            # event's own identity, as when the key itself fails (a redelivery of the event is a
            # duplicate of the rejection either way).
            if identity.dedup_key == RunIdentity.of_event(rule, event).in_scope(scope).dedup_key:
                self._record(self.ledger.rejected, claim, str(exc))
                return _outcome(identity, Outcome.REJECTED, str(exc))
            reason = f"not planned: {exc} (rejected under the event's own identity)"
            self._record(self.ledger.release, claim, reason, ambiguous=claim.record.ambiguous)
            return self._reject_unplanned(rule, event, str(exc), scope, outage)
        claim = claim.planned(request)
        if rule.flow is not None and rule.flow.batch is not None:
            return self._join_batch(rule, event, claim, request)
        adopted = self.adopt(claim, request)
        if adopted is not None:
            return adopted
        if rule.flow is not None and rule.flow.batch is None:
            return self._enqueue(claim, request, rule.flow.limits.queue)
        return self._run(claim, request)

    def _enqueue(self, claim: Claim, request: RunRequest, queue: str) -> RuleOutcome:
        """Hand the launch to the rule's queue, then record `queued` (docs/flow-control.md).

        A crash between the two leaves the record `claimed` with a task that exists: the task
        (or a redelivery, after the lease) takes the claim over as ambiguous and looks for an
        execution before launching, so nothing runs twice and nothing is lost.
        """
        if self.queue is None:
            return self._release(claim, request, NO_QUEUE, ambiguous=False)
        task = launch_task(queue, claim)
        try:
            with self.spans.span("triggers.enqueue", queue=queue):
                self.queue.enqueue(task)  # False: the task exists already, as good
        except QueueUnavailable as exc:
            return self._release(claim, request, f"task queue unavailable: {exc}", False)
        except TaskQueueError as exc:
            # A missing queue or a permission: a deployment mistake that may be fixed, so the
            # event is kept (retried), but loudly, naming the queue.
            log.error(
                "cannot enqueue the launch of %s on queue %s: %s",
                request.rule,
                queue,
                exc,
                extra={"labels": {"kind": "queue_error", "rule": request.rule, "queue": queue}},
            )
            return self._release(claim, request, f"task queue {queue}: {exc}", False)
        try:
            written = self.ledger.queued(claim, task.name)
        except Exception as exc:
            # The task exists and will take the claim over once its lease ends; a redelivery
            # meanwhile is BUSY. Asking for a retry loses nothing and launches nothing twice.
            log.warning("queued %s but could not record it: %s", task.name, exc)
            return _outcome(request, Outcome.RETRY, f"queued {task.name}; the ledger write failed")
        if not written:
            log.warning("claim %s was taken over before it could be recorded", claim.record.key)
        return _outcome(request, Outcome.QUEUED, f"task {task.name} on queue {queue}")

    def adopt(self, claim: Claim, request: RunRequest) -> RuleOutcome | None:
        """For a claim taken over from an attempt that may have launched: the execution it
        started, recorded (or a RETRY when the API cannot be asked); None when there is none
        and launching is safe. Used for events, direct launches, and by the queue task before
        its concurrency check."""
        if not (claim.kind is ClaimKind.TAKEOVER and claim.record.ambiguous):
            return None
        try:
            found = self._find(claim, request)
        except RunError as exc:
            # Still ambiguous: the next attempt takes it over and looks again.
            return self._release(claim, request, f"cannot look for a previous run: {exc}", True)
        return None if found is None else self._launched(claim, request, found)

    def launch_claimed(self, claim: Claim, request: RunRequest) -> RuleOutcome:
        """Launch an owned claim taken from the queue: like an event's launch, except that a
        retryable failure puts the record back to `queued` (its task is retried by the queue,
        with backoff) instead of releasing it for a redelivery of the event."""
        return self._run(claim, request, requeue=True)

    def _find(self, claim: Claim, request: RunRequest) -> Launch | None:
        with self.spans.span("triggers.find"):
            return self.runner.find(request, since=claim.record.created_at - self.find_margin)

    def _run(self, claim: Claim, request: RunRequest, *, requeue: bool = False) -> RuleOutcome:
        try:
            with self.spans.span("triggers.run", system=request.system):
                launch = self.runner.run(request)
        except PermanentRunError as exc:
            self._record(self.ledger.rejected, claim, exc.message)
            return _outcome(request, Outcome.REJECTED, exc.message)
        except AmbiguousRunError as exc:
            try:
                found = self._find(claim, request)
            except RunError:
                found = None
            if found is not None:
                return self._launched(claim, request, found)
            return self._hold(claim, request, exc.message)
        except RunError as exc:
            if requeue:
                self._record(self.ledger.requeue, claim, exc.message)
                return _outcome(request, Outcome.RETRY, exc.message)
            return self._release(claim, request, exc.message, ambiguous=False)
        return self._launched(claim, request, launch)

    def _hold(self, claim: Claim, request: RunRequest, reason: str) -> RuleOutcome:
        """Keep the claim of an attempt that may have started an execution not found yet.

        Releasing it would let a redelivery take over at once, find nothing (the API may still
        be creating the execution) and launch a second one. Held, redeliveries are BUSY until
        the API can no longer act on the request, and the takeover after that adopts.
        """
        self._record(self.ledger.hold, claim, reason, hold=self.ambiguous_hold)
        return _outcome(request, Outcome.RETRY, reason)

    def _launched(self, claim: Claim, request: RunRequest, launch: Launch) -> RuleOutcome:
        try:
            with self.spans.span("triggers.record", write="launched"):
                written = self.ledger.launched(claim, launch.execution, launch.operation)
        except Exception as exc:
            # The execution runs, but the record still says `claimed`. Acknowledging would leave
            # it so for good; instead keep the claim (its lease stands) and ask for a retry:
            # the redelivery after the lease takes it over as ambiguous, finds this execution by
            # its run key and records it. It never launches again. The name is in the answer
            # and the log for an operator meanwhile.
            log.error(
                "launched %s for %s but could not record it: %s",
                launch.execution,
                claim.record.key,
                exc,
                extra={"labels": {"execution": launch.execution, "ledger_key": claim.record.key}},
            )
            return _outcome(
                request,
                Outcome.RETRY,
                f"launched {launch.execution} but the ledger write failed ({exc}); a redelivery"
                " after the lease adopts it",
                execution=launch.execution,
                adopted=launch.adopted,
            )
        if not written:
            # Our lease ran out and someone took the record over: theirs is the record now.
            log.warning("claim %s was taken over before it could be recorded", claim.record.key)
        return _outcome(
            request, Outcome.LAUNCHED, execution=launch.execution, adopted=launch.adopted
        )

    def _release(
        self, claim: Claim, request: RunRequest, reason: str, ambiguous: bool
    ) -> RuleOutcome:
        self._record(self.ledger.release, claim, reason, ambiguous=ambiguous)
        return _outcome(request, Outcome.RETRY, reason)

    def write(self, method, claim: Claim, *args: Any, **kwargs: Any) -> None:
        """``method(claim, ...)`` of the ledger (rejected, requeue, skipped...), a failure
        logged, never raised: see `_record`. For the queue task's decisions (flow/launch.py)."""
        self._record(method, claim, *args, **kwargs)

    def _record(self, method, claim: Claim, *args: Any, **kwargs: Any) -> None:
        # A failed write leaves the claim live; its lease expires and the redelivery takes it
        # over as ambiguous and looks for an execution before it runs. Nothing runs twice.
        try:
            with self.spans.span("triggers.record", write=method.__name__):
                written = method(claim, *args, **kwargs)
            if not written:
                log.warning("claim %s was taken over before it could be recorded", claim.record.key)
        except Exception as exc:
            log.warning("ledger write failed for %s: %s", claim.record.key, exc)

    def _reject_unplanned(
        self,
        rule: Rule,
        event: Event,
        reason: str,
        scope: str | None = None,
        outage: list[str] | None = None,
    ) -> RuleOutcome:
        """Record a rule that matched but could not be planned, under the event's identity
        (unless the ledger is known to be down for this event: rejected all the same)."""
        request = RunIdentity.of_event(rule, event).in_scope(scope)
        if outage:
            return _outcome(request, Outcome.REJECTED, reason)
        try:
            claim = self.ledger.claim(request, dict(event.document))
        except Exception as exc:
            log.warning("ledger claim failed for rejected rule %s: %s", rule.name, exc)
            if outage is not None:
                outage.append(str(exc))
            return _outcome(request, Outcome.REJECTED, reason)
        if claim.owned:
            self._record(self.ledger.rejected, claim, reason)
        return _outcome(request, Outcome.REJECTED, reason)

    # -- batching: members join a batch; the batch task launches it (flow/batches.py) --------

    def _join_batch(
        self, rule: Rule, event: Event, claim: Claim, request: RunRequest
    ) -> RuleOutcome:
        if self.batcher is None:  # a deployment that loads batched rules must configure it
            reason = f"rule {rule.name} batches events, but batching is not configured here"
            return self._release(claim, request, reason, ambiguous=False)
        return self.batcher.join(rule, event, claim, request)

    def launch_planned(
        self, request: RunRequest, event_document: dict[str, Any] | None
    ) -> RuleOutcome:
        """Claim `request` and launch it exactly once (a batch's own run: its identity is the
        request's dedup key), through the same find-before-run and hold-on-ambiguous path as
        an event's. A duplicate answers with the execution already recorded."""
        try:
            claim = self.ledger.claim(request, event_document)
        except Exception as exc:
            return _outcome(request, Outcome.RETRY, f"ledger unavailable: {exc}")
        if claim.kind is ClaimKind.DUPLICATE:
            return _outcome(request, Outcome.DUPLICATE, execution=claim.record.execution)
        if claim.kind is ClaimKind.BUSY:
            return _outcome(request, Outcome.RETRY, "another attempt holds the claim")
        adopted = self.adopt(claim, request)
        return adopted if adopted is not None else self._run(claim, request)


def launch_task(queue: str, claim: Claim) -> Task:
    """The task that launches the record of ``claim`` (see `launch_task_name`)."""
    record = claim.record
    return Task(
        queue=queue,
        name=launch_task_name(record.key, record.created_at),
        body={"kind": "launch", "rule": record.rule, "ledger_key": record.key},
    )


def _duplicate(identity: RunIdentity, record: Record) -> RuleOutcome:
    """A redelivery of a decided record: its execution, or why it was rejected or skipped."""
    reason = None
    if record.status in (Status.REJECTED, Status.SKIPPED) and record.reason:
        reason = f"already {record.status.value}: {record.reason}"
    return _outcome(identity, Outcome.DUPLICATE, reason, execution=record.execution)


def _render_error(rule: Rule, event: Event, identity: RunIdentity) -> str | None:
    """Why `rule` cannot plan `event` (a permanent rejection), or None when it can: asked only
    when the ledger cannot be, to tell a rejection from a retry without a claim."""
    try:
        rule.plan(event, identity)
    except RenderError as exc:
        return str(exc)
    return None


def _outcome(
    request: RunRequest | RunIdentity,
    outcome: Outcome,
    reason: str | None = None,
    *,
    execution: str | None = None,
    adopted: bool = False,
) -> RuleOutcome:
    return RuleOutcome(
        rule=request.rule,
        outcome=outcome,
        reason=reason,
        dedup_key=request.dedup_key,
        ledger_key=request.ledger_key,
        execution=execution,
        adopted=adopted,
    )
