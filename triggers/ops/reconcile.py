"""The reconciler: moves `launched` ledger records to `succeeded`, `failed` or `cancelled`.

    report = reconcile(ledger, runner)          # every launched record (at most `limit`)
    report = reconcile(ledger, runner, since=now - timedelta(days=1))

For each `launched` record it asks the runner what became of the execution
(`CloudRunRunner.execution_status`) and, once the execution is done, records the outcome with a
compare-and-set on the record's token (`Backend.update`): a record that changed in between is
left alone and counted as a conflict. Executions still running are skipped (the next run looks
again); an execution that is gone (404) is recorded as `failed`, reason "execution not found".
One bad record never stops the others: its error is counted and reported.

The details go into the record's `outcome` (outcome, task counts, start and completion times,
log URI, the service's message) and the service's message, if any, into its `reason`.

Pure orchestration: no I/O of its own besides the ledger and the runner it is given.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ..ledger.base import Ledger, Record, Status

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 500
NOT_FOUND = "execution not found"

_OUTCOMES = {
    "succeeded": Status.SUCCEEDED,
    "failed": Status.FAILED,
    "cancelled": Status.CANCELLED,
}
# What `outcome` keeps of an execution's state.
_FIELDS = (
    "outcome",
    "succeeded_count",
    "failed_count",
    "cancelled_count",
    "task_count",
    "retried_count",
    "started_at",
    "completed_at",
    "log_uri",
    "message",
)


class StatusRunner(Protocol):
    def execution_status(self, name: str) -> dict[str, Any] | None: ...


@dataclass
class ReconcileReport:
    """What one pass did. ``checked`` = records looked at; each lands in exactly one of
    succeeded / failed / cancelled (updated), running, conflicts or errors."""

    checked: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0
    not_found: int = 0  # also counted in `failed`
    conflicts: int = 0  # the record changed under us (token mismatch): left alone
    errors: int = 0
    details: list[dict[str, Any]] = field(default_factory=list)  # one per error

    @property
    def updated(self) -> int:
        return self.succeeded + self.failed + self.cancelled

    def as_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "updated": self.updated,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "running": self.running,
            "not_found": self.not_found,
            "conflicts": self.conflicts,
            "errors": self.errors,
            "error_details": list(self.details),
        }


def reconcile(
    ledger: Ledger,
    runner: StatusRunner,
    *,
    since: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
    now: Callable[[], datetime] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReconcileReport:
    """One pass over the `launched` records (newest first, at most ``limit``, created at or
    after ``since``). Raises only when the ledger cannot be listed; per-record failures are
    counted in the report. ``now`` stamps ``updated_at`` (default: the ledger's clock);
    ``progress(done, total)`` is called before each record."""
    records = ledger.list(status=[Status.LAUNCHED], since=since, limit=limit)
    clock = now or ledger.clock
    report = ReconcileReport()
    for record in records:
        if progress is not None:
            progress(report.checked, len(records))
        report.checked += 1
        try:
            _reconcile_one(ledger, runner, record, clock, report)
        except Exception as exc:  # one bad record must not stop the pass
            report.errors += 1
            report.details.append(
                {"key": record.key, "execution": record.execution, "error": _describe(exc)}
            )
            log.warning(
                "reconciling %s (%s) failed: %s",
                record.key,
                record.execution,
                _describe(exc),
                extra={"labels": {"kind": "reconcile_error", "rule": record.rule}},
            )
    return report


def _reconcile_one(
    ledger: Ledger,
    runner: StatusRunner,
    record: Record,
    clock: Callable[[], datetime],
    report: ReconcileReport,
) -> None:
    reason: str | None
    if not record.execution:
        # launched without an execution name: nothing to ask about, and never will be
        status, reason, not_found = Status.FAILED, NOT_FOUND, True
    else:
        state = runner.execution_status(record.execution)
        if state is None:
            status, reason, not_found = Status.FAILED, NOT_FOUND, True
        elif not state.get("done"):
            report.running += 1
            return
        else:
            outcome = state.get("outcome")
            if outcome not in _OUTCOMES:
                raise ValueError(f"execution {record.execution} is done with outcome {outcome!r}")
            details = {name: state[name] for name in _FIELDS if state.get(name) is not None}
            status, reason, not_found = _OUTCOMES[outcome], state.get("message"), False
    changes: dict[str, Any] = {"status": status, "reason": reason, "updated_at": clock()}
    if not not_found:
        changes["outcome"] = details
    if not ledger.backend.update(record.key, record.token, changes):
        report.conflicts += 1
        return
    report.not_found += not_found
    setattr(report, status.value, getattr(report, status.value) + 1)
    if not not_found and record.dedup_key.startswith("batch/"):
        _copy_to_members(ledger, record, details)
    # One line per finished execution: the Terraform module's executions metric counts these
    # (terraform/monitoring.tf), by rule and outcome.
    log.log(
        logging.WARNING if status is Status.FAILED else logging.INFO,
        "%s: execution %s %s",
        record.rule,
        record.execution,
        status.value,
        extra={
            "labels": {
                "kind": "execution",
                "rule": record.rule,
                "outcome": status.value,
                "reason": reason,
                "execution": record.execution,
            }
        },
    )


def _copy_to_members(ledger: Ledger, record: Record, outcome: dict[str, Any]) -> None:
    """A batch's run ended: copy how onto its members' records (their status stays `batched`:
    they ran in that execution). Best effort, like pointing them at it: `triggers show` of a
    member reaches the outcome through its batch anyway."""
    from ..ledger.batchstore import batch_store_for

    batch_id = record.dedup_key[len("batch/") :]
    try:
        store = batch_store_for(ledger.backend)
        batch = store.get_batch(batch_id)
        members = store.get_records(batch.members) if batch is not None else {}
        for member in members.values():
            if member.batch == batch_id:
                ledger.backend.update(member.key, member.token, {"outcome": outcome})
    except Exception as exc:  # the run's own record is reconciled; members are a courtesy
        log.info("could not copy the outcome of batch %s to its members: %s", batch_id, exc)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
