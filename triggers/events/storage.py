"""Cloud Storage object events, from Eventarc CloudEvents or from GCS Pub/Sub notifications.

The two paths describe the same change to the same object, so they normalise to one shape:
``source = //storage.googleapis.com/projects/_/buckets/B``, ``subject = objects/NAME`` and
``data`` = the object resource exactly as the JSON API gives it, except that the int64 fields
arrive as strings there and become ints here. ``data`` holds nothing transport-specific, so a
rule written against one path matches the other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from triggers.errors import DecodeError
from triggers.events import _wire
from triggers.events.cloudevent import CloudEventIn, json_object_data
from triggers.events.model import (
    STORAGE_ARCHIVED,
    STORAGE_DELETED,
    STORAGE_FINALIZED,
    STORAGE_METADATA_UPDATED,
    Event,
)

if TYPE_CHECKING:  # a Storage CloudEvent needs no Pub/Sub decoding: import it only if used
    from triggers.events.pubsub import Delivery

TYPES = frozenset({STORAGE_FINALIZED, STORAGE_DELETED, STORAGE_ARCHIVED, STORAGE_METADATA_UPDATED})

# Notification eventType attribute -> the CloudEvent type Eventarc uses for the same change.
NOTIFICATION_TYPES = {
    "OBJECT_FINALIZE": STORAGE_FINALIZED,
    "OBJECT_DELETE": STORAGE_DELETED,
    "OBJECT_ARCHIVE": STORAGE_ARCHIVED,
    "OBJECT_METADATA_UPDATE": STORAGE_METADATA_UPDATED,
}

# JSON API v1 encodes int64 as decimal strings (JavaScript numbers cannot hold them). The
# length bound keeps int() away from its digit limit on hostile input; 20 digits hold uint64.
_INT64_FIELDS = ("size", "generation", "metageneration")
_INTEGER = re.compile(r"-?[0-9]{1,20}")


def is_notification(attributes: Mapping[str, str]) -> bool:
    """A GCS notification always sets both; neither is a name users tend to pick."""
    return "eventType" in attributes and "bucketId" in attributes


def _to_int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        return int(value)
    shown = repr(value) if isinstance(value, str) else _wire.json_type_name(value)
    raise DecodeError("bad_field", f"{where} is {shown}, expected an integer string")


def normalise_object(resource: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The object resource with int64 strings as ints; bucket and name are required."""
    obj = dict(resource)
    for name in ("bucket", "name"):
        value = obj.get(name)
        if value is None or value == "":
            raise DecodeError("missing_field", f"{where}.{name} is missing")
        if not isinstance(value, str):
            raise DecodeError(
                "bad_field", f"{where}.{name} is {_wire.json_type_name(value)}, expected a string"
            )
    for name in _INT64_FIELDS:
        if obj.get(name) is not None:
            obj[name] = _to_int(obj[name], f"{where}.{name}")
    return obj


def _event(
    *,
    id: str,
    type: str,
    form: str,
    time: str | None,
    obj: dict[str, Any],
    extensions: Mapping[str, Any],
) -> Event:
    return Event(
        id=id,
        source=f"//storage.googleapis.com/projects/_/buckets/{obj['bucket']}",
        subject=f"objects/{obj['name']}",
        type=type,
        kind="storage",
        form=form,
        time=time,
        extensions=extensions,
        data=obj,
    )


def from_cloudevent(event: CloudEventIn) -> Event:
    """An Eventarc ``google.cloud.storage.object.v1.*`` event; its data is the object."""
    where = f"Cloud Storage CloudEvent {event.type}"
    obj = normalise_object(json_object_data(event, where), f"{where}: data")
    return _event(
        id=event.id,
        type=event.type,
        form=event.form,
        time=event.time,
        obj=obj,
        extensions=event.extensions,
    )


def _object_from_attributes(attributes: Mapping[str, str], where: str) -> dict[str, Any]:
    """``payloadFormat: NONE``: the attributes are all there is."""
    obj: dict[str, Any] = {}
    for field, attribute in (("bucket", "bucketId"), ("name", "objectId")):
        if not attributes.get(attribute):
            raise DecodeError(
                "missing_field",
                f"{where}.{attribute} is missing (payloadFormat NONE carries no object)",
            )
        obj[field] = attributes[attribute]
    if "objectGeneration" in attributes:
        obj["generation"] = _to_int(attributes["objectGeneration"], f"{where}.objectGeneration")
    return obj


def from_notification(delivery: Delivery) -> Event:
    """A GCS Pub/Sub notification, through a raw push or an Eventarc Pub/Sub CloudEvent."""
    where = f"Cloud Storage notification ({delivery.where})"
    message = delivery.message
    attributes = message.attributes
    attrs_where = f"{where}: {delivery.path}.attributes"
    event_type = attributes["eventType"]
    if event_type not in NOTIFICATION_TYPES:
        raise DecodeError(
            "bad_field",
            f"{attrs_where}.eventType is {event_type!r}, expected one of "
            + ", ".join(NOTIFICATION_TYPES),
        )
    if attributes.get("payloadFormat") == "NONE" or not message.payload:
        obj = _object_from_attributes(attributes, attrs_where)
    else:
        data_where = f"{where}: {delivery.path}.data"
        resource = _wire.parse_json(message.payload, data_where)
        if not isinstance(resource, dict):
            raise DecodeError(
                "bad_field",
                f"{data_where} is {_wire.json_type_name(resource)}, expected an object resource",
            )
        obj = normalise_object(resource, data_where)
    return _event(
        # An Eventarc delivery's id is the message id; a raw push's Delivery.id is too.
        id=delivery.id,
        type=NOTIFICATION_TYPES[event_type],
        form="storage-notification",
        time=attributes.get("eventTime") or delivery.time,
        obj=obj,
        extensions=delivery.extensions,
    )
