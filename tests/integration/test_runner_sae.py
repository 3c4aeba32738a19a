"""SaeRunner against the emulator's SAE routes, through the real alibabacloud-sae20190506 SDK:
launch, EventId dedup, duplicate delivery through a Dispatcher and a real ledger, ambiguous
failures then adoption, permanent and retryable errors, and reconcile to each final state."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import eventually, launch_recorded
from triggers.dispatch import Dispatcher, Outcome
from triggers.emulators.probe import PROBE_JOB, probe_records
from triggers.emulators.sae.api import SaeService
from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError
from triggers.events import decode
from triggers.events.model import EventRef
from triggers.ledger.base import Ledger, Status
from triggers.ledger.sqlite import SQLiteBackend
from triggers.ops.reconcile import NOT_FOUND, reconcile
from triggers.plan import Overrides, RunRequest
from triggers.rules import load_text
from triggers.runners import sae
from triggers.runners.sae import SaeRunner

pytestmark = pytest.mark.integration

WAIT = 20.0
PROBE_APP = str(uuid.uuid5(uuid.NAMESPACE_URL, PROBE_JOB))  # the emulator's AppId of `probe`
JOB = f"cn-hangzhou/{PROBE_APP}"


def request_for(key: str, job: str = JOB, **overrides: Any) -> RunRequest:
    return RunRequest(
        rule="sae-runner-test",
        job=job,
        overrides=Overrides(**overrides),
        dedup_key=key,
        dedup_window_seconds=3600,
        event=EventRef(id=key, source="//tests", type="test"),
        system="sae",
        renderer=sae.render_exec_job,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def runner(emulator: Any) -> SaeRunner:
    return SaeRunner(endpoint=emulator.url, timeout=5.0)


@pytest.fixture
def service(emu: Any) -> SaeService:
    return next(s for s in emu.services if isinstance(s, SaeService))


@pytest.fixture
def ledger(tmp_path):
    backend = SQLiteBackend(tmp_path / "ledger.sqlite3")
    yield Ledger(backend)
    backend.close()


def cloud_run_execution(service: SaeService, name: str) -> str:
    """The Cloud Run execution that runs the SAE job `name` in the emulator."""
    _, job_id = sae.parse_execution(name)
    [row] = [
        j
        for j in service.control("GET", "/_emulator/sae/jobs", None)[1]["jobs"]
        if j["JobId"] == job_id
    ]
    return row["execution"]


def finished(runner: SaeRunner, name: str) -> dict[str, Any]:
    return eventually(
        lambda: (lambda s: s if s and s["done"] else None)(runner.execution_status(name)),
        timeout=WAIT,
        what=f"SAE job {name} to finish",
    )


# ---------------------------------------------------------------------- run


def test_run_launches_the_template_with_the_overrides(emu, runner, service, probe_dir):
    request = request_for(
        "overrides", args=("--input", "oss://bucket/a.csv"), env=(("SHARED", "rule"),), task_count=2
    )
    launch = runner.run(request)
    assert launch.execution.startswith(f"sae/cn-hangzhou/apps/{PROBE_APP}/jobs/manual-")
    assert launch.adopted is False and launch.operation is None

    status = finished(runner, launch.execution)
    assert status["outcome"] == "succeeded" and status["state"] == "1"
    assert status["succeeded_count"] == 2 and status["task_count"] == 2
    assert status["started_at"] and status["completed_at"]
    records = probe_records(probe_dir, cloud_run_execution(service, launch.execution))
    assert [r["task"] for r in records] == [0, 1]
    for record in records:
        assert record["argv"] == ["--input", "oss://bucket/a.csv"]
        assert record["env"]["SHARED"] == "rule"
        assert record["env"]["JOB_ONLY"] == "from-job"  # Envs merged over the template's


def test_the_same_event_id_makes_one_job(emu, runner):
    request = request_for("twice")
    first, second = runner.run(request), runner.run(request)
    assert first.execution == second.execution
    assert len(emu.store.records()) == 1
    other = runner.run(request_for("another"))
    assert other.execution != first.execution and len(emu.store.records()) == 2


def test_concurrent_requests_with_one_event_id_make_one_job(emu, runner):
    from concurrent.futures import ThreadPoolExecutor

    request = request_for("racing")
    with ThreadPoolExecutor(max_workers=8) as pool:
        launches = list(pool.map(lambda _: runner.run(request), range(8)))
    assert len({launch.execution for launch in launches}) == 1
    assert len(emu.store.records()) == 1


def test_validate_only_sends_nothing(emu, runner):
    assert runner.run(request_for("validate"), validate_only=True).execution == ""
    assert emu.store.records() == []


# ---------------------------------------------------------------------- duplicate delivery


RULES = load_text(
    f"""\
