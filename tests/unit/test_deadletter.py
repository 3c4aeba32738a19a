"""Dead letters: what `App` publishes for rejections, and how `PubSubDeadLetters` publishes.

In process: a memory ledger, a scripted runner and a fake sink that records every call (or
fails). The real publisher is tested against the Pub/Sub emulator in
tests/integration/test_deadletter.py; here it gets a fake PublisherClient.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import Future
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import STORAGE_RULES_YAML, ScriptedRunner
from triggers.errors import PermanentRunError
from triggers.function.app import App
from triggers.function.deadletter import (
    MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_DATA_BYTES,
    PubSubDeadLetters,
    attributes,
    build_dead_letters,
    truncate,
)
from triggers.function.settings import Settings
from triggers.ledger import Ledger
from triggers.ledger.memory import MemoryBackend
from triggers.rules import load_text

EVENTS = Path(__file__).resolve().parents[2] / "config" / "events"
STORAGE = "storage-finalized.cloudevent-binary.json"
EVENT_ID = "9876543210123456"
TOPIC = "projects/demo-project/topics/triggers-dead-letters"

RULES = load_text(STORAGE_RULES_YAML, environ={})


class FakeDeadLetters:
    """Records every publish; raises `error` instead when set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.published: list[dict[str, Any]] = []

    def publish(self, body, headers, *, reason, rule, event_id, detail, push_topic=None) -> None:
        if self.error is not None:
            raise self.error
        self.published.append(
            {
                "body": body,
                "headers": dict(headers),
                "reason": reason,
                "rule": rule,
                "event_id": event_id,
                "detail": detail,
                **({"push_topic": push_topic} if push_topic else {}),
            }
        )


def sample(file: str = STORAGE, **data: Any) -> tuple[dict[str, str], bytes]:
    document = json.loads((EVENTS / file).read_text())
    document["body"].update(data)
    return dict(document["headers"]), json.dumps(document["body"]).encode()


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


@pytest.fixture
def sink() -> FakeDeadLetters:
    return FakeDeadLetters()


@pytest.fixture
def make_app(runner, sink):
    def make(**kwargs: Any) -> App:
        settings = Settings(ledger="memory", runner="dry-run", max_body_bytes=2048)
        parts = {
            "rules": RULES,
            "ledger": Ledger(MemoryBackend(), lease=timedelta(minutes=5)),
            "runner": runner,
            "dead_letters": sink,
            **kwargs,
        }
        return App(settings, **parts)

    return make


@pytest.fixture
def app(make_app) -> App:
    return make_app()


# -- what App dead-letters ---------------------------------------------------------------------


def test_given_an_undecodable_request_then_it_is_acked_and_dead_lettered_with_its_reason(app, sink):
    headers = {"Content-Type": "application/json", "User-Agent": "curl/8.5"}
    response = app.handle(headers, b"{not json")
    assert response.status == 200 and response.body["decision"] == "rejected"
    (letter,) = sink.published
    assert letter["body"] == b"{not json"
    assert letter["headers"] == headers
    assert (letter["reason"], letter["rule"], letter["event_id"]) == ("bad_json", None, None)
    assert letter["detail"] == response.body["message"]


def test_given_a_rule_whose_template_fails_then_only_that_rule_is_dead_lettered(app, sink, runner):
    headers, body = sample(name="strict/a.csv")
    response = app.handle(headers, body)
    assert response.status == 200 and response.body["decision"] == "ack"
    outcomes = {r["rule"]: r["outcome"] for r in response.body["rules"]}
    assert outcomes == {"load": "launched", "audit": "launched", "needs-field": "rejected"}
    (letter,) = sink.published
    assert letter["rule"] == "needs-field" and letter["event_id"] == EVENT_ID
    assert "missing_field" in letter["reason"] and letter["detail"] == letter["reason"]
    assert letter["body"] == body and letter["headers"] == headers
    assert runner.run_calls == 2


def test_given_a_permanent_api_error_then_the_rule_is_dead_lettered(app, sink, runner):
    runner.fail("loader", PermanentRunError("job not found", status=404))
    headers, body = sample()
    response = app.handle(headers, body)
    assert response.status == 200 and response.body["decision"] == "ack"
    (letter,) = sink.published
    assert (letter["rule"], letter["event_id"]) == ("load", EVENT_ID)
    assert "job not found" in letter["reason"]
    assert letter["body"] == body


