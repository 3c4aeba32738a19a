"""PelotonRunner against the Peloton job manager emulator, over YARPC-HTTP with `requests`:
launch, duplicate delivery, ambiguous failure then adoption, refusals, and reconcile."""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import eventually, launch_recorded
from triggers.dispatch import Dispatcher, Outcome
from triggers.emulators.peloton.api import JOB_MANAGER, TASK_MANAGER
from triggers.emulators.probe import write_probe_jobs
from triggers.emulators.server import EmulatorServer
from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError
from triggers.events import decode
from triggers.events.model import EventRef
from triggers.ledger import Ledger, Status
from triggers.ledger.sqlite import SQLiteBackend
from triggers.ops.reconcile import NOT_FOUND, reconcile
from triggers.plan import RUN_KEY_ENV, Overrides, RunRequest
from triggers.rules import load_text
from triggers.runners import peloton
from triggers.runners.peloton import PelotonRunner, job_id

pytestmark = pytest.mark.integration

WAIT = 20.0
CREATE = f"{JOB_MANAGER}::Create"
GET = f"{JOB_MANAGER}::Get"

# Each instance records its argv and env as <out>/<job id>-<instance>.json, then sleeps
# PROBE_SLEEP seconds and fails if its instance id is in PROBE_FAIL.
PROBE = """\
import json, os, sys, time
name = "%s-%s" % (os.environ["PELOTON_JOB_ID"], os.environ["PELOTON_INSTANCE_ID"])
path = os.path.join(os.environ["PROBE_DIR"], name)
record = {"argv": sys.argv[1:], "env": dict(os.environ)}
with open(path + ".started", "w") as f:
    json.dump(record, f)
time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
with open(path + ".json", "w") as f:
    json.dump(record, f)
sys.exit(3 if os.environ["PELOTON_INSTANCE_ID"] in os.environ.get("PROBE_FAIL", "").split(",") else 0)
"""


def template(out: Path) -> str:
    return textwrap.dedent(
        f"""\
        name: probe-batch
        type: BATCH
        respoolID: {{value: /DefaultResPool}}
        instanceCount: 1
        labels: [{{key: app, value: probe}}]
        defaultConfig:
          command:
            shell: false
            value: "{{jobs}}/peloton-probe.py"
            arguments: ["--default"]
            environment:
              variables:
                - {{name: PROBE_DIR, value: "{out.as_posix()}"}}
                - {{name: SHARED, value: from-template}}
        """
    )


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    directory = tmp_path_factory.mktemp("peloton")
    (directory / "out").mkdir()
    (directory / "templates").mkdir()
    (directory / "templates" / "probe-batch.yaml").write_text(template(directory / "out"))
    before = os.environ.get(peloton.TEMPLATES_ENV)
    os.environ[peloton.TEMPLATES_ENV] = str(directory / "templates")
    yield directory
    if before is None:
        del os.environ[peloton.TEMPLATES_ENV]
    else:
        os.environ[peloton.TEMPLATES_ENV] = before


@pytest.fixture(scope="module")
def emulator(probe_dir: Path) -> Iterator[EmulatorServer]:
    jobs_file = write_probe_jobs(probe_dir)  # the probe.py jobs file; {jobs} = its directory
    script = Path(jobs_file).parent / "peloton-probe.py"
    script.write_text(f"#!{sys.executable}\n{PROBE}")
    script.chmod(0o755)
    with EmulatorServer(
        jobs_file, log_dir=probe_dir / "logs", kill_grace=0.5, apis=("peloton",)
    ) as server:
        yield server


@pytest.fixture
def emu(emulator: EmulatorServer) -> Iterator[EmulatorServer]:
    emulator.reset()
    yield emulator
    emulator.reset()


@pytest.fixture(scope="module")
def runner(emulator: EmulatorServer) -> PelotonRunner:
    return PelotonRunner(emulator.url, timeout=5.0)


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    backend = SQLiteBackend(tmp_path / "ledger.sqlite3")
    yield Ledger(backend)
    backend.close()


def request_for(key: str, job: str = "probe-batch", **overrides: Any) -> RunRequest:
    return RunRequest(
        rule="peloton-test",
        job=job,
        overrides=Overrides(**overrides),
        dedup_key=key,
        dedup_window_seconds=3600,
        event=EventRef(id=key, source="//tests", type="test"),
        system="peloton",
        renderer=peloton.render_create,
    )


def records(probe_dir: Path, execution: str, suffix: str = ".json") -> list[dict[str, Any]]:
    ident = execution.rsplit("/", 1)[1]
    paths = sorted((probe_dir / "out").glob(f"{ident}-*{suffix}"))
    return [json.loads(p.read_text()) for p in paths]


