"""The emulator's store (executions, operations, supervision) with a fake launcher, and the REST
JSON it renders, checked strictly against the real client's message types."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import json_format

from triggers.emulators.cloudrun import resources
from triggers.emulators.cloudrun.jobs import JobCatalog, JobSpec
from triggers.emulators.cloudrun.overrides import ContainerOverride, RunOverrides, RunRequest
from triggers.emulators.cloudrun.state import Store
from triggers.emulators.machine import AttemptResult
from triggers.emulators.process import AttemptExit
from triggers.emulators.rpc import ApiError

JOB = JobSpec(
    project="demo-project",
    region="europe-west1",
    name="job",
    command=("python", "job.py"),
    args=("--a",),
    env=(("KEEP", "1"),),
    task_count=2,
    parallelism=1,
    timeout=60.0,
    max_retries=1,
)
JOB_NAME = JOB.full_name


@dataclass
class FakeHandle:
    spec: object
    on_exit: object
    pid: int | None = 4242
    killed: bool = False

    def kill(self) -> None:
        self.killed = True

    def join(self, timeout=None) -> bool:
        return True


class FakeLauncher:
    def __init__(self) -> None:
        self.handles: list[FakeHandle] = []

    def launch(self, spec, on_exit):
        handle = FakeHandle(spec, on_exit)
        self.handles.append(handle)
        return handle

    def running(self) -> list[FakeHandle]:
        return [h for h in self.handles if not getattr(h, "exited", False)]

    def exit(
        self, handle: FakeHandle, result: AttemptResult, code: int | None = 0, message: str = ""
    ) -> None:
        handle.exited = True
        handle.on_exit(AttemptExit(result, code, message))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(milliseconds=100)
        return self.now


@pytest.fixture
def launcher() -> FakeLauncher:
    return FakeLauncher()


@pytest.fixture
def store(tmp_path, launcher) -> Store:
    catalog = JobCatalog({JOB_NAME: JOB}, inherit_env=("PATH",))
    return Store(
        catalog, tmp_path, launcher, clock=Clock(), environ={"PATH": "/bin", "SECRET": "s"}
    )


def run(store: Store, **overrides) -> dict:
    return store.run_job(JOB_NAME, RunRequest(overrides=RunOverrides(**overrides)))


def test_run_creates_an_execution_and_launches_within_parallelism(store, launcher, tmp_path):
    op = run(store, container=ContainerOverride(env=(("TRIGGERS_RUN_KEY", "k"),)))
    name = op["metadata"]["name"]
    assert name.startswith(f"{JOB_NAME}/executions/job-") and len(name.rsplit("-", 1)[1]) == 5
    assert op["done"] is False and op["name"].startswith(
        "projects/demo-project/locations/europe-west1/operations/"
    )
    [handle] = launcher.handles  # parallelism 1
    spec = handle.spec
    assert spec.argv == ("python", "job.py", "--a")
    assert spec.env == {
        "PATH": "/bin",
        "KEEP": "1",
        "TRIGGERS_RUN_KEY": "k",
        "CLOUD_RUN_JOB": "job",
        "CLOUD_RUN_EXECUTION": name.rsplit("/", 1)[1],
        "CLOUD_RUN_TASK_INDEX": "0",
        "CLOUD_RUN_TASK_ATTEMPT": "0",
        "CLOUD_RUN_TASK_COUNT": "2",
    }
    assert spec.timeout == 60.0
    assert spec.log_path == tmp_path / name.rsplit("/", 1)[1] / "task0-attempt0.log"
    e = store.get_execution(name)
    assert (e["runningCount"], e["succeededCount"], e["reconciling"]) == (1, 0, True)
    assert e["conditions"][0] == {
        "type": "Completed",
        "state": "CONDITION_RECONCILING",
        "lastTransitionTime": e["startTime"],
    }


def test_exits_drive_the_execution_to_success_and_the_operation_to_done(store, launcher):
    op = run(store)
    name = op["metadata"]["name"]
    launcher.exit(launcher.handles[0], AttemptResult.SUCCEEDED)
    assert launcher.handles[1].spec.env["CLOUD_RUN_TASK_INDEX"] == "1"
    assert store.get_operation(op["name"])["done"] is False
    launcher.exit(launcher.handles[1], AttemptResult.SUCCEEDED)
    done = store.get_operation(op["name"])
    assert done["done"] is True and "error" not in done
    assert done["response"]["succeededCount"] == 2 and done["response"]["completionTime"]
    assert done["response"]["conditions"][0]["state"] == "CONDITION_SUCCEEDED"
    assert store.get_execution(name)["reconciling"] is False


def test_failure_retries_then_fails_the_operation_with_the_task_message(store, launcher):
    op = run(store, task_count=1)
    name = op["metadata"]["name"]
    short = name.rsplit("/", 1)[1]
    launcher.exit(
        launcher.handles[0], AttemptResult.FAILED, 1, "The container exited with an error."
    )
    assert launcher.handles[1].spec.env["CLOUD_RUN_TASK_ATTEMPT"] == "1"
    assert launcher.handles[1].spec.log_path.name == "task0-attempt1.log"
    launcher.exit(
        launcher.handles[1], AttemptResult.FAILED, 1, "The container exited with an error."
    )
    done = store.get_operation(op["name"])
    assert done["done"] is True and "response" not in done
    assert done["error"] == {
        "code": 9,
        "message": f"Task {short}-task0 failed with message: The container exited with an error.",
    }
    e = done["metadata"]
    assert (e["failedCount"], e["retriedCount"], e["taskCount"]) == (1, 1, 1)
    assert e["conditions"][0]["executionReason"] == "NON_ZERO_EXIT_CODE"


def test_cancel_kills_running_attempts_and_completes_when_they_are_gone(store, launcher):
    op = run(store)
    name = op["metadata"]["name"]
    cancel_op = store.cancel_execution(name)
    assert launcher.handles[0].killed
    assert cancel_op["done"] is False
    assert store.get_execution(name)["conditions"][0]["executionReason"] == "CANCELLING"
    launcher.exit(launcher.handles[0], AttemptResult.CANCELLED, -15)
    assert store.get_operation(cancel_op["name"])["done"] is True
    run_op = store.get_operation(op["name"])
    assert (
        run_op["done"] and run_op["response"]["cancelledCount"] == 2
    )  # a cancelled run is not an error
    with pytest.raises(ApiError) as info:
        store.cancel_execution(name)
    assert info.value.status == "FAILED_PRECONDITION"


def test_validate_only_stores_and_launches_nothing(store, launcher):
    op = store.run_job(
        JOB_NAME, RunRequest(validate_only=True, overrides=RunOverrides(task_count=3))
    )
    assert op["done"] is True and op["response"]["taskCount"] == 3 and op["name"] == ""
    assert launcher.handles == [] and store.records() == []
    assert store.list_executions(JOB_NAME) == {"executions": []}


def test_unknown_names_and_stale_etags(store):
    for call in (
        lambda: store.run_job(f"{JOB.parent}/jobs/nope", RunRequest()),
        lambda: store.get_execution(f"{JOB_NAME}/executions/job-aaaaa"),
        lambda: store.list_executions(f"{JOB.parent}/jobs/nope"),
        lambda: store.get_operation(f"{JOB.parent}/operations/x"),
    ):
        with pytest.raises(ApiError) as info:
            call()
        assert info.value.http_status == 404 and info.value.status == "NOT_FOUND"
    with pytest.raises(ApiError) as info:
        store.run_job(JOB_NAME, RunRequest(etag='"stale"'))
    assert info.value.http_status == 409
    etag = store.get_job(JOB_NAME)["etag"]
    assert store.run_job(JOB_NAME, RunRequest(etag=etag))["metadata"]["name"]


def test_list_executions_pages_newest_first(store, launcher):
    names = [run(store)["metadata"]["name"] for _ in range(5)]
    page = store.list_executions(JOB_NAME, page_size=2)
    seen = [e["name"] for e in page["executions"]]
    while page.get("nextPageToken"):
        page = store.list_executions(JOB_NAME, page_size=2, page_token=page["nextPageToken"])
        seen += [e["name"] for e in page["executions"]]
    assert seen == names[::-1]
    with pytest.raises(ApiError):
        store.list_executions(JOB_NAME, page_token="garbage")


def test_job_reports_executions(store, launcher):
    assert store.get_job(JOB_NAME)["executionCount"] == 0
    name = run(store)["metadata"]["name"]
    job = store.get_job(JOB_NAME)
    assert job["executionCount"] == 1
    assert job["latestCreatedExecution"]["name"] == name
    assert job["latestCreatedExecution"]["completionStatus"] == "EXECUTION_RUNNING"
    assert [j["name"] for j in store.list_jobs("demo-project", "europe-west1")["jobs"]] == [
        JOB_NAME
    ]
    assert store.list_jobs("demo-project", "us-east1") == {"jobs": []}


def test_delete_cancels_and_hides_the_execution(store, launcher):
    name = run(store)["metadata"]["name"]
    op = store.delete_execution(name)
    assert op["done"] is True and op["response"]["deleteTime"]
    assert launcher.handles[0].killed
    with pytest.raises(ApiError):
        store.get_execution(name)
    assert store.list_executions(JOB_NAME) == {"executions": []}


def test_wait_operation_wakes_on_completion(store, launcher):
    op = run(store, task_count=1)
    timer = threading.Timer(
        0.1, lambda: launcher.exit(launcher.handles[0], AttemptResult.SUCCEEDED)
    )
    timer.start()
    assert store.wait_operation(op["name"], timeout=5)["done"] is True
    op2 = run(store, task_count=1)
    assert store.wait_operation(op2["name"], timeout=0.05)["done"] is False


def test_shutdown_refuses_new_runs_and_kills_running(store, launcher):
    run(store)
    store.shutdown(timeout=0.01)
    assert launcher.handles[0].killed
    with pytest.raises(ApiError) as info:
        run(store)
    assert info.value.http_status == 503


def test_reset_forgets_everything(store, launcher):
    op = run(store)
    launcher.exit(launcher.handles[0], AttemptResult.SUCCEEDED)
    launcher.exit(launcher.handles[1], AttemptResult.SUCCEEDED)
    store.reset()
    assert store.records() == [] and store.dump() == {"executions": []}
    with pytest.raises(ApiError):
        store.get_operation(op["name"])


# ----------------------------------------------------------------------------- rendering


def test_rendered_resources_parse_strictly_as_the_client_types(store, launcher):
    ops = [run(store, task_count=1) for _ in range(4)]
    h = launcher.handles
    launcher.exit(h[0], AttemptResult.SUCCEEDED)
    launcher.exit(h[1], AttemptResult.FAILED, 2, "boom")
    launcher.exit(
        h[4], AttemptResult.TIMEOUT, -9, "The configured timeout was reached."
    )  # h[4]: retry of h[1]
    store.cancel_execution(ops[2]["metadata"]["name"])
    for op in ops:
        rendered = store.get_operation(op["name"])
        for variant in (rendered, resources.to_int_enums(rendered)):
            parsed = json_format.ParseDict(
                variant, operations_pb2.Operation()
            )  # strict: no unknown fields
            execution = run_v2.Execution.pb(run_v2.Execution())
            assert parsed.metadata.Unpack(execution)
            assert execution.name == op["metadata"]["name"]
    job = store.get_job(JOB_NAME)
    json_format.ParseDict(job, run_v2.Job.pb(run_v2.Job()))
    json_format.ParseDict(resources.to_int_enums(job), run_v2.Job.pb(run_v2.Job()))
    listed = store.list_executions(JOB_NAME)
    json_format.ParseDict(listed, run_v2.ListExecutionsResponse.pb(run_v2.ListExecutionsResponse()))


def test_enum_tables_match_the_client_descriptors():
    condition = run_v2.Condition.pb().DESCRIPTOR
    reference = run_v2.ExecutionReference.pb().DESCRIPTOR
    execution = run_v2.Execution.pb().DESCRIPTOR
    descriptors = {
        "state": condition.fields_by_name["state"].enum_type,
        "severity": condition.fields_by_name["severity"].enum_type,
        "executionReason": condition.fields_by_name["execution_reason"].enum_type,
        "launchStage": execution.fields_by_name["launch_stage"].enum_type,
        "completionStatus": reference.fields_by_name["completion_status"].enum_type,
    }
    assert set(descriptors) == set(resources.ENUMS)
    for key, enum in descriptors.items():
        assert resources.ENUMS[key] == {v.name: v.number for v in enum.values}, key


def test_timestamps_are_rfc3339_utc():
    assert (
        resources.timestamp(datetime(2025, 1, 2, 3, 4, 5, 600, tzinfo=UTC))
        == "2025-01-02T03:04:05.000600Z"
    )


def test_log_uri_is_a_file_uri(store, launcher, tmp_path):
    name = run(store)["metadata"]["name"]
    uri = store.get_execution(name)["logUri"]
    assert uri == (tmp_path / name.rsplit("/", 1)[1]).resolve().as_uri()
    assert Path(uri.removeprefix("file://")).is_dir()