def test_given_several_rejected_rules_then_one_letter_per_rule(app, sink, runner):
    runner.fail("loader", PermanentRunError("job not found", status=404))
    runner.fail("auditor", PermanentRunError("permission denied", status=403))
    app.handle(*sample(name="strict/b.csv"))
    assert sorted(letter["rule"] for letter in sink.published) == ["audit", "load", "needs-field"]


def test_given_a_successful_event_then_nothing_is_published(app, sink):
    response = app.handle(*sample())
    assert response.status == 200 and response.body["decision"] == "ack"
    assert sink.published == []


def test_given_a_rejection_next_to_a_retry_then_it_is_published_and_the_answer_is_still_503(
    app, sink, runner
):
    from triggers.errors import RetryableRunError

    runner.fail("loader", PermanentRunError("job not found", status=404))
    runner.fail("auditor", RetryableRunError("quota exceeded", status=429))
    response = app.handle(*sample())
    assert response.status == 503
    assert [letter["rule"] for letter in sink.published] == ["load"]


@pytest.mark.parametrize("request_", ["bad input", "permanent api error"])
def test_given_a_failing_sink_then_the_rejection_is_still_acked_and_logged(
    make_app, runner, caplog, request_
):
    app = make_app(dead_letters=FakeDeadLetters(ConnectionError("pubsub unreachable")))
    if request_ == "bad input":
        headers, body = {}, b"garbage"
    else:
        runner.fail("loader", PermanentRunError("job not found", status=404))
        headers, body = sample()
    with caplog.at_level(logging.ERROR, logger="triggers"):
        response = app.handle(headers, body)
    assert response.status == 200
    assert response.body["decision"] in ("rejected", "ack")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "pubsub unreachable" in errors[0].getMessage()


def test_without_a_topic_nothing_is_built(runner):
    app = App(Settings(ledger="memory", runner="dry-run"), rules=RULES, runner=runner)
    assert app.dead_letters is None
    assert app.handle({}, b"garbage").status == 200


def test_with_a_topic_the_pubsub_sink_is_built_from_the_settings(runner):
    settings = Settings(
        ledger="memory", runner="dry-run", dead_letter_topic=TOPIC, dead_letter_timeout_seconds=3
    )
    app = App(settings, rules=RULES, runner=runner)
    assert isinstance(app.dead_letters, PubSubDeadLetters)
    assert (app.dead_letters.topic, app.dead_letters.timeout) == (TOPIC, 3)
    assert app.dead_letters._client is None  # created on first use only
    assert App(settings, rules=RULES, runner=runner, dead_letters=None).dead_letters is None


@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_topic_setting_is_off(monkeypatch, value):
    monkeypatch.setenv("TRIGGERS_DEAD_LETTER_TOPIC", value)
    assert Settings().dead_letter_topic is None


def test_a_malformed_topic_setting_is_refused():
    with pytest.raises(ValueError):
        Settings(dead_letter_topic="triggers-dead-letters")
    with pytest.raises(ValueError):
        PubSubDeadLetters("triggers-dead-letters")
    assert build_dead_letters(None) is None


# -- the message -------------------------------------------------------------------------------


def test_attributes_carry_reason_rule_event_content_type_and_ce_headers():
    headers, body = sample()
    attrs = attributes(
        body, headers, reason="job not found", rule="load", event_id=EVENT_ID, detail="404"
    )
    assert attrs == {
        "reason": "job not found",
        "rule": "load",
        "event_id": EVENT_ID,
        "detail": "404",
        "content_type": "application/json",
        "ce_specversion": "1.0",
        "ce_id": EVENT_ID,
        "ce_source": "//storage.googleapis.com/projects/_/buckets/raw-data",
        "ce_type": "google.cloud.storage.object.v1.finalized",
        "ce_subject": "objects/incoming/2026/11/21/orders.csv",
        "ce_time": "2026-11-21T06:00:00.000Z",
        "ce_bucket": "raw-data",
    }


def test_absent_values_are_left_out():
    attrs = attributes(
        b"x", {"User-Agent": "curl"}, reason="bad_json", rule=None, event_id=None, detail=""
    )
    assert attrs == {"reason": "bad_json"}


