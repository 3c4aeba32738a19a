"""Recognising the input form: order of the checks, header case, size limit, every error reason."""

from __future__ import annotations

import json

import pytest

from triggers.errors import DecodeError
from triggers.events import decode

PUSH = json.dumps(
    {"message": {"messageId": "1", "data": "aGk="}, "subscription": "projects/p/subscriptions/s"}
).encode()
STRUCTURED = json.dumps(
    {"specversion": "1.0", "id": "e1", "source": "//x", "type": "com.x.y", "data": {"a": 1}}
).encode()
BINARY_HEADERS = {"ce-specversion": "1.0", "ce-id": "e1", "ce-source": "//x", "ce-type": "com.x.y"}
SCHEDULER_HEADERS = {
    "X-CloudScheduler": "true",
    "X-CloudScheduler-JobName": "j",
    "X-CloudScheduler-ScheduleTime": "2026-11-21T02:00:00Z",
}


class TestSizeLimit:
    def test_over_the_limit(self):
        with pytest.raises(DecodeError) as info:
            decode({"Content-Type": "application/json"}, PUSH, max_body_bytes=len(PUSH) - 1)
        assert info.value.reason == "body_too_large"
        assert info.value.message == (
            f"request body is {len(PUSH)} bytes, the limit is {len(PUSH) - 1} bytes"
        )

    def test_exactly_at_the_limit(self):
        assert decode({}, PUSH, max_body_bytes=len(PUSH)).kind == "pubsub"

    def test_checked_before_anything_else(self):
        # A request that is also a broken CloudEvent is rejected for its size first.
        with pytest.raises(DecodeError) as info:
            decode({"ce-specversion": "1.0"}, b"x" * 11)
        assert info.value.reason == "bad_cloudevent"
        with pytest.raises(DecodeError) as info:
            decode({"ce-specversion": "1.0"}, b"x" * 11, max_body_bytes=10)
        assert info.value.reason == "body_too_large"

    def test_default_limit_is_ten_mebibytes(self):
        body = b" " * (10 * 1024 * 1024 + 1)
        with pytest.raises(DecodeError) as info:
            decode({}, body)
        assert info.value.reason == "body_too_large"

    def test_bytearray_and_memoryview_bodies(self):
        assert decode({}, bytearray(PUSH)).id == "1"
        assert decode({}, memoryview(PUSH)).id == "1"


class TestOrder:
    def test_binary_mode_wins_over_scheduler_headers_and_push_body(self):
        event = decode(
            {**BINARY_HEADERS, **SCHEDULER_HEADERS, "Content-Type": "application/json"}, PUSH
        )
        assert event.form == "cloudevent-binary"
        assert event.kind == "generic"

    def test_structured_content_type_wins_over_scheduler_headers(self):
        event = decode(
            {**SCHEDULER_HEADERS, "Content-Type": "application/cloudevents+json"}, STRUCTURED
        )
        assert event.form == "cloudevent-structured"

    def test_scheduler_wins_over_a_push_body(self):
        assert (
            decode({**SCHEDULER_HEADERS, "Content-Type": "application/json"}, PUSH).kind
            == "scheduler"
        )

    def test_message_member_wins_over_specversion_member(self):
        body = json.loads(STRUCTURED)
        body.update(json.loads(PUSH))
        assert decode({}, json.dumps(body).encode()).form == "pubsub-push"

    def test_push_with_another_content_type_is_still_recognised(self):
        assert decode({"Content-Type": "text/plain"}, PUSH).kind == "pubsub"


class TestHeaderCase:
    @pytest.mark.parametrize("transform", [str.lower, str.upper, str.title])
    def test_binary_mode_headers(self, transform):
        headers = {
            transform(k): v
            for k, v in {
                **BINARY_HEADERS,
                "ce-tenant": "acme",
                "Content-Type": "application/json",
            }.items()
        }
        event = decode(headers, b'{"a": 1}')
        assert (event.id, event.data, dict(event.extensions)) == (
            "e1",
            {"a": 1},
            {"tenant": "acme"},
        )

    @pytest.mark.parametrize("transform", [str.lower, str.upper])
    def test_scheduler_headers(self, transform):
        event = decode({transform(k): v for k, v in SCHEDULER_HEADERS.items()}, b"")
        assert event.id == "j#2026-11-21T02:00:00Z"

    def test_content_type_header_name_and_value(self):
        event = decode({"CONTENT-TYPE": "Application/CloudEvents+JSON"}, STRUCTURED)
        assert event.form == "cloudevent-structured"


