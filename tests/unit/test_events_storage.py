"""Cloud Storage: Eventarc CloudEvents and GCS Pub/Sub notifications normalise to one event."""

from __future__ import annotations

import base64
import json

import pytest

from triggers.errors import DecodeError
from triggers.events import (
    STORAGE_ARCHIVED,
    STORAGE_DELETED,
    STORAGE_FINALIZED,
    STORAGE_METADATA_UPDATED,
    decode,
)

BUCKET, NAME = "raw-data", "incoming/2026/11/21/orders.csv"
OBJECT = {
    "kind": "storage#object",
    "bucket": BUCKET,
    "name": NAME,
    "generation": "1763683200000000",
    "metageneration": "1",
    "size": "52311",
    "contentType": "text/csv",
    "timeCreated": "2026-11-21T06:00:00.000Z",
    "updated": "2026-11-21T06:00:00.000Z",
    "md5Hash": "XrY7u+Ae7tCTyyK7j1rNww==",
    "crc32c": "yZRlqg==",
    "metadata": {"exported-by": "erp"},
}
NOTIFICATION_TYPES = {
    "OBJECT_FINALIZE": STORAGE_FINALIZED,
    "OBJECT_DELETE": STORAGE_DELETED,
    "OBJECT_ARCHIVE": STORAGE_ARCHIVED,
    "OBJECT_METADATA_UPDATE": STORAGE_METADATA_UPDATED,
}


def cloudevent(obj=OBJECT, ce_type=STORAGE_FINALIZED, **headers):
    h = {
        "ce-specversion": "1.0",
        "ce-id": "9876",
        "ce-source": f"//storage.googleapis.com/projects/_/buckets/{BUCKET}",
        "ce-type": ce_type,
        "ce-subject": f"objects/{NAME}",
        "ce-time": "2026-11-21T06:00:00.000Z",
        "ce-bucket": BUCKET,
        "Content-Type": "application/json",
        **headers,
    }
    return h, json.dumps(obj).encode()


def attributes(event_type="OBJECT_FINALIZE", payload="JSON_API_V1", **extra):
    return {
        "eventType": event_type,
        "payloadFormat": payload,
        "bucketId": BUCKET,
        "objectId": NAME,
        "objectGeneration": "1763683200000000",
        "eventTime": "2026-11-21T06:00:00.000001Z",
        "notificationConfig": f"projects/_/buckets/{BUCKET}/notificationConfigs/1",
        **extra,
    }


def notification(obj=OBJECT, attrs=None, raw_data: bytes | None = None):
    message = {
        "messageId": "5566",
        "publishTime": "2026-11-21T06:00:01Z",
        "attributes": attrs if attrs is not None else attributes(),
    }
    if raw_data is not None:
        message["data"] = base64.b64encode(raw_data).decode()
    elif obj is not None:
        message["data"] = base64.b64encode(json.dumps(obj).encode()).decode()
    body = {"message": message, "subscription": "projects/demo-project/subscriptions/gcs"}
    return {"Content-Type": "application/json"}, json.dumps(body).encode()


EXPECTED_DATA = {**OBJECT, "generation": 1763683200000000, "metageneration": 1, "size": 52311}


def test_cloudevent():
    event = decode(*cloudevent())
    assert event.kind == "storage"
    assert event.form == "cloudevent-binary"
    assert event.type == STORAGE_FINALIZED
    assert event.id == "9876"
    assert event.source == "//storage.googleapis.com/projects/_/buckets/raw-data"
    assert event.subject == "objects/incoming/2026/11/21/orders.csv"
    assert event.time == "2026-11-21T06:00:00.000Z"
    assert event.data == EXPECTED_DATA
    assert event.extensions == {"bucket": BUCKET}


def test_notification():
    event = decode(*notification())
    assert event.kind == "storage"
    assert event.form == "storage-notification"
    assert event.type == STORAGE_FINALIZED
    assert event.id == "5566"
    assert event.time == "2026-11-21T06:00:00.000001Z"  # eventTime, not the publish time
    assert event.data == EXPECTED_DATA


@pytest.mark.parametrize("event_type, ce_type", sorted(NOTIFICATION_TYPES.items()))
def test_both_paths_normalise_to_the_same_event(event_type, ce_type):
    from_ce = decode(*cloudevent(ce_type=ce_type))
    from_notification = decode(*notification(attrs=attributes(event_type)))
    for field in ("type", "source", "subject", "data", "kind"):
        assert getattr(from_ce, field) == getattr(from_notification, field), field
    assert from_ce.document["data"] == from_notification.document["data"]


def test_notification_through_an_eventarc_pubsub_cloudevent():
    message = {
        "messageId": "5566",
        "attributes": attributes(),
        "data": base64.b64encode(json.dumps(OBJECT).encode()).decode(),
    }
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "5566",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/demo-project/topics/gcs",
        "ce-time": "2026-11-21T06:00:01Z",
        "Content-Type": "application/json",
    }
    event = decode(headers, json.dumps({"message": message}).encode())
    assert event.kind == "storage"
    assert event.form == "storage-notification"
    assert event.data == EXPECTED_DATA
    assert event.subject == decode(*cloudevent()).subject