def finished(emu: EmulatorServer, execution: str) -> str | None:
    return emu.peloton_jobs.wait_job(execution.rsplit("/", 1)[1], timeout=WAIT)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- launch


def test_run_creates_the_job_with_the_overrides_and_the_run_key(emu, runner, probe_dir) -> None:
    request = request_for(
        "launch", args=("--day", "2026-12-04"), env=(("SHARED", "from-rule"),), task_count=2
    )
    launch = runner.run(request)
    assert launch.execution == f"peloton/jobs/{job_id(request)}" and not launch.adopted
    assert finished(emu, launch.execution) == "SUCCEEDED"
    found = records(probe_dir, launch.execution)
    assert len(found) == 2
    for record in found:
        assert record["argv"] == ["--day", "2026-12-04"]
        assert record["env"]["SHARED"] == "from-rule"
        assert record["env"][RUN_KEY_ENV] == request.ledger_key
        assert record["env"]["PELOTON_JOB_ID"] == job_id(request)
    info = emu.peloton_jobs.get(job_id(request))
    assert {"key": "triggers.run-key", "value": request.ledger_key} in info["config"]["labels"]
    assert info["config"] == request.request_body()["config"]  # what plan shows is what ran


def test_clear_args_runs_the_command_without_the_template_arguments(emu, runner, probe_dir):
    launch = runner.run(request_for("clear", clear_args=True))
    assert finished(emu, launch.execution) == "SUCCEEDED"
    [record] = records(probe_dir, launch.execution)
    assert record["argv"] == []
    info = emu.peloton_jobs.get(launch.execution.rsplit("/", 1)[1])
    assert info["config"]["defaultConfig"]["command"]["arguments"] == []


# ---------------------------------------------------------------------- dedup


def rules_text() -> str:
    return (
        "project: demo-project\nregion: europe-west1\nrules:\n"
        "  - {name: nightly, on: com.example.batch.v1.due, system: peloton, job: probe-batch,"
        " dedup: {key: '{{ data.day }}'}}\n"
    )


def event(day: str, event_id: str):
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "//tests/batches",
        "ce-type": "com.example.batch.v1.due",
        "content-type": "application/json",
    }
    return decode(headers, json.dumps({"day": day}).encode())


def test_duplicate_delivery_starts_one_job(emu, runner, ledger) -> None:
    dispatcher = Dispatcher(load_text(rules_text()), ledger, runner)
    first = dispatcher.dispatch(event("2026-12-04", "e-1")).outcomes[0]
    again = dispatcher.dispatch(event("2026-12-04", "e-1")).outcomes[0]
    other_delivery = dispatcher.dispatch(event("2026-12-04", "e-2")).outcomes[0]  # same key
    assert first.outcome is Outcome.LAUNCHED
    assert again.outcome is Outcome.DUPLICATE and again.execution == first.execution
    assert other_delivery.outcome is Outcome.DUPLICATE
    assert emu.peloton_jobs.count() == 1


def test_a_repeated_create_adopts_the_job_instead_of_starting_another(emu, runner) -> None:
    request = request_for("repeat")
    first = runner.run(request)
    second = runner.run(request)  # e.g. a ledger that lost its record
    assert second.execution == first.execution and second.adopted
    assert emu.peloton_jobs.count() == 1


def test_concurrent_deliveries_of_one_event_start_one_job(emu, runner, ledger) -> None:
    """40 deliveries at once (bounded, loopback only): one launch, the rest duplicates or
    retries; and 20 concurrent Creates of one id bypassing the ledger still make one job."""
    from concurrent.futures import ThreadPoolExecutor

    dispatcher = Dispatcher(load_text(rules_text()), ledger, runner)
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(
            pool.map(
                lambda i: dispatcher.dispatch(event("2026-12-06", f"e-{i}")).outcomes[0], range(40)
            )
        )
        launches = list(pool.map(lambda _: runner.run(request_for("racing")), range(20)))
    kinds = [o.outcome for o in outcomes]
    assert kinds.count(Outcome.LAUNCHED) == 1
    assert set(kinds) <= {Outcome.LAUNCHED, Outcome.DUPLICATE, Outcome.RETRY}
    assert [launch.adopted for launch in launches].count(False) == 1
    assert len({launch.execution for launch in launches}) == 1
    assert emu.peloton_jobs.count() == 2


# ---------------------------------------------------------------------- ambiguity