project: demo-project
region: europe-west1
rules:
  - name: sae-ingest
    on: com.example.thing.v1.created
    system: sae
    job: {JOB}
    overrides:
      args: ["--event={{{{ event.id }}}}"]
      task_count: 1
""",
    environ={},
)


def event(event_id: str):
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "//example/src",
        "ce-type": "com.example.thing.v1.created",
        "content-type": "application/json",
    }
    return decode(headers, b"{}")


def test_a_duplicate_delivery_through_the_dispatcher_runs_one_job(emu, runner, ledger):
    dispatcher = Dispatcher(RULES, ledger, runner)
    first = dispatcher.dispatch(event("dup-1")).outcomes[0]
    second = dispatcher.dispatch(event("dup-1")).outcomes[0]
    assert first.outcome is Outcome.LAUNCHED and second.outcome is Outcome.DUPLICATE
    assert second.execution == first.execution
    assert len(emu.store.records()) == 1
    record = ledger.get(first.ledger_key)
    assert record.status is Status.LAUNCHED and record.execution == first.execution
    assert record.request["EventId"] == first.ledger_key  # the ledger keeps the exact request


def test_even_a_lost_ledger_does_not_run_it_twice(emu, runner, ledger, tmp_path):
    # A second deployment with an empty ledger: SAE's EventId still names the first job.
    first = Dispatcher(RULES, ledger, runner).dispatch(event("dup-2")).outcomes[0]
    other_backend = SQLiteBackend(tmp_path / "other.sqlite3")
    try:
        again = Dispatcher(RULES, Ledger(other_backend), runner).dispatch(event("dup-2"))
    finally:
        other_backend.close()
    assert again.outcomes[0].outcome is Outcome.LAUNCHED
    assert again.outcomes[0].execution == first.execution
    assert len(emu.store.records()) == 1


# ---------------------------------------------------------------------- ambiguous, then adopted


@pytest.mark.parametrize("mode", ["close", "status"])
def test_a_lost_answer_is_ambiguous_and_find_adopts_the_job(emu, runner, mode):
    emu.faults.drop_response("ExecJob", mode=mode, status=503)
    request = request_for(f"dropped-{mode}")
    with pytest.raises(AmbiguousRunError) as info:
        runner.run(request)
    assert info.value.retryable is True
    [record] = emu.store.records()  # it did run
    found = runner.find(request, since=datetime.now(UTC) - timedelta(hours=1))
    assert found is not None and found.adopted is True
    assert len(emu.store.records()) == 1  # the repeat with the EventId started nothing
    assert sae.parse_execution(found.execution)[0].app_id == PROBE_APP


def test_a_503_before_anything_ran_is_ambiguous_too_and_find_runs_it_once(emu, runner):
    emu.faults.fail("ExecJob", 503)
    request = request_for("unavailable-before")
    with pytest.raises(AmbiguousRunError) as info:
        runner.run(request)
    assert info.value.status == 503 and emu.store.records() == []
    found = runner.find(request)
    assert found is not None and len(emu.store.records()) == 1
    assert runner.find(request) == found  # and again: still the one job


def test_a_read_timeout_is_ambiguous_and_adopted(emu, emulator):
    emu.faults.drop_response("ExecJob", mode="timeout", seconds=3)
    impatient = SaeRunner(endpoint=emulator.url, timeout=0.5)
    request = request_for("timed-out")
    with pytest.raises(AmbiguousRunError, match="timed out"):
        impatient.run(request)
    found = impatient.find(request)
    assert found is not None and len(emu.store.records()) == 1


def test_the_dispatcher_adopts_after_a_dropped_answer(emu, runner, ledger):
    emu.faults.drop_response("ExecJob", mode="close")
    outcome = Dispatcher(RULES, ledger, runner).dispatch(event("adopt-1")).outcomes[0]
    assert outcome.outcome is Outcome.LAUNCHED and outcome.adopted is True
    assert len(emu.store.records()) == 1
    assert ledger.get(outcome.ledger_key).execution == outcome.execution


def test_errors_while_finding_are_retryable(emu, runner):
    emu.faults.fail("ExecJob", 500)
    with pytest.raises(RetryableRunError, match="repeating ExecJob"):
        runner.find(request_for("find-fails"))


# ---------------------------------------------------------------------- refused


def test_throttling_is_retryable_and_nothing_ran(emu, runner):
    emu.faults.fail("ExecJob", 400, message="Throttling.User")
    request = request_for("throttled")
    with pytest.raises(RetryableRunError, match="Throttling.User") as info:
        runner.run(request)
    assert info.value.status == 400 and emu.store.records() == []
    assert runner.run(request).execution


@pytest.mark.parametrize("level", ["top", "data"])
def test_a_200_with_success_false_is_not_a_launch(emu, runner, service, level):
    service.refuse(code="JobSuspend", message="The job is suspended.", level=level)
    with pytest.raises(PermanentRunError, match="JobSuspend: The job is suspended"):
        runner.run(request_for(f"suspended-{level}"))
    service.refuse(code="Throttling.User", level=level)
    with pytest.raises(RetryableRunError, match="Success=false"):
        runner.run(request_for(f"throttled-{level}"))
    assert emu.store.records() == []


def test_refusals_can_be_planned_over_http(emu, service):
    answer = requests.post(
        f"{emu.url}/_emulator/sae/refusals", json={"code": "JobSuspend", "times": 2}, timeout=5
    )
    assert answer.status_code == 200 and answer.json()["refusal"]["code"] == "JobSuspend"
    bad = requests.post(f"{emu.url}/_emulator/sae/refusals", json={"lvl": 1}, timeout=5)
    assert bad.status_code == 400 and bad.json()["Code"] == "InvalidParameter"


def test_an_unknown_app_is_permanent_and_the_dispatcher_rejects_it(emu, runner, ledger):
    missing = f"cn-hangzhou/{uuid.uuid4()}"
    with pytest.raises(PermanentRunError, match="InvalidApplication.NotFound") as info:
        runner.run(request_for("no-app", job=missing))
    assert info.value.status == 400 and info.value.retryable is False
    rules = load_text(
        "project: p-project\nregion: r\nrules:\n"
        f"  - {{name: gone, on: com.example.thing.v1.created, system: sae, job: {missing}}}\n",
        environ={},
    )
    outcome = Dispatcher(rules, ledger, runner).dispatch(event("no-app")).outcomes[0]
    assert outcome.outcome is Outcome.REJECTED
    assert ledger.get(outcome.ledger_key).status is Status.REJECTED


def test_an_env_the_template_refuses_is_permanent(emu, runner):
    with pytest.raises(PermanentRunError, match="InvalidParameter") as info:
        runner.run(request_for("reserved", env=(("CLOUD_RUN_JOB", "x"),)))
    assert info.value.status == 400 and emu.store.records() == []


def test_a_refused_connection_is_retryable():
    runner = SaeRunner(endpoint=f"http://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(RetryableRunError, match="Connection refused"):
        runner.run(request_for("refused"))


# ---------------------------------------------------------------------- status and reconcile


def launch(ledger: Ledger, runner: SaeRunner, key: str, **overrides: Any) -> tuple[str, str]:
    return launch_recorded(ledger, runner, request_for(key, **overrides))


def test_reconcile_records_succeeded_failed_and_gone(emu, runner, service, ledger):
    ok_key, ok = launch(ledger, runner, "r-ok")
    bad_key, bad = launch(ledger, runner, "r-bad", env=(("PROBE_FAIL_TASKS", "0"),))
    slow_key, slow = launch(ledger, runner, "r-slow", env=(("PROBE_SLEEP", "30"),))
    gone_key, gone = launch(ledger, runner, "r-gone")
    finished(runner, ok), finished(runner, bad), finished(runner, gone)
    emu.store.delete_execution(cloud_run_execution(service, gone))

    report = reconcile(ledger, runner)
    assert (report.succeeded, report.failed, report.running, report.not_found) == (1, 2, 1, 1)
    assert report.errors == 0
    assert ledger.get(ok_key).status is Status.SUCCEEDED
    failed = ledger.get(bad_key)
    assert failed.status is Status.FAILED and failed.outcome["failed_count"] == 1
    assert ledger.get(gone_key).status is Status.FAILED
    assert ledger.get(gone_key).reason == NOT_FOUND
    assert ledger.get(slow_key).status is Status.LAUNCHED  # still running: left for later

    # SAE has no cancelled state: a stopped job reads as failed, with the emulator's message.
    emu.store.cancel_execution(cloud_run_execution(service, slow))
    assert finished(runner, slow)["outcome"] == "failed"
    report = reconcile(ledger, runner)
    assert report.failed == 1
    stopped = ledger.get(slow_key)
    assert stopped.status is Status.FAILED and stopped.reason == "The job was cancelled."


def test_a_job_that_is_not_started_or_running_is_not_done(emu, runner):
    launched = runner.run(request_for("running", env=(("PROBE_SLEEP", "30"),)))
    status = runner.execution_status(launched.execution)
    assert status["done"] is False and status["outcome"] == "running"
    assert status["state"] in ("0", "3")


def test_status_errors_are_retryable_and_counted_by_reconcile(emu, runner, ledger):
    _, name = launch(ledger, runner, "status-error")
    emu.faults.fail("DescribeJobStatus", 503, times=None)
    with pytest.raises(RetryableRunError, match="ServiceUnavailable"):
        runner.execution_status(name)
    report = reconcile(ledger, runner)
    assert report.errors == 1 and report.updated == 0


def test_job_history_lists_the_app_s_jobs_newest_first(emu, runner):
    from alibabacloud_sae20190506 import models

    names = [runner.run(request_for(f"history-{i}")).execution for i in range(3)]
    for name in names:
        finished(runner, name)
    client = runner.client("cn-hangzhou")
    page = client.describe_job_history_with_options(
        models.DescribeJobHistoryRequest(app_id=PROBE_APP, current_page=1, page_size=2),
        {},
        runner._runtime(),
    ).body.data
    assert page.total_size == 3 and page.page_size == 2
    expected = [sae.parse_execution(n)[1] for n in reversed(names)]
    assert [j.job_id for j in page.jobs] == expected[:2]
    assert all(j.state == "1" for j in page.jobs)
    failed_only = client.describe_job_history_with_options(
        models.DescribeJobHistoryRequest(app_id=PROBE_APP, state="2"), {}, runner._runtime()
    ).body.data
    assert failed_only.total_size == 0 and failed_only.jobs == []


# ---------------------------------------------------------------------- the sample, end to end


def test_the_sample_sae_rule_runs_end_to_end_in_the_demo():
    # `triggers demo` as a user runs it: the function (functions-framework), an SQLite ledger and
    # the emulator, which serves the sample's AppId; the SAE runner is built from
    # TRIGGERS_SAE_ENDPOINT, which the demo points at its emulator.
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "triggers.cli", "demo", "--config", "config/systems/sae.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRIGGERS_")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert re.search(r"paid-orders-on-sae\s+launched\s+manual-[0-9a-f-]{36}", out)
    assert "1 executions succeeded" in out
    assert 'args: ["--order=A-1001"]' in out  # CommandArgs reached the task
