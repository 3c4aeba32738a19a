"""Property: whatever arrives, ``decode`` returns an Event or raises DecodeError, nothing else.

The strategies lean towards inputs that get deep into the decoders (real header names, the
envelopes of each form with arbitrary JSON inside) rather than only random bytes, which would
stop at the first sniffing step.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from triggers.errors import DecodeError
from triggers.events import Event, decode, parse_event_file

NOW = lambda: datetime(2026, 11, 21, 2, 0, tzinfo=UTC)  # noqa: E731

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)

HEADER_NAMES = [
    "Content-Type",
    "ce-specversion",
    "ce-id",
    "ce-source",
    "ce-type",
    "ce-time",
    "ce-subject",
    "ce-extensions",
    "ce-data",
    "X-CloudScheduler",
    "X-CloudScheduler-JobName",
    "X-CloudScheduler-ScheduleTime",
    "User-Agent",
]
CONTENT_TYPES = [
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "text/plain",
    "application/octet-stream",
    "application/protobuf",
    "",
]
header_values = st.sampled_from(
    CONTENT_TYPES
    + [
        "1.0",
        "0.3",
        "2.0",
        "true",
        "Google-Cloud-Scheduler",
        "google.cloud.pubsub.topic.v1.messagePublished",
        "google.cloud.storage.object.v1.finalized",
    ]
) | st.text(max_size=20)
headers_strategy = st.dictionaries(
    st.sampled_from(HEADER_NAMES) | st.text(max_size=10), header_values, max_size=8
)

# Interesting field names for the JSON envelopes.
KEYS = [
    "message",
    "specversion",
    "id",
    "source",
    "type",
    "data",
    "data_base64",
    "attributes",
    "messageId",
    "message_id",
    "publishTime",
    "subscription",
    "eventType",
    "bucketId",
    "objectId",
    "payloadFormat",
    "scheduler_job",
    "schedule_time",
    "bucket",
    "name",
    "size",
    "generation",
    "extensions",
    "time",
    "subject",
    "datacontenttype",
]
shaped = st.recursive(
    json_scalars | st.sampled_from(["1.0", "OBJECT_FINALIZE", "NONE", "eyJhIjoxfQ==", "%%%"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=6)
    ),
    max_leaves=25,
)


def _base64_of(value) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


messages = st.fixed_dictionaries(
    {"messageId": st.text(max_size=5) | st.integers(), "publishTime": st.text(max_size=5)},
    optional={
        "data": st.one_of(
            st.text(max_size=12),
            shaped.map(_base64_of),
            st.binary().map(lambda b: base64.b64encode(b).decode()),
        ),
        "attributes": st.dictionaries(
            st.sampled_from(KEYS) | st.text(max_size=6),
            st.text(max_size=8)
            | st.sampled_from(["OBJECT_FINALIZE", "OBJECT_DELETE", "NONE", "12x"]),
            max_size=6,
        )
        | shaped,
    },
)
push_bodies = st.fixed_dictionaries(
    {"message": messages | shaped}, optional={"subscription": st.text(max_size=8) | shaped}
)


def _check(headers, body):
    try:
        event = decode(headers, body, now=NOW)
    except DecodeError as exc:
        assert exc.reason in DecodeError.REASONS
        assert exc.message
    else:
        assert isinstance(event, Event)
        json.dumps(event.document)  # the document must stay JSON-serialisable


settings_ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings_
@given(headers=headers_strategy, body=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_decode_error(headers, body):
    _check(headers, body)


@settings_
@given(headers=headers_strategy, value=json_values | shaped)
def test_arbitrary_json_raises_only_decode_error(headers, value):
    _check(headers, json.dumps(value).encode())


@settings_
@given(value=push_bodies, content_type=st.sampled_from(CONTENT_TYPES))
def test_push_shaped_bodies_raise_only_decode_error(value, content_type):
    _check({"Content-Type": content_type}, json.dumps(value).encode())


@settings_
@given(
    extra=st.dictionaries(st.sampled_from(KEYS), shaped, max_size=6),
    event_type=st.sampled_from(
        [
            "google.cloud.pubsub.topic.v1.messagePublished",
            "google.cloud.storage.object.v1.finalized",
            "com.example.x",
        ]
    ),
    data=push_bodies | shaped,
    structured=st.booleans(),
)
def test_cloudevent_shaped_requests_raise_only_decode_error(extra, event_type, data, structured):
    if structured:
        document = {
            "specversion": "1.0",
            "id": "1",
            "source": "s",
            "type": event_type,
            "data": data,
            **extra,
        }
        _check({"Content-Type": "application/cloudevents+json"}, json.dumps(document).encode())
    else:
        headers = {
            "ce-specversion": "1.0",
            "ce-id": "1",
            "ce-source": "s",
            "ce-type": event_type,
            "Content-Type": "application/json",
        }
        headers.update({f"ce-{k}": str(v) for k, v in extra.items()})
        _check(headers, json.dumps(data).encode())


@settings_
@given(
    text=st.text(max_size=200)
    | json_values.map(json.dumps)
    | st.fixed_dictionaries(
        {}, optional={"headers": shaped, "body": shaped, "description": shaped}
    ).map(json.dumps)
)
def test_parse_event_file_raises_only_decode_error(text):
    try:
        headers, body = parse_event_file(text, "f.json")
    except DecodeError as exc:
        assert exc.reason == "bad_json"
        assert exc.message.startswith("f.json: ")
    else:
        assert isinstance(body, bytes)
        assert all(isinstance(v, str) for v in headers.values())
