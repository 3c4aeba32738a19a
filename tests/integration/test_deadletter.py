"""Dead letters published by the real `PubSubDeadLetters` to the official Pub/Sub emulator.

Each test creates its own topic and pull subscription, publishes through the real
implementation (its PublisherClient is created lazily, with PUBSUB_EMULATOR_HOST set only for
that moment, as in conftest.py), then pulls and checks data and attributes.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from triggers.errors import PermanentRunError
from triggers.function.app import App
from triggers.function.deadletter import PubSubDeadLetters
from triggers.function.settings import Settings
from triggers.ledger import Ledger
from triggers.ledger.memory import MemoryBackend
from triggers.rules import load_text
from triggers.runners.base import Launch

from .conftest import PubSub, bind_to_emulator, eventually

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[2] / "config" / "events"

RULES = load_text(
    """\
project: demo-project
region: europe-west1
rules:
  - name: load
    on: storage.finalized
    job: loader
    overrides:
      args: ["{{ data.name }}"]
  - name: needs-field
    on: storage.finalized
    match: {data: {name: [{prefix: "strict/"}]}}
    job: strict
    overrides:
      args: ["{{ event.missing_field }}"]
""",
    environ={},
)


class RefusingRunner:
    """Cloud Run refuses every run for good (a permanent API error)."""

    def run(self, request, *, validate_only=False) -> Launch:
        raise PermanentRunError(f"job {request.job} not found", status=404)

    def find(self, request, *, since) -> Launch | None:
        return None


def pull(pubsub: PubSub, subscription: str, count: int) -> list[Any]:
    """`count` messages from `subscription` (acknowledged), waiting for them to arrive."""
    got: list[Any] = []

    def probe() -> bool:
        response = pubsub.subscriber.pull(
            request={"subscription": subscription, "max_messages": 10}, timeout=10
        )
        if response.received_messages:
            pubsub.subscriber.acknowledge(
                request={
                    "subscription": subscription,
                    "ack_ids": [m.ack_id for m in response.received_messages],
                }
            )
            got.extend(m.message for m in response.received_messages)
        return len(got) >= count

    eventually(probe, timeout=30, what=f"{count} dead letter(s) on {subscription}")
    return got


def sample(**data: Any) -> tuple[dict[str, str], bytes]:
    document = json.loads((EVENTS / "storage-finalized.cloudevent-binary.json").read_text())
    document["body"].update(data)
    return dict(document["headers"]), json.dumps(document["body"]).encode()


def make_app(sink: PubSubDeadLetters, runner: Any) -> App:
    return App(
        Settings(ledger="memory", runner="dry-run", max_body_bytes=4096),
        rules=RULES,
        ledger=Ledger(MemoryBackend(), lease=timedelta(minutes=5)),
        runner=runner,
        dead_letters=sink,
    )


def test_the_real_publisher_delivers_data_and_attributes(pubsub, dead_letters):
    sink, subscription = dead_letters
    headers, body = sample()
    sink.publish(
        body,
        headers,
        reason="job not found",
        rule="load",
        event_id="9876543210123456",
        detail="x" * 3000,
    )
    (message,) = pull(pubsub, subscription, 1)
    assert message.data == body
    attrs = dict(message.attributes)
    assert attrs["reason"] == "job not found"
    assert attrs["rule"] == "load"
    assert attrs["event_id"] == "9876543210123456"
    assert attrs["content_type"] == "application/json"
    assert attrs["ce_id"] == "9876543210123456"
    assert attrs["ce_type"] == "google.cloud.storage.object.v1.finalized"
    assert attrs["ce_source"] == "//storage.googleapis.com/projects/_/buckets/raw-data"
    assert len(attrs["detail"].encode()) <= 1024 and attrs["detail"].endswith("…")


def test_an_app_dead_letters_bad_input_template_failures_and_permanent_errors(pubsub, dead_letters):
    sink, subscription = dead_letters
    app = make_app(sink, RefusingRunner())

    bad = app.handle({"Content-Type": "application/json"}, b"{not json")
    headers, body = sample(name="strict/orders.csv")
    event = app.handle(headers, body)
    assert (bad.status, bad.body["decision"]) == (200, "rejected")
    assert (event.status, event.body["decision"]) == (200, "ack")

    messages = pull(pubsub, subscription, 3)
    by_reason = {m.attributes.get("rule", m.attributes["reason"]): m for m in messages}
    assert set(by_reason) == {"bad_json", "load", "needs-field"}

    undecodable = by_reason["bad_json"]
    assert undecodable.data == b"{not json"
    assert "rule" not in undecodable.attributes and "event_id" not in undecodable.attributes
    assert undecodable.attributes["detail"] == bad.body["message"]

    refused = by_reason["load"]
    assert refused.data == body
    assert "not found" in refused.attributes["reason"]
    assert refused.attributes["event_id"] == "9876543210123456"

    template = by_reason["needs-field"]
    assert template.data == body
    assert "missing_field" in template.attributes["reason"]
    assert template.attributes["ce_subject"] == headers["ce-subject"]


def test_a_missing_topic_is_logged_and_the_event_still_acked(pubsub, caplog):
    import logging

    sink = bind_to_emulator(
        PubSubDeadLetters(pubsub.topic(f"absent-{uuid.uuid4().hex[:8]}"), timeout=30),
        pubsub.host_port,
    )
    try:
        app = make_app(sink, RefusingRunner())
        with caplog.at_level(logging.ERROR, logger="triggers"):
            response = app.handle(*sample())
    finally:
        sink.close()
    assert (response.status, response.body["decision"]) == (200, "ack")
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "could not publish a dead letter" in errors[0]