def test_a_create_whose_answer_is_lost_is_ambiguous_and_get_adopts_it(emu, runner) -> None:
    request = request_for("dropped")
    emu.faults.drop_response(CREATE)
    with pytest.raises(AmbiguousRunError):
        runner.run(request)
    assert emu.peloton_jobs.count() == 1  # it was applied
    found = runner.find(request)
    assert found is not None and found.adopted
    assert found.execution == f"peloton/jobs/{job_id(request)}"
    assert runner.find(request_for("never-ran")) is None


def test_the_dispatcher_adopts_after_a_lost_answer_even_when_the_lookup_fails_once(
    emu, runner, ledger
) -> None:
    # No hold after the ambiguous attempt (by default the claim is held for the API timeout plus
    # a margin, docs/ledger.md): here the redelivery comes at once, to adopt by the job id.
    dispatcher = Dispatcher(load_text(rules_text()), ledger, runner, ambiguous_hold=timedelta(0))
    emu.faults.drop_response(CREATE)
    emu.faults.fail(GET, 500)  # the dispatcher's immediate Get fails too: retry later
    first = dispatcher.dispatch(event("2026-12-05", "e-1")).outcomes[0]
    assert first.outcome is Outcome.RETRY
    assert ledger.get(first.ledger_key).ambiguous
    redelivered = dispatcher.dispatch(event("2026-12-05", "e-1")).outcomes[0]
    assert redelivered.outcome is Outcome.LAUNCHED and redelivered.adopted
    assert emu.peloton_jobs.count() == 1
    assert ledger.get(first.ledger_key).status is Status.LAUNCHED


# ---------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("status", "message"),
    [(503, ""), (429, "")],
    ids=["not-leader", "rate-limited"],
)
def test_not_leader_and_rate_limits_are_retryable_and_nothing_ran(
    emu, runner, status, message
) -> None:
    request = request_for(f"refused-{status}")
    emu.faults.fail(CREATE, status)
    with pytest.raises(RetryableRunError) as info:
        runner.run(request)
    assert info.value.status == status
    assert emu.peloton_jobs.count() == 0
    assert not runner.run(request).adopted  # the retry creates it


def test_another_unavailable_or_a_server_error_is_ambiguous(emu, runner) -> None:
    emu.faults.fail(CREATE, 503, message="upstream connect error")
    with pytest.raises(AmbiguousRunError):
        runner.run(request_for("unavailable"))
    emu.faults.fail(CREATE, 500)
    with pytest.raises(AmbiguousRunError):
        runner.run(request_for("internal"))


def test_an_invalid_config_or_a_missing_template_is_permanent(emu, runner) -> None:
    with pytest.raises(PermanentRunError, match="invalidConfig: instanceCount must be 1..100"):
        runner.run(request_for("too-many", task_count=500))
    with pytest.raises(PermanentRunError, match="no Peloton job template"):
        runner.run(request_for("no-template", job="no-such-template"))
    assert emu.peloton_jobs.count() == 0


def test_wrong_yarpc_headers_are_refused_with_a_yarpc_status(emu, runner) -> None:
    headers = runner.headers(CREATE)
    good = requests.post(f"{emu.url}/api/v1", json={"id": {"value": "x"}}, headers=headers)
    assert good.status_code == 200 and "invalidJobId" in good.json()["error"]
    cases = {
        "Rpc-Caller": (None, 400, "invalid-argument"),
        "Rpc-Service": ("other-service", 501, "unimplemented"),
        "Rpc-Procedure": (f"{JOB_MANAGER}::Explode", 501, "unimplemented"),
        "Rpc-Encoding": ("proto", 400, "invalid-argument"),
        "Context-TTL-MS": ("soon", 400, "invalid-argument"),
    }
    for header, (value, status, code) in cases.items():
        sent = {k: v for k, v in headers.items() if k != header}
        if value is not None:
            sent[header] = value
        answer = requests.post(f"{emu.url}/api/v1", json={}, headers=sent, timeout=5)
        assert (answer.status_code, answer.headers["Rpc-Status"]) == (status, code), header
        assert answer.headers["Content-Type"].startswith("text/plain") and answer.text
    bad_json = requests.post(f"{emu.url}/api/v1", data=b"{", headers=headers, timeout=5)
    assert bad_json.headers["Rpc-Status"] == "invalid-argument"


