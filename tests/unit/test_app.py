"""HTTP semantics of the function: `App.handle` and the two functions-framework targets.

Everything runs in process: a MemoryBackend ledger, a scripted runner, fake authenticators and
Flask's test client. The answers are what the senders' retry logic acts on (see docs/functions.md):

    200  ack (launched, duplicate, rejected for good, nothing matched, undecodable request)
    503  retry, with Retry-After
    401 / 403  refused caller
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import functions_framework
import pytest

import triggers.main
from tests.fakes import ScriptedRunner
from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError
from triggers.function.app import App, Response, Unauthorized
from triggers.function.logs import CloudLoggingFormatter, current_trace
from triggers.function.settings import Settings
from triggers.ledger import Ledger, Status
from triggers.ledger.base import INPUT_RULE
from triggers.ledger.memory import MemoryBackend
from triggers.rules import load_text

MAIN = str(Path(triggers.main.__file__).resolve())
EVENTS = Path(__file__).resolve().parents[2] / "config" / "events"
TRACE = "105445aa7843bc8bf206b12000100000"

RULES = load_text(
    """\
project: demo-project
region: europe-west1
rules:
  - name: load
    on: storage.finalized
    bucket: raw-data
    job: loader
    overrides:
      args: ["{{ data.name }}"]
  - name: audit
    on: storage.finalized
    job: auditor
  - name: nightly-report
    on: scheduler
    schedule: "0 2 * * *"
    job: nightly-report
""",
    environ={},
)


class DownBackend(MemoryBackend):
    """A ledger store that cannot be reached."""

    def create(self, record):
        raise ConnectionError("firestore unreachable")

    def get(self, key):
        raise ConnectionError("firestore unreachable")


class FakeAuthenticator:
    """Refuses with `refusal` when set; remembers the Authorization values it was given."""

    def __init__(self, refusal: Unauthorized | Exception | None = None) -> None:
        self.refusal = refusal
        self.seen: list[str | None] = []

    def verify(self, authorization: str | None) -> dict[str, Any]:
        self.seen.append(authorization)
        if self.refusal is not None:
            raise self.refusal
        return {"email": "scheduler@demo-project.iam.gserviceaccount.com"}


def sample(name: str) -> tuple[dict[str, str], bytes]:
    document = json.loads((EVENTS / name).read_text())
    return dict(document["headers"]), json.dumps(document["body"]).encode()


STORAGE = "storage-finalized.cloudevent-binary.json"
SCHEDULER = "scheduler-nightly.http.json"


@pytest.fixture
def settings() -> Settings:
    return Settings(ledger="memory", runner="dry-run", retry_after_seconds=42, max_body_bytes=2048)


@pytest.fixture
def backend() -> MemoryBackend:
    return MemoryBackend()


@pytest.fixture
def ledger(backend) -> Ledger:
    return Ledger(backend, lease=timedelta(minutes=5))


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


@pytest.fixture
def make_app(settings, ledger, runner):
    def make(**kwargs: Any) -> App:
        parts = {"rules": RULES, "ledger": ledger, "runner": runner, **kwargs}
        return App(settings, **parts)

    return make


@pytest.fixture
def app(make_app) -> App:
    return make_app()


class JsonLogs:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]

    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def json_logs() -> Iterator[JsonLogs]:
    """The `triggers` loggers' output, formatted for Cloud Logging as in production."""
    logs = JsonLogs()
    handler = logging.StreamHandler(logs.stream)
    handler.setFormatter(CloudLoggingFormatter(project="demo-project"))
    logger = logging.getLogger("triggers")
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield logs
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def input_records(ledger: Ledger):
    return ledger.list(rule=INPUT_RULE)


# -- ack ---------------------------------------------------------------------------------------


def test_given_a_matching_event_then_200_with_one_summary_per_rule(app, runner, ledger):
    response = app.handle(*sample(STORAGE))
    assert response.status == 200 and response.headers == {}
    assert response.body["decision"] == "ack"
    assert response.body["event"] == "9876543210123456"
    rules = {r["rule"]: r for r in response.body["rules"]}
    assert set(rules) == {"load", "audit"}
    assert all(r["outcome"] == "launched" for r in rules.values())
    assert rules["load"]["execution"].startswith(
        "projects/demo-project/locations/europe-west1/jobs/loader/"
    )
    assert runner.run_calls == 2
    assert ledger.get(rules["load"]["ledger_key"]).status is Status.LAUNCHED


