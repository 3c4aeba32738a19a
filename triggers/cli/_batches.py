"""close-batch: seal a batch now and queue its launch (docs/flow-control.md, "Batching")."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._common import add_rules_option
from ._history import add_ledger_options, close_ledger, open_ledger
from ._rules import load_rules


def add_close_batch(sub, rules_default: str) -> None:
    p = sub.add_parser(
        "close-batch",
        help="seal an open batch now and launch it, before its window ends",
        description="Seal BATCH now, before its window ends or it fills up, and queue its"
        " launch at once: the batch task a full batch gets, run by the deployed function."
        " Events that arrive later open the next batch. Uses the ledger and the Cloud Tasks"
        " settings the function uses (TRIGGERS_LEDGER, TRIGGERS_FIRESTORE_*,"
        " TRIGGERS_TASK_TARGET_URL, TRIGGERS_TASKS_*); `triggers runs --batches` lists the"
        " batch ids. Closing a batch twice, or one already launched, queues nothing more.",
    )
    p.add_argument("batch", metavar="BATCH", help="the batch id (`triggers runs --batches`)")
    add_rules_option(p, rules_default)
    add_ledger_options(p)
    p.add_argument("--json", action="store_true", help="the result as one JSON object")
    p.set_defaults(run=_close_batch)


def _close_batch(args: argparse.Namespace) -> int:
    from ..flow.batches import Batches
    from ..flow.queue import TaskQueueError
    from ..function.settings import Settings
    from ..function.tasks import FlowNotConfigured, build_task_queue
    from ..ledger.batchstore import batch_store_for

    rules = load_rules(args.config)
    if rules is None:
        return 1
    try:
        settings = Settings()
    except ValueError as exc:
        return _error(str(exc))
    ledger = open_ledger(args)
    if ledger is None:
        return 1
    try:
        batch = batch_store_for(ledger.backend).get_batch(args.batch)
        if batch is None:
            return _error(f"no batch {args.batch!r} in this ledger (`triggers runs --batches`)")
        rule = rules.get(batch.rule)
        if rule is None or rule.flow is None or rule.flow.batch is None:
            return _error(
                f"batch {batch.id} belongs to rule {batch.rule!r}, which is not a batched rule"
                " of these rules (-c/--config): the function that would launch it needs it too"
            )
        try:
            queue = build_task_queue(settings, rules)
        except FlowNotConfigured as exc:
            return _error(f"{exc}: the launch is handed to the function through Cloud Tasks")
        batcher = Batches.over(ledger, queue, manifest_bucket=settings.manifest_bucket)
        try:
            closed = batcher.close_now(batch.id, rule.flow.limits.queue)
        except TaskQueueError as exc:
            return _error(
                f"batch {batch.id} is sealed, but its launch could not be queued ({exc}); its"
                f" window timer launches it at {_time(batch.closes_at)}, or run this again"
            )
    finally:
        close_ledger(ledger)
    assert closed is not None  # it was there a moment ago, and batches are never deleted here
    now, queued = closed
    result = _result(now, queued, rule.flow.limits.queue)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(result["message"])
    return 1 if now.status.value == "rejected" else 0


def _result(batch: Any, queued: bool, queue: str) -> dict[str, Any]:
    members = len(batch.members)
    what = f"batch {batch.id} (rule {batch.rule}, {members} member{'s' * (members != 1)})"
    status = batch.status.value
    if status == "launched":
        message = f"{what} was launched already: {batch.execution}"
    elif status == "rejected":
        message = f"{what} was rejected: {batch.reason}"
    elif queued:
        message = f"{what} is sealed; its launch is queued on {queue} and runs now"
    else:
        message = (
            f"{what} is sealed; a launch task for it was queued on {queue} already"
            " (it filled up, or was closed before)"
        )
    return {
        "batch": batch.id,
        "rule": batch.rule,
        "status": status,
        "members": members,
        "queued": queued,
        "execution": batch.execution,
        "message": message,
    }


def _time(moment: Any) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2
