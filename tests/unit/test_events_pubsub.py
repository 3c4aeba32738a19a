"""Pub/Sub messages: raw push bodies (both field spellings) and Eventarc CloudEvents."""

from __future__ import annotations

import base64
import json

import pytest

from triggers.errors import DecodeError
from triggers.events import PUBSUB_PUBLISHED, decode

TOPIC = "projects/demo-project/topics/orders"
SUB = "projects/demo-project/subscriptions/orders-push"
ORDER = {"order_id": "A-1001", "status": "paid", "amount": 42.5}


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def push(message: dict, **envelope) -> tuple[dict, bytes]:
    body = {"message": message, "subscription": SUB, **envelope}
    return {"Content-Type": "application/json"}, json.dumps(body).encode()


def message(data: bytes | None = json.dumps(ORDER).encode(), **fields) -> dict:
    msg = {
        "messageId": "101",
        "publishTime": "2026-11-21T10:15:30.123Z",
        "attributes": {"kind": "order"},
        **fields,
    }
    if data is not None:
        msg["data"] = b64(data)
    return msg


def eventarc(body: dict, **headers) -> tuple[dict, bytes]:
    h = {
        "ce-specversion": "1.0",
        "ce-id": "101",
        "ce-source": f"//pubsub.googleapis.com/{TOPIC}",
        "ce-type": PUBSUB_PUBLISHED,
        "ce-time": "2026-11-21T10:15:30.123Z",
        "Content-Type": "application/json",
        **headers,
    }
    return h, json.dumps(body).encode()


class TestRawPush:
    def test_camel_case(self):
        event = decode(*push(message(orderingKey="customer-9")))
        assert event.kind == "pubsub"
        assert event.form == "pubsub-push"
        assert event.type == PUBSUB_PUBLISHED
        assert event.id == "101"
        assert event.source == f"//pubsub.googleapis.com/{SUB}"
        assert event.time == "2026-11-21T10:15:30.123Z"
        assert event.data == {
            "message": {
                "data": b64(json.dumps(ORDER).encode()),
                "text": json.dumps(ORDER),
                "json": ORDER,
                "attributes": {"kind": "order"},
                "message_id": "101",
                "publish_time": "2026-11-21T10:15:30.123Z",
                "ordering_key": "customer-9",
            },
            "subscription": SUB,
            "topic": None,
        }

    def test_snake_case_gives_the_same_event(self):
        camel = decode(*push(message(orderingKey="k")))
        snake_msg = {
            "message_id": "101",
            "publish_time": "2026-11-21T10:15:30.123Z",
            "ordering_key": "k",
            "attributes": {"kind": "order"},
            "data": b64(json.dumps(ORDER).encode()),
        }
        snake = decode(*push(snake_msg))
        assert snake == camel
        assert snake.document == camel.document

    def test_default_dedup_key_is_source_and_message_id(self):
        assert decode(*push(message())).default_dedup_key == f"//pubsub.googleapis.com/{SUB}#101"

    def test_non_utf8_data_has_no_text_or_json(self):
        event = decode(*push(message(data=b"\xff\xfe\x00binary")))
        msg = event.data["message"]
        assert msg["data"] == b64(b"\xff\xfe\x00binary")
        assert msg["text"] is None
        assert msg["json"] is None

    def test_non_json_text_has_text_but_no_json(self):
        msg = decode(*push(message(data=b"hello, world"))).data["message"]
        assert msg["text"] == "hello, world"
        assert msg["json"] is None

    def test_json_scalar_text_is_parsed(self):
        assert decode(*push(message(data=b"42"))).data["message"]["json"] == 42

    def test_nan_is_not_json(self):
        # Python's json accepts NaN; the event document must stay strict JSON.
        msg = decode(*push(message(data=b"NaN"))).data["message"]
        assert msg["text"] == "NaN" and msg["json"] is None

    def test_no_data_and_no_attributes(self):
        event = decode(*push({"messageId": "5"}))
        msg = event.data["message"]
        assert (msg["data"], msg["text"], msg["json"]) == (None, None, None)
        assert msg["attributes"] == {}
        assert msg["ordering_key"] is None and msg["publish_time"] is None
        assert event.time is None

    def test_message_data_is_not_mutable_through_event(self):
        # Two decodes of one request are independent values.
        request = push(message())
        first = decode(*request)
        first.data["message"]["attributes"]["kind"] = "changed"
        assert decode(*request).data["message"]["attributes"] == {"kind": "order"}