def test_given_a_redelivery_then_200_duplicates_and_nothing_runs_again(app, runner):
    first = app.handle(*sample(STORAGE))
    again = app.handle(*sample(STORAGE))
    assert again.status == 200 and again.body["decision"] == "ack"
    assert [r["outcome"] for r in again.body["rules"]] == ["duplicate", "duplicate"]
    assert [r["execution"] for r in again.body["rules"]] == [
        r["execution"] for r in first.body["rules"]
    ]
    assert runner.run_calls == 2


def test_given_a_permanent_api_error_then_200_with_the_rule_rejected(app, runner):
    runner.fail("loader", PermanentRunError("job not found", status=404))
    response = app.handle(*sample(STORAGE))
    assert response.status == 200 and response.body["decision"] == "ack"
    outcomes = {r["rule"]: (r["outcome"], r.get("reason")) for r in response.body["rules"]}
    assert outcomes == {"load": ("rejected", "job not found"), "audit": ("launched", None)}


def test_given_an_event_no_rule_matches_then_200_with_no_rules(app, runner):
    headers, body = sample(STORAGE)
    headers["ce-source"] = "//storage.googleapis.com/projects/_/buckets/elsewhere"
    headers["ce-type"] = "com.example.unrelated"
    response = app.handle(headers, body)
    assert (response.status, response.body["decision"], response.body["rules"]) == (200, "ack", [])
    assert runner.run_calls == 0


def test_scheduler_http_target_is_dispatched(app):
    response = app.handle(*sample(SCHEDULER))
    assert response.status == 200
    assert response.body["event"] == "nightly-report#2026-11-21T02:00:00Z"
    assert [r["outcome"] for r in response.body["rules"]] == ["launched"]


def test_scheduler_tick_naming_its_job_in_full_runs_the_owning_rule_once(app, runner):
    # Cloud Scheduler may send X-CloudScheduler-JobName as projects/P/locations/L/jobs/J.
    headers, body = sample(SCHEDULER)
    headers["X-CloudScheduler-JobName"] = (
        "projects/demo-project/locations/europe-west1/jobs/nightly-report"
    )
    first = app.handle(headers, body)
    assert first.status == 200
    assert [(r["rule"], r["outcome"]) for r in first.body["rules"]] == [
        ("nightly-report", "launched")
    ]
    assert first.body["event"] == "nightly-report#2026-11-21T02:00:00Z"
    # The same tick named by the job id is the same occurrence: one run, not two.
    again = app.handle(*sample(SCHEDULER))
    assert [r["outcome"] for r in again.body["rules"]] == ["duplicate"]
    assert again.body["rules"][0]["ledger_key"] == first.body["rules"][0]["ledger_key"]
    assert runner.run_calls == 1


def test_scheduler_pubsub_target_naming_its_job_in_full_runs_the_owning_rule(app, runner):
    message = {
        "messageId": "m-1",
        "publishTime": "2026-11-22T02:00:03.25Z",
        "attributes": {
            "scheduler_job": "projects/demo-project/locations/europe-west1/jobs/nightly-report"
        },
        "data": "",
    }
    body = json.dumps({"message": message, "subscription": "projects/p/subscriptions/ticks"})
    response = app.handle({"Content-Type": "application/json"}, body.encode())
    assert response.status == 200
    assert [(r["rule"], r["outcome"]) for r in response.body["rules"]] == [
        ("nightly-report", "launched")
    ]
    assert runner.run_calls == 1


# -- retry -------------------------------------------------------------------------------------


def test_given_a_retryable_api_error_then_503_with_retry_after_from_settings(app, runner):
    runner.fail("loader", RetryableRunError("quota exceeded", status=429))
    response = app.handle(*sample(STORAGE))
    assert response.status == 503
    assert response.headers == {"Retry-After": "42"}
    assert response.body["decision"] == "retry"
    outcomes = {r["rule"]: (r["outcome"], r.get("reason")) for r in response.body["rules"]}
    assert outcomes == {"load": ("retry", "quota exceeded"), "audit": ("launched", None)}

    # THEN the redelivery runs only what is left, and acks.
    again = app.handle(*sample(STORAGE))
    assert again.status == 200
    assert {r["rule"]: r["outcome"] for r in again.body["rules"]} == {
        "load": "launched",
        "audit": "duplicate",
    }
    assert runner.run_calls == 3


def test_given_an_ambiguous_failure_whose_run_is_found_then_it_is_adopted_not_rerun(app, runner):
    runner.fail("loader", AmbiguousRunError("deadline exceeded", status=504))
    response = app.handle(*sample(STORAGE))
    assert response.status == 200
    load = next(r for r in response.body["rules"] if r["rule"] == "load")
    assert load["outcome"] == "launched" and load["adopted"] is True
    assert runner.run_calls == 2


