"""Names of Cloud Tasks queues and tasks, derived from the rules and the ledger: pure.

Task names are how Cloud Tasks deduplicates (a second `createTask` of a name answers
ALREADY_EXISTS), so they are built from what is already unique and exactly-once in triggers:
the ledger key of a launch, the id of a batch. Queue ids default to one queue per rule; the
Terraform module (terraform/rules.tf) derives the same default in HCL, and
tests/unit/test_terraform_flow.py holds the two to each other.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from .spec import MAX_QUEUE_ID

# Cloud Tasks queue ids: letters, digits and hyphens, 1 to 100 characters.
QUEUE_ID = re.compile(rf"[A-Za-z0-9-]{{1,{MAX_QUEUE_ID}}}")
# Cloud Tasks task ids: letters, digits, hyphens and underscores, 1 to 500 characters.
MAX_TASK_ID = 500
TASK_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_TASK_ID}}}")

DEFAULT_QUEUE_PREFIX = "triggers-"
LAUNCH_PREFIX = "l-"  # {"kind": "launch"}: one task per ledger key
BATCH_PREFIX = "b-"  # {"kind": "batch"}: the window timer of a batch, due at the window's end
SEALED_PREFIX = "s-"  # {"kind": "batch"}: a batch sealed early (max_events reached)

# Ledger keys are sha256 hex digests (triggers/ledger/base.py).
_LEDGER_KEY = re.compile(r"[0-9a-f]{64}")
_HASH_CHARS = 8


class InvalidName(ValueError):
    """A queue id or task name Cloud Tasks would refuse."""


def is_queue_id(value: str) -> bool:
    return QUEUE_ID.fullmatch(value) is not None


def default_queue_id(rule_name: str) -> str:
    """`triggers-<rule name>`, with `_` (which queue ids cannot hold) as `-`. Rule names (at
    most 63 characters) always fit; a longer name would be cut and given a hash of the whole,
    so that two long names sharing a beginning still get two queues."""
    queue = DEFAULT_QUEUE_PREFIX + re.sub(r"[^A-Za-z0-9-]", "-", rule_name)
    if len(queue) <= MAX_QUEUE_ID:
        return queue
    digest = hashlib.sha256(rule_name.encode()).hexdigest()[:_HASH_CHARS]
    return f"{queue[: MAX_QUEUE_ID - _HASH_CHARS - 1]}-{digest}"


def launch_task_name(ledger_key: str, claimed_at: datetime) -> str:
    """The task that launches the run recorded under `ledger_key`, first claimed at
    `claimed_at`: `l-<ledger key>-<claimed at, ms>`.

    One task per occurrence of a (rule, dedup key): a second enqueue for the same record (a
    redelivery taking over a crashed claim keeps `created_at`) is ALREADY_EXISTS, while a new
    occurrence after the dedup window (a fresh record, a new `created_at`) gets a new name;
    Cloud Tasks refuses a name for up to an hour after its task ran, which a bare ledger key
    would run into.
    """
    if not _LEDGER_KEY.fullmatch(ledger_key):
        raise InvalidName(f"ledger key {ledger_key!r} is not a sha256 hex digest")
    return f"{LAUNCH_PREFIX}{ledger_key}-{int(claimed_at.timestamp() * 1000)}"


def batch_task_name(batch_id: str, *, sealed: bool = False) -> str:
    """The task that closes batch `batch_id`: `b-<id>` (the window's timer) or `s-<id>`
    (sealed early, when it reached max_events). Two names, so that sealing early never
    collides with the timer that already exists."""
    name = (SEALED_PREFIX if sealed else BATCH_PREFIX) + batch_id
    if not batch_id or not TASK_ID.fullmatch(name):
        raise InvalidName(
            f"batch id {batch_id!r} cannot name a task: letters, digits, '-' and '_' only,"
            f" at most {MAX_TASK_ID - len(BATCH_PREFIX)} characters"
        )
    return name


def task_id(task_name: str) -> str:
    """The id of a task given by id or by full name (projects/P/locations/L/queues/Q/tasks/T),
    as the X-CloudTasks-TaskName header and the API's answers carry either."""
    return task_name.rsplit("/", 1)[-1]
