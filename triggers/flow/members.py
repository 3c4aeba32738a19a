"""A batch's members as its run needs them: the manifest entries (join order) and the first
member's event, rebuilt from its ledger record, that the rule's overrides are rendered against.
Pure: no I/O."""

from __future__ import annotations

import logging
from types import MappingProxyType
from typing import Any

from ..events.model import FORMS, KINDS, Event
from ..ledger.base import Record
from .batching import Batch

log = logging.getLogger("triggers.flow.batches")


def manifest_members(
    batch: Batch, records: dict[str, Record], fields: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """Each member's manifest entry, in join order: its ledger key, dedup key and event (only
    the `fields` paths of it, the rule's `batch.fields`, when given)."""
    members: list[dict[str, Any]] = []
    for key in batch.members:
        record = records.get(key)
        if record is None:  # expired before its batch ran: keep its place, say so
            log.error("batch %s: member %s has no ledger record", batch.id, key)
            members.append({"ledger_key": key, "missing": True})
            continue
        event = record.event_document if record.event_document is not None else record.event
        if fields is not None:
            event = projected(event, fields)
        members.append({"ledger_key": key, "dedup_key": record.dedup_key, "event": event})
    return members


def projected(document: Any, paths: tuple[str, ...]) -> dict[str, Any]:
    """The parts of `document` at the dotted `paths`, in the same nesting (`data.name` ->
    `{"data": {"name": ...}}`); a path the document does not have is left out. The values are
    the document's own, not copies (the manifest serialises them); the paths do not overlap
    (the rules schema refuses one inside another), so no dict of the result is one of the
    document's, and the document is never changed."""
    out: dict[str, Any] = {}
    for path in paths:
        parts = path.split(".")
        value = document
        for part in parts:
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            target = out
            for part in parts[:-1]:
                target = target.setdefault(part, {})
            target[parts[-1]] = value
    return out


def event_of(record: Record) -> Event:
    document = record.event_document or {}
    reference = record.event if isinstance(record.event, dict) else {}
    kind = reference.get("kind") if reference.get("kind") in KINDS else "generic"
    form = reference.get("form") if reference.get("form") in FORMS else "cloudevent-structured"
    core = ("id", "source", "type", "subject", "time", "data")
    return Event(
        id=str(document.get("id") or reference.get("id") or ""),
        source=str(document.get("source") or reference.get("source") or ""),
        type=str(document.get("type") or reference.get("type") or ""),
        kind=str(kind),
        form=str(form),
        data=document.get("data"),
        subject=document.get("subject"),
        time=document.get("time"),
        extensions=MappingProxyType({k: v for k, v in document.items() if k not in core}),
    )


def empty_event(batch: Batch) -> Event:
    return Event(
        id=batch.id, source="triggers/batch", type="triggers.batch", kind="generic",
        form="cloudevent-structured", data=None,
    )  # fmt: skip