class TestEventarc:
    def test_message_published(self):
        event = decode(*eventarc({"message": message(), "subscription": SUB}))
        assert event.kind == "pubsub"
        assert event.form == "cloudevent-binary"
        assert event.id == "101"
        assert event.source == f"//pubsub.googleapis.com/{TOPIC}"
        assert event.time == "2026-11-21T10:15:30.123Z"
        assert event.data["topic"] == TOPIC
        assert event.data["subscription"] == SUB
        assert event.data["message"]["json"] == ORDER

    def test_structured_mode(self):
        document = {
            "specversion": "1.0",
            "id": "101",
            "type": PUBSUB_PUBLISHED,
            "source": f"//pubsub.googleapis.com/{TOPIC}",
            "time": "2026-11-21T10:15:30.123Z",
            "data": {"message": message(), "subscription": SUB},
        }
        event = decode(
            {"Content-Type": "application/cloudevents+json"}, json.dumps(document).encode()
        )
        assert event.form == "cloudevent-structured"
        assert event.data == decode(*eventarc({"message": message(), "subscription": SUB})).data

    def test_the_cloudevents_own_time_and_subject_lead(self):
        # Eventarc stamps the event when it routes it, after the publish: the two differ, and
        # the CloudEvent's own attributes are what the event is (and what templates see).
        event = decode(
            *eventarc(
                {"message": message(), "subscription": SUB},
                **{"ce-time": "2026-11-21T10:15:31.500Z", "ce-subject": "orders/A-1001"},
            )
        )
        assert event.time == "2026-11-21T10:15:31.500Z"
        assert event.subject == "orders/A-1001"
        assert event.document["subject"] == "orders/A-1001"
        assert event.data["message"]["publish_time"] == "2026-11-21T10:15:30.123Z"

    def test_without_a_cloudevent_time_the_publish_time_stands_in(self):
        headers, body = eventarc({"message": message(), "subscription": SUB})
        del headers["ce-time"]
        event = decode(headers, body)
        assert event.time == "2026-11-21T10:15:30.123Z" and event.subject is None

    def test_errors_name_the_cloudevent_and_the_path_inside_it(self):
        # A sender fixing a rejected event needs to know which part of which form was wrong.
        headers, _ = eventarc({})
        with pytest.raises(DecodeError) as info:
            decode(headers, b"{not json")
        assert info.value.reason == "bad_json"
        assert info.value.message.startswith("Pub/Sub CloudEvent: data is not valid JSON (")
        storage = message(
            attributes={"eventType": "OBJECT_EXPLODE", "bucketId": "b", "objectId": "o"}
        )
        with pytest.raises(DecodeError) as info:
            decode(*eventarc({"message": storage}))
        assert info.value.message.startswith(
            "Cloud Storage notification (Pub/Sub CloudEvent):"
            " data.message.attributes.eventType is 'OBJECT_EXPLODE'"
        )

    def test_message_id_falls_back_to_the_cloudevent_id(self):
        msg = message()
        del msg["messageId"]
        event = decode(*eventarc({"message": msg}))
        assert event.data["message"]["message_id"] == "101"
        assert event.data["subscription"] is None

    def test_extensions_are_kept(self):
        event = decode(*eventarc({"message": message()}, **{"ce-traceparent": "00-1-2-01"}))
        assert event.extensions == {"traceparent": "00-1-2-01"}
        assert event.document["traceparent"] == "00-1-2-01"

    def test_unknown_source_shape_has_no_topic(self):
        event = decode(*eventarc({"message": message()}, **{"ce-source": "//elsewhere/x"}))
        assert event.data["topic"] is None
        assert event.source == "//elsewhere/x"

    def test_protobuf_data_is_unsupported(self):
        with pytest.raises(DecodeError) as info:
            decode(*eventarc({"message": message()}, **{"Content-Type": "application/protobuf"}))
        assert info.value.reason == "unsupported_content_type"
        assert "Pub/Sub CloudEvent: data content type application/protobuf" in info.value.message

    def test_bad_base64_names_the_path(self):
        with pytest.raises(DecodeError) as info:
            decode(*eventarc({"message": {"data": "abc"}}))
        assert info.value.reason == "bad_base64"
        assert info.value.message == (
            "Pub/Sub CloudEvent: data.message.data is not valid base64 (Incorrect padding)"
        )


