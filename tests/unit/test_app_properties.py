"""Property: whatever arrives, the function answers what the sender's retry logic needs.

`App.handle` with a real SQLite ledger, the scripted runner of tests/fakes.py and the real
dead-letter attribute builder, fed hostile requests of every input form (tests/hostile.py):

* no 5xx unless a dependency is down: everything else is 200 (launched, duplicate, rejected,
  nothing matched, not an event), because no retry can change it;
* with the ledger or the Cloud Run API down, 503 with Retry-After, and only for that reason;
* the answer can be sent (JSON that UTF-8 can encode) and every rejection is dead-lettered;
* after each hostile request, the next valid event still launches.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes import ScriptedRunner
from tests.hostile import b64, hostile_requests
from triggers.errors import RetryableRunError
from triggers.function.app import App
from triggers.function.deadletter import attributes
from triggers.function.settings import Settings
from triggers.ledger import Ledger
from triggers.ledger.sqlite import SQLiteBackend
from triggers.rules import load_text

# One rule per form, each rendering event content into args, env and dedup keys.
RULES = load_text(
    """\
project: demo-project
region: europe-west1
rules:
  - name: messages
    on: pubsub
    job: worker
    overrides:
      args: ["{{ data.message.text }}", "{{ data.message.message_id }}"]
      env: {FIRST: "{{ (data.message.attributes.values()|list + ['none'])|first }}"}
  - name: messages-by-attribute
    on: pubsub
    job: keyed
    dedup: {key: "{{ (data.message.attributes.values()|list + [id])|first }}"}
  - name: objects
    on: storage
    job: loader
    overrides:
      args: ["gs://{{ data.bucket }}/{{ data.name }}"]
      env: {GENERATION: "{{ data.generation }}"}
    dedup: {key: "{{ data.bucket }}/{{ data.name }}#{{ data.generation }}"}
  - name: ticks
    on: scheduler
    job: ticker
    overrides: {args: ["{{ data.job_name }}", "{{ data.schedule_time }}"]}
  - name: things
    on: com.example.thing.v1.created
    job: worker
    overrides: {args: ["{{ data|tojson }}"]}
""",
    environ={},
)
MAX_BODY_BYTES = 256 * 1024


class SwitchableBackend(SQLiteBackend):
    """A SQLite ledger that can be made unreachable, as Firestore is during an outage."""

    down = False

    def _check(self) -> None:
        if self.down:
            raise ConnectionError("ledger unreachable")

    def create(self, record):
        self._check()
        return super().create(record)

    def get(self, key):
        self._check()
        return super().get(key)

    def replace(self, record, expected_token):
        self._check()
        return super().replace(record, expected_token)

    def update(self, key, token, changes):
        self._check()
        return super().update(key, token, changes)

    def count_duplicate(self, key, now):
        self._check()
        return super().count_duplicate(key, now)


class SwitchableRunner(ScriptedRunner):
    """The scripted runner; while `down`, every jobs.run fails as a 503 would (it surely did
    not start anything)."""

    down = False

    def run(self, request, *, validate_only=False):
        if self.down:
            self.run_calls += 1
            raise RetryableRunError("Cloud Run API unavailable", status=503)
        return super().run(request, validate_only=validate_only)


class CheckedDeadLetters:
    """Builds the real dead-letter attributes for every rejection, as the Pub/Sub sink would."""

    def __init__(self) -> None:
        self.count = 0

    def publish(self, body, headers, *, reason, rule, event_id, detail) -> None:
        built = attributes(
            body, headers, reason=reason, rule=rule, event_id=event_id, detail=detail
        )
        for key, value in built.items():
            (key + value).encode("utf-8")
        self.count += 1


class Harness:
    def __init__(self, directory: Path) -> None:
        self.backend = SwitchableBackend(directory / "ledger.db")
        self.runner = SwitchableRunner()
        self.dead_letters = CheckedDeadLetters()
        settings_ = Settings(
            ledger="memory", runner="dry-run", retry_after_seconds=3, max_body_bytes=MAX_BODY_BYTES
        )
        self.app = App(
            settings_,
            rules=RULES,
            ledger=Ledger(self.backend, lease=timedelta(minutes=5)),
            runner=self.runner,
            dead_letters=self.dead_letters,
        )
        self.ids = itertools.count()

    def valid_event(self) -> tuple[dict[str, str], bytes]:
        """A fresh, well-formed raw push that the two Pub/Sub rules launch."""
        number = next(self.ids)
        body = {
            "message": {
                "messageId": f"valid-{number}",
                "data": b64(b"payload"),
                "attributes": {"kind": f"k{number}"},
                "publishTime": "2026-11-21T10:00:00Z",
            },
            "subscription": "projects/demo-project/subscriptions/s",
        }
        return {"Content-Type": "application/json"}, json.dumps(body).encode()


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    harness = Harness(tmp_path_factory.mktemp("app-properties"))
    yield harness
    harness.backend.close()


def sendable(body: dict) -> None:
    """What Flask will serialise must be JSON that UTF-8 can carry."""
    json.dumps(body, ensure_ascii=False, allow_nan=False).encode("utf-8")


def assert_next_valid_event_launches(harness: Harness) -> None:
    response = harness.app.handle(*harness.valid_event())
    assert response.status == 200, response.body
    outcomes = {r["rule"]: r["outcome"] for r in response.body["rules"]}
    assert outcomes == {"messages": "launched", "messages-by-attribute": "launched"}, response.body


PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@PROPERTY
@given(hostile=hostile_requests())
def test_hostile_input_is_never_answered_5xx_and_the_next_event_launches(harness, hostile):
    headers, body = hostile
    rejected_before = harness.dead_letters.count
    response = harness.app.handle(headers, body)
    assert response.status == 200, (response.status, response.body)
    sendable(response.body)
    decision = response.body.get("decision")
    assert decision in ("ack", "rejected"), response.body
    rejections = (decision == "rejected") + sum(
        r["outcome"] == "rejected" for r in response.body.get("rules", [])
    )
    assert harness.dead_letters.count - rejected_before == rejections
    assert_next_valid_event_launches(harness)


@PROPERTY
@given(hostile=hostile_requests(), down=st.sampled_from(["ledger", "runner"]))
def test_a_dependency_down_is_the_only_reason_for_503(harness, hostile, down):
    headers, body = hostile
    if down == "ledger":
        harness.backend.down = True
    else:
        harness.runner.down = True
    try:
        response = harness.app.handle(headers, body)
    finally:
        harness.backend.down = harness.runner.down = False
    assert response.status in (200, 503), (response.status, response.body)
    sendable(response.body)
    if response.status == 503:
        assert response.headers == {"Retry-After": "3"}
        retries = [r for r in response.body["rules"] if r["outcome"] == "retry"]
        assert retries, response.body
        expected = "ledger unavailable" if down == "ledger" else "Cloud Run API unavailable"
        assert all(expected in r["reason"] for r in retries), response.body
    assert_next_valid_event_launches(harness)
