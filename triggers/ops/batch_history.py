"""Batches in the run history: `triggers runs --batches` and the batch part of `triggers show`.

    print("\n".join(batch_table(store.list_batches(limit=50))))
    print("\n".join(batch_detail(store.get_batch(batch_id))))

A member's record says `batched` and names its batch; the batch names its execution (also
copied onto the members' records, best effort) and its own run record (`batch/<id>`). `show` of
either kind of record adds the batch, so both questions, "what ran my event" and "which events
did this execution get", are one command away. Pure functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC
from typing import Any

from ..flow.batching import BATCH_DEDUP_PREFIX, Batch
from ..ledger.base import Record

# `show` lists this many member keys of a batch, then how many more there are.
MEMBERS_SHOWN = 20
_LABEL = 13


def batch_of(record: Record) -> str | None:
    """The batch a record belongs to: the one a member joined, or the one a batch run ran."""
    if record.batch:
        return record.batch
    if record.dedup_key.startswith(BATCH_DEDUP_PREFIX):
        return record.dedup_key[len(BATCH_DEDUP_PREFIX) :]
    return None


def batch_json(batch: Batch) -> dict[str, Any]:
    document = batch.as_document()
    document.pop("token", None)
    for name in ("opened_at", "closes_at", "expire_at", "sealed_at"):
        if document.get(name) is not None:
            document[name] = document[name].astimezone(UTC).isoformat()
    return document


def batch_detail(batch: Batch, *, members_shown: int = MEMBERS_SHOWN) -> list[str]:
    lines = [
        _field("batch", batch.id),
        _field("rule", batch.rule),
        _field("key", repr(batch.key)),
        _field("status", batch.status.value),
        _field("opened", _stamp(batch.opened_at)),
        _field("closes", _stamp(batch.closes_at)),
        _field("sealed", _stamp(batch.sealed_at) if batch.sealed_at else "-"),
        _field("members", f"{len(batch.members)} (at most {batch.max_events})"),
        _field("execution", batch.execution or "-"),
        _field("task count", str(batch.task_count) if batch.task_count else "-"),
        _field("manifest", batch.manifest or "-"),
        _field("run record", batch.run or "-"),
    ]
    if batch.reason:
        lines.append(_field("reason", batch.reason))
    shown = batch.members[:members_shown]
    lines += ["", "members (join order)"] + [f"  {key}" for key in shown]
    if len(batch.members) > len(shown):
        lines.append(f"  ... and {len(batch.members) - len(shown)} more (--json lists them all)")
    return lines


_COLUMNS = ("OPENED (UTC)", "RULE", "KEY", "STATUS", "MEMBERS", "TASKS", "EXECUTION", "BATCH")


def batch_table(batches: Iterable[Batch]) -> list[str]:
    rows = [
        [
            batch.opened_at.astimezone(UTC).strftime("%m-%d %H:%M:%S"),
            batch.rule,
            batch.key or "-",
            batch.status.value,
            str(len(batch.members)),
            str(batch.task_count) if batch.task_count else "-",
            batch.execution.rsplit("/", 1)[-1] if batch.execution else "-",
            batch.id,
        ]
        for batch in batches
    ]
    if not rows:
        return ["no batches"]
    widths = [max(len(row[i]) for row in [list(_COLUMNS), *rows]) for i in range(len(_COLUMNS))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(_COLUMNS), *rows]
    ]


def _field(label: str, value: str) -> str:
    return f"{label.ljust(_LABEL - 1)} {value}".rstrip()


def _stamp(moment: Any) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
