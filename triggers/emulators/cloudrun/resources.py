"""Rendering of emulator records as Cloud Run Admin API v2 resources in proto3 JSON (pure).

camelCase field names, int64 as strings, Timestamps as RFC 3339 UTC (``...Z``), Durations as
``"600s"``, enums as names (``to_int_enums`` turns them into numbers for a client that asks with
``$alt=json;enum-encoding=int``, as the Python client does).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..machine import AttemptResult, Outcome
from ..rpc import timestamp
from .jobs import JobSpec
from .limits import format_duration

if TYPE_CHECKING:
    from .records import ExecutionRecord, OperationRecord

EXECUTION_TYPE = "type.googleapis.com/google.cloud.run.v2.Execution"
CREATOR = "emulator@triggers.local"

#: Enum fields the emulator emits, name -> number, checked against the client's descriptors by
#: the unit tests.
ENUMS: dict[str, dict[str, int]] = {
    "state": {
        "STATE_UNSPECIFIED": 0,
        "CONDITION_PENDING": 1,
        "CONDITION_RECONCILING": 2,
        "CONDITION_FAILED": 3,
        "CONDITION_SUCCEEDED": 4,
    },
    "severity": {"SEVERITY_UNSPECIFIED": 0, "ERROR": 1, "WARNING": 2, "INFO": 3},
    "executionReason": {
        "EXECUTION_REASON_UNDEFINED": 0,
        "JOB_STATUS_SERVICE_POLLING_ERROR": 1,
        "NON_ZERO_EXIT_CODE": 2,
        "CANCELLED": 3,
        "CANCELLING": 4,
        "DELETED": 5,
        "DELAYED_START_PENDING": 6,
    },
    "launchStage": {
        "LAUNCH_STAGE_UNSPECIFIED": 0,
        "UNIMPLEMENTED": 6,
        "PRELAUNCH": 7,
        "EARLY_ACCESS": 1,
        "ALPHA": 2,
        "BETA": 3,
        "GA": 4,
        "DEPRECATED": 5,
    },
    "completionStatus": {
        "COMPLETION_STATUS_UNSPECIFIED": 0,
        "EXECUTION_SUCCEEDED": 1,
        "EXECUTION_FAILED": 2,
        "EXECUTION_RUNNING": 3,
        "EXECUTION_PENDING": 4,
        "EXECUTION_CANCELLED": 5,
    },
}


def to_int_enums(value: Any) -> Any:
    """A copy of ``value`` with every known enum name replaced by its number."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            table = ENUMS.get(k)
            if table is not None and isinstance(v, str) and v in table:
                out[k] = table[v]
            else:
                out[k] = to_int_enums(v)
        return out
    if isinstance(value, list):
        return [to_int_enums(v) for v in value]
    return value


def _elapsed(start: datetime, end: datetime) -> str:
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs}s"


def container_json(
    job: JobSpec,
    args: Sequence[str],
    env: Sequence[tuple[str, str]],
    secret_refs: Sequence[tuple[str, Any]] = (),
) -> dict[str, Any]:
    c: dict[str, Any] = {}
    if job.container_name:
        c["name"] = job.container_name
    c["image"] = job.image
    c["command"] = list(job.command)
    if args:
        c["args"] = list(args)
    if env:
        # A secret's value stays in the task: the resource shows its reference, as Cloud Run's.
        refs = dict(secret_refs)
        c["env"] = [
            {"name": k, "value": v}
            if k not in refs
            else {
                "name": k,
                "valueSource": {
                    "secretKeyRef": {"secret": refs[k].secret, "version": refs[k].version}
                },
            }
            for k, v in env
        ]
    c["resources"] = {"limits": {"cpu": "1000m", "memory": "512Mi"}}
    if job.working_dir:
        c["workingDir"] = job.working_dir
    return c


def _condition(
    type_: str, state: str, message: str, when: datetime | None, **extra: str
) -> dict[str, Any]:
    c: dict[str, Any] = {"type": type_, "state": state}
    if message:
        c["message"] = message
    if when is not None:
        c["lastTransitionTime"] = timestamp(when)
    c.update(extra)
    return c


