"""Recognise which form an HTTP request is in, and hand it to the decoder of that form.

The order matters and is part of the contract (docs/events.md): the cheap, unambiguous signals
(headers) are checked before the body is parsed, and the body is parsed at most once here.

The decoders of the Pub/Sub, Scheduler and generic forms are imported when a request of their
form arrives: a cold start whose first event is a Storage or other CloudEvent loads only what
that event needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from triggers.errors import DecodeError
from triggers.events import _wire, cloudevent, storage
from triggers.events._storable import check_storable
from triggers.events.model import PUBSUB_PUBLISHED, Event

if TYPE_CHECKING:
    from triggers.events import pubsub

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024

_LOOKED_FOR = (
    "not a CloudEvent (no ce-specversion header, Content-Type is not "
    "application/cloudevents+json, no specversion member in a JSON body), "
    "not a Cloud Scheduler HTTP target (no X-CloudScheduler: true header or "
    "Google-Cloud-Scheduler user agent), and not a raw Pub/Sub push (no message member "
    "in a JSON body)"
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def decode(
    headers: Mapping[str, str],
    body: bytes,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    now: Callable[[], datetime] | None = None,
    query: Mapping[str, str] | None = None,
) -> Event:
    """Decode one HTTP request (headers + body bytes) into an ``Event``.

    ``query`` holds the request's query parameters: a raw Pub/Sub push names only its
    subscription, so its topic travels in the push endpoint's query string
    (``?topic=projects/P/topics/T``, docs/events.md); other forms ignore the query.

    Raises ``DecodeError`` for anything it cannot decode, and nothing else: also for a request
    that decodes but holds what can never be stored or sent (``_storable.check_storable``).
    """
    event = _decode_form(headers, body, max_body_bytes, now, query)
    return check_storable(event, _FORM_NAMES.get(event.form, event.form))


# How messages name each input form (the decoders' own messages use the same words).
_FORM_NAMES = {
    "cloudevent-binary": "CloudEvent binary mode",
    "cloudevent-structured": "structured CloudEvent",
    "pubsub-push": "raw Pub/Sub push",
    "storage-notification": "Cloud Storage notification",
    "scheduler-http": "Cloud Scheduler HTTP target",
    "scheduler-pubsub": "Cloud Scheduler Pub/Sub target",
}


def _decode_form(
    headers: Mapping[str, str],
    body: bytes,
    max_body_bytes: int,
    now: Callable[[], datetime] | None,
    query: Mapping[str, str] | None,
) -> Event:
    body = bytes(body)
    if len(body) > max_body_bytes:
        raise DecodeError(
            "body_too_large",
            f"request body is {len(body)} bytes, the limit is {max_body_bytes} bytes",
        )
    lowered = _wire.lower_headers(headers)
    if "ce-specversion" in lowered:
        return _from_cloudevent(cloudevent.parse_binary(lowered, body))
    mtype = _wire.media_type(lowered.get("content-type"))
    if mtype == cloudevent.STRUCTURED_CONTENT_TYPE:
        return _from_cloudevent(cloudevent.parse_structured(lowered, body))
    if mtype.startswith("application/cloudevents"):
        problem = (
            "CloudEvents batch mode is not supported"
            if mtype == cloudevent.BATCH_CONTENT_TYPE
            else "only the JSON event format of CloudEvents is supported"
        )
        raise DecodeError(
            "unsupported_content_type",
            f"Content-Type {mtype}: {problem}; send one event per request in binary mode"
            f" or as {cloudevent.STRUCTURED_CONTENT_TYPE}",
        )
    from triggers.events import scheduler

    if scheduler.is_http_target(lowered):
        return scheduler.from_http(lowered, body, now or _utc_now)
    parsed = _sniff_json(body, mtype)
    if isinstance(parsed, dict):
        if "message" in parsed:
            from triggers.events import pubsub

            return _from_delivery(pubsub.from_push(parsed, topic=(query or {}).get("topic")))
        if "specversion" in parsed:
            return _from_cloudevent(cloudevent.parse_structured(lowered, body, parsed))
    raise DecodeError("unrecognised", f"request with {_describe(parsed, mtype)} is {_LOOKED_FOR}")


def _sniff_json(body: bytes, mtype: str) -> Any:
    """The body as JSON when it is JSON. Failing to parse is an error only when JSON was
    declared (or nothing was): a body of another declared type is simply not ours."""
    if not body:
        return _Empty
    json_expected = not mtype or _wire.is_json_media_type(mtype)
    try:
        return _wire.parse_json(body, "request body")
    except DecodeError:
        if json_expected:
            raise
        return _Opaque


class _Empty:
    """Marker: the request had no body."""


class _Opaque:
    """Marker: the body is not JSON, and its content type did not claim it was."""


def _describe(parsed: Any, mtype: str) -> str:
    if parsed is _Empty:
        return "an empty body"
    if parsed is _Opaque:
        return f"a {mtype} body"
    return f"a JSON body that is {_wire.json_type_name(parsed)}" + (
        " without message or specversion members" if isinstance(parsed, dict) else ""
    )


def _from_cloudevent(event: cloudevent.CloudEventIn) -> Event:
    if event.type == PUBSUB_PUBLISHED:
        from triggers.events import pubsub

        return _from_delivery(pubsub.from_cloudevent(event))
    if event.type in storage.TYPES:
        return storage.from_cloudevent(event)
    from triggers.events import generic

    return generic.from_cloudevent(event)


def _from_delivery(delivery: pubsub.Delivery) -> Event:
    """What a Pub/Sub message is, is told by its attributes (whichever transport brought it)."""
    from triggers.events import pubsub, scheduler

    attributes = delivery.message.attributes
    if scheduler.is_pubsub_target(attributes):
        return scheduler.from_delivery(delivery)
    if storage.is_notification(attributes):
        return storage.from_notification(delivery)
    return pubsub.to_event(delivery)
