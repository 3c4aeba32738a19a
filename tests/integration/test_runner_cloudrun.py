"""CloudRunRunner against the Cloud Run Jobs emulator, through the real google-cloud-run client."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from triggers.emulators.probe import (
    PARENT,
    PROBE_JOB,
    probe_records,
)
from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError
from triggers.events.model import EventRef
from triggers.plan import RUN_KEY_ENV, Overrides, RunRequest
from triggers.runners.cloudrun import CloudRunRunner

pytestmark = pytest.mark.integration


def request_for(key: str, job: str = PROBE_JOB, **overrides) -> RunRequest:
    return RunRequest(
        rule="runner-test",
        job=job,
        overrides=Overrides(**overrides),
        dedup_key=key,
        dedup_window_seconds=3600,
        event=EventRef(id=key, source="//tests", type="test"),
    )


def an_hour_ago() -> datetime:
    return datetime.now(UTC) - timedelta(hours=1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: nothing listens there


# ---------------------------------------------------------------------- run


def test_run_launches_with_the_overrides_and_the_run_key(emu, runner, probe_dir, executions):
    request = request_for(
        "with-overrides",
        args=("--input", "gs://raw-data/a.csv"),
        env=(("SHARED", "from-rule"), ("EXTRA", "1")),
        task_count=2,
        timeout_seconds=20,
    )
    launch = runner.run(request)
    assert launch.execution.startswith(f"{PROBE_JOB}/executions/probe-")
    assert launch.operation.startswith(f"{PARENT}/operations/")
    assert launch.adopted is False

    assert emu.store.wait_execution(launch.execution).state == "succeeded"
    records = probe_records(probe_dir, launch.execution)
    assert [r["task"] for r in records] == [0, 1]
    for record in records:
        assert record["argv"] == ["--input", "gs://raw-data/a.csv"]
        env = record["env"]
        assert env[RUN_KEY_ENV] == request.ledger_key
        assert env["SHARED"] == "from-rule" and env["EXTRA"] == "1"
        assert env["JOB_ONLY"] == "from-job"  # env is merged over the job's, not replacing it
        assert env["CLOUD_RUN_TASK_COUNT"] == "2"
    execution = executions.get_execution(name=launch.execution)
    assert execution.template.timeout.total_seconds() == 20


def test_clear_args_reaches_the_task(emu, runner, probe_dir):
    launch = runner.run(request_for("clear", clear_args=True))
    emu.store.wait_execution(launch.execution)
    [record] = probe_records(probe_dir, launch.execution)
    assert record["argv"] == []


def test_run_returns_while_the_execution_is_still_running(emu, runner, executions):
    launch = runner.run(request_for("slow", env=(("PROBE_SLEEP", "1"),)))
    execution = executions.get_execution(name=launch.execution)
    assert execution.reconciling is True
    assert not execution.completion_time
    assert emu.store.wait_execution(launch.execution).state == "succeeded"


def test_validate_only_launches_nothing(emu, runner, executions):
    launch = runner.run(request_for("validate"), validate_only=True)
    assert launch.execution == "" and launch.operation is None
    assert emu.store.records() == []
    assert list(executions.list_executions(parent=PROBE_JOB)) == []


def test_validate_only_still_reports_an_invalid_request(emu, runner):
    with pytest.raises(PermanentRunError) as info:
        runner.run(request_for("bad", env=(("CLOUD_RUN_JOB", "x"),)), validate_only=True)
    assert info.value.status == 400


def test_unknown_job_is_permanent(emu, runner):
    with pytest.raises(PermanentRunError) as info:
        runner.run(request_for("nope", job=f"{PARENT}/jobs/no-such-job"))
    assert info.value.status == 404
    assert info.value.retryable is False


def test_rejected_overrides_are_permanent(emu, runner):
    with pytest.raises(PermanentRunError) as info:
        runner.run(request_for("reserved", env=(("CLOUD_RUN_JOB", "x"),)))
    assert info.value.status == 400
    assert emu.store.records() == []


# ---------------------------------------------------------------------- failures


def test_rate_limited_is_retryable_and_nothing_ran(emu, runner):
    emu.faults.fail("RunJob", 429)
    request = request_for("quota")
    with pytest.raises(RetryableRunError) as info:
        runner.run(request)
    assert info.value.status == 429
    assert emu.store.records() == []
    assert runner.run(request).execution  # the next call goes through


@pytest.mark.parametrize("executed", [False, True], ids=["before", "after"])
def test_a_503_is_ambiguous_because_it_may_or_may_not_have_run(emu, runner, executed):
    # The client sees the same ServiceUnavailable whether the server failed before acting on
    # the request or after: only `find` can tell.
    if executed:
        emu.faults.drop_response("RunJob", mode="status", status=503)
    else:
        emu.faults.fail("RunJob", 503)
    request = request_for(f"unavailable-{executed}")
    with pytest.raises(AmbiguousRunError) as info:
        runner.run(request)
    assert info.value.status == 503 and info.value.retryable is True
    found = runner.find(request, since=an_hour_ago())
    assert (found is not None) is executed
    assert len(emu.store.records()) == int(executed)


def test_dropped_response_is_ambiguous_and_find_adopts_the_execution(emu, runner):
    emu.faults.drop_response("RunJob", mode="close")
    request = request_for("dropped")
    with pytest.raises(AmbiguousRunError) as info:
        runner.run(request)
    assert info.value.status is None
    assert "ConnectionError" in info.value.message

    [record] = emu.store.records()  # it did run
    found = runner.find(request, since=an_hour_ago())
    assert found is not None
    assert found.execution == record.name and found.adopted is True
    assert runner.find(request_for("someone-else"), since=an_hour_ago()) is None


def test_read_timeout_is_ambiguous_and_findable(emu, emulator):
    emu.faults.drop_response("RunJob", mode="timeout", seconds=3)
    impatient = CloudRunRunner(endpoint=emulator.url, timeout=0.5)
    request = request_for("timed-out")
    with pytest.raises(AmbiguousRunError, match="ReadTimeout"):
        impatient.run(request)
    found = impatient.find(request, since=an_hour_ago())
    assert found is not None and found.execution == emu.store.records()[0].name


def test_connection_refused_over_rest_is_retryable():
    runner = CloudRunRunner(endpoint=f"http://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(RetryableRunError, match="ConnectionError") as info:
        runner.run(request_for("refused"))
    assert info.value.status is None


def test_connection_refused_over_grpc_is_retryable():
    # The production transport: gRPC reports a refused connection as UNAVAILABLE itself.
    import grpc
    from google.cloud import run_v2
    from google.cloud.run_v2.services.jobs.transports import JobsGrpcTransport

    channel = grpc.insecure_channel(f"127.0.0.1:{free_port()}")
    try:
        client = run_v2.JobsClient(transport=JobsGrpcTransport(channel=channel))
        with pytest.raises(RetryableRunError) as info:
            CloudRunRunner(client, timeout=2.0).run(request_for("refused-grpc"))
        assert info.value.status == 503
    finally:
        channel.close()


# ---------------------------------------------------------------------- find


def test_find_ignores_executions_older_than_since(emu, runner):
    request = request_for("old")
    launch = runner.run(request)
    after = datetime.now(UTC)
    emu.store.wait_execution(launch.execution)
    assert runner.find(request, since=after) is None
    found = runner.find(request, since=after - timedelta(minutes=1))
    assert found is not None and found.execution == launch.execution


def test_find_picks_the_right_execution_among_many(emu, runner):
    requests = [request_for(f"many-{i}") for i in range(3)]
    launches = [runner.run(r) for r in requests]
    for request, launch in zip(requests, launches, strict=True):
        found = runner.find(request, since=an_hour_ago())
        assert found is not None and found.execution == launch.execution


def test_find_pages_through_the_emulator_back_to_since(emu, emulator):
    # Pages of two: the execution is the oldest of seven, four pages down.
    paging = CloudRunRunner(endpoint=emulator.url, timeout=5.0, find_page_size=2)
    first = request_for("first")
    mine = paging.run(first).execution
    for i in range(6):
        paging.run(request_for(f"later-{i}"))
    found = paging.find(first, since=an_hour_ago())
    assert found is not None and found.execution == mine
    # ... and it stops at `since`: nothing before it is looked at, so nothing is found
    assert paging.find(first, since=datetime.now(UTC) + timedelta(minutes=1)) is None


def test_find_that_runs_out_of_time_before_since_says_so(emu, emulator):
    # Slow pages (0.4 s each, injected) and a 1 s budget: the walk cannot reach `since`, and
    # that is reported as "not known" (retryable), never as "not found".
    paging = CloudRunRunner(endpoint=emulator.url, timeout=5.0, find_page_size=1, find_budget=1.0)
    first = request_for("deep")
    paging.run(first)
    for i in range(5):
        paging.run(request_for(f"above-{i}"))
    emu.faults.add_latency("ListExecutions", 0.4)
    with pytest.raises(RetryableRunError, match="without reaching|timed out"):
        paging.find(first, since=an_hour_ago())
    emu.faults.clear()
    found = paging.find(first, since=an_hour_ago())  # with time enough, it is there
    assert found is not None and found.adopted


def test_errors_while_finding_are_retryable(emu, runner):
    emu.faults.fail("ListExecutions", 500)
    with pytest.raises(RetryableRunError) as info:
        runner.find(request_for("x"), since=an_hour_ago())
    assert info.value.status == 500
