"""The local Cloud Scheduler: fires the rules' cron schedules at the function, on time.

Each rule that owns a schedule (`schedule:`) is one Scheduler job, as the Terraform module
creates it; at each fire time the clock posts exactly the request a Scheduler HTTP target sends.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..rules.schedule import Schedule, ScheduleError, rfc3339
from . import send

log = logging.getLogger("triggers.local.clock")


@dataclass(frozen=True)
class ScheduledJob:
    """One Cloud Scheduler job as the Terraform module creates it: a name, a schedule, the
    rules whose ticks it sends."""

    name: str
    schedule: Schedule
    rules: tuple[str, ...]


def scheduled_jobs(rules: Iterable[Any]) -> tuple[list[ScheduledJob], list[str]]:
    """The Scheduler jobs the enabled rules own (those with a `schedule`), and notes about the
    scheduler rules that get no clock."""
    jobs: dict[str, ScheduledJob] = {}
    notes: list[str] = []
    for rule in rules:
        spec = rule.spec
        if not spec.enabled or not any(on.split(".")[0] == "scheduler" for on in spec.on):
            continue
        if spec.schedule is None:
            notes.append(
                f"rule {rule.name}: no schedule, so no clock"
                f" (send its ticks with `triggers send scheduler --job NAME`)"
            )
            continue
        name = spec.scheduler_job or rule.name
        try:
            schedule = Schedule(spec.schedule, spec.time_zone)
        except ScheduleError as exc:
            notes.append(f"rule {rule.name}: not clocked: {exc}")
            continue
        known = jobs.get(name)
        if known is None:
            jobs[name] = ScheduledJob(name, schedule, (rule.name,))
        elif known.schedule == schedule:
            jobs[name] = ScheduledJob(name, schedule, known.rules + (rule.name,))
        else:
            # One Scheduler job has one schedule: the real module could not create both.
            notes.append(
                f"rule {rule.name}: Scheduler job {name} already has schedule"
                f" {known.schedule.cron!r} (rule {known.rules[0]}); this rule's is ignored"
            )
    return list(jobs.values()), notes


def offset_clock(start: datetime) -> Callable[[], datetime]:
    """A clock that reads `start` now and runs at real speed from there."""
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


def utcnow() -> datetime:
    return datetime.now(UTC)


class SchedulerClock:
    """Fires each Scheduler job at its schedule's times, on a thread, by calling `fire(job, at)`.

    It does not catch up: after the process was suspended over several fire times, only the
    latest of them is fired (a laptop waking up should not start a burst of runs).
    """

    # Sleep at most this long at a time: the wall clock may jump (suspend, NTP) while we sleep.
    MAX_SLEEP = 30.0

    def __init__(
        self,
        jobs: Iterable[ScheduledJob],
        fire: Callable[[ScheduledJob, datetime], Any],
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.jobs = list(jobs)
        self.now = now
        self._fire = fire
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next: dict[str, datetime] = {}

    def upcoming(self) -> list[tuple[ScheduledJob, datetime]]:
        """Each job and its next fire time, soonest first."""
        now = self.now()
        pairs = [
            (job, self._next.get(job.name) or job.schedule.next_after(now)) for job in self.jobs
        ]
        return sorted(pairs, key=lambda pair: pair[1])

    def start(self) -> SchedulerClock:
        if self._thread is not None or not self.jobs:
            return self
        now = self.now()
        self._next = {job.name: job.schedule.next_after(now) for job in self.jobs}
        self._thread = threading.Thread(target=self._run, name="scheduler-clock", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        by_name = {job.name: job for job in self.jobs}
        while not self._stop.is_set():
            name, due = min(self._next.items(), key=lambda item: item[1])
            delay = (due - self.now()).total_seconds()
            if delay > 0:
                self._stop.wait(min(delay, self.MAX_SLEEP))
                continue
            job = by_name[name]
            # Late by more than a tick (the process was suspended): send only the latest one.
            due = job.schedule.previous_before(self.now())
            try:
                self._fire(job, due)
            except send.Unreachable as exc:  # the server is stopping
                log.warning("could not fire %s for %s: %s", name, rfc3339(due), exc)
            except Exception:  # a failed tick must not stop the clock; like a Scheduler job
                log.exception("firing %s for %s failed", name, rfc3339(due))  # without retries
            self._next[name] = job.schedule.next_after(max(due, self.now()))
            log.info("%s fires next at %s", name, rfc3339(self._next[name]))
