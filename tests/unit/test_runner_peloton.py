"""Peloton: the CreateRequest a rule renders, how answers are classified, how a JobInfo reads
to the reconciler, and the emulator's config checks. No network: see
tests/integration/test_runner_peloton.py for the runner against the emulator."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from triggers.emulators.peloton.api import PelotonService, YarpcError
from triggers.emulators.peloton.store import InvalidConfig, JobStore
from triggers.emulators.rpc import ApiError
from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError, RulesError
from triggers.events import decode
from triggers.events.model import EventRef
from triggers.plan import RUN_KEY_ENV, Overrides, RunRequest
from triggers.rules import load_text
from triggers.runners import peloton, systems

TEMPLATE = """\
name: batch
type: BATCH
respoolID: {value: /pool}
instanceCount: 1
labels: [{key: app, value: batch}, {key: triggers.run-key, value: stale}]
defaultConfig:
  command:
    shell: false
    value: /bin/batch
    arguments: [--from-template]
    environment:
      variables: [{name: A, value: template}, {name: B, value: template}]
"""


@pytest.fixture
def templates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "batch.yaml").write_text(TEMPLATE)
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    (tmp_path / "scalar.yaml").write_text("just text\n")
    monkeypatch.setenv(peloton.TEMPLATES_ENV, str(tmp_path))
    return tmp_path


def request_for(key: str = "k", job: str = "batch", **overrides: Any) -> RunRequest:
    return RunRequest(
        rule="r",
        job=job,
        overrides=Overrides(**overrides),
        dedup_key=key,
        dedup_window_seconds=60,
        event=EventRef(id="e", source="//s", type="t"),
        system="peloton",
        renderer=peloton.render_create,
    )


def command(body: dict[str, Any]) -> dict[str, Any]:
    return body["config"]["defaultConfig"]["command"]


# ---------------------------------------------------------------------- rendering


def test_the_job_id_is_a_uuid_of_the_ledger_key_and_follows_a_replay_scope(templates) -> None:
    request = request_for("day-1")
    body = request.request_body()
    assert body["id"]["value"] == peloton.job_id(request) == peloton.job_id(request_for("day-1"))
    assert uuid.UUID(body["id"]["value"]).version == 5
    assert peloton.job_id(request_for("day-2")) != peloton.job_id(request)
    scoped = request.in_scope("replay-1")
    assert scoped.request_body()["id"]["value"] == peloton.job_id(scoped) != peloton.job_id(request)


def test_without_overrides_the_template_is_sent_with_the_run_key(templates) -> None:
    request = request_for()
    body = request.request_body()
    assert command(body)["arguments"] == ["--from-template"]
    assert command(body)["environment"]["variables"] == [
        {"name": "A", "value": "template"},
        {"name": "B", "value": "template"},
        {"name": RUN_KEY_ENV, "value": request.ledger_key},
    ]
    assert body["config"]["instanceCount"] == 1 and "sla" not in body["config"]
    # the run key label replaces a stale one; the template's own labels stay
    assert body["config"]["labels"] == [
        {"key": "app", "value": "batch"},
        {"key": "triggers.run-key", "value": request.ledger_key},
    ]


def test_overrides_map_to_arguments_environment_instance_count_and_max_running_time(
    templates,
) -> None:
    body = request_for(
        args=("--day", "2026-12-04"),
        env=(("B", "rule"), ("C", "rule")),
        task_count=4,
        timeout_seconds=600,
    ).request_body()
    assert command(body)["arguments"] == ["--day", "2026-12-04"]
    names = [(v["name"], v["value"]) for v in command(body)["environment"]["variables"]]
    assert names[:3] == [("A", "template"), ("B", "rule"), ("C", "rule")]  # merged in place
    assert names[3][0] == RUN_KEY_ENV
    assert body["config"]["instanceCount"] == 4
    assert body["config"]["sla"] == {"maxRunningTime": 600}


@pytest.mark.parametrize("overrides", [{"clear_args": True}, {"args": ()}])
def test_clear_args_or_an_empty_list_sends_no_arguments(templates, overrides) -> None:
    assert command(request_for(**overrides).request_body())["arguments"] == []


def test_rendering_never_changes_the_cached_template(templates) -> None:
    request_for(task_count=9, args=("x",), env=(("A", "changed"),)).request_body()
    assert request_for().request_body()["config"]["instanceCount"] == 1
    assert command(request_for().request_body())["arguments"] == ["--from-template"]


@pytest.mark.parametrize(
    ("job", "why"),
    [
        ("missing", "no Peloton job template"),
        ("broken", "is not YAML"),
        ("scalar", "is not a JobConfig mapping"),
    ],
)
def test_a_bad_template_renders_its_error_and_run_refuses_it_without_a_call(
    templates, job, why
) -> None:
    request = request_for(job=job)
    body = request.request_body()  # never raises: the ledger records it before the run
    assert body["config"] is None and why in body["templateError"]
    # nothing listens on port 9: a call would fail otherwise than permanently
    with pytest.raises(PermanentRunError, match=why):
        peloton.PelotonRunner("http://127.0.0.1:9").run(request)


# ---------------------------------------------------------------------- rules


def rules(body: str) -> str:
    return "project: demo-project\nregion: europe-west1\nrules:\n" + body


def test_a_peloton_rule_plans_the_create_request(templates) -> None:
    text = rules(
        "  - {name: r, on: com.example.x, system: peloton, job: batch,"
        " overrides: {task_count: 2, env: {DAY: '{{ data.day }}'}}}\n"
    )
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "e-1",
        "ce-source": "//s",
        "ce-type": "com.example.x",
        "content-type": "application/json",
    }
    request = load_text(text).get("r").plan(decode(headers, b'{"day": "d1"}'))
    assert request.system == "peloton" and request.job == "batch"
    assert request.as_dict()["request"] == request.request_body()
    variables = command(request.request_body())["environment"]["variables"]
    assert {"name": "DAY", "value": "d1"} in variables


def test_what_peloton_cannot_express_fails_at_load_with_its_line() -> None:
    text = rules(
        "  - name: r\n    on: pubsub\n    system: peloton\n    job: projects/p/jobs/x\n"
        "    overrides:\n      container: worker\n"
    )
    with pytest.raises(RulesError) as info:
        load_text(text)
    assert [(p.line, p.message.split(":")[0]) for p in info.value.problems] == [
        (7, "job 'projects/p/jobs/x'"),
        (9, "overrides.container"),
    ]


def test_the_system_builds_its_runner_from_the_settings_and_owns_its_job_names() -> None:
    system = systems.get("peloton")
    runner = system.build_runner({"peloton_endpoint": "http://jobmgr:5292/"})
    assert isinstance(runner, peloton.PelotonRunner) and runner.endpoint == "http://jobmgr:5292"
    with pytest.raises(PermanentRunError, match="TRIGGERS_PELOTON_ENDPOINT"):
        system.build_runner({})
    name = f"peloton/jobs/{uuid.uuid4()}"
    assert systems.of_execution(name) is system
    assert systems.of_execution("projects/p/locations/r/jobs/j/executions/e").name == "cloudrun"


def test_the_yarpc_headers() -> None:
    headers = peloton.PelotonRunner("http://h", timeout=2.5).headers("svc::Proc")
    assert headers == {
        "Rpc-Caller": "triggers",
        "Rpc-Service": "peloton-jobmgr",
        "Rpc-Procedure": "svc::Proc",
        "Rpc-Encoding": "json",
        "Context-TTL-MS": "2500",
        "Content-Type": "application/json",
    }


# ---------------------------------------------------------------------- errors


class Answer:
    def __init__(self, status: int, code: str | None, text: str) -> None:
        self.status_code = status
        self.headers = {"Rpc-Status": code} if code else {}
        self.text = text


@pytest.mark.parametrize(
    ("status", "code", "text", "kind"),
    [
        (503, "unavailable", "not leader", RetryableRunError),
        (429, "resource-exhausted", "rate limited", RetryableRunError),
        (429, None, "from a proxy", RetryableRunError),
        (400, "invalid-argument", "missing caller name", PermanentRunError),
        (501, "unimplemented", "unrecognized procedure", PermanentRunError),
        (403, "permission-denied", "no", PermanentRunError),
        (503, "unavailable", "upstream reset", AmbiguousRunError),
        (500, "internal", "panic", AmbiguousRunError),
        (504, "deadline-exceeded", "ttl", AmbiguousRunError),
        (502, None, "bad gateway", AmbiguousRunError),
    ],
)
def test_yarpc_errors_are_classified_by_whether_the_call_may_have_acted(
    status, code, text, kind
) -> None:
    error = peloton.yarpc_error(Answer(status, code, text), "JobManager::Create")
    assert type(error) is kind and error.status == status and text in error.message


# ---------------------------------------------------------------------- status


def info(state: str, stats: dict[str, int], count: int = 2) -> dict[str, Any]:
    runtime = {
        "state": state,
        "taskStats": stats,
        "startTime": "2026-12-05T01:00:00.000000Z",
        "completionTime": "2026-12-05T01:05:00.000000Z",
    }
    return {"config": {"instanceCount": count}, "runtime": runtime}


@pytest.mark.parametrize(
    ("state", "stats", "done", "outcome", "counts"),
    [
        ("SUCCEEDED", {"SUCCEEDED": 2}, True, "succeeded", (2, 0, 0, 0)),
        ("FAILED", {"SUCCEEDED": 1, "FAILED": 1}, True, "failed", (1, 1, 0, 0)),
        ("FAILED", {"LOST": 2}, True, "failed", (0, 2, 0, 0)),
        ("KILLED", {"KILLED": 2}, True, "cancelled", (0, 0, 2, 0)),
        ("KILLING", {"RUNNING": 1, "KILLED": 1}, False, "running", (0, 0, 1, 1)),
        ("PENDING", {"PENDING": 2}, False, "running", (0, 0, 0, 0)),
        ("RUNNING", {"RUNNING": 1, "SUCCEEDED": 1}, False, "running", (1, 0, 0, 1)),
        ("INITIALIZED", {}, False, "running", (0, 0, 0, 0)),
    ],
)
def test_the_runtime_state_is_what_the_reconciler_records(
    state, stats, done, outcome, counts
) -> None:
    status = peloton.job_status("peloton/jobs/x", info(state, stats))
    assert (status["done"], status["outcome"], status["task_count"]) == (done, outcome, 2)
    assert (
        status["succeeded_count"],
        status["failed_count"],
        status["cancelled_count"],
        status["running_count"],
    ) == counts
    assert (status["completed_at"] is not None) is done
    assert (status["message"] is not None) is (done and outcome != "succeeded")


def test_a_name_that_is_not_a_peloton_job_is_refused_without_a_call() -> None:
    with pytest.raises(PermanentRunError):
        peloton.PelotonRunner("http://127.0.0.1:9").execution_status("peloton/jobs/../x")


# ---------------------------------------------------------------------- the emulator


class NoLauncher:
    def __init__(self) -> None:
        self.specs: list[Any] = []

    def launch(self, spec, on_exit):
        self.specs.append(spec)
        return self

    def kill(self) -> None:
        pass

    def join(self, timeout=None) -> bool:
        return True


def config(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "j",
        "respoolID": {"value": "/pool"},
        "instanceCount": 2,
        "defaultConfig": {"command": {"shell": False, "value": "{python}", "arguments": ["a"]}},
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"name": ""}, "config.name is required"),
        ({"type": "SERVICE"}, "runs BATCH jobs"),
        ({"respoolID": {}}, "resource pool"),
        ({"instanceCount": 0}, "instanceCount must be 1..100"),
        ({"instanceCount": True}, "instanceCount"),
        ({"defaultConfig": {}}, "defaultConfig.command.value is required"),
        ({"sla": {"maximumRunningInstances": -1}}, "maximumRunningInstances"),
    ],
)
def test_the_emulator_refuses_configs_it_cannot_run(tmp_path, changes, why) -> None:
    store = JobStore(tmp_path, NoLauncher())
    with pytest.raises(InvalidConfig, match=why):
        store.create(str(uuid.uuid4()), config(**changes))
    assert store.count() == 0


def test_the_emulator_runs_each_instance_with_the_peloton_environment(tmp_path) -> None:
    launcher = NoLauncher()
    store = JobStore(tmp_path, launcher, jobs_dir="/jobs", base_env={"PATH": "/bin"})
    variables = [{"name": "X", "value": "1"}]
    ident = store.create(
        None,
        config(
            defaultConfig={
                "command": {"value": "echo {jobs}", "environment": {"variables": variables}}
            }
        ),
    )
    assert [s.argv for s in launcher.specs] == [("/bin/sh", "-c", "echo /jobs")] * 2  # shell
    assert [s.env["PELOTON_INSTANCE_ID"] for s in launcher.specs] == ["0", "1"]
    assert launcher.specs[1].env["PELOTON_TASK_ID"] == f"{ident}-1-1"
    assert launcher.specs[0].env["X"] == "1" and launcher.specs[0].env["PATH"] == "/bin"
    assert store.get(ident)["runtime"]["state"] == "RUNNING"
    direct = JobStore(tmp_path, launcher := NoLauncher())
    direct.create(None, config())
    assert launcher.specs[0].argv == (sys.executable, "a")  # {python} = the emulator's


def test_emulator_errors_are_yarpc_shaped() -> None:
    service = PelotonService(JobStore(".", NoLauncher()))
    status, headers, body = service.render_error(ApiError.injected(503))
    assert (status, headers["Rpc-Status"]) == (503, "unavailable") and b"not leader" in body
    status, headers, _ = service.render_error(ApiError.injected(429))
    assert (status, headers["Rpc-Status"]) == (429, "resource-exhausted")
    status, headers, body = service.render_error(YarpcError("unimplemented", "nope"))
    assert (status, headers["Rpc-Status"], body) == (501, "unimplemented", b"nope")
