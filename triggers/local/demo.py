"""`triggers demo`: the local stack driven once by the sample events, start to finish."""

from __future__ import annotations

import logging
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from ..rules.schedule import rfc3339
from . import send
from .clock import utcnow
from .demo_flow import FlowResults, close_batches, show_batches, skip_overlaps
from .serve import LocalServer, ServeError, ServeOptions

DEMO_TIME_SCALE = 60.0


@dataclass
class _Tally:
    requests: int = 0
    outcomes: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def add(self, what: str, answer: send.Answer) -> None:
        self.requests += 1
        body = answer.body if isinstance(answer.body, dict) else {}
        if not answer.ok or body.get("decision") != "ack":
            self.problems.append(f"{what}: {answer.status} {body.get('decision') or answer.body!r}")
        rules = body.get("rules") or []
        if not rules and body.get("decision") == "ack":
            self.outcomes["matched no rule"] += 1
        for outcome in rules:
            self.outcomes[outcome.get("outcome", "?")] += 1
            if outcome.get("outcome") in ("rejected", "retry"):
                self.problems.append(
                    f"{what}: {outcome.get('rule')} {outcome.get('outcome')}:"
                    f" {outcome.get('reason')}"
                )


def demo(
    *,
    rules: str = "config/rules.yaml",
    jobs: str = "config/jobs.yaml",
    events: str = "config/events",
    extra_events: Sequence[Path] = (),
    keep: bool = False,
    timeout: float = 30.0,
    out: TextIO | None = None,
) -> int:
    """Serve the sample config, send it every sample event and one tick per Scheduler job, wait
    for the executions, show what happened. 0 when every event was acknowledged, nothing was
    rejected or left to retry and every execution succeeded; 1 otherwise; 2 if it cannot start."""
    out = out or sys.stdout

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    files = sorted(Path(events).glob("*.json")) + list(extra_events)
    if not files:
        print(f"error: no sample events (*.json) in {events}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="triggers-demo-"))
    options = ServeOptions(
        rules=rules,
        jobs=jobs,
        port=0,
        emulator_port=0,
        sqlite_path=str(workdir / "ledger.sqlite3"),
        log_dir=str(workdir / "logs"),
        clock=False,  # the demo fires each Scheduler job itself, once, instead of waiting
        # The function's and the emulator's own lines would drown the summary; problems show.
        log_level=logging.WARNING,
        console=False,  # nobody is there to look at it: the demo stops when it has printed
        # Queued launches (rules with `limits:`) are paced by the emulator's Cloud Tasks: a
        # minute of queue time passes in a second, so a `rate: 60/min` rule drains at once.
        time_scale=DEMO_TIME_SCALE,
    )
    server = LocalServer(options)
    tally = _Tally()
    try:
        try:
            server.start()
        except ServeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        say("triggers demo: the sample rules and jobs on a local server, fed the sample events")
        for line in server.banner(clock_off="the demo sends its latest tick below; the next is"):
            say("  " + line)

        say(f"\nSending the {len(files)} sample events in {events}/ (`triggers send --file`):")
        width = max(len(f.name) for f in files)
        for path in files:
            request = send.event_file(path)
            answer = send.post(server.url, request)
            tally.add(path.name, answer)
            _say_answer(say, f"{path.name:<{width}}", answer)
            if isinstance(answer.body, dict) and answer.body.get("rules") == []:
                for line in _why_nothing_matched(server.rules, request):
                    say(f"  {' ' * width}  why: {line}")

        if server.scheduled:
            say("\nFiring each Scheduler job once, for its latest tick (what the clock sends):")
        now = utcnow()
        ticks: dict[str, tuple[datetime, send.Answer]] = {}
        for job in server.scheduled:
            at = job.schedule.previous_before(now)
            answer = server.fire(job, at)
            ticks[job.name] = (at, answer)
            tally.add(f"tick {job.name}", answer)
            _say_answer(say, f"{job.name} @ {rfc3339(at)}", answer)

        # Flow control at work: the batched events' batch closed and launched, and a tick that
        # comes while its rule's previous run is still running skipped (max_running).
        flow = FlowResults()
        close_batches(server, flow, timeout, say)
        for what, answer in skip_overlaps(
            server, ticks, flow, timeout, say, lambda label, a: _say_answer(say, label, a)
        ):
            tally.add(what, answer)
        tally.problems.extend(flow.problems)

        _drain_queues(server, tally, timeout, say)
        queued = Counter(
            r.status.value for r in server.app.ledger.list(limit=1000) if r.task is not None
        )
        records = server.emulator.store.records()
        say(f"\nWaiting for the {len(records)} executions to finish (each task is a process)...")
        started = time.monotonic()
        if not server.emulator.wait_idle(timeout):
            tally.problems.append(f"executions still running after {timeout:.0f}s")
        took = time.monotonic() - started
        say(f"  finished in {took:.1f}s; what task 0 of each was started with:")
        width = max((len(rec.short) for rec in records), default=0)
        for rec in server.emulator.store.records():
            tasks = f"{rec.machine.succeeded_count}/{rec.run.task_count} tasks"
            line = f"  {rec.short:<{width}}  {rec.state:<9}  {tasks}  {_task_args(rec.log_dir)}"
            say(line if len(line) <= 100 else line[:99] + "…")
            if rec.state != "succeeded":
                tally.problems.append(f"execution {rec.short} {rec.state}")
        flow.problems.clear()
        show_batches(server, flow, say)
        tally.problems.extend(flow.problems)

        from ..ops.history import table
        from ..ops.reconcile import reconcile

        # What `triggers reconcile` (in production: the scheduled reconciler) would record now,
        # so that the history agrees with the executions just shown.
        report = reconcile(server.app.ledger, server.app.runner)
        say(
            f"\nReconciled (`triggers reconcile`): {report.succeeded} succeeded,"
            f" {report.failed} failed, {report.cancelled} cancelled, {report.running} running"
        )
        if report.failed or report.cancelled or report.errors:
            tally.problems.append(f"reconcile: {report.as_dict()}")

        say("\nRun history (`triggers runs`):")
        for line in table(server.app.ledger.list(limit=100), width=98):
            say("  " + line)

        say(f"\nTask logs: {server.log_dir}/<execution>/task<index>-attempt<n>.log")
        order = ("launched", "batched", "duplicate", "matched no rule", "rejected", "retry")
        counts = ", ".join(
            f"{tally.outcomes[what]} {what}" for what in sorted(tally.outcomes, key=_rank(order))
        )
        # What the queue tasks did with the queued launches and the batches, after the events.
        later = [f"{n} {status}" for status, n in sorted(queued.items())]
        if flow.batches:
            later.append(f"{len(flow.batches)} batch launched")
        if later:
            counts += "; then from the queues: " + ", ".join(later)
        if tally.problems:
            say(f"Demo FAILED ({tally.requests} requests: {counts}):")
            for problem in tally.problems:
                say(f"  {problem}")
        else:
            say(
                f"Demo OK: {tally.requests} requests ({counts});"
                f" {len(records)} executions succeeded."
            )
    finally:
        server.stop()
        if keep:
            say(f"Kept {workdir}: triggers runs --sqlite-path {workdir / 'ledger.sqlite3'}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    return 1 if tally.problems else 0


def _drain_queues(
    server: LocalServer, tally: _Tally, timeout: float, say: Callable[[str], None]
) -> None:
    """Wait for the launches the events queued (flow control) and say what the queues did."""
    if not tally.outcomes.get("queued"):
        return
    tasks = server.emulator.tasks
    say(
        f"\nWaiting for the {tally.outcomes['queued']} queued launches (the emulator's Cloud"
        f" Tasks, {DEMO_TIME_SCALE:g}x time):"
    )
    if not tasks.wait_drained(timeout):
        tally.problems.append(f"queue tasks still pending after {timeout:.0f}s")
    answers = Counter(str(e["status"]) for e in tasks.dispatch_log())
    for queue in sorted({e["queueId"] for e in tasks.dispatch_log()}):
        entries = tasks.dispatch_log(queue)
        done = sum(1 for e in entries if e["status"] == 200)
        say(f"  {queue}: {len(entries)} callbacks, {done} done")
    say(f"  answers: {', '.join(f'{n}x {status}' for status, n in sorted(answers.items()))}")


def _why_nothing_matched(rules, request: send.Request) -> list[str]:
    """Each rule's reason for not matching the request's event, one short line per rule."""
    from ..errors import DecodeError
    from ..events import decode

    try:
        event = decode(request.headers, request.body)
    except DecodeError as exc:
        return [f"(not an event: {exc.reason})"]
    # The rules for other event types say nothing useful ("type: ... is not ..."): name the
    # type once, and give each rule of this type its first failing field.
    lines = []
    for verdict in rules.verdicts(event):
        if verdict.reason and not verdict.reason.startswith("type: "):
            lines.append(f"{verdict.rule.name}: {verdict.reason}")
    if not lines:
        lines.append(f"no rule takes {event.type} events")
    return [line if len(line) <= 52 else line[:51] + "…" for line in lines]


def _rank(order: tuple[str, ...]) -> Callable[[str], int]:
    return lambda name: order.index(name) if name in order else len(order)


def _task_args(log_dir: Path) -> str:
    """The `args: [...]` line the sample job prints first (config/jobs/echo_job.py)."""
    try:
        text = (Path(log_dir) / "task0-attempt0.log").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return next((line for line in text.splitlines() if line.startswith("args: ")), "")


def _say_answer(say: Callable[[str], None], label: str, answer: send.Answer) -> None:
    first, *rest = send.describe(answer)
    say(f"  {label}  {first}")
    for line in rest:
        say(f"  {' ' * len(label)}{line}")
