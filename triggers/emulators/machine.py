"""The state machine of one execution's tasks: pure, no clocks, no processes, no threads.

The caller tells it what happened (``start``, ``finished``, ``cancel``) and it answers with what
to do next: which task attempts to launch, which running ones to kill. It decides the counts the
Execution resource reports and the execution's outcome.

Rules (as the Cloud Run service behaves, as far as its documents and observed output show):

* at most ``parallelism`` attempts run at once (0 = all tasks at once); tasks start in index order;
* a failed attempt (non-zero exit or timeout) is retried with ``attempt + 1`` while
  ``attempt < max_retries``; each retry adds one to ``retried_count``; a retry takes the freed
  slot before any task that has not started yet;
* a task that fails its last attempt is *failed*; from then on nothing new starts: tasks that
  never started are *cancelled*, running attempts finish, and a running attempt that fails then
  is not retried; the execution ends *failed*;
* ``cancel`` cancels every task that has not finished: pending ones at once, running ones when
  their process is gone; the execution ends *cancelled* (tasks that had succeeded stay counted).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class TaskStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class AttemptResult(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # non-zero exit, or could not start
    TIMEOUT = "timeout"  # killed at the task timeout
    CANCELLED = "cancelled"  # killed because the execution was cancelled


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Launch:
    """Start attempt ``attempt`` (0-based, ``CLOUD_RUN_TASK_ATTEMPT``) of task ``index``."""

    index: int
    attempt: int


@dataclass(slots=True)
class TaskState:
    index: int
    status: TaskStatus = TaskStatus.PENDING
    attempt: int = -1  # the last attempt launched; -1 before the first
    retries: int = 0
    last_result: AttemptResult | None = None


@dataclass
class ExecutionMachine:
    task_count: int
    parallelism: int = 0
    max_retries: int = 3
    tasks: list[TaskState] = field(init=False)
    started: bool = field(default=False, init=False)
    cancel_requested: bool = field(default=False, init=False)
    failing: bool = field(default=False, init=False)
    first_failure: tuple[int, AttemptResult] | None = field(default=None, init=False)
    _queue: deque[int] = field(init=False)  # task indexes waiting for a slot (retries first)

    def __post_init__(self) -> None:
        if self.task_count < 1:
            raise ValueError("task_count must be at least 1")
        if self.parallelism < 0 or self.max_retries < 0:
            raise ValueError("parallelism and max_retries must not be negative")
        self.tasks = [TaskState(i) for i in range(self.task_count)]
        self._queue = deque(range(self.task_count))

    # ------------------------------------------------------------------ derived values

    @property
    def slots(self) -> int:
        """How many attempts may run at once."""
        if self.parallelism <= 0:
            return self.task_count
        return min(self.parallelism, self.task_count)

    def _count(self, status: TaskStatus) -> int:
        return sum(1 for t in self.tasks if t.status is status)

    @property
    def running_count(self) -> int:
        return self._count(TaskStatus.RUNNING)

    @property
    def succeeded_count(self) -> int:
        return self._count(TaskStatus.SUCCEEDED)

    @property
    def failed_count(self) -> int:
        return self._count(TaskStatus.FAILED)

    @property
    def cancelled_count(self) -> int:
        return self._count(TaskStatus.CANCELLED)

    @property
    def retried_count(self) -> int:
        return sum(t.retries for t in self.tasks)

    @property
    def done(self) -> bool:
        return (
            self.started
            and all(t.status not in (TaskStatus.PENDING, TaskStatus.RUNNING) for t in self.tasks)
            or (self.cancel_requested and not self.started)
        )

    @property
    def outcome(self) -> Outcome | None:
        if not self.done:
            return None
        if self.cancel_requested:
            return Outcome.CANCELLED
        if self.failed_count:
            return Outcome.FAILED
        return Outcome.SUCCEEDED

    def running(self) -> list[Launch]:
        return [Launch(t.index, t.attempt) for t in self.tasks if t.status is TaskStatus.RUNNING]

    # ------------------------------------------------------------------ transitions

    def start(self) -> list[Launch]:
        """Begin the execution; returns the first attempts to launch."""
        if self.started:
            raise RuntimeError("execution already started")
        if self.cancel_requested:
            return []
        self.started = True
        return self._fill()

    def finished(self, index: int, attempt: int, result: AttemptResult) -> list[Launch]:
        """Attempt ``attempt`` of task ``index`` ended with ``result``; returns launches."""
        task = self.tasks[index]
        if task.status is not TaskStatus.RUNNING or task.attempt != attempt:
            raise RuntimeError(f"task {index} attempt {attempt} is not running")
        result = AttemptResult(result)
        task.last_result = result
        if result is AttemptResult.SUCCEEDED:
            task.status = TaskStatus.SUCCEEDED
        elif self.cancel_requested or result is AttemptResult.CANCELLED:
            task.status = TaskStatus.CANCELLED
        elif task.attempt < self.max_retries and not self.failing:
            task.status = TaskStatus.PENDING
            task.retries += 1
            self._queue.appendleft(index)
        else:
            task.status = TaskStatus.FAILED
            if not self.failing:
                self.failing = True
                self.first_failure = (index, result)
                self._cancel_pending()
        return self._fill()

    def cancel(self) -> list[Launch]:
        """Cancel the execution; returns the running attempts to kill (they report CANCELLED)."""
        if self.done:
            return []
        self.cancel_requested = True
        self._cancel_pending()
        return self.running()

    # ------------------------------------------------------------------ internals

    def _cancel_pending(self) -> None:
        for t in self.tasks:
            if t.status is TaskStatus.PENDING:
                t.status = TaskStatus.CANCELLED
        self._queue.clear()

    def _fill(self) -> list[Launch]:
        if not self.started or self.cancel_requested or self.failing:
            return []
        launches = []
        free = self.slots - self.running_count
        while free > 0 and self._queue:
            task = self.tasks[self._queue.popleft()]
            task.status = TaskStatus.RUNNING
            task.attempt += 1
            launches.append(Launch(task.index, task.attempt))
            free -= 1
        return launches
