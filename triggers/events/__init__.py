"""HTTP request -> ``Event``: decoding of every input form the functions accept.

``decode(headers, body)`` recognises a CloudEvent (binary or structured mode), a raw Pub/Sub
push, a Cloud Storage Pub/Sub notification and a Cloud Scheduler HTTP target, and returns one
immutable, normalised ``Event``; it raises ``DecodeError`` and nothing else. The accepted forms,
event documents and error reasons are described in docs/events.md.

Importing this package is cheap: the cloudevents SDK is loaded only when a CloudEvent arrives.
"""

from triggers.errors import DecodeError
from triggers.events._decode import DEFAULT_MAX_BODY_BYTES, decode
from triggers.events.eventfile import parse_event_file
from triggers.events.model import (
    FORMS,
    KINDS,
    PUBSUB_PUBLISHED,
    SCHEDULER_EXECUTED,
    STORAGE_ARCHIVED,
    STORAGE_DELETED,
    STORAGE_FINALIZED,
    STORAGE_METADATA_UPDATED,
    STORAGE_PREFIX,
    Event,
    EventRef,
)

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "FORMS",
    "KINDS",
    "PUBSUB_PUBLISHED",
    "SCHEDULER_EXECUTED",
    "STORAGE_ARCHIVED",
    "STORAGE_DELETED",
    "STORAGE_FINALIZED",
    "STORAGE_METADATA_UPDATED",
    "STORAGE_PREFIX",
    "DecodeError",
    "Event",
    "EventRef",
    "decode",
    "parse_event_file",
]
