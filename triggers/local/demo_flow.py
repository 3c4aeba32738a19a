"""`triggers demo`'s flow-control scenes: each batched rule's open batch closed now and launched
as one execution, and a `max_running` rule's later tick skipped while its first run still runs.

Both go through the same stack as everything else in the demo: the served function, the
emulator's Cloud Tasks (driven through the google-cloud-tasks client) and Cloud Run."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from ..flow.batching import Batch, BatchStatus, timer_task_name
from ..flow.spec import WhenBusy
from ..ledger.base import Record, Status
from ..rules.schedule import rfc3339
from . import send

POLL_SECONDS = 0.05
# What a queued launch becomes once its task has run; anything else is still on its way.
SETTLED = {Status.LAUNCHED, Status.SKIPPED, Status.REJECTED}

Say = Callable[[str], None]


@dataclass
class FlowResults:
    """What the scenes did, for the demo's summary."""

    batches: list[str] = field(default_factory=list)  # ids of the batches closed and launched
    skipped: int = 0  # ticks recorded `skipped` by max_running
    problems: list[str] = field(default_factory=list)


def poll(value: Callable[[], Any], timeout: float) -> Any:
    """`value()` once it is truthy, polled until `timeout` seconds pass (then its last value)."""
    deadline = time.monotonic() + timeout
    while True:
        current = value()
        if current or time.monotonic() >= deadline:
            return current
        time.sleep(POLL_SECONDS)


# -- batching -------------------------------------------------------------------------------


def close_batches(server: Any, results: FlowResults, timeout: float, say: Say) -> None:
    """Seal every open batch of the batched rules now and run its window timer at once, then
    wait for its one execution to be launched."""
    batcher = getattr(server.app.dispatcher, "batcher", None)
    rules = [r for r in server.rules if r.flow is not None and r.flow.batch is not None]
    if batcher is None or not rules:
        return
    batches = [
        b
        for rule in rules
        for b in batcher.store.list_batches(rule=rule.name)
        if b.status is BatchStatus.OPEN
    ]
    if not batches:
        return
    say(
        "\nClosing the open batches now rather than after their window (the demo's shortcut):"
        "\n  each is sealed (the timer's own compare-and-set: a later event opens the next"
        "\n  batch), then its timer task is run at once with RunTask (`gcloud tasks run`)."
    )
    queue = server.app.dispatcher.queue.queue  # the CloudTasksQueue on the emulator
    for batch in batches:
        rule = server.rules.get(batch.rule)
        assert rule is not None and rule.flow is not None and rule.flow.batch is not None
        batcher.close(batch.id)
        task = f"{queue.queue_path(rule.flow.limits.queue)}/tasks/{timer_task_name(batch.id)}"
        queue.client.run_task(request={"name": task})
        done = poll(partial(_finished, batcher, batch.id), timeout)
        window = rule.flow.batch.window_seconds
        if done is None or done.status is not BatchStatus.LAUNCHED:
            state = "not launched in time" if done is None else f"rejected: {done.reason}"
            results.problems.append(f"batch {batch.id} of {rule.name} {state}")
            say(f"  {rule.name}  batch {batch.id}  {state}")
            continue
        results.batches.append(batch.id)
        age = (done.sealed_at - done.opened_at).total_seconds() if done.sealed_at else 0.0
        say(
            f"  {rule.name}  batch {batch.id}: {len(done.members)} members, sealed {age:.1f}s"
            f" into its {window}s window\n  {' ' * len(rule.name)}  -> one execution"
            f" {_short(done.execution)}, {done.task_count} tasks"
        )


def _finished(batcher: Any, batch_id: str) -> Batch | None:
    batch = batcher.store.get_batch(batch_id)
    done = (BatchStatus.LAUNCHED, BatchStatus.REJECTED)
    return batch if batch is not None and batch.status in done else None


def show_batches(server: Any, results: FlowResults, say: Say) -> None:
    """Each launched batch: its members, its execution and what each task read (task logs)."""
    if not results.batches:
        return
    batcher = server.app.dispatcher.batcher
    say("\nBatches (`triggers runs --batches`) and what each task read from the manifest:")
    for batch_id in results.batches:
        batch = batcher.store.get_batch(batch_id)
        records = batcher.store.get_records(batch.members)
        say(f"  batch {batch.id}  {batch.rule}  {batch.status.value}  manifest {batch.manifest}")
        for number, key in enumerate(batch.members, 1):
            say(f"    member {number}: {_object(records.get(key))}")
        say(f"    execution {_short(batch.execution)}: {batch.task_count} tasks")
        log_dir = _log_dir(server, batch.execution)
        for index in range(batch.task_count or 0):
            lines = _slice_lines(log_dir, index)
            if not lines:
                results.problems.append(f"batch {batch.id}: task {index} printed no slice")
            for line in lines or ["slice: (none in its log)"]:
                say(f"      task {index}: {line.removeprefix('slice: ')}")


