"""How a ledger record lies in a Firestore document, and back: the Firestore backend's codec.

Fields without a value, or at their default, are left out of whole-record writes; `event`,
`request` and `event_document` are JSON text (maps written by earlier releases still read);
beside the record's fields each document has `event_id` and `execution_id`, which `list`
queries. Pure: no client, no I/O (docs/ledger.md, "Firestore layout").
"""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from .records import Record, Status, event_id_of, short_execution

FIELDS = tuple(f.name for f in fields(Record) if f.name != "key")  # the key is the document id
UPDATABLE = frozenset(FIELDS)
# What a create's conflict reads: every field a claim decision (status, token, lease, window,
# attempts, ambiguous, batch) and a duplicate's answer (execution) need, none of the big ones.
BIG = frozenset({"event", "event_document", "request", "outcome"})
SUMMARY_FIELDS = tuple(name for name in FIELDS if name not in BIG)
TIMES = frozenset({"created_at", "updated_at", "lease_until", "expire_at"})
# Written as JSON text, not maps (below).
JSON_TEXT = frozenset({"event", "request", "event_document"})
# What a field missing from a document means: whole-record writes leave these values out.
DEFAULTS: dict[str, Any] = {"attempts": 1, "duplicates": 0, "ambiguous": False, "request": {}}


# Times are Firestore timestamps (so `expire_at` can drive a TTL policy and `created_at` sorts),
# `status` is its string value, and the event document, the event reference and the request are
# JSON text: arbitrary event JSON can hold what a Firestore map cannot (arrays of arrays, `__x__`
# keys, empty keys); one string costs one index entry where a map costs one per nested field;
# and json.dumps is several times cheaper for the function than building the nested protobuf
# Values of a map (the request and the event are written on every new event, never queried).
# Maps written by earlier releases are still read. Beside the record's fields each document has
# `event_id` and `execution_id` (see `derived_fields`), which `list` queries.


def utc_time(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"ledger times must be timezone-aware, not naive {value.isoformat()}")
    return value.astimezone(UTC)


def encode_field(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in TIMES:
        return utc_time(value)
    if name == "status":
        return Status(value).value
    if name in JSON_TEXT:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return value


def encode_record(record: Record) -> dict[str, Any]:
    """A whole record as one document (`create`, `replace`). Fields without a value, or with
    their default (`DEFAULTS`), are left out: a document is read back the same either way,
    and each field left out is one value fewer for the client to encode and one index entry
    fewer for Firestore to write (a claim made before planning writes 12 of its 23 fields)."""
    data = {}
    for name in FIELDS:
        value = getattr(record, name)
        if value is not None and (name not in DEFAULTS or value != DEFAULTS[name]):
            data[name] = encode_field(name, value)
    for name, value in derived_fields(
        {"event": record.event, "execution": record.execution}
    ).items():
        if value is not None:
            data[name] = value
    return data


def derived_fields(changes: dict[str, Any]) -> dict[str, Any]:
    """The lookup fields that go with `event` and `execution` when they are written: top-level
    `event_id` (the `event` map is exempt from indexing, so `event.id` cannot be queried) and
    `execution_id` (the execution's last segment, for short names). Not Record fields."""
    derived: dict[str, Any] = {}
    if "event" in changes:
        derived["event_id"] = event_id_of(changes["event"])
    if "execution" in changes:
        derived["execution_id"] = short_execution(changes["execution"])
    return derived


def decode_record(key: str, data: dict[str, Any]) -> Record:
    values: dict[str, Any] = {"key": key}
    for name in FIELDS:
        value = data.get(name)
        if value is not None:
            if name in TIMES:
                # A plain datetime, not the client's DatetimeWithNanoseconds subclass.
                value = value.astimezone(UTC)
                value = datetime(
                    value.year,
                    value.month,
                    value.day,
                    value.hour,
                    value.minute,
                    value.second,
                    value.microsecond,
                    tzinfo=UTC,
                )
            elif name == "status":
                value = Status(value)
            elif name in JSON_TEXT and isinstance(value, str):  # records before 2026-12: maps
                value = json.loads(value)
        values[name] = value
    for name, default in DEFAULTS.items():
        if values.get(name) is None:
            values[name] = dict(default) if isinstance(default, dict) else default
    return Record(**values)