def test_a_job_manager_that_is_not_listening_is_retryable() -> None:
    runner = PelotonRunner(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    with pytest.raises(RetryableRunError):
        runner.run(request_for("nobody-home"))
    with pytest.raises(RetryableRunError):
        runner.find(request_for("nobody-home"))


# ---------------------------------------------------------------------- reconcile


def launch(ledger: Ledger, runner: PelotonRunner, key: str, **overrides: Any) -> tuple[str, str]:
    return launch_recorded(ledger, runner, request_for(key, **overrides))


def test_reconcile_to_succeeded_failed_and_cancelled(emu, runner, ledger, probe_dir) -> None:
    ok_key, ok = launch(ledger, runner, "succeeds", task_count=2)
    fail_key, fail = launch(ledger, runner, "fails", task_count=2, env=(("PROBE_FAIL", "1"),))
    stop_key, stop = launch(ledger, runner, "stopped", env=(("PROBE_SLEEP", "30"),))

    eventually(lambda: records(probe_dir, stop, ".started"), timeout=WAIT, what="the sleeper")
    running = reconcile(ledger, runner)
    assert running.running >= 1 and running.errors == 0
    assert ledger.get(stop_key).status is Status.LAUNCHED
    assert runner.execution_status(stop)["outcome"] == "running"

    stopped = runner.call(
        "Stop", {"jobId": {"value": stop.rsplit("/", 1)[1]}}, service=TASK_MANAGER
    )
    assert stopped["stoppedInstanceIds"] == [0]
    assert [finished(emu, name) for name in (ok, fail, stop)] == ["SUCCEEDED", "FAILED", "KILLED"]

    report = reconcile(ledger, runner)
    assert report.errors == 0 and report.conflicts == 0 and report.running == 0
    expected = {
        ok_key: (Status.SUCCEEDED, 2, 0, 0),
        fail_key: (Status.FAILED, 1, 1, 0),
        stop_key: (Status.CANCELLED, 0, 0, 1),
    }
    for key, (status, succeeded, failed, cancelled) in expected.items():
        record = ledger.get(key)
        assert record.status is status, record
        details = record.outcome
        assert (
            details["succeeded_count"],
            details["failed_count"],
            details["cancelled_count"],
        ) == (succeeded, failed, cancelled)
        assert details["started_at"] <= details["completed_at"]
    assert "1 of 2 instances failed" in ledger.get(fail_key).reason


def test_reconcile_fails_a_job_the_manager_no_longer_knows(emu, runner, ledger) -> None:
    key, name = launch(ledger, runner, "deleted")
    assert finished(emu, name) == "SUCCEEDED"
    assert runner.call("Delete", {"id": {"value": name.rsplit("/", 1)[1]}}) == {}
    assert runner.execution_status(name) is None
    report = reconcile(ledger, runner)
    assert report.not_found == 1
    assert ledger.get(key).status is Status.FAILED and ledger.get(key).reason == NOT_FOUND


def test_a_status_read_that_fails_is_retryable_not_an_answer(emu, runner) -> None:
    launch_ = runner.run(request_for("status-fails"))
    emu.faults.fail(GET, 503)
    with pytest.raises(RetryableRunError):
        runner.execution_status(launch_.execution)


# ---------------------------------------------------------------------- the sample, served


def test_the_sample_rule_runs_end_to_end_through_the_local_stack(tmp_path, monkeypatch) -> None:
    """`triggers serve --config config/systems/peloton.yaml` and the sample event, twice: one
    Peloton job from the sample template, run to completion, then reconciled."""
    import logging

    from triggers.function.app import build_runner
    from triggers.function.settings import Settings
    from triggers.local import send
    from triggers.local.serve import LocalServer, ServeOptions

    root = Path(__file__).resolve().parents[2]
    monkeypatch.setenv(peloton.TEMPLATES_ENV, str(root / "config" / "peloton"))
    options = ServeOptions(
        rules=str(root / "config" / "systems" / "peloton.yaml"),
        jobs=str(root / "config" / "jobs.yaml"),
        port=0,
        sqlite_path=str(tmp_path / "ledger.sqlite3"),
        log_dir=str(tmp_path / "logs"),
        clock=False,
        log_level=logging.WARNING,
    )
    server = LocalServer(options).start()
    try:
        sample = send.event_file(root / "config" / "systems" / "peloton-nightly.push.json")
        answers = [send.post(server.url, sample) for _ in range(2)]
        outcomes = [a.body["rules"][0]["outcome"] for a in answers]
        assert [a.status for a in answers] == [200, 200] and outcomes == ["launched", "duplicate"]
        execution = answers[0].body["rules"][0]["execution"]
        jobs = server.emulator.peloton_jobs
        assert jobs.count() == 1
        assert jobs.wait_job(execution.rsplit("/", 1)[1], timeout=WAIT) == "SUCCEEDED"
        config = jobs.get(execution.rsplit("/", 1)[1])["config"]
        assert config["instanceCount"] == 3 and config["sla"]["maxRunningTime"] == 1200
        report = reconcile(server.app.ledger, build_runner(Settings()))
        assert (report.succeeded, report.errors) == (1, 0)
    finally:
        server.stop()
