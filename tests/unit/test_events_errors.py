"""Rejections the decoders give, reason and message whole: the reason is recorded in the ledger
and counted by operators, the message tells a sender what to fix. Found by mutation testing:
each case here once survived a decoder that named the wrong reason, form or path."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest

from triggers.errors import DecodeError
from triggers.events import decode

JSON = {"Content-Type": "application/json"}
BINARY = {
    "ce-specversion": "1.0",
    "ce-id": "1",
    "ce-source": "//example.com/s",
    "ce-type": "com.example.thing.v1.done",
    "Content-Type": "application/json",
}
STRUCTURED = {"Content-Type": "application/cloudevents+json"}
DOCUMENT = {"specversion": "1.0", "id": "1", "source": "//example.com/s", "type": "com.example.x"}


def rejection(headers, body) -> tuple[str, str]:
    with pytest.raises(DecodeError) as info:
        decode(headers, body)
    return info.value.reason, info.value.message


@pytest.mark.parametrize(
    ("headers", "body", "reason", "message"),
    [
        (
            JSON,
            b"[" * 100_000 + b"]" * 100_000,
            "bad_json",
            "request body is not valid JSON (nested too deeply)",
        ),
        (
            {**BINARY, "ce-extensions": "x"},
            b"{}",
            "bad_cloudevent",
            "CloudEvent binary mode: header ce-extensions is not supported as an attribute name",
        ),
        (
            {**BINARY, "CE-Extensions": "x"},  # header names are case-insensitive
            b"{}",
            "bad_cloudevent",
            "CloudEvent binary mode: header ce-extensions is not supported as an attribute name",
        ),
        (
            STRUCTURED,
            json.dumps({**DOCUMENT, "extensions": {}}).encode(),
            "bad_cloudevent",
            "structured CloudEvent: member extensions is not supported as an attribute name",
        ),
        (
            STRUCTURED,
            json.dumps({**DOCUMENT, "data_base64": 5}).encode(),
            "bad_cloudevent",
            "structured CloudEvent: data_base64 must be a string, not a number",
        ),
        (
            {
                **BINARY,
                "ce-type": "google.cloud.storage.object.v1.finalized",
                "ce-source": "//storage.googleapis.com/projects/_/buckets/b",
            },
            b"null",
            "missing_field",
            "Cloud Storage CloudEvent google.cloud.storage.object.v1.finalized: data is missing",
        ),
        (
            JSON,
            json.dumps({"message": {"messageId": "1", "publishTime": 5}, "subscription": "s"}),
            "bad_field",
            "raw Pub/Sub push: message.publishTime is a number, expected a string",
        ),
        (
            JSON,
            json.dumps({"message": {"messageId": "1", "orderingKey": []}, "subscription": "s"}),
            "bad_field",
            "raw Pub/Sub push: message.orderingKey is an array, expected a string",
        ),
        (
            JSON,
            json.dumps(
                {"message": {"messageId": "1", "attributes": {"a": 5}}, "subscription": "s"}
            ),
            "bad_field",
            "raw Pub/Sub push: message.attributes.a is a number, expected a string"
            " (Pub/Sub attribute values are strings)",
        ),
        (
            JSON,
            json.dumps({"message": None, "subscription": "s"}),
            "bad_field",
            "raw Pub/Sub push: message is null, expected an object",
        ),
        (
            {**BINARY, "ce-specversion": "0.9"},
            b"{}",
            "bad_cloudevent",
            "CloudEvent binary mode: Found invalid specversion 0.9",
        ),
        (
            STRUCTURED,
            json.dumps({**DOCUMENT, "specversion": "9"}),
            "bad_cloudevent",
            "structured CloudEvent: Found invalid specversion 9",
        ),
        (
            {**BINARY, "Content-Type": "application/cloudevents+json"},
            b"{}",
            "bad_cloudevent",
            "CloudEvent binary mode: a ce-specversion header and Content-Type"
            " application/cloudevents+json contradict each other"
            " (binary mode carries the data's own content type)",
        ),
        (
            {
                **BINARY,
                "ce-type": "google.cloud.storage.object.v1.finalized",
                "ce-source": "//storage.googleapis.com/projects/_/buckets/b",
            },
            json.dumps({"bucket": "", "name": "n"}),
            "missing_field",
            "Cloud Storage CloudEvent google.cloud.storage.object.v1.finalized:"
            " data.bucket is missing",
        ),
    ],
    ids=[
        "nested-too-deeply",
        "binary-extensions",
        "binary-extensions-case",
        "structured-extensions",
        "data-base64-number",
        "storage-data-null",
        "publish-time-number",
        "ordering-key-array",
        "attribute-number",
        "message-null",
        "binary-specversion",
        "structured-specversion",
        "binary-with-cloudevents-type",
        "storage-bucket-empty",
    ],
)
def test_rejections_say_what_and_where(headers, body, reason, message):
    body = body.encode() if isinstance(body, str) else body
    assert rejection(headers, body) == (reason, message)


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8; x=1", "text/json", "TEXT/JSON", "application/x+json"],
)
def test_json_media_types_are_parsed(content_type):
    event = decode({**BINARY, "Content-Type": content_type}, b'{"a": 1}')
    assert event.data == {"a": 1}


def test_an_empty_binary_body_is_no_data():
    assert decode(BINARY, b"").data is None


def test_a_scheduler_tick_without_a_time_is_stamped_in_utc_whatever_the_local_zone(monkeypatch):
    # A force-run sends no schedule time: the tick is "now", which must be UTC "now" even where
    # the machine's zone is not UTC (a naive local now would be off by the zone's offset).
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        headers = {"User-Agent": "Google-Cloud-Scheduler", "X-CloudScheduler-JobName": "nightly"}
        stamped = datetime.fromisoformat(decode(headers, b"").time.replace("Z", "+00:00"))
    finally:
        monkeypatch.undo()
        time.tzset()
    # Tokyo is 9 hours ahead: anything under an hour off is UTC, not local time read as UTC.
    assert abs((stamped - datetime.now(UTC)).total_seconds()) < 3600


@pytest.mark.parametrize("attributes", [{"eventType": "OBJECT_FINALIZE"}, {"bucketId": "b"}])
def test_a_message_with_only_one_storage_attribute_is_an_ordinary_message(attributes):
    # A notification has both eventType and bucketId; either alone is somebody's own attribute.
    body = {"message": {"messageId": "1", "attributes": attributes}, "subscription": "s"}
    event = decode(JSON, json.dumps(body).encode())
    assert (event.kind, event.form) == ("pubsub", "pubsub-push")
