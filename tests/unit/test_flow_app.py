"""The function's task route: `App.handle(path=TASK_PATH)` and `handle_http` passing the path,
the answers Cloud Tasks acts on, and the start-time check of flow settings."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

import triggers.main
from tests.fakes import storage_event
from tests.unit.test_app import FakeAuthenticator, flask_apps  # noqa: F401 (a fixture)
from tests.unit.test_flow_dispatch import flow_rules
from tests.unit.test_flow_launch import CountingRunner
from triggers.dispatch import NO_QUEUE
from triggers.errors import PermanentRunError, RetryableRunError, Unauthorized
from triggers.flow.queue import TASK_PATH, MemoryTaskQueue
from triggers.flow.spec import Limits
from triggers.function.app import App
from triggers.function.settings import Settings
from triggers.function.tasks import FlowNotConfigured, check_flow_settings
from triggers.ledger import Ledger, Status
from triggers.ledger.memory import MemoryBackend

RULES = flow_rules(Limits(queue="q-load", rate_per_second=2.0))


class DeadLetters:
    def __init__(self) -> None:
        self.published: list[dict] = []

    def publish(self, body, headers, **fields) -> None:
        self.published.append({"body": body, **fields})


@pytest.fixture
def parts():
    return {
        "ledger": Ledger(MemoryBackend(), lease=timedelta(minutes=5)),
        "runner": CountingRunner(),
        "queue": MemoryTaskQueue(),
        "dead_letters": DeadLetters(),
    }


@pytest.fixture
def app(parts) -> App:
    settings = Settings(ledger="memory", runner="dry-run", retry_after_seconds=7)
    return App(settings, rules=RULES, authenticator=None, **parts)


def queued_body(app, parts) -> bytes:
    app.dispatcher.dispatch(storage_event())
    return json.dumps(parts["queue"].tasks[-1].body).encode()


def test_the_task_path_launches_the_queued_record(app, parts):
    body = queued_body(app, parts)
    response = app.handle({"Content-Type": "application/json"}, body, path=TASK_PATH)
    assert response.status == 200 and response.body["outcome"] == "launched"
    key = json.loads(body)["ledger_key"]
    assert parts["ledger"].get(key).status is Status.LAUNCHED


def test_a_retryable_task_answers_503_with_retry_after(app, parts):
    body = queued_body(app, parts)
    parts["runner"].fail("loader", RetryableRunError("429 quota", status=429))
    response = app.handle({}, body, path=TASK_PATH)
    assert (response.status, response.headers) == (503, {"Retry-After": "7"})
    assert response.body["reason"] == "429 quota"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff not json", "task_rejected: the task body is not JSON"),
        (b"[1, 2]", "task_rejected: the task body is not a JSON object"),
        (b'{"kind": "frobnicate"}', "task_rejected: unknown task kind 'frobnicate'"),
    ],
)
def test_a_task_that_can_never_succeed_is_acked_and_dead_lettered(app, parts, body, reason):
    response = app.handle({}, body, path=TASK_PATH)
    assert response.status == 200 and response.body["decision"] == "rejected"
    assert response.body["reason"].startswith(reason)
    [letter] = parts["dead_letters"].published
    assert letter["reason"].startswith(reason) and letter["body"] == body


def test_a_batch_task_to_a_function_without_batched_rules_is_kept_for_one_that_has_them(app):
    # GIVEN a function whose rules batch nothing (so it has no batcher)
    assert app.dispatcher.batcher is None
    # WHEN a batch task reaches it (rules being rolled out), THEN the queue is told to retry
    response = app.handle({}, b'{"kind": "batch", "rule": "load", "batch": "b1"}', path=TASK_PATH)
    assert response.status == 503 and "Retry-After" in response.headers
    assert response.body["reason"] == "batching is not configured in this function"


def test_a_task_is_authenticated_like_an_event(parts):
    settings = Settings(ledger="memory", runner="dry-run")
    refusing = FakeAuthenticator(Unauthorized(401, "no token"))
    app = App(settings, rules=RULES, authenticator=refusing, **parts)
    response = app.handle({}, b'{"kind": "launch"}', path=TASK_PATH)
    assert response.status == 401 and refusing.seen == [None]


def test_other_paths_are_events(app, parts):
    response = app.handle({}, b"{}", path="/")
    assert response.body["decision"] == "rejected" and response.body["reason"] != "task_rejected"
    assert parts["queue"].tasks == []


def test_flow_rules_without_a_task_target_are_an_error_at_start_and_their_events_kept(
    parts, caplog
):
    del parts["queue"]
    app = App(Settings(ledger="memory", runner="dry-run"), rules=RULES, **parts)
    [error] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "rule(s) load have flow control" in error.getMessage()
    assert "TRIGGERS_TASK_TARGET_URL is not set" in error.getMessage()
    assert check_flow_settings(Settings(), RULES).__class__ is FlowNotConfigured
    response = app.dispatcher.dispatch(storage_event())
    load = {o.rule: o for o in response.outcomes}["load"]
    assert (load.outcome.value, load.reason) == ("retry", NO_QUEUE)


def test_with_a_task_target_the_queue_is_built_on_first_use_only(parts):
    del parts["queue"]
    settings = Settings(
        ledger="memory",
        runner="dry-run",
        task_target_url="http://127.0.0.1:9/_triggers/task",
        tasks_project="demo-project",
    )
    app = App(settings, rules=RULES, **parts)
    assert app.dispatcher.queue is not None and app.dispatcher.queue._queue is None


def test_handle_http_passes_the_path(flask_apps, app, parts):  # noqa: F811
    body = queued_body(app, parts)
    triggers.main.set_app(app)
    try:
        client = flask_apps["http"].test_client()
        answer = client.post(TASK_PATH, data=body, content_type="application/json")
    finally:
        triggers.main.set_app(None)
    assert answer.status_code == 200 and answer.get_json()["outcome"] == "launched"


def test_a_rejected_launch_dead_letters_its_event_as_a_cloudevent_that_decodes_again(app, parts):
    from triggers.events import decode

    body = queued_body(app, parts)
    parts["runner"].fail("loader", PermanentRunError("job not found", status=404))
    response = app.handle({}, body, path=TASK_PATH)
    assert response.status == 200 and response.body["outcome"] == "rejected"
    [letter] = parts["dead_letters"].published
    assert (letter["reason"], letter["rule"], letter["event_id"]) == (
        "job not found",
        "load",
        "e-1",
    )
    event = decode({"Content-Type": "application/cloudevents+json"}, letter["body"])
    original = storage_event()
    assert (event.id, event.type, event.source, dict(event.data)) == (
        original.id,
        original.type,
        original.source,
        dict(original.data),
    )
