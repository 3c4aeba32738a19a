"""The SAE runner's pure parts: the ExecJob request a rule becomes, the overrides SAE cannot
express, the classification of every failure, and the status the reconciler reads."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import requests
import urllib3

from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError, RulesError
from triggers.events import decode
from triggers.events.model import EventRef
from triggers.function.settings import Settings
from triggers.plan import Overrides, RunRequest
from triggers.rules import load_text
from triggers.runners import sae, systems

APP = "ee1a7a07-abcb-4652-a1d3-2d57f4150000"
JOB = f"cn-hangzhou/{APP}"
HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "e-1",
    "ce-source": "//example/src",
    "ce-type": "com.example.thing.v1.created",
    "content-type": "application/json",
}


def request_for(key: str = "k", job: str = JOB, **overrides: Any) -> RunRequest:
    return RunRequest(
        rule="sae-test",
        job=job,
        overrides=Overrides(**overrides),
        dedup_key=key,
        dedup_window_seconds=3600,
        event=EventRef(id=key, source="//tests", type="test"),
        system="sae",
        renderer=sae.render_exec_job,
    )


def rules(body: str) -> str:
    return "project: demo-project\nregion: europe-west1\nrules:\n" + body


# ---------------------------------------------------------------------- the request


def test_the_request_carries_the_ledger_key_as_event_id_and_the_overrides_in_sae_s_spelling():
    request = request_for(
        args=("--input", "oss://b/ü.csv"), env=(("A", "1"), ("B", "two")), task_count=3
    )
    query = sae.render_exec_job(request)
    assert query == {
        "AppId": APP,
        "EventId": request.ledger_key,
        "CommandArgs": '["--input", "oss://b/ü.csv"]',
        "Envs": '[{"name": "A", "value": "1"}, {"name": "B", "value": "two"}]',
        "Replicas": "3",
    }
    assert json.loads(query["CommandArgs"]) == ["--input", "oss://b/ü.csv"]


def test_without_overrides_only_the_template_and_the_event_id_are_sent():
    request = request_for()
    # no Envs at all: an Envs parameter might replace the template's variables
    assert sae.render_exec_job(request) == {"AppId": APP, "EventId": request.ledger_key}


def test_an_empty_args_list_is_sent_as_an_empty_json_array():
    assert sae.render_exec_job(request_for(args=()))["CommandArgs"] == "[]"


def test_the_sdk_request_is_read_from_the_rendered_query_unchanged():
    request = request_for(args=("a",), env=(("X", "y"),), task_count=2)
    built = sae.build_exec_job_request(request)
    assert built.to_map() == sae.render_exec_job(request)
    assert built.event_id == request.ledger_key and built.replicas == "2"


def test_a_replay_scope_gives_a_new_event_id():
    request = request_for()
    scoped = request.in_scope("replay-1")
    assert sae.render_exec_job(scoped)["EventId"] == scoped.ledger_key != request.ledger_key


def test_a_job_that_is_not_region_slash_app_id_is_permanent():
    with pytest.raises(PermanentRunError, match="REGION/APP_ID"):
        sae.render_exec_job(request_for(job="csv-loader"))


def test_execution_names_round_trip_and_belong_to_sae():
    job = sae.SaeJob.parse(JOB)
    name = job.execution("manual-3db7a8fa")
    assert name == f"sae/cn-hangzhou/apps/{APP}/jobs/manual-3db7a8fa"
    assert sae.parse_execution(name) == (job, "manual-3db7a8fa")
    assert systems.of_execution(name) is systems.get("sae")
    with pytest.raises(PermanentRunError):
        sae.parse_execution("projects/p/locations/r/jobs/j/executions/e")


# ---------------------------------------------------------------------- rules


def test_a_rule_of_system_sae_plans_the_exec_job_request():
    text = rules(
        f"  - {{name: r, on: com.example.thing.v1.created, system: sae, job: {JOB},"
        " overrides: {args: ['--id={{ event.id }}'], env: {K: v}, task_count: 2}}\n"
    )
    request = load_text(text).get("r").plan(decode(HEADERS, b"{}"))
    assert request.system == "sae" and request.job == JOB
    planned = request.as_dict()["request"]
    assert planned == {
        "AppId": APP,
        "EventId": request.ledger_key,
        "CommandArgs": '["--id=e-1"]',
        "Envs": '[{"name": "K", "value": "v"}]',
        "Replicas": "2",
    }


def test_overrides_sae_cannot_express_fail_at_load_with_their_lines():
    text = rules(
        f"  - name: r\n    on: pubsub\n    system: sae\n    job: {JOB}\n    overrides:\n"
        "      container: main\n      clear_args: true\n      timeout: 5m\n      task_count: 2\n"
    )
    with pytest.raises(RulesError) as info:
        load_text(text)
    assert [(p.line, p.message.split(":")[0]) for p in info.value.problems] == [
        (9, "overrides.container"),
        (10, "overrides.clear_args"),
        (11, "overrides.timeout"),
    ]
    assert "Alibaba Cloud SAE ExecJob (system: sae) has no timeout" in str(info.value)


def test_a_cloud_run_job_name_is_not_an_sae_job():
    with pytest.raises(RulesError) as info:
        load_text(rules("  - {name: r, on: pubsub, system: sae, job: csv-loader}\n"))
    assert "job 'csv-loader': Alibaba Cloud SAE ExecJob takes REGION/APP_ID" in str(info.value)


def test_the_runner_is_built_from_the_function_settings(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TRIGGERS_SAE_ENDPOINT", "http://127.0.0.1:1")
    options = Settings().as_dict()
    runner = systems.get("sae").build_runner(options)
    assert isinstance(runner, sae.SaeRunner) and runner.endpoint == "http://127.0.0.1:1"


def test_importing_the_runner_does_not_import_the_sdk():
    import subprocess

    code = (
        "import sys, triggers.runners.sae as s; s.render_exec_job;"
        " print(any(m.startswith(('alibabacloud', 'darabonba')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------------- errors


def client_error(status: int | None, code: str) -> Exception:
    from alibabacloud_tea_openapi import exceptions

    return exceptions.ClientException(status_code=status, code=code, message=f"{code} happened")


def server_error(status: int, code: str) -> Exception:
    from alibabacloud_tea_openapi import exceptions

    return exceptions.ServerException(status_code=status, code=code, message=f"{code} happened")


def transport_error(cause: BaseException) -> Exception:
    """What the SDK raises for a transport failure: an UnretryableException around a
    RetryError raised while handling the requests exception."""
    from darabonba.exceptions import RetryError, UnretryableException
    from darabonba.policy.retry import RetryPolicyContext

    try:
        try:
            raise cause
        except OSError as exc:
            raise RetryError(str(exc))  # noqa: B904 - as darabonba does: the cause is __context__
    except RetryError as retry:
        return UnretryableException(RetryPolicyContext(retries_attempted=1, exception=retry))


@pytest.mark.parametrize(
    ("error", "expected", "status"),
    [
        (lambda: client_error(400, "Throttling.User"), RetryableRunError, 400),
        (lambda: client_error(429, "Whatever"), RetryableRunError, 429),
        (lambda: client_error(400, "InvalidApplication.NotFound"), PermanentRunError, 400),
        (lambda: client_error(400, "JobForbidPolicy"), PermanentRunError, 400),
        (lambda: client_error(403, "Forbidden.NoPermission"), PermanentRunError, 403),
        (lambda: client_error(None, "InvalidCredentials"), RetryableRunError, None),
        (lambda: server_error(500, "InternalError"), AmbiguousRunError, 500),
        (lambda: server_error(503, "ServiceUnavailable"), AmbiguousRunError, 503),
        (lambda: server_error(503, "Throttling"), RetryableRunError, 503),
    ],
)
def test_api_errors_are_classified(error, expected, status):
    classified = sae.classify_error(error(), "ExecJob x")
    assert type(classified) is expected and classified.status == status
    assert classified.message.startswith("ExecJob x: ")


def test_throttling_with_retry_after_headers_is_retryable():
    from alibabacloud_tea_openapi import exceptions

    exc = exceptions.ThrottlingException(status_code=429, code="Throttling", retry_after=1000)
    assert isinstance(sae.classify_error(exc), RetryableRunError)


def test_a_refused_connection_is_retryable_and_a_lost_answer_ambiguous():
    refused = requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(
            None, "/", urllib3.exceptions.NewConnectionError(None, "Connection refused")
        )
    )
    assert isinstance(sae.classify_error(transport_error(refused)), RetryableRunError)
    timeout = requests.exceptions.ConnectTimeout("connect timed out")
    assert isinstance(sae.classify_error(transport_error(timeout)), RetryableRunError)
    closed = requests.exceptions.ConnectionError(
        "('Connection aborted.', RemoteDisconnected('Remote end closed connection'))"
    )
    lost = sae.classify_error(transport_error(closed))
    assert isinstance(lost, AmbiguousRunError) and "Connection aborted" in lost.message
    read = requests.exceptions.ReadTimeout("read timed out")
    assert isinstance(sae.classify_error(transport_error(read)), AmbiguousRunError)
    assert isinstance(sae.classify_error(RuntimeError("?")), AmbiguousRunError)


def body(payload: dict[str, Any]) -> Any:
    from alibabacloud_sae20190506 import models

    return models.ExecJobResponseBody().from_map(payload)


OK_DATA = {"Data": "manual-1", "Msg": "success", "Success": "true", "Code": "200"}


def test_a_200_with_success_false_at_either_level_is_a_refusal():
    assert sae._refusal(body({"Success": True, "Code": "200", "Data": OK_DATA})) is None
    top = sae._refusal(
        body({"Success": False, "ErrorCode": "JobSuspend", "Message": "The job is suspended."})
    )
    assert top == sae.Refusal("JobSuspend", "The job is suspended.")
    data = sae._refusal(
        body({"Success": True, "Data": {"Success": "false", "Code": "Throttling.User", "Msg": "x"}})
    )
    assert data == sae.Refusal("Throttling.User", "x")


def test_refusals_are_classified_by_their_code():
    assert isinstance(
        sae.classify_refusal(sae.Refusal("Throttling.User", ""), "ExecJob"), RetryableRunError
    )
    assert isinstance(sae.classify_refusal(sae.Refusal("500", ""), "ExecJob"), AmbiguousRunError)
    permanent = sae.classify_refusal(sae.Refusal("JobSuspend", "suspended"), "ExecJob")
    assert isinstance(permanent, PermanentRunError) and "JobSuspend: suspended" in str(permanent)


# ---------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("state", "done", "outcome"),
    [
        ("0", False, "running"),
        ("3", False, "running"),
        ("1", True, "succeeded"),
        ("2", True, "failed"),
    ],
)
def test_job_states_map_to_the_reconciler_s_outcomes(state, done, outcome):
    status = sae.status_of("n", {"State": state, "Active": 1, "Succeeded": 2, "Failed": 3})
    assert (status["done"], status["outcome"]) == (done, outcome)
    assert (status["running_count"], status["succeeded_count"], status["failed_count"]) == (1, 2, 3)
    assert status["task_count"] == 6 and status["cancelled_count"] == 0


def test_times_in_seconds_or_milliseconds_become_rfc3339_and_success_is_no_message():
    status = sae.status_of(
        "n",
        {
            "State": "1",
            "StartTime": 1657522800,
            "CompletionTime": 1657522839000,
            "Message": "success",
        },
    )
    assert status["started_at"] == "2022-07-11T07:00:00Z"
    assert status["completed_at"] == "2022-07-11T07:00:39Z"
    assert status["message"] is None
    failed = sae.status_of("n", {"State": "2", "Message": "exit code 3"})
    assert failed["message"] == "exit code 3" and failed["started_at"] is None


def test_the_sample_rule_targets_a_job_the_emulator_serves():
    from pathlib import Path

    from triggers.emulators.cloudrun.jobs import load_jobs
    from triggers.emulators.sae.api import app_id_of
    from triggers.rules import load

    root = Path(__file__).resolve().parents[2] / "config"
    [rule] = load(root / "systems" / "sae.yaml").rules
    assert rule.spec.system == "sae"
    apps = {app_id_of(job): job.name for job in load_jobs(root / "jobs.yaml")}
    assert apps[sae.SaeJob.parse(rule.job).app_id] == "orders-processor"


def test_without_credentials_a_run_is_retryable_and_nothing_is_sent(tmp_path):
    # A fresh interpreter: the credential chain reads its switches at import. The endpoint is
    # HTTPS on a closed port: the chain fails before any connection is tried.
    import subprocess

    code = (
        "from triggers.runners.sae import SaeRunner\n"
        "from tests.unit.test_runner_sae import request_for\n"
        "try:\n"
        "    SaeRunner(endpoint='127.0.0.1:9', timeout=2).run(request_for())\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc.message)\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    assert out.stdout.startswith("RetryableRunError ")
    assert "unable to load credentials from any of the providers" in out.stdout