def execution_conditions(rec: ExecutionRecord) -> list[dict[str, Any]]:
    """``Completed`` first (the terminal condition), then ``ResourcesAvailable`` and ``Started``."""
    m = rec.machine
    started = rec.start_time
    out: list[dict[str, Any]] = []
    outcome = m.outcome
    if outcome is Outcome.SUCCEEDED:
        out.append(
            _condition(
                "Completed",
                "CONDITION_SUCCEEDED",
                "Execution completed successfully in "
                f"{_elapsed(rec.create_time, rec.completion_time or rec.update_time)}.",
                rec.completion_time,
            )
        )
    elif outcome is Outcome.FAILED:
        extra = {}
        if m.first_failure is not None and m.first_failure[1] is AttemptResult.FAILED:
            extra["executionReason"] = "NON_ZERO_EXIT_CODE"
        out.append(
            _condition(
                "Completed", "CONDITION_FAILED", rec.failure_message, rec.completion_time, **extra
            )
        )
    elif outcome is Outcome.CANCELLED:
        out.append(
            _condition(
                "Completed",
                "CONDITION_FAILED",
                "The execution was cancelled.",
                rec.completion_time,
                executionReason="CANCELLED",
            )
        )
    elif m.cancel_requested:
        out.append(
            _condition(
                "Completed",
                "CONDITION_RECONCILING",
                "The execution is being cancelled.",
                rec.update_time,
                executionReason="CANCELLING",
            )
        )
    elif started is not None:
        out.append(_condition("Completed", "CONDITION_RECONCILING", "", started))
    else:
        out.append(_condition("Completed", "CONDITION_PENDING", "", rec.create_time))
    if started is not None:
        out.append(
            _condition(
                "ResourcesAvailable",
                "CONDITION_SUCCEEDED",
                "Provisioned imported containers.",
                started,
            )
        )
        out.append(_condition("Started", "CONDITION_SUCCEEDED", "Started deployed tasks.", started))
    else:
        out.append(_condition("ResourcesAvailable", "CONDITION_PENDING", "", rec.create_time))
        out.append(_condition("Started", "CONDITION_PENDING", "", rec.create_time))
    return out


def execution_json(rec: ExecutionRecord) -> dict[str, Any]:
    m = rec.machine
    run = rec.run
    e: dict[str, Any] = {
        "name": rec.name,
        "uid": rec.uid,
        "creator": CREATOR,
        "generation": "1",
        "createTime": timestamp(rec.create_time),
    }
    if rec.start_time is not None:
        e["startTime"] = timestamp(rec.start_time)
    if rec.completion_time is not None:
        e["completionTime"] = timestamp(rec.completion_time)
    e["updateTime"] = timestamp(rec.update_time)
    if rec.delete_time is not None:
        e["deleteTime"] = timestamp(rec.delete_time)
    e.update(
        {
            "launchStage": "GA",
            "job": rec.job.name,
            "parallelism": m.slots,
            "taskCount": run.task_count,
            "template": {
                "containers": [container_json(rec.job, run.args, run.env, run.secret_refs)],
                "maxRetries": run.max_retries,
                "timeout": format_duration(run.timeout),
            },
            "reconciling": not m.done,
            "conditions": execution_conditions(rec),
            "observedGeneration": "1",
            "runningCount": m.running_count,
            "succeededCount": m.succeeded_count,
            "failedCount": m.failed_count,
            "cancelledCount": m.cancelled_count,
            "retriedCount": m.retried_count,
            "logUri": rec.log_uri,
            "satisfiesPzs": False,
            "etag": rec.etag,
        }
    )
    return e


def operation_json(op: OperationRecord) -> dict[str, Any]:
    rec = op.execution
    execution = execution_json(rec)
    body: dict[str, Any] = {
        "name": op.name,
        "metadata": {"@type": EXECUTION_TYPE, **execution},
        "done": op.done,
    }
    if op.done:
        error = op.error
        if error is not None:
            body["error"] = {"code": error[0], "message": error[1]}
        else:
            body["response"] = {"@type": EXECUTION_TYPE, **execution}
    return body


def completion_status(rec: ExecutionRecord) -> str:
    outcome = rec.machine.outcome
    if outcome is Outcome.SUCCEEDED:
        return "EXECUTION_SUCCEEDED"
    if outcome is Outcome.FAILED:
        return "EXECUTION_FAILED"
    if outcome is Outcome.CANCELLED:
        return "EXECUTION_CANCELLED"
    return "EXECUTION_RUNNING" if rec.start_time is not None else "EXECUTION_PENDING"


def job_json(
    job: JobSpec,
    *,
    create_time: datetime,
    execution_count: int,
    latest: ExecutionRecord | None,
    etag: str,
    uid: str,
) -> dict[str, Any]:
    j: dict[str, Any] = {
        "name": job.full_name,
        "uid": uid,
        "generation": "1",
        "createTime": timestamp(create_time),
        "updateTime": timestamp(create_time),
        "creator": CREATOR,
        "lastModifier": CREATOR,
        "launchStage": "GA",
        "template": {
            "taskCount": job.task_count,
            "template": {
                "containers": [container_json(job, job.args, job.env)],
                "maxRetries": job.max_retries,
                "timeout": format_duration(job.timeout),
            },
        },
        "observedGeneration": "1",
        "terminalCondition": {
            "type": "Ready",
            "state": "CONDITION_SUCCEEDED",
            "lastTransitionTime": timestamp(create_time),
        },
        "executionCount": execution_count,
        "reconciling": False,
        "satisfiesPzs": False,
        "etag": etag,
    }
    if job.parallelism:
        j["template"]["parallelism"] = job.parallelism
    if latest is not None:
        ref: dict[str, Any] = {"name": latest.name, "createTime": timestamp(latest.create_time)}
        if latest.completion_time is not None:
            ref["completionTime"] = timestamp(latest.completion_time)
        if latest.delete_time is not None:
            ref["deleteTime"] = timestamp(latest.delete_time)
        ref["completionStatus"] = completion_status(latest)
        j["latestCreatedExecution"] = ref
    return j
