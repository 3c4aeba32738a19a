"""Run history: the ledger's records as a table for people or as JSON for tools.

    records = ledger.list(rule="csv-ingest", since=parse_since("1h", now), limit=50)
    print("\n".join(table(records, width=100)))
    print("\n".join(detail(ledger.find("3f2a9c1e"))))          # `triggers show`

One line per (rule, event): when it was decided, the rule, the ledger status, the execution it
started (its short name), how many claims it took and how many duplicates it absorbed, and the
event's id; a record with a reason (a rejection, a retry) gets it on a second, indented line.
With `keys=True` each line begins with the start of its ledger key (what `triggers show`
takes). `detail` is one record in full.
Times are UTC, like everything the ledger, Scheduler and Cloud Logging write.

Pure functions: no I/O, no clock (callers pass `now`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ..ledger.base import INPUT_RULE, Record, Status

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
_STATUS = 2
#: ANSI SGR colours of the statuses, for `triggers runs` on a terminal (NO_COLOR turns them off).
STATUS_COLOURS = {
    "succeeded": "32",  # green
    "launched": "36",  # cyan
    "claimed": "35",  # magenta: in flight
    "released": "33",  # yellow: will be retried
    "cancelled": "33",
    "failed": "31",  # red
    "rejected": "31",
}
# When the table is too wide, these give: the rule, the execution and the event id.
_SQUEEZABLE = (1, 3, 7)
_EVENT = 7
# With keys=True: how much of the key each line begins with (`triggers show` takes any prefix
# of 8 or more characters).
KEY_CHARS = 8
_EVENT_SOFT_FLOOR = 13  # "…21T01:00:00Z"
_GAP = "  "


def parse_since(text: str, now: datetime, *, option: str = "--since") -> datetime:
    """`90s`, `15m`, `1h`, `2d`, `1w` before `now`, or an ISO time (UTC when it has no offset).

    What `--since` and `--until` take; `option` names the option in the error message."""
    ago = _AGO.match(text)
    if ago:
        return now - timedelta(**{_UNITS[ago.group(2).lower()]: int(ago.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{option} {text!r}: use a duration before now (30m, 1h, 2d, 1w) or an ISO time"
            " (2026-11-21T10:00:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_window(
    since: str | None, until: str | None, now: datetime
) -> tuple[datetime | None, datetime | None]:
    """`--since` and `--until` together: each optional, and `since` must come before `until`."""
    start = parse_since(since, now) if since else None
    end = parse_since(until, now, option="--until") if until else None
    if start is not None and end is not None and start >= end:
        raise ValueError(
            f"--since {since!r} ({_stamp(start)}) is not before --until {until!r} ({_stamp(end)})"
        )
    return start, end


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
    out = record_json(record)
    for name in ("event_document", "lease_until"):
        out.pop(name, None)
    return out


def record_json(record: Record) -> dict[str, Any]:
    """A whole record for `show --json`: every field but the claim token, times in ISO 8601."""
    out = record.as_dict()
    out.pop("token", None)
    for name, value in out.items():
        if isinstance(value, datetime):
            out[name] = value.isoformat()
    return out


def table(
    records: Sequence[Record],
    *,
    width: int = DEFAULT_WIDTH,
    keys: bool = False,
    colour: bool = False,
) -> list[str]:
    """The records as aligned lines that fit in `width` columns (header first); with `keys`,
    each line begins with the first `KEY_CHARS` characters of the record's ledger key; with
    `colour`, each status is painted with an ANSI colour (for a terminal)."""
    if not records:
        return ["no runs recorded"]
    prefix = KEY_CHARS + len(_GAP) if keys else 0
    width -= prefix
    rows = [_cells(record) for record in records]
    widths = [
        max(len(column[0]), *(len(row[i]) for row in rows)) for i, column in enumerate(_COLUMNS)
    ]
    _squeeze(widths, width)
    lines = [_line([column[0] for column in _COLUMNS], widths)]
    for record, row in zip(records, rows, strict=True):
        lines.append(_line(row, widths, colour=colour))
        if record.reason:
            indent = " " * (widths[0] + len(_GAP))
            lines.append(indent + _fit(record.reason, width - len(indent), "head"))
    if keys:
        starts = ["KEY"] + [
            record.key[:KEY_CHARS] if i == 0 else ""
            for record in records
            for i in range(2 if record.reason else 1)
        ]
        lines = [
            (start.ljust(prefix) + line).rstrip() for start, line in zip(starts, lines, strict=True)
        ]
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


_LABEL = 13  # the width of `detail`'s labels
_NO_DOCUMENT = (
    "(not recorded: larger than the ledger keeps, or the claim that wrote the record had none)"
)
_NO_INPUT_DOCUMENT = "(not recorded: the request was not an event; `event` above sums it up)"


def detail(record: Record) -> list[str]:
    """One record in full, for `triggers show`: what was decided and when, the execution and
    how it ended, the event it came from (reference and recorded document) and the exact
    `jobs.run` body. Times are UTC, in ISO 8601 (what `--since` takes); the token is left out."""
    status = record.status.value if isinstance(record.status, Status) else str(record.status)
    lines = [
        _field("key", record.key),
        _field("rule", record.rule),
        _field("status", status),
        _field("job", record.job or "-"),
        _field("dedup key", record.dedup_key),
        _field("created", _stamp(record.created_at)),
        _field(
            "updated",
            f"{_stamp(record.updated_at)} ({_after(record.created_at, record.updated_at)})",
        ),
    ]
    if record.status is Status.CLAIMED:
        lines.append(_field("lease until", _stamp(record.lease_until)))
    lines += [
        _field("expires", f"{_stamp(record.expire_at)} (end of the dedup window)"),
        _field("attempts", _attempts(record)),
        _field("duplicates", str(record.duplicates)),
        _field("execution", record.execution or "-"),
        _field("operation", record.operation or "-"),
        # flow control: the Cloud Tasks task that launches (or launched) it
        *([_field("task", record.task)] if record.task else []),
        _field("reason", record.reason or "-"),
        *_outcome(record),
        "",
        "event",
        *_event(record.event),
        "",
        "event document",
        *_document(
            record.event_document, _NO_INPUT_DOCUMENT if record.rule == INPUT_RULE else _NO_DOCUMENT
        ),
        "",
        f"jobs.run request (POST /v2/{record.job}:run)" if record.job else "jobs.run request",
        *_document(record.request, "(none: no job was planned)"),
    ]
    return "\n".join(lines).split("\n")  # a value with line breaks: one line each


def _field(label: str, value: str, indent: int = 0) -> str:
    """`label` then `value` in a column of its own; a longer label pushes the value right."""
    text = str(value).replace("\n", "\n" + " " * _LABEL)
    return f"{' ' * indent}{label.ljust(_LABEL - indent - 1)} {text}".rstrip()


def _attempts(record: Record) -> str:
    text = str(record.attempts)
    if record.attempts > 1:
        text += f" (taken over {record.attempts - 1} time{'s' if record.attempts > 2 else ''})"
    if record.ambiguous:
        text += "; ambiguous: the last attempt may have started an execution nobody recorded"
    return text


def _outcome(record: Record) -> list[str]:
    outcome = record.outcome
    if not outcome:
        hint = (
            " (not known yet: `triggers reconcile` records it)"
            if (record.status is Status.LAUNCHED)
            else ""
        )
        return [_field("outcome", "-" + hint)]
    rest = dict(outcome)
    lines = [_field("outcome", str(rest.pop("outcome", "-")))]
    counts = {
        name: rest.pop(f"{name}_count", None)
        for name in ("task", "succeeded", "failed", "cancelled", "retried")
    }
    if any(value is not None for value in counts.values()):
        tasks = ", ".join(
            f"{counts[name] if counts[name] is not None else '?'} {name}"
            for name in ("succeeded", "failed", "cancelled")
        )
        total = counts["task"] if counts["task"] is not None else "?"
        retried = counts["retried"] if counts["retried"] is not None else "?"
        lines.append(_field("tasks", f"{total}: {tasks}; {retried} retried", indent=2))
    started, completed = rest.pop("started_at", None), rest.pop("completed_at", None)
    if started:
        lines.append(_field("started", str(started), indent=2))
    if completed:
        took = _took(str(started or ""), str(completed))
        lines.append(
            _field("completed", f"{completed}" + (f" (after {took})" if took else ""), indent=2)
        )
    for label, name in (("logs", "log_uri"), ("message", "message")):
        value = rest.pop(name, None)
        if value:
            lines.append(_field(label, value, indent=2))
    for name, value in rest.items():  # anything a later reconciler adds
        lines.append(_field(name, json.dumps(value, default=str), indent=2))
    return lines


def _event(event: Any) -> list[str]:
    if not isinstance(event, dict) or not event:
        return [_field("-", "", indent=2)]
    return [
        _field(
            str(name), value if isinstance(value, str) else json.dumps(value, default=str), indent=2
        )
        for name, value in event.items()
    ]


def _document(value: Any, missing: str) -> list[str]:
    if value is None or value == {}:
        return ["  " + missing]
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return ["  " + line for line in text.splitlines()]


def _took(started: str, completed: str) -> str | None:
    try:
        seconds = (_parse_iso(completed) - _parse_iso(started)).total_seconds()
    except ValueError:
        return None
    return _duration(seconds) if seconds >= 0 else None


def _parse_iso(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return _utc(moment)


def _stamp(moment: datetime) -> str:
    """UTC, ISO 8601 with a `Z`, microseconds only when there are any."""
    return _utc(moment).isoformat().replace("+00:00", "Z")


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _after(created: datetime, updated: datetime) -> str:
    """How long after its creation a record last changed: `+0.3s`, `+42s`, `+5m`, `+2h`, `+3d`."""
    return "+" + _duration(max((_utc(updated) - _utc(created)).total_seconds(), 0.0))


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


def _line(cells: Sequence[str], widths: Sequence[int], *, colour: bool = False) -> str:
    parts: list[str] = []
    for (_, right, _, keep), cell, size in zip(_COLUMNS, cells, widths, strict=True):
        shown = _fit(cell, size, keep)
        shown = shown.rjust(size) if right else shown.ljust(size)
        if colour and len(parts) == _STATUS and cell in STATUS_COLOURS:
            # painted after padding: the escape codes take no columns on a terminal
            shown = f"\x1b[{STATUS_COLOURS[cell]}m{shown.rstrip()}\x1b[0m" + " " * (
                len(shown) - len(shown.rstrip())
            )
        parts.append(shown)
    return _GAP.join(parts).rstrip()


def _fit(text: str, size: int, keep: str) -> str:
    """`text` cut to `size` characters, marked with an ellipsis, keeping its head or its tail."""
    if len(text) <= size:
        return text
    if size <= 1:
        return "…"[:size]
    return text[: size - 1] + "…" if keep == "head" else "…" + text[len(text) - size + 1 :]


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
