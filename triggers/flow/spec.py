"""What a rule's `limits:` and `batch:` say, compiled: pure, frozen values.

The rules schema (triggers/rules/schema.py) validates what users write; these are what the
dispatcher, the task handler and the Terraform export read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# Cloud Tasks queue ids: letters, digits and hyphens, at most 100 characters.
MAX_QUEUE_ID = 100


class WhenBusy(str, enum.Enum):
    """What a launch does when `max_running` executions of the job are running."""

    QUEUE = "queue"  # wait (the task is retried with backoff) up to `max_wait`
    SKIP = "skip"  # record `skipped` and drop this launch
    REPLACE = "replace"  # cancel the running executions, then launch


@dataclass(frozen=True, slots=True)
class Limits:
    queue: str  # Cloud Tasks queue id this rule's launches go through
    rate_per_second: float | None = None  # the queue's maxDispatchesPerSecond
    max_running: int | None = None  # executions of the job running at once
    when_busy: WhenBusy = WhenBusy.QUEUE
    max_wait_seconds: int = 3600  # `queue`: give up (reject, dead-letter) after this


@dataclass(frozen=True, slots=True)
class Batching:
    window_seconds: int  # a batch closes this long after its first member...
    max_events: int  # ...or when it has this many members
    per_task: int  # task_count = ceil(members / per_task), at most 10,000
    # The event fields each manifest member keeps (dotted paths); None: the whole event.
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Flow:
    """A rule's flow control. `limits` is always set (a batched rule without `limits:` gets its
    own queue with no rate); `batch` only for batched rules."""

    limits: Limits
    batch: Batching | None = None
