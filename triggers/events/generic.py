"""Any CloudEvent type that is not one of the three sources: passed through as it came.

``data`` becomes the most useful plain value the payload allows: the JSON value when it is
JSON, text when it is text, and otherwise the bytes as a base64 string (the event document
must stay JSON-serialisable for templates and the ledger).
"""

from __future__ import annotations

from typing import Any

from triggers.events import _wire
from triggers.events.cloudevent import CloudEventIn
from triggers.events.model import Event


def payload(event: CloudEventIn) -> Any:
    data = event.data
    if not isinstance(data, bytes):
        return data  # a structured-mode JSON value, or None
    where = f"CloudEvent {event.type}: data"
    mtype = _wire.media_type(event.datacontenttype)
    if _wire.is_json_media_type(mtype):
        return _wire.parse_json(data, where)
    if mtype.startswith("text/"):
        return _wire.require_utf8(data, where)
    if not mtype:
        # No declared type: take the most specific reading that fits.
        text = _wire.utf8_or_none(data)
        is_json, value = _wire.try_loads(text)
        if is_json:
            return value
        if text is not None:
            return text
    return _wire.b64encode(data)


def from_cloudevent(event: CloudEventIn) -> Event:
    return Event(
        id=event.id,
        source=event.source,
        type=event.type,
        kind="generic",
        form=event.form,
        subject=event.subject,
        time=event.time,
        extensions=event.extensions,
        data=payload(event),
    )