def _object(record: Record | None) -> str:
    if record is None:
        return "(record gone)"
    data = (record.event_document or {}).get("data") or {}
    return f"gs://{data.get('bucket')}/{data.get('name')}"


def _log_dir(server: Any, execution: str | None) -> Path | None:
    rec = _emulated(server, execution)
    return Path(rec.log_dir) if rec is not None else None


def _emulated(server: Any, execution: str | None) -> Any:
    """The Cloud Run emulator's record of an execution (by full or short name), or None."""
    for rec in server.emulator.store.records():
        if execution and execution.rsplit("/", 1)[-1] == rec.short:
            return rec
    return None


def _slice_lines(log_dir: Path | None, index: int) -> list[str]:
    """The `slice:` lines config/jobs/echo_job.py prints, from the task's last attempt."""
    logs = sorted(log_dir.glob(f"task{index}-attempt*.log")) if log_dir else []
    if not logs:
        return []
    text = logs[-1].read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if line.startswith("slice: ")]


def _short(execution: str | None) -> str:
    return (execution or "?").rsplit("/", 1)[-1]


# -- max_running: 1, when_busy: skip --------------------------------------------------------


def skip_overlaps(
    server: Any,
    ticks: dict[str, tuple[datetime, send.Answer]],
    results: FlowResults,
    timeout: float,
    say: Say,
    say_answer: Callable[[str, send.Answer], None],
) -> list[tuple[str, send.Answer]]:
    """For each Scheduler job of a `when_busy: skip` rule whose tick was queued: once that
    tick's execution runs, send the job's next tick now (as if the run overran its period);
    its task must find the job busy and record `skipped`. Returns the ticks sent."""
    sent: list[tuple[str, send.Answer]] = []
    for job in server.scheduled:
        for name in job.rules:
            rule = server.rules.get(name)
            limits = rule.flow.limits if rule is not None and rule.flow is not None else None
            if limits is None or limits.max_running is None or job.name not in ticks:
                continue
            if limits.when_busy is not WhenBusy.SKIP:
                continue
            at, answer = ticks[job.name]
            first = _settled(server, _ledger_key(answer, name), timeout)
            if first is None or first.status is not Status.LAUNCHED:
                results.problems.append(f"{name}: the tick of {rfc3339(at)} was not launched")
                continue
            running = _emulated(server, first.execution)
            if running is None or running.done:  # then a skip would show nothing
                results.problems.append(f"{name}: {first.execution} ended before the next tick")
                continue
            later = job.schedule.next_after(at)
            say(
                f"\nThe next tick of {job.name} while {_short(first.execution)} is still"
                f" running (max_running {limits.max_running}, when_busy: skip):"
            )
            answer = server.fire(job, later)
            sent.append((f"tick {job.name}", answer))
            say_answer(f"{job.name} @ {rfc3339(later)}", answer)
            second = _settled(server, _ledger_key(answer, name), timeout)
            if second is None:
                results.problems.append(f"{name}: the tick of {rfc3339(later)} never settled")
                continue
            reason = (second.reason or "").removeprefix(f"{second.status.value}: ")
            say(f"  its task recorded it {second.status.value}: {reason}")
            if second.status is Status.SKIPPED:
                results.skipped += 1
            else:
                results.problems.append(f"{name}: a tick during a run was {second.status.value}")
    return sent


def _ledger_key(answer: send.Answer, rule: str) -> str | None:
    body = answer.body if isinstance(answer.body, dict) else {}
    for outcome in body.get("rules") or []:
        if outcome.get("rule") == rule and outcome.get("outcome") == "queued":
            return str(outcome.get("ledger_key"))
    return None


def _settled(server: Any, key: str | None, timeout: float) -> Record | None:
    """The queued launch's record once its task has decided it (None: not within timeout)."""
    if key is None:
        return None

    def decided() -> Record | None:
        record = server.app.ledger.get(key)
        return record if record is not None and record.status in SETTLED else None

    result: Record | None = poll(decided, timeout)
    return result
