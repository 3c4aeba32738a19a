"""Run history: the ledger's records as a table for people or as JSON for tools.

    records = ledger.list(rule="csv-ingest", since=parse_since("1h", now), limit=50)
    print("\n".join(table(records, width=100)))

One line per (rule, event): when it was decided, the rule, the ledger status, the execution it
started (its short name), how many claims it took and how many duplicates it absorbed, and the
event's id; a record with a reason (a rejection, a retry) gets it on a second, indented line.
Times are UTC, like everything the ledger, Scheduler and Cloud Logging write.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable, Sequence

from .ledger.base import Record, Status

DEFAULT_WIDTH = 100
_AGO = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Columns in order: (title, right-aligned, the least width it may be squeezed to, which end of
# a value too long is kept: the head of a name, the tail of an id, where ids differ: a
# Scheduler tick's id ends with its time, an execution's name with its random suffix).
_COLUMNS = (
    ("CREATED (UTC)", False, 14, "head"),
    ("RULE", False, 8, "head"),
    ("STATUS", False, 9, "head"),
    ("EXECUTION", False, 10, "tail"),
    ("ATT", True, 3, "head"),
    ("DUP", True, 3, "head"),
    ("UPDATED", True, 7, "head"),
    ("EVENT", False, 8, "tail"),
)
# When the table is too wide, these give: the rule, the execution and the event id.
_SQUEEZABLE = (1, 3, 7)
_EVENT = 7
_EVENT_SOFT_FLOOR = 13  # "…21T01:00:00Z"
_GAP = "  "


def parse_since(text: str, now: datetime) -> datetime:
    """`90s`, `15m`, `1h`, `2d`, `1w` before `now`, or an ISO time (UTC when it has no offset)."""
    ago = _AGO.match(text)
    if ago:
        return now - timedelta(**{_UNITS[ago.group(2).lower()]: int(ago.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--since {text!r}: use a duration before now (30m, 1h, 2d, 1w) or an ISO time"
            " (2026-11-21T10:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_statuses(values: Iterable[str]) -> list[Status]:
    """`--status launched,rejected --status failed` -> the Status values; unknown ones fail."""
    statuses = []
    for value in values:
        for name in filter(None, (part.strip().lower() for part in value.split(","))):
            try:
                statuses.append(Status(name))
            except ValueError:
                known = ", ".join(s.value for s in Status)
                raise ValueError(f"--status {name!r}: use one of {known}") from None
    return statuses


def as_json(record: Record) -> dict[str, Any]:
    """A record for `--json`: times in ISO 8601, without the claim token and the event copy."""
    out = record.as_dict()
    for name in ("token", "event_document", "lease_until"):
        out.pop(name, None)
    for name, value in out.items():
        if isinstance(value, datetime):
            out[name] = value.isoformat()
    return out


def table(records: Sequence[Record], *, width: int = DEFAULT_WIDTH) -> list[str]:
    """The records as aligned lines that fit in `width` columns (header first)."""
    if not records:
        return ["no runs recorded"]
    rows = [_cells(record) for record in records]
    widths = [
        max(len(column[0]), *(len(row[i]) for row in rows)) for i, column in enumerate(_COLUMNS)
    ]
    _squeeze(widths, width)
    lines = [_line([column[0] for column in _COLUMNS], widths)]
    for record, row in zip(records, rows):
        lines.append(_line(row, widths))
        if record.reason:
            indent = " " * (widths[0] + len(_GAP))
            lines.append(indent + _fit(record.reason, width - len(indent), "head"))
    return lines


def _cells(record: Record) -> list[str]:
    event_id = record.event.get("id") if isinstance(record.event, dict) else None
    return [
        _utc(record.created_at).strftime("%m-%d %H:%M:%S"),
        record.rule,
        record.status.value if isinstance(record.status, Status) else str(record.status),
        record.execution.rsplit("/", 1)[-1] if record.execution else "-",
        str(record.attempts),
        str(record.duplicates),
        _after(record.created_at, record.updated_at),
        str(event_id) if event_id else "-",
    ]


def _after(created: datetime, updated: datetime) -> str:
    """How long after its creation a record last changed: `+0.3s`, `+42s`, `+5m`, `+2h`, `+3d`."""
    seconds = max((_utc(updated) - _utc(created)).total_seconds(), 0.0)
    if seconds < 10:
        return f"+{seconds:.1f}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"+{int(seconds // size)}{unit}"
    return f"+{int(seconds)}s"


def _squeeze(widths: list[int], width: int) -> None:
    """Narrow columns until the line fits: first the event id (its tail tells ticks and
    messages apart well enough), then always the widest squeezable column, down to its floor."""
    excess = sum(widths) + len(_GAP) * (len(widths) - 1) - width
    give = max(0, min(excess, widths[_EVENT] - _EVENT_SOFT_FLOOR))
    widths[_EVENT] -= give
    excess -= give
    floors = {i: max(_COLUMNS[i][2], len(_COLUMNS[i][0])) for i in _SQUEEZABLE}
    while excess > 0:
        wide = [i for i in _SQUEEZABLE if widths[i] > floors[i]]
        if not wide:
            return
        widest = max(wide, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    parts = []
    for (_, right, _, keep), cell, size in zip(_COLUMNS, cells, widths):
        cell = _fit(cell, size, keep)
        parts.append(cell.rjust(size) if right else cell.ljust(size))
    return _GAP.join(parts).rstrip()


def _fit(text: str, size: int, keep: str) -> str:
    """`text` cut to `size` characters, marked with an ellipsis, keeping its head or its tail."""
    if len(text) <= size:
        return text
    if size <= 1:
        return "…"[:size]
    return text[: size - 1] + "…" if keep == "head" else "…" + text[len(text) - size + 1 :]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
