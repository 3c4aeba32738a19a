"""The function's request handling, independent of Flask: headers + body in, status + JSON out.

    decode -> dispatch -> one answer for the sender's retry logic
      200  ack: every match launched, a duplicate, rejected for good, or nothing matched;
           also a request that can never be decoded (recorded as a rejection: retrying it
           cannot help, and a 4xx would make Pub/Sub and Scheduler retry it forever)
      503  retry, with Retry-After: something may succeed later (the API or the ledger is
           unavailable, a claim is live elsewhere) or an unexpected error happened here
      401/403  an OIDC token was required and is missing or not allowed

Queue tasks (flow control) call back on TASK_PATH and are answered by `handle_task`
(triggers/flow/launch.py): 200 done, 503 retry the task with the queue's backoff.

Rejections (an undecodable request, every rule outcome REJECTED) are also published to the
dead-letter topic when one is configured (triggers/function/deadletter.py,
docs/deadletters.md); a failed publish is logged and never changes the answer.

Built once per function instance from Settings; Google clients are created on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from ..dispatch import Decision, Dispatcher, Outcome
from ..errors import DecodeError, Unauthorized
from ..events import decode
from ..flow.launch import RunningCounts, TaskAnswer, TaskLauncher
from ..flow.queue import TASK_PATH, TaskQueue
from ..ledger import Ledger
from ..rules import RuleSet, load
from ..runners.base import Runner
from ..spans import NO_SPANS, Spans
from .deadletter import DeadLetters, build_dead_letters
from .logs import current_trace, trace_id
from .settings import Settings
from .tasks import (
    LazyTaskQueue,
    batcher_for,
    check_flow_settings,
    dead_letter_request,
    flow_rules,
    parse_task_body,
)

log = logging.getLogger("triggers.function.app")

# `App(dead_letters=...)` left out: built from the settings (None when no topic is set).
_FROM_SETTINGS: Any = object()


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class App:
    def __init__(
        self,
        settings: Settings,
        *,
        rules: RuleSet | None = None,
        ledger: Ledger | None = None,
        runner: Runner | None = None,
        authenticator: Any = None,
        dead_letters: DeadLetters | None = _FROM_SETTINGS,
        spans: Spans | None = None,
        queue: TaskQueue | None = None,
    ) -> None:
        self.settings = settings
        self.spans = spans if spans is not None else build_spans(settings)
        # A fresh pre-validated artifact (`triggers compile`) spares the start validation.
        self.rules = rules if rules is not None else load(settings.rules, compiled=True)
        self.ledger = ledger if ledger is not None else build_ledger(settings)
        self.runner = runner if runner is not None else build_runner(settings)
        self.authenticator = (
            authenticator if authenticator is not None else build_authenticator(settings)
        )
        self.dead_letters = (
            build_dead_letters(
                settings.dead_letter_topic, timeout=settings.dead_letter_timeout_seconds
            )
            if dead_letters is _FROM_SETTINGS
            else dead_letters
        )
        # Rules with `limits:` hand launches to Cloud Tasks: without a target for the tasks'
        # callbacks their events are answered 503 (kept, not launched). Said loudly at start;
        # not refused, so that tools and dry runs over such rules still start
        # (docs/flow-control.md).
        if queue is None and flow_rules(self.rules):
            check_flow_settings(settings, self.rules)
        self.queue = queue
        self.running_counts = RunningCounts(settings.running_cache_seconds)
        self.dispatcher = self._dispatcher(self.rules)

    def _task_queue(self, rules: RuleSet) -> TaskQueue | None:
        if self.queue is not None:
            return self.queue
        if not self.settings.task_target_url:
            return None  # the dispatcher answers RETRY for a flow rule (see NO_QUEUE)
        return LazyTaskQueue(self.settings, rules)

    def _dispatcher(self, rules: RuleSet) -> Dispatcher:
        settings = self.settings
        queue = self._task_queue(rules)
        dispatcher = Dispatcher(
            rules,
            self.ledger,
            self.runner,
            find_margin=timedelta(seconds=settings.find_margin_seconds),
            ambiguous_hold=timedelta(
                seconds=settings.cloud_run_timeout_seconds + settings.ambiguous_margin_seconds
            ),
            spans=self.spans,
            queue=queue,
            batcher=batcher_for(settings, rules, self.ledger, queue),
        )
        self.launcher = TaskLauncher(dispatcher, self.running_counts)
        return dispatcher

    def use_rules(self, rules: RuleSet) -> None:
        """Route later requests through `rules` (`triggers serve` reloading an edited file);
        a request already being handled finishes with the rules it started with."""
        self.rules = rules
        self.dispatcher = self._dispatcher(rules)

    def handle(
        self,
        headers: Mapping[str, str],
        body: bytes,
        query: Mapping[str, str] | None = None,
        path: str | None = None,
    ) -> Response:
        """`query`: the request's query parameters (a push endpoint's `topic`); `path`: the
        request's path (TASK_PATH: a queue task's callback, see `handle_task`)."""
        token = current_trace.set(trace_id(_header(headers, "x-cloud-trace-context")))
        try:
            if path is not None and path.rstrip("/") == TASK_PATH:
                return self.handle_task(headers, body)
            return self._handle(headers, body, query or {})
        except Exception:  # a bug must not lose the event: ask for it again
            log.exception("unexpected error while handling a request")
            return self._retry({"decision": "retry", "reason": "internal error"})
        finally:
            current_trace.reset(token)

    def _refused(self, headers: Mapping[str, str]) -> Response | None:
        """The answer to a caller without an allowed OIDC token; None when it may call."""
        if self.authenticator is None:
            return None
        try:
            self.authenticator.verify(_header(headers, "authorization"))
        except Unauthorized as exc:
            log.warning("refused a caller: %s", exc.message)
            # RFC 7235: a 401 names the scheme the caller must use.
            challenge = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            refused = {"decision": "refused", "reason": exc.message}
            return Response(exc.status, refused, challenge)
        return None

    def handle_task(self, headers: Mapping[str, str], body: bytes) -> Response:
        """A queue task's callback (docs/flow-control.md): authenticated like events, then
        `{"kind": "launch"}` launches a queued record (TaskLauncher). A task that can never
        succeed is answered 200 (and dead-lettered): queues retry anything else forever."""
        refused = self._refused(headers)
        if refused is not None:
            return refused
        parsed = parse_task_body(body)
        if isinstance(parsed, str):
            answer = TaskAnswer(200, {"decision": "rejected", "reason": parsed}, rejected=parsed)
        elif parsed.get("kind") == "launch":
            answer = self.launcher.launch(parsed)
        elif parsed.get("kind") == "batch":
            return self._batch_task(parsed)
        else:
            reason = f"task_rejected: unknown task kind {parsed.get('kind')!r}"
            answer = TaskAnswer(200, {"decision": "rejected", "reason": reason}, rejected=reason)
        self._log_task(headers, answer)
        if answer.rejected is not None:
            record = answer.record
            letter, letter_headers = dead_letter_request(record, body)
            self._dead_letter(
                letter_headers,
                letter,
                reason=answer.rejected,
                rule=record.rule if record is not None else None,
                event_id=record.event_id if record is not None else None,
                detail=answer.rejected,
            )
        if answer.retry:
            return self._retry(answer.body)
        return Response(answer.status, answer.body)

    def _batch_task(self, parsed: dict[str, Any]) -> Response:
        """`{"kind": "batch"}`: seal a batch and launch it (triggers.flow.batches)."""
        from ..flow.batches import handle_batch_task

        status, answer = handle_batch_task(self, parsed)
        if status < 500:
            return Response(status, answer)
        wait = answer.get("retry_after", self.settings.retry_after_seconds)
        return Response(503, answer, {"Retry-After": str(wait)})

    def _log_task(self, headers: Mapping[str, str], answer: TaskAnswer) -> None:
        body = answer.body
        log.log(
            logging.WARNING if answer.retry or answer.rejected else logging.INFO,
            "task %s: %s %s",
            _header(headers, "x-cloudtasks-taskname") or "?",
            body.get("outcome") or body.get("decision"),
            body.get("execution") or body.get("reason") or "",
            extra={
                "labels": {
                    "kind": "task",
                    "rule": body.get("rule"),
                    "ledger_key": body.get("ledger_key"),
                    "outcome": body.get("outcome") or body.get("decision"),
                    "retry_count": _header(headers, "x-cloudtasks-taskretrycount"),
                }
            },
        )

    def _handle(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> Response:
        refused = self._refused(headers)
        if refused is not None:
            return refused
        with self.spans.request(headers) as span:
            response = self._decode_and_dispatch(headers, body, query)
            span.set("http.status_code", response.status)
            if "decision" in response.body:
                span.set("decision", str(response.body["decision"]))
            return response

    def _decode_and_dispatch(
        self, headers: Mapping[str, str], body: bytes, query: Mapping[str, str]
    ) -> Response:
        try:
            with self.spans.span("triggers.decode") as span:
                event = decode(
                    headers, body, max_body_bytes=self.settings.max_body_bytes, query=query
                )
                span.set("event.id", event.id)
                span.set("event.type", event.type)
        except DecodeError as exc:
            return self._reject_input(exc, headers, body, query)
        decision = self.dispatcher.dispatch(event)
        self._log(decision, event)
        for outcome in decision.outcomes:
            if outcome.outcome is Outcome.REJECTED:
                reason = outcome.reason or "rejected"
                self._dead_letter(
                    headers,
                    body,
                    reason=reason,
                    rule=outcome.rule,
                    event_id=event.id,
                    detail=reason,
                    push_topic=query.get("topic"),
                )
        answer = decision.as_dict()
        return self._retry(answer) if decision.retry else Response(200, answer)

    def _retry(self, answer: dict[str, Any]) -> Response:
        return Response(503, answer, {"Retry-After": str(self.settings.retry_after_seconds)})

    def _reject_input(
        self,
        exc: DecodeError,
        headers: Mapping[str, str],
        body: bytes,
        query: Mapping[str, str] | None = None,
    ) -> Response:
        summary = {
            "content_type": _header(headers, "content-type"),
            "user_agent": _header(headers, "user-agent"),
            "bytes": len(body),
        }
        log.warning(
            "rejected a request that is not an event: %s",
            exc,
            extra={
                "labels": {"kind": "input_rejected", "outcome": "rejected", "reason": exc.reason}
            },
        )
        try:
            self.ledger.reject_input(body, exc.reason, exc.message, summary)
        except Exception as ledger_error:  # still acknowledge: no retry can fix the request
            log.error("could not record a rejected request: %s", ledger_error)
        self._dead_letter(
            headers,
            body,
            reason=exc.reason,
            rule=None,
            event_id=None,
            detail=exc.message,
            push_topic=(query or {}).get("topic"),
        )
        return Response(200, {"decision": "rejected", "reason": exc.reason, "message": exc.message})

    def _dead_letter(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        reason: str,
        rule: str | None,
        event_id: str | None,
        detail: str,
        push_topic: str | None = None,
    ) -> None:
        """Publish one rejection, if a sink is configured. Never raises: the answer to the sender
        (an ack for every rejection) must not depend on the dead-letter topic."""
        if self.dead_letters is None:
            return
        # Only when there is one: a DeadLetters written before push topics need not take it.
        extra = {"push_topic": push_topic} if push_topic else {}
        try:
            self.dead_letters.publish(
                body,
                headers,
                reason=reason,
                rule=rule,
                event_id=event_id,
                detail=detail,
                **extra,
            )
        except Exception as exc:
            log.error(
                "could not dead-letter a rejection (%s): %s",
                rule or reason,
                exc,
                extra={
                    "labels": {
                        "kind": "dead_letter_failed",
                        **{k: v for k, v in (("rule", rule), ("event_id", event_id)) if v},
                    }
                },
            )

    def _log(self, decision: Decision, event) -> None:
        if not decision.outcomes:
            log.info("event %s matched no rule", event.id, extra={"labels": {"event_id": event.id}})
        for outcome in decision.outcomes:
            level = (
                logging.WARNING
                if outcome.outcome in (Outcome.REJECTED, Outcome.RETRY)
                else logging.INFO
            )
            detail = outcome.execution or outcome.reason or ""
            log.log(
                level,
                "%s: %s %s",
                outcome.rule,
                outcome.outcome.value,
                detail,
                extra={
                    # `kind` and these labels are what the Terraform module's log-based
                    # metrics select and extract (terraform/monitoring.tf): keep them stable.
                    "labels": {
                        "kind": "decision",
                        "rule": outcome.rule,
                        "event_id": event.id,
                        "dedup_key": outcome.dedup_key,
                        "execution": outcome.execution,
                        "outcome": outcome.outcome.value,
                        "reason": outcome.reason,
                    }
                },
            )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    getter = getattr(headers, "get", None)
    value = getter(name) if getter else None
    if value is None:
        lowered = {k.lower(): v for k, v in headers.items()}
        value = lowered.get(name)
    return value


def build_ledger(settings: Settings) -> Ledger:
    lease = timedelta(seconds=settings.lease_seconds)
    if settings.ledger == "firestore":
        from ..ledger.firestore import FirestoreBackend

        backend: Any = FirestoreBackend(
            project=settings.firestore_project,
            database=settings.firestore_database,
            collection=settings.firestore_collection,
            deadline=settings.ledger_deadline_seconds,
            retry_seconds=settings.ledger_retry_seconds,
        )
    elif settings.ledger == "sqlite":
        from ..ledger.sqlite import SQLiteBackend

        backend = SQLiteBackend(settings.sqlite_path)
    else:
        from ..ledger.memory import MemoryBackend

        backend = MemoryBackend()
    return Ledger(backend, lease=lease)


def build_runner(settings: Settings) -> Runner:
    if settings.runner == "dry-run":
        from ..runners.dryrun import DryRunRunner

        return DryRunRunner()
    from ..runners.routed import SystemRunners

    options = settings.as_dict()
    return SystemRunners(lambda system: system.build_runner(options))


def build_spans(settings: Settings) -> Spans:
    """No spans unless tracing is on; then OpenTelemetry, imported only now (cold start)."""
    if settings.tracing == "off":
        return NO_SPANS
    from .tracing import build_tracing

    return build_tracing(settings)


def build_authenticator(settings: Settings) -> Any:
    if not settings.oidc_audience:
        return None
    from .auth import OIDCAuthenticator, parse_audiences

    return OIDCAuthenticator(parse_audiences(settings.oidc_audience), settings.oidc_allowed_emails)