def test_given_the_ledger_is_down_then_503_and_nothing_runs(make_app, runner):
    app = make_app(ledger=Ledger(DownBackend()))
    response = app.handle(*sample(STORAGE))
    assert response.status == 503 and response.headers["Retry-After"] == "42"
    assert all(r["reason"].startswith("ledger unavailable") for r in response.body["rules"])
    assert runner.run_calls == 0


def test_given_an_unexpected_exception_in_dispatch_then_503_and_a_stack_trace(
    app, runner, json_logs
):
    runner.fail("loader", ZeroDivisionError("a bug in the runner"))
    response = app.handle(*sample(STORAGE))
    assert response == Response(
        503, {"decision": "retry", "reason": "internal error"}, {"Retry-After": "42"}
    )
    errors = [line for line in json_logs.lines() if line["severity"] == "ERROR"]
    assert len(errors) == 1
    assert errors[0]["message"] == "unexpected error while handling a request"
    assert "ZeroDivisionError: a bug in the runner" in errors[0]["stack_trace"]
    assert errors[0]["logger"] == "triggers.function.app"


# -- requests that are not events --------------------------------------------------------------


def test_given_an_undecodable_request_then_200_rejected_and_recorded(app, ledger, runner):
    headers = {"Content-Type": "application/json", "User-Agent": "curl/8.5"}
    response = app.handle(headers, b"{not json")
    assert response.status == 200 and response.headers == {}
    assert response.body["decision"] == "rejected"
    assert response.body["reason"] == "bad_json"
    assert response.body["message"]
    (record,) = input_records(ledger)
    assert record.rule == INPUT_RULE and record.status is Status.REJECTED
    assert record.reason.startswith("bad_json: ")
    assert record.event == {
        "content_type": "application/json",
        "user_agent": "curl/8.5",
        "bytes": 9,
    }
    assert runner.run_calls == 0


def test_given_the_same_bad_request_again_then_one_record_counts_the_duplicates(app, ledger):
    for _ in range(3):
        assert app.handle({}, b"garbage").body["decision"] == "rejected"
    app.handle({}, b"other garbage")
    records = {r.dedup_key: r for r in input_records(ledger)}
    assert len(records) == 2
    assert sorted(r.duplicates for r in records.values()) == [0, 2]


def test_given_a_body_over_the_limit_then_200_rejected_body_too_large(app, ledger):
    response = app.handle({"Content-Type": "application/json"}, b"[" + b"1," * 1500 + b"1]")
    assert (response.status, response.body["reason"]) == (200, "body_too_large")
    assert len(input_records(ledger)) == 1


def test_given_the_ledger_is_down_during_a_rejection_then_it_still_acks(make_app, json_logs):
    app = make_app(ledger=Ledger(DownBackend()))
    response = app.handle({}, b"garbage")
    assert response.status == 200 and response.body["decision"] == "rejected"
    errors = [line for line in json_logs.lines() if line["severity"] == "ERROR"]
    assert [e["message"] for e in errors] == [
        "could not record a rejected request: firestore unreachable"
    ]


# -- callers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "refusal, headers",
    [
        (Unauthorized(401, "missing Authorization header"), {"WWW-Authenticate": "Bearer"}),
        (Unauthorized(403, "x@y.z is not allowed to call this function"), {}),
    ],
)
def test_given_the_authenticator_refuses_then_its_status_and_nothing_dispatched(
    make_app, runner, ledger, backend, refusal, headers
):
    app = make_app(authenticator=FakeAuthenticator(refusal))
    response = app.handle(*sample(SCHEDULER))
    assert response == Response(
        refusal.status, {"decision": "refused", "reason": refusal.message}, headers
    )
    assert runner.run_calls == 0
    assert ledger.list() == [] and backend.calls["create"] == 0


def test_a_refused_undecodable_request_is_not_recorded(make_app, ledger):
    app = make_app(
        authenticator=FakeAuthenticator(Unauthorized(401, "missing Authorization header"))
    )
    assert app.handle({}, b"garbage").status == 401
    assert ledger.list() == []


def test_the_authorization_header_reaches_the_authenticator_whatever_its_case(make_app):
    authenticator = FakeAuthenticator()
    app = make_app(authenticator=authenticator)
    headers, body = sample(SCHEDULER)
    assert app.handle({**headers, "AUTHORIZATION": "Bearer t1"}, body).status == 200
    assert app.handle(headers, body).status == 200  # a duplicate tick: still 200
    assert authenticator.seen == ["Bearer t1", None]


