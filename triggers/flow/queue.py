"""The queue seam: how the dispatcher hands a launch to Cloud Tasks (or to a test).

A task's name is its identity: creating a second task of the same name in a queue fails with
ALREADY_EXISTS (Cloud Tasks also refuses a name for a while after its task ran or was deleted),
so `enqueue` of a name that exists is not an error but `False`: one more dedup layer.

    TaskQueueError
      └─ QueueUnavailable      the queue could not be reached or refused for now (retry later)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# Where the function answers task callbacks (a path of the function's own URL).
TASK_PATH = "/_triggers/task"


class TaskQueueError(Exception):
    """A task could not be created, for a reason that is not its name already existing."""


class QueueUnavailable(TaskQueueError):
    """The queue API was unreachable, timed out, or answered 429/5xx: nothing is known to be
    created; the caller retries (the task name makes a second create harmless)."""


@dataclass(frozen=True, slots=True)
class Task:
    """One callback to the function: `body` is POSTed as JSON to the task target."""

    queue: str  # queue id (short), in the queue client's project and location
    name: str  # task id (short): [A-Za-z0-9_-]{1,500}
    body: dict[str, Any]
    schedule_time: datetime | None = None  # not before this (a batch window's end)


class TaskQueue(Protocol):
    def enqueue(self, task: Task) -> bool:
        """Create the task. True if created now; False if a task of this name exists or
        existed recently (ALREADY_EXISTS). Raises QueueUnavailable or TaskQueueError."""
        ...


@dataclass
class MemoryTaskQueue:
    """Tasks kept in a list, names deduplicated: for unit tests of the dispatcher."""

    tasks: list[Task] = field(default_factory=list)
    names: set[tuple[str, str]] = field(default_factory=set)

    def enqueue(self, task: Task) -> bool:
        key = (task.queue, task.name)
        if key in self.names:
            return False
        self.names.add(key)
        self.tasks.append(task)
        return True
