"""Hypothesis strategies for hostile requests, in every input form the function accepts.

Shared by the HTTP-layer property tests (tests/unit/test_app_properties.py, in process, and
tests/integration/test_function_properties.py, against the served function). Pure: strategies
and builders, no I/O.

A request is `(headers, body)`. Its values lean towards what broke the function before: lone
surrogates written as JSON escapes (`"\\ud800"`, valid JSON that UTF-8 cannot encode), the same
text sent as raw bytes (`surrogatepass`, invalid UTF-8), numbers that parse to infinity, values
nested past any sane depth, values over the size limits, and odd header names and values, inside
the envelopes of every form: raw Pub/Sub push, Eventarc Pub/Sub CloudEvents in binary and
structured mode, Cloud Storage CloudEvents and notifications, Cloud Scheduler HTTP and Pub/Sub
targets, and any other CloudEvent.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from hypothesis import strategies as st

PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_TYPE = "google.cloud.storage.object.v1.finalized"
THING_TYPE = "com.example.thing.v1.created"

# A number JSON can write but Python reads as infinity: inserted into the JSON text verbatim.
_RAW_NUMBERS = {"@@inf@@": "1e400", "@@-inf@@": "-1e999", "@@big@@": "1" + "0" * 5000}

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
odd_text = st.one_of(
    st.text(max_size=12),
    st.lists(st.one_of(st.characters(), surrogates), min_size=1, max_size=6).map("".join),
    st.sampled_from(["", " ", "\x00", "\u2028", "é", "\U0001f600", "a/b", "..", "%", "{{ id }}"]),
)
huge_text = st.sampled_from([3_000, 40_000, 600_000]).map(lambda n: "h" * n)


def _nest(depth: int) -> Any:
    value: Any = "bottom"
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


deep_values = st.integers(min_value=50, max_value=150).map(_nest)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**30, -(2**63), 2**64]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(list(_RAW_NUMBERS)),
    odd_text,
)
json_values = st.one_of(
    st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
        max_leaves=12,
    ),
    deep_values,
    huge_text,
)
# An identifier-ish field: mostly plausible, often hostile.
ids = st.one_of(st.text("abc0123456789-", min_size=1, max_size=8), odd_text, huge_text)
anything = st.one_of(ids, json_values)


def dumps(value: Any, *, raw_surrogates: bool = False) -> bytes:
    """JSON bytes of `value`, with the raw-number markers put in verbatim. Surrogates are JSON
    escapes (valid JSON), or with `raw_surrogates` their raw bytes (invalid UTF-8)."""
    text = json.dumps(value, ensure_ascii=not raw_surrogates)
    for marker, raw in _RAW_NUMBERS.items():
        text = text.replace(f'"{marker}"', raw)
    return text.encode("utf-8", "surrogatepass")


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _message(draw: Any, attributes: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "messageId": draw(ids | st.integers()),
        "publishTime": draw(st.just("2026-11-21T10:00:00Z") | anything),
        "attributes": draw(
            st.just(attributes or {}) | st.dictionaries(odd_text, odd_text | ids, max_size=4)
        ),
    }
    payload = draw(
        st.one_of(
            json_values.map(lambda v: b64(dumps(v))),
            st.binary(max_size=64).map(b64),
            odd_text,  # not base64 at all
        )
    )
    message["data"] = payload
    return message


@st.composite
def raw_push(draw: Any) -> tuple[dict[str, str], bytes]:
    body = {
        "message": _message(draw),
        "subscription": draw(st.just("projects/p/subscriptions/s") | ids),
    }
    return {"Content-Type": "application/json"}, dumps(body, raw_surrogates=draw(st.booleans()))


@st.composite
def storage_notification(draw: Any) -> tuple[dict[str, str], bytes]:
    attributes = {
        "eventType": draw(st.just("OBJECT_FINALIZE") | odd_text),
        "bucketId": draw(st.just("raw") | ids),
        "objectId": draw(ids),
        "objectGeneration": draw(st.just("1") | ids),
        "payloadFormat": draw(st.sampled_from(["JSON_API_V1", "NONE"]) | odd_text),
    }
    message = _message(draw, attributes)
    message["attributes"] = attributes
    resource = {"bucket": attributes["bucketId"], "name": draw(ids), "generation": draw(anything)}
    message["data"] = b64(dumps(resource, raw_surrogates=draw(st.booleans())))
    body = {"message": message, "subscription": "projects/p/subscriptions/gcs"}
    return {"Content-Type": "application/json"}, dumps(body)


@st.composite
def scheduler_pubsub(draw: Any) -> tuple[dict[str, str], bytes]:
    attributes = {
        "scheduler_job": draw(ids),
        "schedule_time": draw(st.just("2026-11-21T02:00:00Z") | ids),
    }
    message = _message(draw, attributes)
    message["attributes"] = attributes
    body = {"message": message, "subscription": "projects/p/subscriptions/ticks"}
    return {"Content-Type": "application/json"}, dumps(body)


def _ce_headers(draw: Any, event_type: str) -> dict[str, str]:
    return {
        "ce-specversion": draw(st.just("1.0") | odd_text),
        "ce-id": draw(ids),
        "ce-source": draw(st.just("//storage.googleapis.com/projects/_/buckets/raw") | ids),
        "ce-type": draw(st.just(event_type) | odd_text),
        "Content-Type": draw(st.sampled_from(["application/json", "text/plain", ""]) | odd_text),
        **draw(
            st.dictionaries(
                st.sampled_from(["ce-subject", "ce-time", "ce-tenant"]), ids, max_size=2
            )
        ),
    }


@st.composite
def binary_cloudevent(draw: Any) -> tuple[dict[str, str], bytes]:
    event_type = draw(st.sampled_from([PUBSUB_TYPE, STORAGE_TYPE, THING_TYPE]))
    headers = _ce_headers(draw, event_type)
    if event_type == PUBSUB_TYPE:
        data: Any = {"message": _message(draw), "subscription": draw(ids)}
    elif event_type == STORAGE_TYPE:
        data = {
            "bucket": "raw",
            "name": draw(ids),
            "generation": draw(anything),
            "size": draw(anything),
        }
    else:
        data = draw(json_values)
    return headers, dumps(data, raw_surrogates=draw(st.booleans()))


@st.composite
def structured_cloudevent(draw: Any) -> tuple[dict[str, str], bytes]:
    event_type = draw(st.sampled_from([PUBSUB_TYPE, STORAGE_TYPE, THING_TYPE]) | odd_text)
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": draw(ids),
        "source": draw(st.just("//things") | ids),
        "type": event_type,
        "data": draw(json_values),
    }
    body.update(
        draw(
            st.dictionaries(
                st.sampled_from(["subject", "time", "tenant"]) | odd_text, anything, max_size=2
            )
        )
    )
    content_type = draw(st.sampled_from(["application/cloudevents+json", "application/json"]))
    return {"Content-Type": content_type}, dumps(body, raw_surrogates=draw(st.booleans()))


@st.composite
def scheduler_http(draw: Any) -> tuple[dict[str, str], bytes]:
    headers = {
        "X-CloudScheduler": "true",
        "X-CloudScheduler-JobName": draw(ids),
        "X-CloudScheduler-ScheduleTime": draw(st.just("2026-11-21T02:00:00Z") | ids),
        "User-Agent": "Google-Cloud-Scheduler",
    }
    body = draw(st.one_of(json_values.map(dumps), st.binary(max_size=64)))
    return headers, body


odd_headers = st.dictionaries(
    st.sampled_from(["X-Anything", "ce-extra", "Content-Encoding", "Authorization", "Traceparent"])
    | st.text("abcXYZ-_", min_size=1, max_size=10),
    odd_text | huge_text,
    max_size=3,
)


@st.composite
def hostile_requests(draw: Any) -> tuple[dict[str, str], bytes]:
    """One request in any form, its envelope and contents hostile, plus odd extra headers."""
    form = draw(
        st.sampled_from(
            [
                raw_push,
                storage_notification,
                scheduler_pubsub,
                binary_cloudevent,
                structured_cloudevent,
                scheduler_http,
            ]
        )
    )
    headers, body = draw(form())
    extra = draw(odd_headers)
    for name, value in extra.items():
        if name.lower() not in {h.lower() for h in headers}:
            headers[name] = value
    return headers, body


def for_the_wire(headers: dict[str, str]) -> dict[str, str]:
    """Headers as valid HTTP can carry them: each value's UTF-8 bytes (surrogates passed
    through) as latin-1 text (obs-text, which servers must accept), control characters (which
    no header value may hold: the server refuses the request before the function sees it) as
    spaces, and no name the client sets itself."""
    out = {}
    for name, value in headers.items():
        if name.lower() in ("content-length", "host", "transfer-encoding", "content-encoding"):
            continue
        raw = value.encode("utf-8", "surrogatepass").decode("latin-1")
        out[name] = _CONTROL.sub(" ", raw)[:4000].strip(" \t")  # no leading or trailing OWS
    return out


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