def test_every_value_is_truncated_to_the_attribute_limit_on_a_character_boundary():
    long = "é" * 2000  # 4000 bytes
    attrs = attributes(b"", {"ce-subject": long}, reason=long, rule="r", event_id="e", detail=long)
    for key in ("reason", "detail", "ce_subject"):
        encoded = attrs[key].encode("utf-8")
        assert len(encoded) <= MAX_ATTRIBUTE_VALUE_BYTES
        assert attrs[key].endswith("…") and attrs[key][:-1] == "é" * len(attrs[key][:-1])
    assert truncate("short") == "short"
    assert truncate("a" * MAX_ATTRIBUTE_VALUE_BYTES) == "a" * MAX_ATTRIBUTE_VALUE_BYTES


class FakePublisher:
    def __init__(self, result: Any = "msg-1", error: Exception | None = None) -> None:
        self.calls: list[tuple[str, bytes, dict[str, str]]] = []
        self.result = result
        self.error = error
        self.timeouts: list[float | None] = []

    def publish(self, topic: str, data: bytes, **attrs: str) -> Any:
        self.calls.append((topic, data, attrs))
        publisher = self

        class _Future(Future):
            def result(self, timeout=None):
                publisher.timeouts.append(timeout)
                if publisher.error is not None:
                    raise publisher.error
                return publisher.result

        return _Future()


def test_the_publisher_sends_the_body_as_data_and_waits_with_the_timeout():
    client = FakePublisher()
    sink = PubSubDeadLetters(TOPIC, timeout=2.5, client=client)
    headers, body = sample()
    sink.publish(body, headers, reason="job not found", rule="load", event_id=EVENT_ID, detail="d")
    ((topic, data, attrs),) = client.calls
    assert (topic, data) == (TOPIC, body)
    assert attrs["rule"] == "load" and attrs["ce_id"] == EVENT_ID
    assert client.timeouts == [2.5]


def test_a_body_over_the_publish_limit_is_left_out_and_said_so():
    client = FakePublisher()
    sink = PubSubDeadLetters(TOPIC, client=client)
    sink.publish(
        b"x" * (MAX_DATA_BYTES + 1),
        {},
        reason="body_too_large",
        rule=None,
        event_id=None,
        detail="too large",
    )
    ((_, data, attrs),) = client.calls
    assert data == b"" and "over the" in attrs["data_omitted"]


def test_a_failed_publish_is_logged_not_raised(caplog):
    sink = PubSubDeadLetters(TOPIC, client=FakePublisher(error=TimeoutError("deadline")))
    with caplog.at_level(logging.ERROR, logger="triggers.function.deadletter"):
        sink.publish(b"x", {}, reason="bad_json", rule=None, event_id=None, detail="")
    (record,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert TOPIC in record.getMessage() and "deadline" in record.getMessage()


def test_a_rejected_push_keeps_the_topic_its_endpoint_named():
    """The topic of a push (`?topic=`, set by the Terraform module) is not in its body: the dead
    letter keeps it, so that a replay still matches the rules scoped by that topic."""
    rules = load_text(
        """\
project: demo-project
region: europe-west1
rules:
  - name: orders
    on: pubsub
    topic: orders
    job: orders
    overrides:
      args: ["{{ data.message.json.missing.field }}"]
""",
        environ={},
    )
    sink = FakeDeadLetters()
    app = App(
        Settings(ledger="memory", runner="dry-run"),
        rules=rules,
        ledger=Ledger(MemoryBackend(), lease=timedelta(minutes=5)),
        runner=ScriptedRunner(),
        dead_letters=sink,
    )
    body = json.dumps(
        {
            "message": {"data": "e30=", "messageId": "7"},
            "subscription": "projects/demo-project/subscriptions/triggers-orders-0a1b2c3d",
        }
    ).encode()
    topic = "projects/demo-project/topics/orders"
    answer = app.handle({"Content-Type": "application/json"}, body, query={"topic": topic})
    assert answer.status == 200 and answer.body["rules"][0]["outcome"] == "rejected"
    [letter] = sink.published
    assert letter["push_topic"] == topic and letter["rule"] == "orders"
    assert (
        attributes(body, {}, reason="r", rule=None, event_id=None, detail="", push_topic=topic)[
            "push_topic"
        ]
        == topic
    )