def test_given_certificates_cannot_be_fetched_then_503(make_app, runner):
    from triggers.function.auth import CertificatesUnavailable

    app = make_app(authenticator=FakeAuthenticator(CertificatesUnavailable("certs down")))
    response = app.handle(*sample(SCHEDULER))
    assert response.status == 503 and response.headers == {"Retry-After": "42"}
    assert runner.run_calls == 0


# -- logs --------------------------------------------------------------------------------------


def test_the_request_trace_is_on_every_log_line_of_the_request(app, runner, json_logs):
    runner.fail("auditor", RetryableRunError("busy", status=429))
    headers, body = sample(STORAGE)
    headers["X-Cloud-Trace-Context"] = f"{TRACE}/1;o=1"
    app.handle(headers, body)
    lines = json_logs.lines()
    assert len(lines) >= 2
    assert {line.get("logging.googleapis.com/trace") for line in lines} == {
        f"projects/demo-project/traces/{TRACE}"
    }
    assert current_trace.get() is None  # reset once the request is done

    app.handle({}, b"garbage")  # a request without a trace header logs no trace
    assert "logging.googleapis.com/trace" not in json_logs.lines()[-1]


def test_each_outcome_is_logged_with_its_labels(app, runner, json_logs):
    runner.fail("auditor", RetryableRunError("busy", status=429))
    response = app.handle(*sample(STORAGE))
    by_rule = {
        line["logging.googleapis.com/labels"]["rule"]: line
        for line in json_logs.lines()
        if "rule" in line.get("logging.googleapis.com/labels", {})
    }
    assert by_rule["load"]["severity"] == "INFO"
    assert by_rule["load"]["logging.googleapis.com/labels"]["outcome"] == "launched"
    assert by_rule["load"]["logging.googleapis.com/labels"]["event_id"] == "9876543210123456"
    assert by_rule["load"]["logging.googleapis.com/labels"]["execution"] == next(
        r["execution"] for r in response.body["rules"] if r["rule"] == "load"
    )
    assert by_rule["audit"]["severity"] == "WARNING"
    assert by_rule["audit"]["logging.googleapis.com/labels"]["outcome"] == "retry"
    assert "execution" not in by_rule["audit"]["logging.googleapis.com/labels"]


def test_a_refusal_is_logged_without_the_token(make_app, json_logs):
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQifQ.c2lnbmF0dXJl"
    app = make_app(authenticator=FakeAuthenticator(Unauthorized(401, "token expired")))
    headers, body = sample(SCHEDULER)
    app.handle({**headers, "Authorization": f"Bearer {token}"}, body)
    assert "refused a caller: token expired" in json_logs.text()
    assert token not in json_logs.text()


# -- functions-framework targets ---------------------------------------------------------------


@pytest.fixture(scope="module")
def flask_apps() -> Iterator[dict[str, Any]]:
    """Both targets, loaded by path as functions-framework does in a deployment.

    Should a test ever reach a target without an installed app, the app built from the
    environment must stay local: memory ledger, dry-run runner.
    """
    path_before, main_before = list(sys.path), sys.modules.get("main")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRIGGERS_LEDGER", "memory")
        patch.setenv("TRIGGERS_RUNNER", "dry-run")
        try:
            yield {
                "http": functions_framework.create_app(target="handle_http", source=MAIN),
                "cloudevent": functions_framework.create_app(
                    target="handle_cloudevent", source=MAIN, signature_type="cloudevent"
                ),
            }
        finally:
            sys.path[:] = path_before  # create_app appends triggers/ to sys.path: undo it
            if main_before is None:
                sys.modules.pop("main", None)
            else:
                sys.modules["main"] = main_before
            triggers.main.set_app(None)


@pytest.fixture
def installed(app) -> Iterator[App]:
    triggers.main.set_app(app)
    try:
        yield app
    finally:
        triggers.main.set_app(None)


@pytest.fixture
def http_client(flask_apps):
    return flask_apps["http"].test_client()


@pytest.fixture
def cloudevent_client(flask_apps):
    return flask_apps["cloudevent"].test_client()


def test_the_loaded_targets_use_the_app_installed_with_set_app(flask_apps, installed):
    assert sys.modules["main"].get_app() is installed


def test_http_target_answers_with_the_apps_status_and_body(http_client, installed, runner):
    headers, body = sample(STORAGE)
    response = http_client.post("/", headers=headers, data=body)
    assert response.status_code == 200
    assert response.get_json()["decision"] == "ack"
    assert [r["outcome"] for r in response.get_json()["rules"]] == ["launched", "launched"]
    assert runner.run_calls == 2


