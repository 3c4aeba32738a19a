"""The dry-run runner: its fake executions, and how the reconciler records them.

Under TRIGGERS_RUNNER=dry-run nothing is launched; `triggers reconcile` (and `handle_reconcile`)
must still give each of its `launched` records an end: succeeded, with no tasks and the reason
"dry run: nothing was launched". A real execution in the same ledger is not the dry-run runner's
to judge: it is an error of that pass, and the record is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.fakes import Clock
from triggers.cli import main
from triggers.errors import RetryableRunError
from triggers.events.model import EventRef
from triggers.function.app import App
from triggers.function.settings import Settings
from triggers.ledger.base import Ledger, Status
from triggers.ledger.memory import MemoryBackend
from triggers.ledger.sqlite import SQLiteBackend
from triggers.ops.reconcile import reconcile
from triggers.plan import Overrides, RunRequest
from triggers.runners.dryrun import MESSAGE, DryRunRunner, is_dry_run

ROOT = Path(__file__).resolve().parents[2]
JOB = "projects/demo-project/locations/europe-west1/jobs/csv-loader"
REAL = f"{JOB}/executions/csv-loader-x7k2q"
STORAGE_SAMPLE = "storage-finalized.cloudevent-binary.json"


def request(name: str) -> RunRequest:
    return RunRequest(
        rule="csv-ingest",
        job=JOB,
        overrides=Overrides(args=(f"--input={name}",)),
        dedup_key=name,
        dedup_window_seconds=3600,
        event=EventRef(id=name, source="//storage.googleapis.com/buckets/raw-data", type="t"),
    )


def launch(ledger: Ledger, name: str, execution: str | None = None) -> str:
    claim = ledger.claim(request(name))
    execution = execution or DryRunRunner().run(request(name)).execution
    assert ledger.launched(claim, execution)
    return claim.record.key


def test_run_names_a_fake_execution_of_the_job_after_the_ledger_key():
    req = request("a.csv")
    launch = DryRunRunner().run(req)
    assert launch.execution == f"{JOB}/executions/dry-run-{req.ledger_key[:12]}"
    assert is_dry_run(launch.execution)
    assert DryRunRunner().find(req, since=Clock().now) is None


@pytest.mark.parametrize(
    "name",
    [
        REAL,
        f"{JOB}/executions/dry-run-abc12",  # a job named "dry-run": Cloud Run's 5-char suffix
        f"{JOB}/executions/dry-run-0123456789ab-x",
        "dry-run-0123456789ab",  # not an execution name
        "",
    ],
)
def test_only_its_own_executions_are_dry_runs(name):
    assert not is_dry_run(name)
    with pytest.raises(RetryableRunError, match="not a dry-run execution"):
        DryRunRunner().execution_status(name)


def test_a_fake_execution_is_done_and_succeeded_with_no_tasks():
    state = DryRunRunner().execution_status(DryRunRunner().run(request("a.csv")).execution)
    assert state["done"] is True and state["outcome"] == "succeeded"
    assert state["task_count"] == state["succeeded_count"] == state["failed_count"] == 0
    assert state["message"] == MESSAGE


def test_reconcile_records_dry_runs_as_succeeded_and_leaves_real_executions_alone():
    # GIVEN two records launched by the dry-run runner and one by Cloud Run
    clock = Clock()
    ledger = Ledger(MemoryBackend(), clock=clock)
    dry = [launch(ledger, "a.csv"), launch(ledger, "b.csv")]
    real = launch(ledger, "c.csv", execution=REAL)
    clock.advance(seconds=30)
    # WHEN the reconciler runs with the dry-run runner
    report = reconcile(ledger, DryRunRunner())
    # THEN the dry runs are done: succeeded, no tasks, the reason says nothing ran
    assert report.as_dict() | {"error_details": []} == {
        "checked": 3,
        "updated": 2,
        "succeeded": 2,
        "failed": 0,
        "cancelled": 0,
        "running": 0,
        "not_found": 0,
        "conflicts": 0,
        "errors": 1,
        "error_details": [],
    }
    for key in dry:
        record = ledger.get(key)
        assert record.status is Status.SUCCEEDED and record.reason == MESSAGE
        assert record.updated_at == clock.now
        assert record.outcome == {
            "outcome": "succeeded",
            "task_count": 0,
            "succeeded_count": 0,
            "failed_count": 0,
            "cancelled_count": 0,
            "retried_count": 0,
            "message": MESSAGE,
        }
    # AND the real execution is an error of this pass, its record untouched
    (detail,) = report.details
    assert detail["key"] == real and "not a dry-run execution" in detail["error"]
    assert ledger.get(real).status is Status.LAUNCHED and ledger.get(real).outcome is None
    # AND a second pass finds only the real one to look at
    again = reconcile(ledger, DryRunRunner())
    assert (again.checked, again.succeeded, again.errors) == (1, 0, 1)


def test_handle_reconcile_of_a_dry_run_function_answers_200_with_no_errors():
    from triggers import main as function

    ledger = Ledger(MemoryBackend())
    launch(ledger, "a.csv")
    function.set_app(SimpleNamespace(ledger=ledger, runner=DryRunRunner()))
    try:
        body, status, _ = function.handle_reconcile(None)
    finally:
        function.set_app(None)
    assert status == 200
    assert json.loads(body) | {"error_details": None} == {
        "checked": 1,
        "updated": 1,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 0,
        "running": 0,
        "not_found": 0,
        "conflicts": 0,
        "errors": 0,
        "error_details": None,
    }


@pytest.fixture
def dry_run_env(tmp_path, monkeypatch):
    for name in ("TRIGGERS_LEDGER", "TRIGGERS_SQLITE_PATH", "TRIGGERS_CLOUD_RUN_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TRIGGERS_RUNNER", "dry-run")
    return tmp_path / "ledger.sqlite3"


def test_cli_reconcile_under_a_dry_run_function(dry_run_env, capsys):
    # GIVEN a dry-run function (TRIGGERS_RUNNER=dry-run) that handled a sample event
    path = dry_run_env
    settings = Settings(
        ledger="sqlite",
        sqlite_path=str(path),
        runner="dry-run",
        rules=str(ROOT / "config" / "rules.yaml"),
    )
    app = App(settings, dead_letters=None)
    sample = json.loads((ROOT / "config/events" / STORAGE_SAMPLE).read_text())
    answer = app.handle(sample["headers"], json.dumps(sample["body"]).encode())
    app.ledger.backend.close()
    (decision,) = answer.body["rules"]
    assert decision["outcome"] == "launched" and is_dry_run(decision["execution"])
    # WHEN `triggers reconcile` runs with the same settings
    code = main(["reconcile", "--sqlite-path", str(path), "--json"])
    report = json.loads(capsys.readouterr().out)
    # THEN its record is succeeded, and says why
    assert code == 0
    assert (report["checked"], report["succeeded"], report["errors"]) == (1, 1, 0)
    code = main(["runs", "--sqlite-path", str(path), "--json", "--status", "succeeded"])
    (record,) = json.loads(capsys.readouterr().out)
    assert record["key"] == decision["ledger_key"] and record["reason"] == MESSAGE
    assert record["outcome"]["task_count"] == 0


def test_cli_reconcile_under_dry_run_reports_real_executions_as_errors(dry_run_env, capsys):
    with SQLiteBackend(dry_run_env) as backend:
        key = launch(Ledger(backend), "c.csv", execution=REAL)
    code = main(["reconcile", "--sqlite-path", str(dry_run_env)])
    out = capsys.readouterr().out
    assert code == 1
    assert "1 errors" in out and key in out and "not a dry-run execution" in out
