"""The live state of the Cloud Tasks emulator: queues, tasks, recently used task names, the
dispatch log, and the dispatcher thread that sends tasks to their targets.

One lock (a Condition) guards everything; the dispatcher waits on it for the next thing due (a
scheduleTime reached, a token back in a bucket) or for a change (a new task, an attempt done).
Each attempt runs in its own thread, so a target that holds a request holds only that one.

Clocks: scheduleTime is on the real (wall) clock; rates, backoffs and maxRetryDuration are on the
emulator's clock (``pacing.ScaledClock``), F times faster with a time scale F; dispatch deadlines
and the tombstone period are real seconds.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..rpc import ApiError, timestamp
from .delivery import Outcome, build_headers, send
from .pacing import ScaledClock, TokenBucket
from .resources import Attempt, Queue, TaskState

log = logging.getLogger("triggers.emulators")

DEFAULT_TOMBSTONE_SECONDS = 3600.0  # Cloud Tasks: about an hour, sometimes days
MAX_LOG_ENTRIES = 200_000
_RPC_OK, _RPC_UNAVAILABLE = 0, 14


def _epoch(dt: datetime) -> float:
    return dt.timestamp()


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


class TasksStore:
    """Queues and tasks, as the API handlers (api.py) and the dispatcher share them."""

    def __init__(
        self,
        time_scale: float = 1.0,
        tombstone_seconds: float = DEFAULT_TOMBSTONE_SECONDS,
        sender: Callable[[Any, dict[str, str], float], Outcome] = send,
    ) -> None:
        self.clock = ScaledClock(time_scale, time.monotonic(), time.time())
        self.tombstone_seconds = tombstone_seconds
        self._send = sender
        self._cond = threading.Condition()
        self._queues: dict[str, Queue] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._tasks: dict[str, dict[str, TaskState]] = {}
        self._heaps: dict[str, list[tuple[float, int, str, int]]] = {}
        self._versions: dict[str, int] = {}
        self._forced: list[str] = []
        self._in_flight: collections.Counter[str] = collections.Counter()
        self._tombstones: dict[str, float] = {}  # task name -> real monotonic expiry
        self._log: collections.deque[dict[str, Any]] = collections.deque(maxlen=MAX_LOG_ENTRIES)
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        self._stopping = False

    # ------------------------------------------------------------------ queues

    def add_queue(self, queue: Queue) -> Queue:
        with self._cond:
            if queue.name in self._queues:
                raise ApiError(409, "Requested entity already exists", "ALREADY_EXISTS")
            self._queues[queue.name] = queue
            self._tasks[queue.name] = {}
            self._heaps[queue.name] = []
            self._buckets[queue.name] = TokenBucket.full(
                queue.max_dispatches_per_second, queue.max_burst_size, self._now_emulated()
            )
            return queue

    def queue(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise ApiError(404, f"Queue does not exist. (queue: {name})", "NOT_FOUND")
        return queue

    def update_queue(self, name: str, change: Callable[[Queue], None]) -> Queue:
        """Apply ``change`` to a copy of the queue; commit only if it raised nothing."""
        with self._cond:
            current = self.queue(name)
            updated = Queue(**vars(current))
            change(updated)
            self._queues[name] = updated
            self._buckets[name].reconfigure(
                updated.max_dispatches_per_second, updated.max_burst_size, self._now_emulated()
            )
            self._cond.notify_all()
            return updated

    def queues(self, parent: str) -> list[Queue]:
        with self._cond:
            return sorted(
                (q for n, q in self._queues.items() if n.startswith(parent + "/queues/")),
                key=lambda q: q.name,
            )

    def delete_queue(self, name: str) -> None:
        with self._cond:
            self.queue(name)
            for key in (self._queues, self._tasks, self._heaps, self._buckets):
                key.pop(name, None)
            self._cond.notify_all()

    def purge(self, name: str) -> Queue:
        with self._cond:
            queue = self.queue(name)
            for task_name in list(self._tasks[name]):
                self._forget(task_name)
            self._heaps[name].clear()
            queue.purge_time = datetime.now(UTC)
            self._cond.notify_all()
            return queue

    def set_state(self, name: str, state: str) -> Queue:
        with self._cond:
            queue = self.queue(name)
            queue.state = state
            self._cond.notify_all()
            return queue

    # ------------------------------------------------------------------ tasks

    def add_task(self, task: TaskState) -> TaskState:
        with self._cond:
            tasks = self._tasks.get(task.queue_name)
            if tasks is None:
                self.queue(task.queue_name)
                raise AssertionError("unreachable")
            if task.name in tasks:
                raise ApiError(409, "Requested entity already exists", "ALREADY_EXISTS")
            expiry = self._tombstones.get(task.name)
            if expiry is not None and expiry > time.monotonic():
                raise ApiError(
                    409,
                    "The task cannot be created because a task with this name existed too"
                    " recently.",
                    "ALREADY_EXISTS",
                )
            tasks[task.name] = task
            self._schedule(task)
            self._ensure_dispatcher()
            return task

    def task(self, name: str) -> TaskState:
        queue_name = name.rsplit("/tasks/", 1)[0]
        task = self._tasks.get(queue_name, {}).get(name)
        if task is None:
            if queue_name not in self._queues:
                self.queue(queue_name)
            raise ApiError(404, f"The task no longer exists. (task: {name})", "NOT_FOUND")
        return task

    def tasks(self, queue_name: str) -> list[TaskState]:
        with self._cond:
            self.queue(queue_name)
            return sorted(self._tasks[queue_name].values(), key=lambda t: t.schedule_time)

    def delete_task(self, name: str) -> None:
        with self._cond:
            self.task(name)
            self._forget(name)
            self._cond.notify_all()

    def run_task(self, name: str) -> TaskState:
        """RunTask: dispatch now, ignoring the rate limits and a paused queue."""
        with self._cond:
            task = self.task(name)
            if not task.in_flight:
                task.forced = True
                self._forced.append(name)
                self._ensure_dispatcher()
                self._cond.notify_all()
            return task

    def _schedule(self, task: TaskState) -> None:
        version = self._versions[task.name] = self._versions.get(task.name, 0) + 1
        heap = self._heaps[task.queue_name]
        heapq.heappush(heap, (_epoch(task.schedule_time), next(self._seq), task.name, version))
        self._cond.notify_all()

    def _forget(self, name: str) -> None:
        """Remove a task and keep its name from being reused for the tombstone period."""
        queue_name = name.rsplit("/tasks/", 1)[0]
        self._tasks.get(queue_name, {}).pop(name, None)
        self._versions.pop(name, None)
        now = time.monotonic()
        self._tombstones[name] = now + self.tombstone_seconds
        if len(self._tombstones) > 10_000:  # drop the expired ones now and then
            self._tombstones = {n: e for n, e in self._tombstones.items() if e > now}

    # ------------------------------------------------------------------ controls

    def dispatch_log(self, queue: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(e) for e in self._log if queue in (None, e["queue"], e["queueId"])]

    def pending(self, queue: str | None = None) -> int:
        """Tasks not yet done (scheduled, waiting or in flight) in one queue or all of them."""
        with self._cond:
            return sum(
                len(tasks)
                for name, tasks in self._tasks.items()
                if queue in (None, name, name.rsplit("/", 1)[-1])
            )

    def wait_drained(self, timeout: float, queue: str | None = None) -> bool:
        """Wait (real seconds) until no task is left, in ``queue`` or anywhere."""
        with self._cond:
            return self._cond.wait_for(lambda: self.pending(queue) == 0, timeout)

    def summary(self) -> dict[str, Any]:
        with self._cond:
            return {
                "timeScale": self.clock.scale,
                "emulatorTime": timestamp(_at(self.clock.epoch(time.monotonic()))),
                "queues": [
                    {
                        "name": name,
                        "state": q.state,
                        "tasks": len(self._tasks[name]),
                        "inFlight": self._in_flight[name],
                    }
                    for name, q in sorted(self._queues.items())
                ],
            }

    def reset(self) -> None:
        with self._cond:
            for registry in (self._queues, self._buckets, self._tasks, self._heaps):
                registry.clear()
            self._versions.clear()
            self._forced.clear()
            self._tombstones.clear()
            self._log.clear()
            self._cond.notify_all()

    def shutdown(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            thread, workers = self._thread, list(self._workers)
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:  # attempts end by their dispatch deadline at the latest
            worker.join(max(0.0, deadline - time.monotonic()))

    # ------------------------------------------------------------------ dispatcher

    def _now_emulated(self) -> float:
        return self.clock.elapsed(time.monotonic())

    def _ensure_dispatcher(self) -> None:
        if self._thread is None and not self._stopping:
            self._thread = threading.Thread(
                target=self._run, name="cloud-tasks-dispatcher", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        with self._cond:
            while not self._stopping:
                wait = self._dispatch_due()
                self._cond.wait(wait)

    def _dispatch_due(self) -> float | None:
        """Start every attempt that is due and allowed; the real seconds until the next one
        could be (None: nothing until something changes)."""
        now = time.time()
        emulated = self._now_emulated()
        wake: float | None = None
        forced, self._forced = self._forced, []
        for name in forced:
            task = self._tasks.get(name.rsplit("/tasks/", 1)[0], {}).get(name)
            if task is not None and task.forced and not task.in_flight:
                self._start(task, emulated)
        for queue_name, heap in self._heaps.items():
            queue, tasks = self._queues[queue_name], self._tasks[queue_name]
            while heap:
                ready_at, _, name, version = heap[0]
                task = tasks.get(name)
                if task is None or task.in_flight or self._versions.get(name) != version:
                    heapq.heappop(heap)  # stale: done, deleted, running or rescheduled
                    continue
                if ready_at > now:
                    wake = _earliest(wake, ready_at - now)
                    break
                if queue.state != "RUNNING":
                    break
                if self._in_flight[queue_name] >= queue.max_concurrent_dispatches:
                    break  # an attempt's end wakes us
                bucket = self._buckets[queue_name]
                if not bucket.take(emulated):
                    wake = _earliest(wake, self.clock.real_seconds(bucket.wait(emulated)))
                    break
                heapq.heappop(heap)
                self._start(task, emulated)
        return wake

    def _start(self, task: TaskState, emulated: float) -> None:
        queue_name = task.queue_name
        now = time.time()
        task.in_flight, task.forced = True, False
        task.dispatch_count += 1
        attempt = Attempt(schedule_time=task.schedule_time, dispatch_time=_at(now))
        if task.first_attempt is None:
            task.first_attempt, task.first_attempt_elapsed = attempt, emulated
        task.last_attempt = attempt
        self._in_flight[queue_name] += 1
        headers = build_headers(
            task.request,
            queue_id=queue_name.rsplit("/", 1)[-1],
            task_id=task.short_id,
            retry_count=task.dispatch_count - 1,
            execution_count=task.execution_count,
            eta=_epoch(task.schedule_time),
            previous_response=task.previous_response,
            now=now,
        )
        entry: dict[str, Any] = {
            "queue": queue_name,
            "queueId": queue_name.rsplit("/", 1)[-1],
            "task": task.short_id,
            "attempt": task.dispatch_count,
            "elapsed": emulated,
            "time": timestamp(_at(self.clock.wall_start + emulated)),
            "realTime": timestamp(_at(now)),
            "status": None,
            "error": "",
        }
        self._log.append(entry)
        worker = threading.Thread(
            target=self._attempt,
            args=(task, headers, entry),
            name=f"cloud-tasks-attempt-{task.short_id[:40]}",
            daemon=True,
        )
        self._workers.add(worker)
        worker.start()

    def _attempt(self, task: TaskState, headers: dict[str, str], entry: dict[str, Any]) -> None:
        outcome = self._send(task.request, headers, task.dispatch_deadline)
        with self._cond:
            self._workers.discard(threading.current_thread())
            self._finish(task, outcome, entry)
            self._cond.notify_all()

    def _finish(self, task: TaskState, outcome: Outcome, entry: dict[str, Any]) -> None:
        queue_name = task.queue_name
        self._in_flight[queue_name] -= 1
        entry["status"], entry["error"] = outcome.status, outcome.error
        if outcome.retry_after is not None:
            entry["retryAfter"] = outcome.retry_after
        task.in_flight = False
        if self._tasks.get(queue_name, {}).get(task.name) is not task:
            return  # deleted or purged while it ran
        attempt = task.last_attempt
        assert attempt is not None
        attempt.response_time = datetime.now(UTC)
        if outcome.status is None:
            attempt.status_code, attempt.message = _RPC_UNAVAILABLE, outcome.error
        else:
            task.response_count += 1
            attempt.status_code = _RPC_OK if outcome.succeeded else _http_to_rpc(outcome.status)
            attempt.message = f"HTTP {outcome.status}"
            task.previous_response = outcome.status
            if outcome.status < 500:
                task.execution_count += 1
        if outcome.succeeded:
            self._forget(task.name)
            return
        queue = self._queues[queue_name]
        emulated = self._now_emulated()
        since_first = emulated - (task.first_attempt_elapsed or emulated)
        if queue.retry.exhausted(task.dispatch_count, since_first):
            log.info("task %s: giving up after %d attempts", task.name, task.dispatch_count)
            self._forget(task.name)
            return
        delay = self.clock.real_seconds(queue.retry.backoff(task.dispatch_count))
        task.schedule_time = _at(time.time() + delay)
        self._schedule(task)


def _earliest(current: float | None, candidate: float) -> float:
    candidate = max(candidate, 0.0005)  # a token due "now" by float rounding: do not spin
    return candidate if current is None else min(current, candidate)


def _http_to_rpc(status: int) -> int:
    """google.rpc.Code of an HTTP answer, for lastAttempt.responseStatus."""
    codes = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1, 501: 12, 503: 14, 504: 4}
    if status in codes:
        return codes[status]
    return 13 if status >= 500 else 9


def new_task_id() -> str:
    """A generated task id: a long decimal number, as Cloud Tasks makes them."""
    return str(random.randrange(10**18, 10**19))
