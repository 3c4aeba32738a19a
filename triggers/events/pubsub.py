"""Pub/Sub messages, from a raw push body or an Eventarc ``messagePublished`` CloudEvent.

Both transports carry the same ``{"message": {...}, "subscription": ...}`` JSON, so they are
read into one ``Delivery``. What the message *is* (a plain message, a Cloud Storage
notification, a Scheduler tick) is decided afterwards in ``_decode`` from its attributes;
this module builds the plain ``kind="pubsub"`` event.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from triggers.errors import DecodeError
from triggers.events import _wire
from triggers.events.cloudevent import CloudEventIn, json_object_data
from triggers.events.model import PUBSUB_PUBLISHED, Event

_SERVICE = "//pubsub.googleapis.com/"
_TOPIC_SOURCE = re.compile(r"//pubsub\.googleapis\.com/(projects/[^/]+/topics/[^/]+)")


@dataclass(frozen=True, slots=True)
class Message:
    """One Pub/Sub message with its data decoded as far as it goes (bytes, text, JSON)."""

    data: str | None
    payload: bytes | None
    text: str | None
    json: Any
    attributes: Mapping[str, str]
    message_id: str | None
    publish_time: str | None
    ordering_key: str | None

    def as_dict(self) -> dict[str, Any]:
        """``data.message`` of the event document."""
        return {
            "data": self.data,
            "text": self.text,
            "json": self.json,
            "attributes": dict(self.attributes),
            "message_id": self.message_id,
            "publish_time": self.publish_time,
            "ordering_key": self.ordering_key,
        }


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message plus what its transport says about it.

    ``id``/``source``/``time`` are the CloudEvent's own for an Eventarc delivery, and the
    message id / subscription / publish time for a raw push. ``where`` and ``path`` prefix error
    messages (``"raw Pub/Sub push"`` + ``"message"``).
    """

    message: Message
    subscription: str | None
    topic: str | None
    id: str
    source: str
    time: str | None
    subject: str | None
    extensions: Mapping[str, Any]
    form: str
    where: str
    path: str


def _optional_str(obj: Mapping[str, Any], names: tuple[str, ...], prefix: str) -> str | None:
    """The first of ``names`` present in ``obj`` (Pub/Sub writes camelCase and snake_case).

    ``prefix`` locates ``obj`` in messages: ``"raw Pub/Sub push: message."``.
    """
    for name in names:
        value = obj.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DecodeError(
                "bad_field",
                f"{prefix}{name} is {_wire.json_type_name(value)}, expected a string",
            )
        return value
    return None


def _attributes(value: Any, where: str) -> Mapping[str, str]:
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        raise DecodeError(
            "bad_field", f"{where} is {_wire.json_type_name(value)}, expected an object"
        )
    for name, item in value.items():
        if not isinstance(item, str):
            raise DecodeError(
                "bad_field",
                f"{where}.{name} is {_wire.json_type_name(item)}, expected a string"
                " (Pub/Sub attribute values are strings)",
            )
    return MappingProxyType(dict(value))


def parse_message(obj: Any, where: str) -> Message:
    """``where`` names the message object, e.g. ``"raw Pub/Sub push: message"``."""
    if not isinstance(obj, dict):
        raise DecodeError(
            "bad_field", f"{where} is {_wire.json_type_name(obj)}, expected an object"
        )
    data = _optional_str(obj, ("data",), where + ".")
    payload = None if data is None else _wire.b64decode(data, f"{where}.data")
    # A message is bytes; text and JSON are views of it that exist only when they apply.
    text = _wire.utf8_or_none(payload)
    _, parsed = _wire.try_loads(text)
    return Message(
        data=data,
        payload=payload,
        text=text,
        json=parsed,
        attributes=_attributes(obj.get("attributes"), f"{where}.attributes"),
        message_id=_optional_str(obj, ("messageId", "message_id"), where + "."),
        publish_time=_optional_str(obj, ("publishTime", "publish_time"), where + "."),
        ordering_key=_optional_str(obj, ("orderingKey", "ordering_key"), where + "."),
    )


def _envelope(body: Any, where: str, path: str) -> tuple[Message, str | None]:
    """The ``{"message", "subscription"}`` object both transports share."""
    if "message" not in body:
        raise DecodeError("missing_field", f"{where}: {path}message is missing")
    message = parse_message(body["message"], f"{where}: {path}message")
    subscription = _optional_str(body, ("subscription",), f"{where}: {path}")
    return message, subscription


_TOPIC = re.compile(r"projects/[^/]+/topics/[^/]+")


def from_push(body: Mapping[str, Any], topic: str | None = None) -> Delivery:
    """A raw push body. Its JSON names only the subscription; ``topic`` is the one its push
    endpoint names (``?topic=``), if any.

    With a topic the event is the topic's, as in Eventarc's CloudEvent (source
    ``//pubsub.googleapis.com/projects/P/topics/T``, id the message id): one message delivered
    through several subscriptions is then one event, so a rule launches for it once. Without
    one the subscription is the source (the same message through two subscriptions is two
    events).
    """
    where = "raw Pub/Sub push"
    if topic is not None and not _TOPIC.fullmatch(topic):
        raise DecodeError(
            "bad_field",
            f"{where}: the push endpoint's topic parameter {topic[:200]!r} is not a topic name"
            " (projects/P/topics/T)",
        )
    message, subscription = _envelope(body, where, "")
    if message.message_id is None:
        raise DecodeError("missing_field", f"{where}: message.messageId is missing")
    if not message.message_id:
        raise DecodeError("bad_field", f"{where}: message.messageId is empty")
    if not subscription:
        raise DecodeError(
            "missing_field",
            f"{where}: subscription is missing (it names the source of the event)",
        )
    return Delivery(
        message=message,
        subscription=subscription,
        topic=topic,
        id=message.message_id,
        source=_SERVICE + (topic or subscription),
        time=message.publish_time,
        subject=None,
        extensions=MappingProxyType({}),
        form="pubsub-push",
        where=where,
        path="message",
    )


def from_cloudevent(event: CloudEventIn) -> Delivery:
    """An Eventarc ``messagePublished`` event: the CloudEvent's id/source/time lead."""
    where = "Pub/Sub CloudEvent"
    data = json_object_data(event, where)
    message, subscription = _envelope(data, where, "data.")
    topic = _TOPIC_SOURCE.fullmatch(event.source)
    return Delivery(
        message=message,
        subscription=subscription,
        topic=topic.group(1) if topic else None,
        id=event.id,
        source=event.source,
        time=event.time or message.publish_time,
        subject=event.subject,
        extensions=event.extensions,
        form=event.form,
        where=where,
        path="data.message",
    )


def to_event(delivery: Delivery) -> Event:
    message = delivery.message
    if message.message_id is None:
        # Eventarc always copies the id into the message; fill it from the CloudEvent if not.
        message = dataclasses.replace(message, message_id=delivery.id)
    return Event(
        id=delivery.id,
        source=delivery.source,
        type=PUBSUB_PUBLISHED,
        kind="pubsub",
        form=delivery.form,
        subject=delivery.subject,
        time=delivery.time,
        extensions=delivery.extensions,
        data={
            "message": message.as_dict(),
            "subscription": delivery.subscription,
            "topic": delivery.topic,
        },
    )
