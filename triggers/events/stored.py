"""An Event rebuilt from what the ledger stored about it: its document and its reference.

A record keeps the event it was decided for: the document (what patterns match and templates
render) and, in `record.event`, its kind and the form it arrived in. Replays (triggers/ops) and
queue tasks (triggers/flow/launch.py, which plan a queued launch again) rebuild the Event from
them, so that they route and plan exactly what the function did when the event arrived.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .model import FORMS, PUBSUB_PUBLISHED, SCHEDULER_EXECUTED, STORAGE_PREFIX, Event

_CORE_FIELDS = ("id", "source", "type", "subject", "time", "data")


def stored_event(document: Mapping[str, Any], reference: Mapping[str, Any] | None) -> Event:
    """The Event of a stored ``document`` (`Event.document`) and ``reference``
    (`EventRef.as_dict()`); ValueError when they do not make an event."""
    reference = reference if isinstance(reference, Mapping) else {}
    event_type = str(document.get("type") or reference.get("type") or "")
    kind = reference.get("kind") or _kind_of(event_type)
    data = document.get("data")
    form = reference.get("form")
    if form not in FORMS:  # an older record: rebuilt as a structured CloudEvent, or a tick
        form = _form_of(kind, data)
    event_id = str(document.get("id") or reference.get("id") or "")
    return Event(
        id=event_id,
        source=str(document.get("source") or reference.get("source") or ""),
        type=event_type,
        kind=kind,
        form=form,
        data=data,
        subject=document.get("subject"),
        time=document.get("time"),
        extensions=MappingProxyType({k: v for k, v in document.items() if k not in _CORE_FIELDS}),
        # A Scheduler tick is identified by job#schedule_time, which is also its id.
        dedup_hint=event_id if kind == "scheduler" else None,
    )


def _kind_of(event_type: str) -> str:
    if event_type == SCHEDULER_EXECUTED:
        return "scheduler"
    if event_type.startswith(STORAGE_PREFIX):
        return "storage"
    if event_type == PUBSUB_PUBLISHED:
        return "pubsub"
    return "generic"


def _form_of(kind: str, data: Any) -> str:
    if kind == "scheduler":
        attributes = data.get("attributes") if isinstance(data, dict) else None
        return "scheduler-pubsub" if attributes else "scheduler-http"
    return "cloudevent-structured"
