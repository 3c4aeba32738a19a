"""The function's side of flow control: the task queue it enqueues to, built on first use,
and the answer to a queue task's callback (`App.handle_task`, path TASK_PATH).

The Cloud Tasks client is created only when the first launch is queued (cold start: a function
whose events are all duplicates never imports it). A function whose rules have `limits:` but
that was given no TRIGGERS_TASK_TARGET_URL says so at start, at ERROR (`check_flow_settings`), and
answers those rules' events 503 (kept for their senders' retries) until it is set: refusing to
start would also stop the tools and dry runs that load the same rules.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from ..flow.queue import Task, TaskQueue
from ..rules.ruleset import RuleSet
from .settings import Settings

log = logging.getLogger("triggers.function.tasks")


class FlowNotConfigured(ValueError):
    """Rules need the task queue and the settings do not say where tasks call back."""


def flow_rules(rules: RuleSet) -> list[str]:
    """Names of the rules that launch through a queue (`limits:` without `batch:`)."""
    return [r.name for r in rules if r.flow is not None]


def check_flow_settings(settings: Settings, rules: RuleSet) -> FlowNotConfigured | None:
    """Log an error at start when a rule needs the task queue and no task target is set (its
    events will be answered 503 until it is); the problem, or None."""
    names = flow_rules(rules)
    if names and not settings.task_target_url:
        problem = FlowNotConfigured(
            f"rule(s) {', '.join(names)} have flow control (`limits:` or `batch:`) but"
            " TRIGGERS_TASK_TARGET_URL is not set: set it to this function's URL +"
            " /_triggers/task (the Terraform module does), or remove their `limits:`; until"
            " then their events are answered 503 and kept"
        )
        log.error("%s", problem, extra={"labels": {"kind": "flow_not_configured"}})
        return problem
    return None


class LazyTaskQueue:
    """A `CloudTasksQueue` made from the settings on the first `enqueue`."""

    def __init__(self, settings: Settings, rules: RuleSet) -> None:
        self.settings = settings
        self.rules = rules
        self._queue: TaskQueue | None = None
        self._lock = threading.Lock()

    @property
    def queue(self) -> TaskQueue:
        if self._queue is None:
            with self._lock:
                if self._queue is None:
                    self._queue = build_task_queue(self.settings, self.rules)
        return self._queue

    def enqueue(self, task: Task) -> bool:
        return self.queue.enqueue(task)


def batcher_for(settings: Settings, rules: RuleSet, ledger: Any, queue: TaskQueue | None) -> Any:
    """The `Batches` a dispatcher's batched rules join through, or None when no rule batches
    (batching is not imported then) or there is no queue (their events are answered RETRY)."""
    if queue is None or not any(r.flow is not None and r.flow.batch for r in rules):
        return None
    from ..flow.batches import Batches

    return Batches.over(ledger, queue, manifest_bucket=settings.manifest_bucket)


def flow_dispatcher_options(settings: Settings, rules: RuleSet, ledger: Any) -> dict[str, Any]:
    """`queue=` and `batcher=` for a Dispatcher outside the function (replay, redrive): the
    queue the settings name (TRIGGERS_TASK_TARGET_URL, ...), none when they name none."""
    if not settings.task_target_url or not flow_rules(rules):
        return {}
    queue = LazyTaskQueue(settings, rules)
    return {"queue": queue, "batcher": batcher_for(settings, rules, ledger, queue)}


def build_task_queue(settings: Settings, rules: RuleSet) -> TaskQueue:
    import os

    from ..flow.cloudtasks import CloudTasksQueue

    if not settings.task_target_url:
        raise FlowNotConfigured("TRIGGERS_TASK_TARGET_URL is not set: no task queue to enqueue to")
    first_job = next((r.job for r in rules if r.flow is not None), "")
    parts = first_job.split("/")  # projects/P/locations/R/jobs/J
    project = (
        settings.tasks_project
        or settings.project
        or os.environ.get("GOOGLE_CLOUD_PROJECT")
        or (parts[1] if len(parts) > 3 else None)
    )
    location = settings.tasks_location or (parts[3] if len(parts) > 3 else None)
    if not project or not location:
        raise FlowNotConfigured("set TRIGGERS_TASKS_PROJECT and TRIGGERS_TASKS_LOCATION")
    return CloudTasksQueue(
        project,
        location,
        settings.task_target_url,
        service_account=settings.tasks_service_account,
        audience=settings.tasks_audience,
        endpoint=settings.tasks_endpoint,
    )


def parse_task_body(body: bytes) -> dict[str, Any] | str:
    """The task's JSON object, or why it is not one (a task that can never succeed)."""
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"task_rejected: the task body is not JSON ({exc})"
    if not isinstance(parsed, dict):
        return "task_rejected: the task body is not a JSON object"
    return parsed


def dead_letter_request(record: Any, body: bytes) -> tuple[bytes, dict[str, str]]:
    """What to dead-letter for a rejected task: the event it was queued for, as a structured
    CloudEvent (which `triggers replay --from-topic` can send through the rules again), when
    the ledger kept it; otherwise the task's own body."""
    document = getattr(record, "event_document", None)
    if not isinstance(document, dict):
        return body, {"Content-Type": "application/json"}
    event = {"specversion": "1.0", **document}
    return (
        json.dumps(event, separators=(",", ":")).encode(),
        {"Content-Type": "application/cloudevents+json"},
    )
