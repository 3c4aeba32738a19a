"""The reconciler against the Cloud Run Jobs emulator and the SQLite ledger: jobs that succeed,
fail, time out and are cancelled, launched the way the dispatcher launches them."""

from __future__ import annotations

import socket
from datetime import datetime

import pytest

from tests.integration.conftest import eventually, launch_recorded
from triggers.emulators.probe import (
    PROBE_JOB,
    probe_records,
    wait,
)
from triggers.errors import RetryableRunError
from triggers.events.model import EventRef
from triggers.ledger.base import Ledger, Status
from triggers.ledger.sqlite import SQLiteBackend
from triggers.ops.reconcile import NOT_FOUND, reconcile
from triggers.plan import Overrides, RunRequest
from triggers.runners.cloudrun import CloudRunRunner

pytestmark = pytest.mark.integration

WAIT = 20.0


@pytest.fixture
def ledger(tmp_path):
    backend = SQLiteBackend(tmp_path / "ledger.sqlite3")
    yield Ledger(backend)
    backend.close()


def launch(ledger: Ledger, runner: CloudRunRunner, key: str, **overrides) -> tuple[str, str]:
    """Claim, run and record as launched, like the dispatcher; returns (ledger key, execution)."""
    request = RunRequest(
        rule="reconcile-test",
        job=PROBE_JOB,
        overrides=Overrides(**overrides),
        dedup_key=key,
        dedup_window_seconds=3600,
        event=EventRef(id=key, source="//tests", type="test"),
    )
    return launch_recorded(ledger, runner, request)


def finished(runner: CloudRunRunner, name: str) -> dict:
    return eventually(
        lambda: (lambda s: s if s and s["done"] else None)(runner.execution_status(name)),
        timeout=WAIT,
        what=f"execution {name} to finish",
    )


def started(probe_dir, name: str) -> None:
    eventually(
        lambda: probe_records(probe_dir, name, ".started"),
        timeout=WAIT,
        what=f"the first task of {name} to start",
    )


def test_succeeded_failed_timed_out_and_cancelled(emu, runner, executions, ledger, probe_dir):
    ok_key, ok = launch(ledger, runner, "succeeds")
    fail_key, fail = launch(ledger, runner, "fails", env=(("PROBE_FAIL_TASKS", "0"),))
    slow_key, slow = launch(
        ledger, runner, "times-out", env=(("PROBE_SLEEP", "20"),), timeout_seconds=1
    )
    cancel_key, cancel = launch(ledger, runner, "cancelled", env=(("PROBE_SLEEP", "20"),))

    # The sleeper is running: a pass now must leave it launched.
    started(probe_dir, cancel)
    running = reconcile(ledger, runner)
    assert running.running >= 1 and running.errors == 0
    assert ledger.get(cancel_key).status is Status.LAUNCHED

    wait(executions.cancel_execution(name=cancel), timeout=WAIT)
    states = {name: finished(runner, name) for name in (ok, fail, slow, cancel)}
    assert {name: s["outcome"] for name, s in states.items()} == {
        ok: "succeeded",
        fail: "failed",
        slow: "failed",
        cancel: "cancelled",
    }

    report = reconcile(ledger, runner)
    assert report.errors == 0 and report.conflicts == 0 and report.running == 0
    # the first pass may already have recorded the quick ones
    assert (
        running.succeeded + report.succeeded,
        running.failed + report.failed,
        running.cancelled + report.cancelled,
    ) == (1, 2, 1)
    assert report.cancelled == 1 and report.not_found == 0

    expected = {
        ok_key: (Status.SUCCEEDED, 1, 0, 0),
        fail_key: (Status.FAILED, 0, 1, 0),
        slow_key: (Status.FAILED, 0, 1, 0),
        cancel_key: (Status.CANCELLED, 0, 0, 1),
    }
    for key, (status, succeeded, failed, cancelled) in expected.items():
        record = ledger.get(key)
        details = record.outcome
        assert record.status is status, record
        assert details["outcome"] == status.value
        assert (
            details["succeeded_count"],
            details["failed_count"],
            details["cancelled_count"],
        ) == (succeeded, failed, cancelled), record.reason
        assert details["task_count"] == 1
        started_at = datetime.fromisoformat(details["started_at"])
        completed_at = datetime.fromisoformat(details["completed_at"])
        assert started_at <= completed_at
        assert details["log_uri"]
    assert "timeout" in ledger.get(slow_key).outcome["message"]

    # A second pass finds nothing launched and changes nothing.
    before = {r.key: r for r in ledger.list(limit=10)}
    again = reconcile(ledger, runner)
    assert again.checked == 0 and again.updated == 0 and again.errors == 0
    assert {r.key: r for r in ledger.list(limit=10)} == before


def test_a_vanished_execution_is_failed_as_not_found(emu, runner, ledger):
    key, name = launch(ledger, runner, "vanishes")
    finished(runner, name)
    missing = name.rsplit("/", 1)[0] + "/no-such-execution"
    assert runner.execution_status(missing) is None
    # the record now points at an execution the service does not know
    record = ledger.get(key)
    assert ledger.backend.update(key, record.token, {"execution": missing})
    report = reconcile(ledger, runner)
    assert (report.failed, report.not_found) == (1, 1)
    assert ledger.get(key).status is Status.FAILED
    assert ledger.get(key).reason == NOT_FOUND


def test_an_unreachable_service_is_an_error_per_record(emu, runner, ledger):
    key, _ = launch(ledger, runner, "unreachable")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    nowhere = CloudRunRunner(endpoint=f"http://127.0.0.1:{port}", timeout=2.0)
    with pytest.raises(RetryableRunError):
        nowhere.execution_status(ledger.get(key).execution)
    report = reconcile(ledger, nowhere)
    assert (report.checked, report.errors, report.updated) == (1, 1, 0)
    assert ledger.get(key).status is Status.LAUNCHED