def test_http_target_answers_503_with_retry_after(http_client, installed, runner):
    runner.fail("loader", RetryableRunError("quota exceeded", status=429))
    headers, body = sample(STORAGE)
    response = http_client.post("/", headers=headers, data=body)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "42"
    assert response.get_json()["decision"] == "retry"


def test_http_target_acks_an_undecodable_request(http_client, installed):
    response = http_client.post("/", data=b"\x00\x01", headers={"Content-Type": "text/plain"})
    assert response.status_code == 200
    assert response.get_json()["decision"] == "rejected"


def test_http_target_passes_a_refusal_through(http_client, make_app, runner):
    authenticator = FakeAuthenticator(Unauthorized(401, "missing Authorization header"))
    triggers.main.set_app(make_app(authenticator=authenticator))
    try:
        headers, body = sample(SCHEDULER)
        response = http_client.post(
            "/", headers={**headers, "Authorization": "Bearer abc"}, data=body
        )
    finally:
        triggers.main.set_app(None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json() == {"decision": "refused", "reason": "missing Authorization header"}
    assert authenticator.seen == ["Bearer abc"] and runner.run_calls == 0


def test_cloudevent_target_acks_with_200(cloudevent_client, installed, runner, ledger):
    headers, body = sample(STORAGE)
    response = cloudevent_client.post("/", headers=headers, data=body)
    assert response.status_code == 200
    assert runner.run_calls == 2
    launched = ledger.list(status=[Status.LAUNCHED])
    assert {r.rule for r in launched} == {"load", "audit"}
    assert launched[0].event_document["data"]["name"] == "incoming/2026/11/21/orders.csv"


def test_cloudevent_target_acks_a_structured_event(cloudevent_client, installed, runner):
    document = json.loads((EVENTS / "storage-finalized.cloudevent-structured.json").read_text())
    response = cloudevent_client.post(
        "/", headers=document["headers"], data=json.dumps(document["body"])
    )
    assert response.status_code == 200
    assert runner.run_calls == 2


def test_cloudevent_target_nacks_with_500_when_the_app_says_retry(
    cloudevent_client, installed, runner
):
    runner.fail("loader", RetryableRunError("quota exceeded", status=429))
    headers, body = sample(STORAGE)
    response = cloudevent_client.post("/", headers=headers, data=body)
    assert response.status_code == 500
    # Eventarc redelivers; the redelivery runs what is left and is acked.
    assert cloudevent_client.post("/", headers=headers, data=body).status_code == 200
    assert runner.run_calls == 3


def test_cloudevent_target_keeps_the_trace_and_the_authorization_of_the_delivery(
    cloudevent_client, make_app, json_logs
):
    authenticator = FakeAuthenticator()
    triggers.main.set_app(make_app(authenticator=authenticator))
    try:
        headers, body = sample(STORAGE)
        headers.update(
            {"Authorization": "Bearer eventarc", "X-Cloud-Trace-Context": f"{TRACE}/7;o=1"}
        )
        response = cloudevent_client.post("/", headers=headers, data=body)
    finally:
        triggers.main.set_app(None)
    assert response.status_code == 200
    assert authenticator.seen == ["Bearer eventarc"]
    traces = {line.get("logging.googleapis.com/trace") for line in json_logs.lines()}
    assert traces == {f"projects/demo-project/traces/{TRACE}"}


def test_cloudevent_target_nacks_a_refused_delivery(cloudevent_client, make_app, runner):
    triggers.main.set_app(make_app(authenticator=FakeAuthenticator(Unauthorized(403, "nope"))))
    try:
        response = cloudevent_client.post("/", headers=sample(STORAGE)[0], data=sample(STORAGE)[1])
    finally:
        triggers.main.set_app(None)
    assert response.status_code == 500  # kept for redelivery until the configuration is fixed
    assert runner.run_calls == 0


def test_a_broken_rules_file_fails_the_function_at_start_not_at_an_event(tmp_path):
    # GIVEN a rules file with a mistake
    import os
    import subprocess
    import sys
    from pathlib import Path

    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "rules:\n  - name: a\n    on: pubsub\n    job: projects/p/locations/r/jobs/j\n"
        "    overrides: {task_count: 0}\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "TRIGGERS_RULES": str(bad),
        "TRIGGERS_LEDGER": "memory",
        "TRIGGERS_RUNNER": "dry-run",
    }
    # WHEN functions-framework loads the function, as it does when an instance starts
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import functions_framework; "
            "functions_framework.create_app(target='handle_http', source='triggers/main.py')",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    # THEN the start fails, naming the file, line and problem
    assert result.returncode != 0
    assert f"{bad}:5: rule 'a': overrides.task_count" in result.stderr