# One row per DecodeError reason (and then some): request -> reason + a fragment of the message.
ERROR_TABLE = [
    ("body_too_large", {}, b"{}" * 6, "request body is 12 bytes, the limit is 10 bytes"),
    (
        "bad_json",
        {"Content-Type": "application/json"},
        b'{"message": ',
        "request body is not valid JSON (Expecting value: line 1 column 13",
    ),
    ("bad_json", {}, b"{oops}", "request body is not valid JSON"),
    (
        "bad_json",
        {"Content-Type": "application/cloudevents+json"},
        b"nope",
        "structured CloudEvent: body is not valid JSON",
    ),
    (
        "bad_json",
        {**BINARY_HEADERS, "Content-Type": "application/json"},
        b"{",
        "CloudEvent com.x.y: data is not valid JSON",
    ),
    (
        "bad_base64",
        {},
        b'{"message": {"messageId": "1", "data": "@@"}, "subscription": "s"}',
        "raw Pub/Sub push: message.data is not valid base64 (Only base64 data is allowed)",
    ),
    (
        "bad_encoding",
        {"Content-Type": "application/json"},
        b'{"a": "\xff"}',
        "request body is not valid UTF-8 (byte 7: invalid start byte)",
    ),
    (
        "bad_encoding",
        {"Content-Type": "application/cloudevents+json"},
        b"\xfe",
        "structured CloudEvent: body is not valid UTF-8",
    ),
    (
        "bad_encoding",
        {**BINARY_HEADERS, "Content-Type": "text/plain"},
        b"\xff",
        "CloudEvent com.x.y: data is not valid UTF-8",
    ),
    (
        "bad_encoding",
        {"Content-Type": "application/json"},
        b'{"message": {"messageId": "1\\ud800"}, "subscription": "s"}',
        "raw Pub/Sub push: data.message.message_id holds U+D800 at character 1",
    ),
    (
        "bad_number",
        {**BINARY_HEADERS, "Content-Type": "application/json"},
        b'{"amount": 1e400}',
        "CloudEvent binary mode: data.amount is inf",
    ),
    (
        "too_deep",
        {**BINARY_HEADERS, "Content-Type": "application/json"},
        b"[" * 100 + b"]" * 100,
        "CloudEvent binary mode: data[0][0]",
    ),
    (
        "value_too_large",
        {**BINARY_HEADERS, "ce-id": "i" * 3000},
        b"",
        "CloudEvent binary mode: id is 3000 bytes, the limit is 2048 bytes",
    ),
    (
        "missing_field",
        {},
        b'{"message": {"data": "aGk="}, "subscription": "s"}',
        "raw Pub/Sub push: message.messageId is missing",
    ),
    (
        "missing_field",
        {"X-CloudScheduler": "true"},
        b"",
        "Cloud Scheduler HTTP target: header X-CloudScheduler-JobName is missing",
    ),
    (
        "bad_field",
        {},
        b'{"message": "hello"}',
        "raw Pub/Sub push: message is a string, expected an object",
    ),
    (
        "unsupported_content_type",
        {"Content-Type": "application/cloudevents-batch+json"},
        b"[]",
        "Content-Type application/cloudevents-batch+json: CloudEvents batch mode is not supported",
    ),
    (
        "unsupported_content_type",
        {"Content-Type": "application/cloudevents+avro"},
        b"",
        "application/cloudevents+avro: only the JSON event format of CloudEvents is supported",
    ),
    (
        "bad_cloudevent",
        {"ce-specversion": "1.0", "ce-id": "1", "ce-type": "t"},
        b"",
        "CloudEvent binary mode: required header ce-source is missing or empty",
    ),
    (
        "bad_cloudevent",
        {"Content-Type": "application/cloudevents+json"},
        b'{"specversion": "1.0"}',
        "structured CloudEvent: required attribute id is missing",
    ),
    ("unrecognised", {}, b"", "request with an empty body is not a CloudEvent"),
    (
        "unrecognised",
        {"Content-Type": "text/csv"},
        b"a,b\n1,2\n",
        "request with a text/csv body is not a CloudEvent",
    ),
    (
        "unrecognised",
        {},
        b'{"hello": "world"}',
        "request with a JSON body that is an object without message or specversion members",
    ),
    ("unrecognised", {}, b"[1, 2]", "request with a JSON body that is an array is not"),
]


@pytest.mark.parametrize(
    "reason, headers, body, fragment",
    ERROR_TABLE,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(ERROR_TABLE)],
)
def test_error_table(reason, headers, body, fragment):
    with pytest.raises(DecodeError) as info:
        decode(headers, body, max_body_bytes=10 if reason == "body_too_large" else 1 << 20)
    assert info.value.reason == reason
    assert fragment in info.value.message
    assert str(info.value) == f"{reason}: {info.value.message}"


def test_error_table_covers_every_reason():
    assert {row[0] for row in ERROR_TABLE} == set(DecodeError.REASONS)


def test_unrecognised_names_what_was_looked_for():
    with pytest.raises(DecodeError) as info:
        decode({}, b'{"hello": "world"}')
    for looked_for in (
        "ce-specversion",
        "application/cloudevents+json",
        "specversion",
        "X-CloudScheduler",
        "Google-Cloud-Scheduler",
        "message",
    ):
        assert looked_for in info.value.message


def test_decode_errors_are_value_errors_and_chain_nothing():
    with pytest.raises(ValueError) as info:
        decode({}, b'{"message": {"messageId": "1", "data": "@@"}, "subscription": "s"}')
    # The low-level exception is summarised in the message, not attached as a cause to leak.
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_every_reason_is_documented():
    from pathlib import Path

    docs = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text(encoding="utf-8")
    for reason in DecodeError.REASONS:
        assert f"| `{reason}` |" in docs, reason
