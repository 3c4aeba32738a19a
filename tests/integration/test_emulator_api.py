"""The Cloud Run Jobs emulator over HTTP, driven by the real google-cloud-run client (REST)."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.cloud import run_v2

from triggers.emulators.probe import (
    PARENT,
    PROBE_JOB,
    executions_client,
    probe_records,
    wait,
    write_probe_jobs,
)
from triggers.emulators.server import EmulatorServer

pytestmark = pytest.mark.integration

Overrides = run_v2.RunJobRequest.Overrides
ContainerOverride = Overrides.ContainerOverride
EnvVar = run_v2.EnvVar
State = run_v2.Condition.State


@pytest.fixture(scope="module")
def emulator(probe_dir):
    os.environ["EMULATOR_TEST_LEAK"] = "must-not-reach-tasks"
    try:
        server = EmulatorServer(
            write_probe_jobs(probe_dir), log_dir=probe_dir / "logs", kill_grace=0.5
        )
    finally:
        del os.environ["EMULATOR_TEST_LEAK"]
    with server:
        yield server


def run(
    jobs,
    job=PROBE_JOB,
    *,
    args=None,
    env=None,
    clear_args=False,
    task_count=0,
    timeout=None,
    validate_only=False,
):
    container = None
    if args is not None or env is not None or clear_args:
        container = ContainerOverride(
            args=args or [],
            env=[EnvVar(name=k, value=v) for k, v in (env or {}).items()],
            clear_args=clear_args,
        )
    overrides = Overrides(
        container_overrides=[container] if container else [],
        task_count=task_count,
        timeout=timeout,
    )
    return jobs.run_job(
        request=run_v2.RunJobRequest(name=job, overrides=overrides, validate_only=validate_only)
    )


def completed(execution) -> run_v2.Condition:
    return next(c for c in execution.conditions if c.type_ == "Completed")


# ----------------------------------------------------------------------------- jobs.run


def test_run_passes_exactly_the_overridden_args_and_merged_env(emu, jobs, probe_dir):
    op = run(
        jobs,
        args=["--input=gs://b/o.csv", "two words"],
        env={"SHARED": "override", "TRIGGERS_RUN_KEY": "k-1"},
    )

    # the operation and the execution's name are known at once
    assert op.operation.name.startswith(f"{PARENT}/operations/")
    name = op.metadata.name
    assert name.startswith(f"{PROBE_JOB}/executions/probe-")
    execution = wait(op)
    assert execution.name == name
    assert completed(execution).state == State.CONDITION_SUCCEEDED

    [seen] = probe_records(probe_dir, name)
    assert seen["argv"] == ["--input=gs://b/o.csv", "two words"]
    env = dict(seen["env"])
    env.pop("LC_CTYPE", None)  # Python's C-locale coercion may add it in the child itself
    assert env == {
        "PATH": os.environ["PATH"],
        "PROBE_DIR": str(probe_dir / "out"),
        "JOB_ONLY": "from-job",
        "SHARED": "override",
        "TRIGGERS_RUN_KEY": "k-1",
        "CLOUD_RUN_JOB": "probe",
        "CLOUD_RUN_EXECUTION": name.rsplit("/", 1)[-1],
        "CLOUD_RUN_TASK_INDEX": "0",
        "CLOUD_RUN_TASK_ATTEMPT": "0",
        "CLOUD_RUN_TASK_COUNT": "1",
    }
    assert Path(seen["cwd"]) == (probe_dir / "work").resolve()

    # the execution's template reflects what it ran with
    container = execution.template.containers[0]
    assert list(container.args) == ["--input=gs://b/o.csv", "two words"]
    assert {e.name: e.value for e in container.env} == {
        "PROBE_DIR": str(probe_dir / "out"),
        "JOB_ONLY": "from-job",
        "SHARED": "override",
        "TRIGGERS_RUN_KEY": "k-1",
    }


def test_without_overrides_the_job_defaults_apply(emu, jobs, probe_dir):
    execution = wait(jobs.run_job(name=PROBE_JOB))
    [seen] = probe_records(probe_dir, execution.name)
    assert seen["argv"] == ["--default", "arg"]
    assert seen["env"]["SHARED"] == "job-value"
    assert execution.task_count == 1


def test_clear_args_empties_the_args_and_keeps_the_env(emu, jobs, probe_dir):
    execution = wait(run(jobs, clear_args=True, env={"EXTRA": "1"}))
    [seen] = probe_records(probe_dir, execution.name)
    assert seen["argv"] == []
    assert seen["env"]["EXTRA"] == "1" and seen["env"]["JOB_ONLY"] == "from-job"
    assert list(execution.template.containers[0].args) == []


def test_task_count_override_runs_every_index_within_parallelism(emu, jobs, probe_dir):
    job = f"{PARENT}/jobs/probe-parallel"  # parallelism 2
    execution = wait(run(jobs, job, env={"PROBE_SLEEP": "0.3"}, task_count=5))
    assert (execution.task_count, execution.parallelism) == (5, 2)
    assert (execution.succeeded_count, execution.failed_count, execution.running_count) == (5, 0, 0)
    seen = probe_records(probe_dir, execution.name)
    assert [r["task"] for r in seen] == [0, 1, 2, 3, 4]
    assert {r["env"]["CLOUD_RUN_TASK_COUNT"] for r in seen} == {"5"}
    # never more than two at once, and two did overlap
    events = sorted([(r["start"], 1) for r in seen] + [(r["end"], -1) for r in seen])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 2


def test_failing_task_is_retried_then_the_execution_fails(emu, jobs, probe_dir):
    job = f"{PARENT}/jobs/probe-retry"  # max_retries 2
    op = run(jobs, job, env={"PROBE_FAIL_ATTEMPTS": "99"})
    with pytest.raises(exceptions.GoogleAPICallError) as info:
        wait(op)
    assert "failed" in str(info.value)
    execution = executions_client(emu.url).get_execution(name=op.metadata.name)
    assert (execution.failed_count, execution.succeeded_count, execution.retried_count) == (1, 0, 2)
    assert completed(execution).state == State.CONDITION_FAILED
    assert (
        completed(execution).execution_reason == run_v2.Condition.ExecutionReason.NON_ZERO_EXIT_CODE
    )
    assert execution.completion_time and not execution.reconciling
    assert [r["attempt"] for r in probe_records(probe_dir, execution.name)] == [0, 1, 2]
    # the operation is done, with the error and the execution as metadata
    operation = jobs.get_operation(request={"name": op.operation.name})
    assert operation.done and operation.error.code != 0
    assert operation.error.message.startswith(
        f"Task {execution.name.rsplit('/', 1)[-1]}-task0 failed"
    )


def test_a_retry_that_succeeds_counts_as_retried(emu, jobs, probe_dir):
    execution = wait(run(jobs, f"{PARENT}/jobs/probe-retry", env={"PROBE_FAIL_ATTEMPTS": "1"}))
    assert (execution.succeeded_count, execution.failed_count, execution.retried_count) == (1, 0, 1)
    assert [r["attempt"] for r in probe_records(probe_dir, execution.name)] == [0, 1]


def test_task_timeout_kills_the_task_and_fails_the_execution(emu, jobs, probe_dir):
    started = time.monotonic()
    op = run(jobs, env={"PROBE_SLEEP": "20"}, timeout="0.5s")
    with pytest.raises(exceptions.GoogleAPICallError):
        wait(op)
    assert time.monotonic() - started < 5
    execution = executions_client(emu.url).get_execution(name=op.metadata.name)
    assert execution.failed_count == 1 and execution.template.timeout.total_seconds() == 0.5
    assert "timeout" in completed(execution).message
    assert probe_records(probe_dir, execution.name) == []  # never reached its end
    [attempt] = emu.store.execution_record(execution.name).attempts
    assert attempt.result.value == "timeout"
    with pytest.raises(ProcessLookupError):
        os.kill(attempt.pid, 0)


def test_cancel_kills_running_tasks_and_cancels_the_rest(emu, jobs, executions, probe_dir):
    job = f"{PARENT}/jobs/probe-parallel"
    op = run(jobs, job, env={"PROBE_SLEEP": "20"}, task_count=3)
    name = op.metadata.name
    deadline = time.monotonic() + 10
    while len(probe_records(probe_dir, name, ".started")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = [r["pid"] for r in probe_records(probe_dir, name, ".started")]
    assert len(pids) == 2  # parallelism 2: the third never starts

    cancelled = wait(executions.cancel_execution(name=name))
    assert cancelled.name == name
    assert (cancelled.cancelled_count, cancelled.running_count, cancelled.succeeded_count) == (
        3,
        0,
        0,
    )
    assert completed(cancelled).execution_reason == run_v2.Condition.ExecutionReason.CANCELLED
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    # the run's operation is done and carries the (cancelled) execution as its response
    assert wait(op).cancelled_count == 3
    # a finished execution cannot be cancelled again
    with pytest.raises(exceptions.BadRequest):
        executions.cancel_execution(name=name)


def test_validate_only_launches_nothing(emu, jobs, executions, probe_dir):
    op = run(jobs, env={"TRIGGERS_RUN_KEY": "v"}, validate_only=True)
    assert op.done()
    assert list(executions.list_executions(parent=PROBE_JOB)) == []
    assert emu.store.records() == []
    with pytest.raises(exceptions.BadRequest):
        run(jobs, task_count=20000, validate_only=True)


def test_operation_becomes_done_with_the_execution(emu, jobs):
    op = run(jobs, env={"PROBE_SLEEP": "0.3"})
    first = jobs.get_operation(request={"name": op.operation.name})
    assert not first.done
    execution = wait(op)
    final = jobs.get_operation(request={"name": op.operation.name})
    assert final.done and final.HasField("response")
    response = run_v2.Execution.deserialize(final.response.value)
    assert response.name == execution.name and response.succeeded_count == 1
    listed = jobs.list_operations(request={"name": PARENT})
    assert op.operation.name in [o.name for o in listed.operations]


def test_wait_operation_blocks_until_done(emu, jobs):
    op = run(jobs, env={"PROBE_SLEEP": "0.3"})
    done = jobs.wait_operation(request={"name": op.operation.name, "timeout": {"seconds": 10}})
    assert done.done
    assert emu.store.execution_record(op.metadata.name).done


# ----------------------------------------------------------------------------- reads


def test_get_and_list_jobs(emu, jobs):
    job = jobs.get_job(name=PROBE_JOB)
    assert job.name == PROBE_JOB
    assert list(job.template.template.containers[0].args) == ["--default", "arg"]
    assert job.template.template.max_retries == 0
    assert job.template.template.timeout.total_seconds() == 30
    assert job.terminal_condition.state == State.CONDITION_SUCCEEDED
    assert job.execution_count == 0
    names = [j.name for j in jobs.list_jobs(parent=PARENT)]
    assert names == sorted(names) and PROBE_JOB in names and len(names) == 4

    execution = wait(jobs.run_job(name=PROBE_JOB))
    job = jobs.get_job(name=PROBE_JOB)
    assert job.execution_count == 1
    assert job.latest_created_execution.name == execution.name
    assert (
        job.latest_created_execution.completion_status
        == run_v2.ExecutionReference.CompletionStatus.EXECUTION_SUCCEEDED
    )


def test_list_executions_newest_first_with_pages(emu, jobs, executions):
    names = [wait(jobs.run_job(name=PROBE_JOB)).name for _ in range(3)]
    pager = executions.list_executions(request={"parent": PROBE_JOB, "page_size": 2})
    pages = list(pager.pages)
    assert [len(p.executions) for p in pages] == [2, 1]
    assert [e.name for p in pages for e in p.executions] == names[::-1]


def test_find_an_execution_by_its_env(emu, jobs, executions):
    wait(run(jobs, env={"TRIGGERS_RUN_KEY": "a"}))
    wait(run(jobs, env={"TRIGGERS_RUN_KEY": "b"}))
    found = [
        e.name
        for e in executions.list_executions(parent=PROBE_JOB)
        if any(
            v.name == "TRIGGERS_RUN_KEY" and v.value == "b" for v in e.template.containers[0].env
        )
    ]
    assert len(found) == 1


def test_delete_execution(emu, jobs, executions):
    execution = wait(jobs.run_job(name=PROBE_JOB))
    deleted = wait(executions.delete_execution(name=execution.name))
    assert deleted.delete_time
    with pytest.raises(exceptions.NotFound):
        executions.get_execution(name=execution.name)
    assert list(executions.list_executions(parent=PROBE_JOB)) == []


def test_log_uri_points_at_the_task_output(emu, jobs):
    execution = wait(run(jobs, args=["hello-log"]))
    assert execution.log_uri.startswith("file://")
    log_dir = Path(execution.log_uri.removeprefix("file://"))
    text = (log_dir / "task0-attempt0.log").read_text()
    assert "hello-log" in text


def test_failure_output_goes_to_the_log(emu, jobs):
    op = run(jobs, env={"PROBE_FAIL_ATTEMPTS": "1"})
    with pytest.raises(exceptions.GoogleAPICallError):
        wait(op)
    log_dir = Path(emu.store.execution_record(op.metadata.name).log_dir)
    assert "failing on purpose" in (log_dir / "task0-attempt0.log").read_text()


# ----------------------------------------------------------------------------- errors


def test_unknown_job_is_not_found(emu, jobs, executions):
    with pytest.raises(exceptions.NotFound):
        jobs.run_job(name=f"{PARENT}/jobs/nope")
    with pytest.raises(exceptions.NotFound):
        jobs.get_job(name=f"{PARENT}/jobs/nope")
    with pytest.raises(exceptions.NotFound):
        executions.get_execution(name=f"{PROBE_JOB}/executions/probe-zzzzz")
    with pytest.raises(exceptions.NotFound):
        jobs.get_operation(request={"name": f"{PARENT}/operations/nope"})


def test_error_body_is_google_style(emu):
    req = urllib.request.Request(f"{emu.url}/v2/{PARENT}/jobs/nope:run", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)
    assert info.value.code == 404
    body = json.loads(info.value.read())
    assert body["error"]["code"] == 404
    assert body["error"]["status"] == "NOT_FOUND"
    assert "nope" in body["error"]["message"]


@pytest.mark.parametrize(
    "overrides",
    [
        Overrides(task_count=10_001),
        Overrides(task_count=-1),
        Overrides(timeout="0s"),
        Overrides(timeout="-5s"),
        Overrides(
            container_overrides=[ContainerOverride(args=["a"]), ContainerOverride(args=["b"])]
        ),
        Overrides(container_overrides=[ContainerOverride(env=[EnvVar(name="1BAD", value="x")])]),
        Overrides(container_overrides=[ContainerOverride(env=[EnvVar(name="A=B", value="x")])]),
        Overrides(
            container_overrides=[
                ContainerOverride(env=[EnvVar(name="CLOUD_RUN_TASK_INDEX", value="9")])
            ]
        ),
        Overrides(container_overrides=[ContainerOverride(name="sidecar", args=["a"])]),
    ],
    ids=[
        "tasks>10000",
        "tasks<0",
        "timeout0",
        "timeout<0",
        "two-containers",
        "env-digit",
        "env-equals",
        "env-reserved",
        "no-such-container",
    ],
)
def test_invalid_overrides_are_bad_requests(emu, jobs, overrides):
    with pytest.raises(exceptions.BadRequest) as info:
        jobs.run_job(request=run_v2.RunJobRequest(name=PROBE_JOB, overrides=overrides))
    assert info.value.code == 400
    assert emu.store.records() == []


def test_a_named_container_override_must_match(emu, jobs):
    job = f"{PARENT}/jobs/named-container"
    ok = Overrides(container_overrides=[ContainerOverride(name="worker", args=["x"])])
    assert (
        wait(jobs.run_job(request=run_v2.RunJobRequest(name=job, overrides=ok))).succeeded_count
        == 1
    )
    bad = Overrides(container_overrides=[ContainerOverride(name="other", args=["x"])])
    with pytest.raises(exceptions.BadRequest):
        jobs.run_job(request=run_v2.RunJobRequest(name=job, overrides=bad))


def test_enums_follow_the_requested_encoding(emu, jobs):
    execution = wait(jobs.run_job(name=PROBE_JOB))
    url = f"{emu.url}/v2/{execution.name}"
    as_names = json.loads(urllib.request.urlopen(url, timeout=5).read())
    as_ints = json.loads(
        urllib.request.urlopen(url + "?%24alt=json%3Benum-encoding%3Dint", timeout=5).read()
    )
    assert as_names["conditions"][0]["state"] == "CONDITION_SUCCEEDED"
    assert as_ints["conditions"][0]["state"] == 4
    assert as_names["launchStage"] == "GA" and as_ints["launchStage"] == 4