@pytest.mark.parametrize(
    "body, reason, message_text",
    [
        (
            {"message": {"messageId": "1", "data": "abc"}, "subscription": SUB},
            "bad_base64",
            "raw Pub/Sub push: message.data is not valid base64 (Incorrect padding)",
        ),
        (
            {"message": {"messageId": "1", "data": "é"}, "subscription": SUB},
            "bad_base64",
            "raw Pub/Sub push: message.data is not valid base64",
        ),
        (
            {"message": {"publishTime": "t"}, "subscription": SUB},
            "missing_field",
            "raw Pub/Sub push: message.messageId is missing",
        ),
        (
            {"message": {"messageId": ""}, "subscription": SUB},
            "bad_field",
            "raw Pub/Sub push: message.messageId is empty",
        ),
        (
            {"message": {"messageId": 1}, "subscription": SUB},
            "bad_field",
            "raw Pub/Sub push: message.messageId is a number, expected a string",
        ),
        (
            {"message": {"message_id": "1"}},
            "missing_field",
            "raw Pub/Sub push: subscription is missing",
        ),
        (
            {"message": [1]},
            "bad_field",
            "raw Pub/Sub push: message is an array, expected an object",
        ),
        (
            {"message": {"messageId": "1", "attributes": ["a"]}, "subscription": SUB},
            "bad_field",
            "raw Pub/Sub push: message.attributes is an array, expected an object",
        ),
        (
            {"message": {"messageId": "1", "attributes": {"n": 1}}, "subscription": SUB},
            "bad_field",
            "raw Pub/Sub push: message.attributes.n is a number, expected a string",
        ),
        (
            {"message": {"messageId": "1", "data": 5}, "subscription": SUB},
            "bad_field",
            "raw Pub/Sub push: message.data is a number, expected a string",
        ),
        (
            {"message": {"messageId": "1"}, "subscription": 3},
            "bad_field",
            "raw Pub/Sub push: subscription is a number, expected a string",
        ),
    ],
)
def test_malformed_push(body, reason, message_text):
    with pytest.raises(DecodeError) as info:
        decode({"Content-Type": "application/json"}, json.dumps(body).encode())
    assert info.value.reason == reason
    assert message_text in info.value.message


class TestPushEndpointTopic:
    """A push body names only its subscription; the Terraform module's push endpoints carry
    the topic in their query string (`?topic=projects/P/topics/T`)."""

    def test_the_query_names_the_topic_and_makes_the_event_the_topics(self):
        event = decode(*push(message()), query={"topic": TOPIC})
        assert event.data["topic"] == TOPIC
        assert event.data["subscription"] == SUB
        # The same identity as Eventarc's CloudEvent for that message: one message through two
        # subscriptions is one event (one launch per rule), as it is through Eventarc.
        assert (event.source, event.id) == (f"//pubsub.googleapis.com/{TOPIC}", "101")
        assert (event.source, event.id) == (
            (arc := decode(*eventarc({"message": message(), "subscription": SUB}))).source,
            arc.id,
        )

    def test_without_the_query_the_subscription_is_the_source(self):
        event = decode(*push(message()), query={})
        assert event.data["topic"] is None
        assert event.source == f"//pubsub.googleapis.com/{SUB}"

    @pytest.mark.parametrize(
        "topic", ["orders", "projects/p/subscriptions/s", "", "a/b/c/d", "x" * 300]
    )
    def test_a_topic_that_is_not_a_topic_name_is_a_decode_error(self, topic):
        with pytest.raises(DecodeError) as info:
            decode(*push(message()), query={"topic": topic})
        assert info.value.reason == "bad_field"
        # what the sender's operator reads: the value (at most 200 characters) and the form
        assert info.value.message == (
            f"raw Pub/Sub push: the push endpoint's topic parameter {topic[:200]!r} is not a"
            " topic name (projects/P/topics/T)"
        )

    def test_other_forms_ignore_the_query(self):
        event = decode(*eventarc({"message": message(), "subscription": SUB}), query={"topic": "x"})
        assert event.data["topic"] == TOPIC