def test_payload_format_none_builds_the_object_from_attributes():
    event = decode(*notification(obj=None, attrs=attributes("OBJECT_DELETE", "NONE")))
    assert event.type == STORAGE_DELETED
    assert event.data == {"bucket": BUCKET, "name": NAME, "generation": 1763683200000000}
    assert event.subject == f"objects/{NAME}"


def test_payload_format_none_ignores_a_payload_that_is_sent_anyway():
    # NONE means the attributes are the whole notification, even if the message has data.
    attrs = attributes(payload="NONE")
    event = decode(*notification(attrs=attrs, raw_data=b"not the object resource"))
    assert event.data == {"bucket": BUCKET, "name": NAME, "generation": 1763683200000000}


def test_a_json_payload_is_parsed_only_when_the_format_says_so():
    # With JSON_API_V1 the payload is the resource, so a broken one is an error, not ignored.
    with pytest.raises(DecodeError) as info:
        decode(*notification(raw_data=b"not the object resource"))
    assert info.value.reason == "bad_json"


def test_payload_format_none_without_generation():
    attrs = attributes(payload="NONE")
    del attrs["objectGeneration"]
    assert decode(*notification(obj=None, attrs=attrs)).data == {"bucket": BUCKET, "name": NAME}


def test_time_falls_back_to_publish_time():
    attrs = attributes()
    del attrs["eventTime"]
    assert decode(*notification(attrs=attrs)).time == "2026-11-21T06:00:01Z"


@pytest.mark.parametrize(
    "value, expected", [("0", 0), ("18446744073709551615", 2**64 - 1), (7, 7), ("-1", -1)]
)
def test_int64_conversion(value, expected):
    assert decode(*cloudevent({**OBJECT, "size": value})).data["size"] == expected


def test_absent_int64_fields_stay_absent():
    obj = {"bucket": BUCKET, "name": NAME}
    assert decode(*cloudevent(obj)).data == obj


def test_unrelated_fields_are_kept_as_given():
    obj = {**OBJECT, "componentCount": 3, "customTime": "2026-01-01T00:00:00Z"}
    data = decode(*cloudevent(obj)).data
    assert data["componentCount"] == 3 and data["customTime"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "request_, reason, fragment",
    [
        (
            cloudevent({**OBJECT, "size": "12kB"}),
            "bad_field",
            "Cloud Storage CloudEvent google.cloud.storage.object.v1.finalized: "
            "data.size is '12kB', expected an integer string",
        ),
        (cloudevent({**OBJECT, "generation": 1.5}), "bad_field", "data.generation is a number"),
        (
            cloudevent({**OBJECT, "metageneration": True}),
            "bad_field",
            "data.metageneration is a boolean",
        ),
        (cloudevent({**OBJECT, "size": "9" * 30}), "bad_field", "expected an integer string"),
        (cloudevent({"name": NAME}), "missing_field", "data.bucket is missing"),
        (cloudevent({"bucket": BUCKET}), "missing_field", "data.name is missing"),
        (
            cloudevent({"bucket": BUCKET, "name": 5}),
            "bad_field",
            "data.name is a number, expected a string",
        ),
        (cloudevent([OBJECT]), "bad_field", "data is an array, expected an object"),
        (
            cloudevent(**{"Content-Type": "application/protobuf"}),
            "unsupported_content_type",
            "application/protobuf",
        ),
        (
            notification(attrs=attributes("OBJECT_EXPLODE")),
            "bad_field",
            "raw Pub/Sub push): message.attributes.eventType is 'OBJECT_EXPLODE', expected one of"
            " OBJECT_FINALIZE, OBJECT_DELETE, OBJECT_ARCHIVE, OBJECT_METADATA_UPDATE",
        ),
        (
            notification(raw_data=b"not json"),
            "bad_json",
            "Cloud Storage notification (raw Pub/Sub push): message.data is not valid JSON",
        ),
        (notification(raw_data=b"\xff\xfe"), "bad_encoding", "message.data is not valid UTF-8"),
        (
            notification(obj=[1]),
            "bad_field",
            "message.data is an array, expected an object resource",
        ),
        (notification(obj={**OBJECT, "size": "x"}), "bad_field", "message.data.size is 'x'"),
        (
            notification(obj=None, attrs={**attributes(payload="NONE"), "objectId": ""}),
            "missing_field",
            "message.attributes.objectId is missing",
        ),
        (
            notification(obj=None, attrs={**attributes(payload="NONE"), "objectGeneration": "g1"}),
            "bad_field",
            "message.attributes.objectGeneration is 'g1'",
        ),
    ],
)
def test_malformed_storage_events(request_, reason, fragment):
    with pytest.raises(DecodeError) as info:
        decode(*request_)
    assert info.value.reason == reason
    assert fragment in info.value.message


def test_unknown_storage_type_is_generic():
    # Only the four documented object events are storage events.
    event = decode(*cloudevent(ce_type="google.cloud.storage.object.v1.somethingNew"))
    assert event.kind == "generic"
    assert event.data["size"] == "52311"
