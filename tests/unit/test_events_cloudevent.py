"""CloudEvents in binary and structured mode, and events of types no source claims (generic)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from triggers.errors import DecodeError
from triggers.events import decode

ROOT = Path(__file__).resolve().parents[2]


def binary(
    ce_type="com.example.thing.v1.done", body=b'{"a": 1}', content_type="application/json", **extra
):
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "evt-1",
        "ce-source": "//example.com/things",
        "ce-type": ce_type,
    }
    if content_type is not None:
        headers["Content-Type"] = content_type
    headers.update({f"ce-{k}": v for k, v in extra.items()})
    return headers, body


def structured(content_type="application/cloudevents+json", **attrs):
    document = {
        "specversion": "1.0",
        "id": "evt-1",
        "source": "//example.com/things",
        "type": "com.example.thing.v1.done",
        **attrs,
    }
    return {"Content-Type": content_type}, json.dumps(document).encode()


class TestBinaryMode:
    def test_attributes_and_json_data(self):
        event = decode(*binary(subject="things/7", time="2026-11-21T10:00:00Z"))
        assert (event.id, event.source, event.type) == (
            "evt-1",
            "//example.com/things",
            "com.example.thing.v1.done",
        )
        assert event.subject == "things/7"
        assert event.time == "2026-11-21T10:00:00Z"
        assert event.kind == "generic"
        assert event.form == "cloudevent-binary"
        assert event.data == {"a": 1}

    def test_extension_attributes_go_to_extensions_and_the_document(self):
        event = decode(*binary(tenant="acme", traceparent="00-abc-def-01"))
        assert dict(event.extensions) == {"tenant": "acme", "traceparent": "00-abc-def-01"}
        assert event.document["tenant"] == "acme"
        # Context attributes are not extensions.
        assert "specversion" not in event.extensions and "id" not in event.extensions

    def test_missing_time_stays_missing(self):
        # The SDK invents "now" for a missing time; the decoder must not pass that on.
        assert decode(*binary()).time is None

    def test_text_data_is_text(self):
        event = decode(*binary(body="grüße".encode(), content_type="text/plain; charset=utf-8"))
        assert event.data == "grüße"

    def test_binary_data_is_base64(self):
        event = decode(*binary(body=b"\x00\xff\x10", content_type="application/octet-stream"))
        assert event.data == base64.b64encode(b"\x00\xff\x10").decode()

    def test_undeclared_data_takes_the_most_specific_reading(self):
        assert decode(*binary(body=b"[1, 2]", content_type=None)).data == [1, 2]
        assert decode(*binary(body=b"plain words", content_type=None)).data == "plain words"
        assert decode(*binary(body=b"\xff\xfe", content_type=None)).data == "//4="

    def test_empty_body_is_no_data(self):
        assert decode(*binary(body=b"")).data is None

    def test_json_content_type_with_broken_json_is_bad_json(self):
        with pytest.raises(DecodeError) as info:
            decode(*binary(body=b"{nope", content_type="application/json"))
        assert info.value.reason == "bad_json"
        assert "CloudEvent com.example.thing.v1.done: data is not valid JSON" in info.value.message

    def test_plus_json_content_type_is_json(self):
        assert decode(*binary(body=b'{"x": true}', content_type="application/vnd.x+json")).data == {
            "x": True
        }

    def test_missing_required_header(self):
        headers, body = binary()
        del headers["ce-source"]
        with pytest.raises(DecodeError) as info:
            decode(headers, body)
        assert info.value.reason == "bad_cloudevent"
        assert "required header ce-source is missing" in info.value.message

    def test_invalid_specversion(self):
        headers, body = binary()
        headers["ce-specversion"] = "9.9"
        with pytest.raises(DecodeError) as info:
            decode(headers, body)
        assert info.value.reason == "bad_cloudevent"
        assert "9.9" in info.value.message

    def test_structured_content_type_contradicts_binary_headers(self):
        with pytest.raises(DecodeError) as info:
            decode(*binary(content_type="application/cloudevents+json"))
        assert info.value.reason == "bad_cloudevent"
        assert "contradict" in info.value.message


class TestStructuredMode:
    def test_attributes_data_and_extensions(self):
        event = decode(
            *structured(
                subject="s/1",
                time="2026-11-21T10:00:00Z",
                tenant="acme",
                priority=3,
                data={"k": "v"},
            )
        )
        assert event.form == "cloudevent-structured"
        assert event.kind == "generic"
        assert (event.subject, event.time) == ("s/1", "2026-11-21T10:00:00Z")
        assert event.data == {"k": "v"}
        assert dict(event.extensions) == {"tenant": "acme", "priority": 3}
        assert event.document == {
            "id": "evt-1",
            "source": "//example.com/things",
            "type": "com.example.thing.v1.done",
            "subject": "s/1",
            "time": "2026-11-21T10:00:00Z",
            "tenant": "acme",
            "priority": 3,
            "data": {"k": "v"},
        }

    @pytest.mark.parametrize("value", ["text", 7, [1, "a"], None, "", False])
    def test_data_json_values_are_kept_exactly(self, value):
        assert decode(*structured(data=value)).data == value

    def test_missing_time_stays_missing(self):
        assert decode(*structured(data=1)).time is None

    def test_data_base64_is_decoded_by_content_type(self):
        encoded = base64.b64encode(b'{"n": 1}').decode()
        assert decode(
            *structured(data_base64=encoded, datacontenttype="application/json")
        ).data == {"n": 1}
        assert (
            decode(*structured(data_base64=encoded, datacontenttype="application/x-bin")).data
            == encoded
        )

    def test_sniffed_without_cloudevents_content_type(self):
        event = decode(*structured(content_type="application/json", data={"k": 1}))
        assert event.form == "cloudevent-structured"
        assert event.data == {"k": 1}

    def test_sniffed_without_any_content_type(self):
        headers, body = structured(data=1)
        assert decode({}, body).data == 1

    def test_charset_parameter_is_ignored(self):
        event = decode(
            *structured(content_type="application/cloudevents+json; charset=UTF-8", data=1)
        )
        assert event.data == 1

    @pytest.mark.parametrize(
        "attrs, fragment",
        [
            ({"id": None}, "required attribute id is missing"),
            ({"id": 12}, "attribute id must be a non-empty string, not a number"),
            ({"source": ""}, "attribute source must be a non-empty string"),
            ({"subject": ["x"]}, "attribute subject must be a string, not an array"),
            ({"data": 1, "data_base64": "AA=="}, "has both data and data_base64"),
            ({"data_base64": "not base64!"}, "data_base64 is not valid base64"),
            ({"specversion": "0.1"}, "invalid specversion 0.1"),
        ],
    )
    def test_spec_violations_are_bad_cloudevent(self, attrs, fragment):
        with pytest.raises(DecodeError) as info:
            decode(*structured(**attrs))
        assert info.value.reason == "bad_cloudevent"
        assert fragment in info.value.message

    def test_body_must_be_an_object(self):
        with pytest.raises(DecodeError) as info:
            decode({"Content-Type": "application/cloudevents+json"}, b"[1]")
        assert info.value.reason == "bad_cloudevent"
        assert "body is an array, expected an object" in info.value.message

    def test_batch_content_type_is_unsupported(self):
        with pytest.raises(DecodeError) as info:
            decode({"Content-Type": "application/cloudevents-batch+json"}, b"[]")
        assert info.value.reason == "unsupported_content_type"
        assert "batch mode is not supported" in info.value.message


def test_importing_the_package_does_not_import_the_sdk():
    # Cold start: only a CloudEvent request the SDK must read pays for the cloudevents import;
    # a binary-mode 1.0 event (Eventarc's form) is read from its headers without it.
    code = (
        "import sys, triggers.events as e;"
        "assert 'cloudevents' not in sys.modules, 'imported at package import';"
        "e.decode({'Content-Type': 'application/json'},"
        ' b\'{"message": {"messageId": "1"}, "subscription": "projects/p/subscriptions/s"}\');'
        "assert 'cloudevents' not in sys.modules, 'imported by a raw push';"
        "e.decode({'ce-specversion': '1.0', 'ce-id': '1', 'ce-source': 's', 'ce-type': 't'}, b'');"
        "assert 'cloudevents' not in sys.modules, 'imported by a binary 1.0 event';"
        "e.decode({'Content-Type': 'application/cloudevents+json'},"
        ' b\'{"specversion": "1.0", "id": "1", "source": "s", "type": "t"}\');'
        "assert 'cloudevents' in sys.modules"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
