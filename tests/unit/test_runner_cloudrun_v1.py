"""The Cloud Run Admin API v1 system (`cloudrun-v1`): its request mapping, checked against the
`run.v1` discovery document that google-api-python-client bundles; execution names that cannot be
taken for v2's; the status and error mappings; the emulator's v1 resource shapes (pure)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from triggers.emulators.cloudrun.v1 import condition_v1, execution_v1, job_v1, v2_run_body
from triggers.emulators.rpc import ApiError
from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError, RulesError
from triggers.events import decode
from triggers.events.model import EventRef
from triggers.function.settings import Settings
from triggers.plan import RUN_KEY_ENV, Overrides, RunRequest
from triggers.rules import load_text
from triggers.runners import systems
from triggers.runners.cloudrun_v1 import (
    CloudRunV1Runner,
    classify_response,
    execution_status_of,
    render_run_job,
)

JOB = "projects/demo-project/locations/europe-west1/jobs/probe"
V2_EXECUTION = f"{JOB}/executions/probe-ab1cd"
V1_EXECUTION = "namespaces/demo-project/executions/probe-ab1cd"
HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "e-1",
    "ce-source": "//example/src",
    "ce-type": "com.example.thing.v1.created",
    "content-type": "application/json",
}


@cache
def discovery() -> dict[str, Any]:
    import googleapiclient

    path = Path(googleapiclient.__file__).parent / "discovery_cache/documents/run.v1.json"
    return json.loads(path.read_text(encoding="utf-8"))


def conforms(value: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """What in `value` the discovery `schema` does not allow (unknown fields, wrong types)."""
    if "$ref" in schema:
        schema = discovery()["schemas"][schema["$ref"]]
    kind = schema.get("type")
    if kind == "object":
        if not isinstance(value, dict):
            return [f"{where}: not an object"]
        problems = []
        properties = schema.get("properties", {})
        for key, item in value.items():
            sub = properties.get(key) or schema.get("additionalProperties")
            if sub is None:
                problems.append(f"{where}.{key}: not in the schema")
            else:
                problems += conforms(item, sub, f"{where}.{key}")
        return problems
    if kind == "array":
        if not isinstance(value, list):
            return [f"{where}: not an array"]
        return [
            p for i, v in enumerate(value) for p in conforms(v, schema["items"], f"{where}[{i}]")
        ]
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r} is not an integer"]
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: {value!r} is not a boolean"]
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: {value!r} is not a string"]
        if schema.get("format") == "int64" and not value.lstrip("-").isdigit():
            return [f"{where}: {value!r} is not an int64 string"]
        if schema.get("format") == "google-datetime":
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        return []
    return []


def schema(name: str) -> dict[str, Any]:
    return {"$ref": name}


def request_for(key: str = "k", **overrides: Any) -> RunRequest:
    return RunRequest(
        rule="v1-test",
        job=JOB,
        overrides=Overrides(**overrides),
        dedup_key=key,
        dedup_window_seconds=3600,
        event=EventRef(id=key, source="//tests", type="test"),
        system="cloudrun-v1",
        renderer=render_run_job,
    )


# ---------------------------------------------------------------------- request


def test_every_override_maps_to_its_v1_field_with_the_run_key() -> None:
    request = request_for(
        container="worker",
        args=("--input", "gs://b/o"),
        env=(("MODE", "full"),),
        task_count=4,
        timeout_seconds=1800,
    )
    assert render_run_job(request) == {
        "overrides": {
            "containerOverrides": [
                {
                    "name": "worker",
                    "args": ["--input", "gs://b/o"],
                    "env": [
                        {"name": "MODE", "value": "full"},
                        {"name": RUN_KEY_ENV, "value": request.ledger_key},
                    ],
                }
            ],
            "taskCount": 4,
            "timeoutSeconds": 1800,  # v1: an integer, not v2's "1800s"
        }
    }


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"clear_args": True},
        {"args": ()},
        {"args": ("a",), "env": (("X", "1"),), "task_count": 2, "timeout_seconds": 5},
        {"container": "c"},
    ],
    ids=["none", "clear-args", "empty-args", "all", "container"],
)
def test_the_body_is_a_valid_v1_run_job_request(overrides: dict[str, Any]) -> None:
    body = render_run_job(request_for(**overrides))
    assert conforms(body, schema("RunJobRequest")) == []
    # and the run key is always there: `find` depends on it
    [container] = body["overrides"]["containerOverrides"]
    assert {"name": RUN_KEY_ENV, "value": request_for(**overrides).ledger_key} in container["env"]


def test_the_schema_check_would_catch_the_v2_body() -> None:
    # v2's Duration `timeout` is not a v1 field: the check above is not vacuous
    problems = conforms(request_for(timeout_seconds=5).run_job_body(), schema("RunJobRequest"))
    assert problems == [".overrides.timeout: not in the schema"]


def test_clear_args_sends_no_args_as_v1_requires() -> None:
    [container] = render_run_job(request_for(args=(), clear_args=True))["overrides"][
        "containerOverrides"
    ]
    assert container["clearArgs"] is True and "args" not in container


def test_a_rule_targets_v1_and_plans_its_exact_request() -> None:
    text = (
        "project: demo-project\nregion: europe-west1\nrules:\n"
        "  - name: r\n    on: com.example.thing.v1.created\n    system: cloudrun-v1\n"
        "    job: probe\n    overrides:\n      args: ['{{ id }}']\n      timeout: 2m\n"
    )
    request = load_text(text, environ={}).get("r").plan(decode(HEADERS, b"{}"))
    assert request.system == "cloudrun-v1" and request.job == JOB
    body = request.request_body()
    assert body == render_run_job(request)
    assert body["overrides"]["timeoutSeconds"] == 120
    assert body["overrides"]["containerOverrides"][0]["args"] == ["e-1"]
    assert request.as_dict()["request"] == body and request.as_dict()["system"] == "cloudrun-v1"


def test_a_v1_rule_takes_the_same_job_names_as_v2() -> None:
    text = (
        "project: demo-project\nregion: europe-west1\nrules:\n"
        "  - {name: r, on: pubsub, system: cloudrun-v1, job: 'namespaces/p/jobs/j'}\n"
    )
    with pytest.raises(RulesError, match="namespaces/p/jobs/j"):
        load_text(text, environ={})


# ---------------------------------------------------------------------- names


def test_execution_names_of_v1_and_v2_are_never_confused() -> None:
    assert systems.of_execution(V1_EXECUTION).name == "cloudrun-v1"
    assert systems.of_execution(V2_EXECUTION).name == "cloudrun"
    for name in (
        f"{V1_EXECUTION}/extra",
        f"x/{V1_EXECUTION}",
        "namespaces/p/jobs/j",
        "namespaces//executions/e",
        f"projects/p/locations/r/jobs/j/{V1_EXECUTION}",
    ):
        assert systems.of_execution(name) is None, name


def test_status_of_a_name_that_is_not_v1_is_refused_without_a_call() -> None:
    runner = CloudRunV1Runner(endpoint="http://127.0.0.1:1")
    with pytest.raises(PermanentRunError, match="not a Cloud Run v1 execution name"):
        runner.execution_status(V2_EXECUTION)


def test_without_an_endpoint_or_a_region_a_status_lookup_says_what_to_set() -> None:
    runner = CloudRunV1Runner(credentials=object())
    with pytest.raises(PermanentRunError, match="TRIGGERS_CLOUD_RUN_V1_REGIONS"):
        runner.execution_status(V1_EXECUTION)


def test_without_an_endpoint_each_call_goes_to_the_job_s_regional_endpoint() -> None:
    runner = CloudRunV1Runner(credentials=object())
    assert (
        runner._url("us-east4", "namespaces/p/jobs/j:run")
        == "https://us-east4-run.googleapis.com/apis/run.googleapis.com/v1/namespaces/p/jobs/j:run"
    )
    emulated = CloudRunV1Runner(endpoint="http://127.0.0.1:8123/")
    assert emulated._url("us-east4", "namespaces/p/executions") == (
        "http://127.0.0.1:8123/apis/run.googleapis.com/v1/namespaces/p/executions"
    )


def test_status_asks_the_region_it_knows_first_then_the_configured_ones() -> None:
    runner = CloudRunV1Runner(credentials=object(), regions=("us-central1", "europe-west1"))
    assert runner._regions_for(V1_EXECUTION) == ["us-central1", "europe-west1"]
    runner._region_of[V1_EXECUTION] = "europe-west1"  # it launched or found it there
    assert runner._regions_for(V1_EXECUTION) == ["europe-west1", "us-central1"]
    assert CloudRunV1Runner(endpoint="http://e")._regions_for(V1_EXECUTION) == [""]


# ---------------------------------------------------------------------- settings


def test_the_runner_is_built_from_the_function_settings(monkeypatch) -> None:
    monkeypatch.setenv("TRIGGERS_CLOUD_RUN_V1_ENDPOINT", "http://127.0.0.1:8123/")
    monkeypatch.setenv("TRIGGERS_CLOUD_RUN_V1_REGIONS", '["europe-west1", "us-central1"]')
    options = Settings().as_dict()
    runner = systems.get("cloudrun-v1").build_runner(options)
    assert isinstance(runner, CloudRunV1Runner)
    assert runner.endpoint == "http://127.0.0.1:8123"
    assert runner.regions == ("europe-west1", "us-central1")


def test_importing_the_runner_imports_no_client() -> None:
    code = (
        "import sys, triggers.runners.cloudrun_v1, triggers.runners.systems as s;"
        "s.renderer_of('cloudrun-v1');"
        "print([m for m in ('requests', 'google.auth', 'googleapiclient') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------- status


def v1_execution(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "e"}, "spec": {"taskCount": 3}, "status": status}


def completed(state: str, reason: str = "", message: str = "") -> dict[str, Any]:
    c = {"type": "Completed", "status": state}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


@pytest.mark.parametrize(
    ("condition", "outcome"),
    [
        (completed("True", message="done"), "succeeded"),
        (completed("False", "NonZeroExitCode", "Task e-task0 failed"), "failed"),
        (completed("False", "Cancelled", "The execution was cancelled."), "cancelled"),
        (completed("False", "DeadlineExceeded"), "failed"),
    ],
)
def test_the_completed_condition_decides_the_outcome(condition, outcome) -> None:
    state = execution_status_of(
        V1_EXECUTION,
        v1_execution(
            conditions=[{"type": "Started", "status": "True"}, condition],
            startTime="2026-12-05T01:00:00Z",
            completionTime="2026-12-05T01:02:00Z",
            succeededCount=2,
            failedCount=1,
            retriedCount=1,
            logUri="https://console/logs",
        ),
    )
    assert state["done"] is True and state["outcome"] == outcome
    assert state["name"] == V1_EXECUTION
    assert (state["task_count"], state["succeeded_count"], state["failed_count"]) == (3, 2, 1)
    assert state["retried_count"] == 1 and state["cancelled_count"] == 0
    assert state["started_at"] == "2026-12-05T01:00:00Z"
    assert state["completed_at"] == "2026-12-05T01:02:00Z"
    assert state["log_uri"] == "https://console/logs"
    assert state["message"] == condition.get("message")


def test_an_unknown_completed_condition_is_still_running() -> None:
    state = execution_status_of(
        V1_EXECUTION, v1_execution(conditions=[completed("Unknown")], runningCount=3)
    )
    assert (state["done"], state["outcome"], state["running_count"]) == (False, "running", 3)


# ---------------------------------------------------------------------- errors


class Answer:
    def __init__(self, status: int, body: Any = None) -> None:
        self.status_code = status
        self._body = body
        self.text = "" if body is None else json.dumps(body)

    def json(self) -> Any:
        if self._body is None:
            raise ValueError("no body")
        return self._body


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, PermanentRunError),
        (403, PermanentRunError),
        (404, PermanentRunError),
        (409, PermanentRunError),
        (501, PermanentRunError),
        (401, RetryableRunError),
        (429, RetryableRunError),
        (499, AmbiguousRunError),
        (500, AmbiguousRunError),
        (502, AmbiguousRunError),
        (503, AmbiguousRunError),
        (504, AmbiguousRunError),
    ],
)
def test_http_errors_are_classified_like_v2(status: int, kind: type) -> None:
    error = classify_response(
        Answer(status, {"error": {"code": status, "message": "said the API"}}), "v1 jobs.run j"
    )
    assert type(error) is kind and error.status == status
    assert error.message == f"v1 jobs.run j: HTTP {status} said the API"


def test_an_error_without_a_json_body_keeps_the_start_of_its_text() -> None:
    answer = Answer(502)
    answer.text = "<html>Bad Gateway</html>"
    assert "Bad Gateway" in classify_response(answer, "x").message


# ---------------------------------------------------------------------- emulator shapes


def test_the_emulator_reads_a_v1_body_as_the_v2_one() -> None:
    assert v2_run_body(render_run_job(request_for(timeout_seconds=90, task_count=2))) == {
        "overrides": {
            "containerOverrides": [
                {"env": [{"name": RUN_KEY_ENV, "value": request_for().ledger_key}]}
            ],
            "taskCount": 2,
            "timeout": "90s",
        }
    }
    assert v2_run_body(None) == {} and v2_run_body({"overrides": {}}) == {"overrides": {}}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"overrides": {"timeout": "5s"}}, 'Unknown name "timeout"'),
        ({"validateOnly": True}, 'Unknown name "validateOnly"'),
        ({"overrides": {"timeoutSeconds": "soon"}}, "TYPE_INT32"),
        ({"overrides": {"timeoutSeconds": 0}}, "must be positive"),
        ({"overrides": {"delayExecution": True}}, "starts executions at once"),
        ([], "Expected an object"),
    ],
)
def test_the_emulator_refuses_what_v1_does_not_have(body: Any, says: str) -> None:
    with pytest.raises(ApiError, match=says) as info:
        v2_run_body(body)
    assert info.value.http_status == 400


V2_STORE_EXECUTION = {
    "name": V2_EXECUTION,
    "uid": "u-1",
    "createTime": "2026-12-05T01:00:00.000000Z",
    "startTime": "2026-12-05T01:00:00.100000Z",
    "completionTime": "2026-12-05T01:00:01.000000Z",
    "updateTime": "2026-12-05T01:00:01.000000Z",
    "parallelism": 2,
    "taskCount": 2,
    "template": {
        "containers": [
            {
                "image": "local/probe",
                "command": ["python"],
                "args": ["a"],
                "env": [{"name": RUN_KEY_ENV, "value": "k"}],
                "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}},
            }
        ],
        "maxRetries": 0,
        "timeout": "30s",
    },
    "conditions": [
        {
            "type": "Completed",
            "state": "CONDITION_FAILED",
            "message": "The execution was cancelled.",
            "lastTransitionTime": "2026-12-05T01:00:01.000000Z",
            "executionReason": "CANCELLED",
        },
        {"type": "Started", "state": "CONDITION_SUCCEEDED"},
    ],
    "succeededCount": 1,
    "cancelledCount": 1,
    "logUri": "file:///tmp/logs",
    "etag": '"abc"',
}


def test_an_emulated_v1_execution_is_a_valid_v1_execution() -> None:
    e = execution_v1(V2_STORE_EXECUTION)
    assert conforms(e, schema("Execution")) == []
    assert (e["apiVersion"], e["kind"]) == ("run.googleapis.com/v1", "Execution")
    assert e["metadata"]["name"] == "probe-ab1cd" and e["metadata"]["namespace"] == "demo-project"
    assert e["metadata"]["labels"]["run.googleapis.com/job"] == "probe"
    assert e["spec"]["template"]["spec"]["timeoutSeconds"] == "30"
    assert e["status"]["conditions"][0] == {
        "type": "Completed",
        "status": "False",
        "reason": "Cancelled",
        "message": "The execution was cancelled.",
        "lastTransitionTime": "2026-12-05T01:00:01.000000Z",
        "severity": "Error",
    }
    # and the runner reads it as the reconciler needs it
    state = execution_status_of(V1_EXECUTION, e)
    assert (state["outcome"], state["succeeded_count"], state["cancelled_count"]) == (
        "cancelled",
        1,
        1,
    )


@pytest.mark.parametrize(
    ("v2", "v1"),
    [
        ({"state": "CONDITION_SUCCEEDED"}, {"status": "True"}),
        (
            {"state": "CONDITION_FAILED", "executionReason": "NON_ZERO_EXIT_CODE"},
            {"status": "False", "reason": "NonZeroExitCode", "severity": "Error"},
        ),
        (
            {"state": "CONDITION_FAILED"},
            {"status": "False", "reason": "Failed", "severity": "Error"},
        ),
        ({"state": "CONDITION_RECONCILING"}, {"status": "Unknown"}),
        (
            {"state": "CONDITION_RECONCILING", "executionReason": "CANCELLING"},
            {"status": "Unknown", "reason": "Cancelling"},
        ),
        ({"state": "CONDITION_PENDING"}, {"status": "Unknown"}),
    ],
)
def test_conditions_take_the_kubernetes_form(v2, v1) -> None:
    assert condition_v1({"type": "Completed", **v2}) == {"type": "Completed", **v1}


def test_an_emulated_v1_job_is_a_valid_v1_job() -> None:
    v2_job = {
        "name": JOB,
        "uid": "j-1",
        "createTime": "2026-12-05T00:00:00.000000Z",
        "template": {
            "taskCount": 1,
            "parallelism": 1,
            "template": {"containers": [{"name": "main", "image": "x"}], "timeout": "600s"},
        },
        "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED"},
        "executionCount": 1,
        "latestCreatedExecution": {
            "name": V2_EXECUTION,
            "createTime": "2026-12-05T01:00:00.000000Z",
            "completionStatus": "EXECUTION_RUNNING",
        },
        "etag": '"e"',
    }
    job = job_v1(v2_job)
    assert conforms(job, schema("Job")) == []
    assert job["status"]["latestCreatedExecution"]["name"] == "probe-ab1cd"
    assert job["spec"]["template"]["spec"]["template"]["spec"]["containers"][0]["name"] == "main"


def test_times_parse_as_the_reconciler_records_them() -> None:
    state = execution_status_of(
        V1_EXECUTION,
        v1_execution(conditions=[completed("True")], completionTime="2026-12-05T01:02:00Z"),
    )
    assert datetime.fromisoformat(state["completed_at"].replace("Z", "+00:00")).tzinfo == UTC
