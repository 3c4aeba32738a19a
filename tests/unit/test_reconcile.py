"""The reconciler against the memory ledger and a scripted runner; its HTTP target and CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from tests.fakes import Clock
from triggers.errors import RetryableRunError
from triggers.events.model import EventRef
from triggers.ledger.base import Ledger, Status
from triggers.ledger.memory import MemoryBackend
from triggers.ledger.sqlite import SQLiteBackend
from triggers.ops.reconcile import NOT_FOUND, reconcile
from triggers.plan import Overrides, RunRequest

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
JOB = "projects/demo-project/locations/europe-west1/jobs/probe"


def execution(name: str) -> str:
    return f"{JOB}/executions/{name}"


def state(outcome: str, *, done: bool = True, **counts: Any) -> dict[str, Any]:
    base = {
        "done": done,
        "outcome": outcome,
        "task_count": 1,
        "succeeded_count": 1 if outcome == "succeeded" else 0,
        "failed_count": 1 if outcome == "failed" else 0,
        "cancelled_count": 1 if outcome == "cancelled" else 0,
        "running_count": 0 if done else 1,
        "retried_count": 0,
        "started_at": "2026-11-21T12:00:01.5Z",
        "completed_at": "2026-11-21T12:00:09.25Z" if done else None,
        "log_uri": "https://console.cloud.google.com/logs/viewer?project=demo&q=x",
        "message": None,
    }
    base.update(counts)
    return base


class FakeRunner:
    """execution name -> a status dict, None (gone) or an exception to raise."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def execution_status(self, name: str) -> dict[str, Any] | None:
        self.asked.append(name)
        answer = self.answers[name]
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def ledger(clock) -> Ledger:
    return Ledger(MemoryBackend(), clock=clock)


def launch(ledger: Ledger, key: str, name: str | None = None) -> str:
    request = RunRequest(
        rule="reconcile-test",
        job=JOB,
        overrides=Overrides(),
        dedup_key=key,
        dedup_window_seconds=3600,
        event=EventRef(id=key, source="//tests", type="test"),
    )
    claim = ledger.claim(request)
    assert claim.owned
    assert ledger.launched(claim, execution(name or key))
    return claim.record.key


def test_finished_executions_get_their_outcome_and_details(ledger, clock):
    keys = {outcome: launch(ledger, outcome) for outcome in ("succeeded", "failed", "cancelled")}
    runner = FakeRunner(
        {
            execution("succeeded"): state("succeeded"),
            execution("failed"): state("failed", message="Task failed: exit 3\n(see logs)"),
            execution("cancelled"): state("cancelled", cancelled_count=3, task_count=3),
        }
    )
    clock.now = NOW + timedelta(minutes=5)
    report = reconcile(ledger, runner)

    assert report.as_dict() | {"error_details": None} == {
        "checked": 3,
        "updated": 3,
        "succeeded": 1,
        "failed": 1,
        "cancelled": 1,
        "running": 0,
        "not_found": 0,
        "conflicts": 0,
        "errors": 0,
        "error_details": None,
    }
    for outcome, key in keys.items():
        record = ledger.get(key)
        assert record.status is Status(outcome)
        assert record.updated_at == NOW + timedelta(minutes=5)
        details = record.outcome
        assert details["outcome"] == outcome
        assert details["started_at"] == "2026-11-21T12:00:01.5Z"
        assert details["completed_at"] == "2026-11-21T12:00:09.25Z"
        assert details["log_uri"].startswith("https://console.cloud.google.com/logs/")
    assert ledger.get(keys["cancelled"]).outcome["cancelled_count"] == 3
    failed = ledger.get(keys["failed"]).outcome
    assert (failed["failed_count"], failed["succeeded_count"]) == (1, 0)
    assert failed["message"] == "Task failed: exit 3\n(see logs)"
    assert ledger.get(keys["failed"]).reason == "Task failed: exit 3\n(see logs)"


def test_running_executions_are_left_launched(ledger):
    key = launch(ledger, "slow")
    report = reconcile(ledger, FakeRunner({execution("slow"): state("running", done=False)}))
    assert (report.checked, report.running, report.updated) == (1, 1, 0)
    record = ledger.get(key)
    assert record.status is Status.LAUNCHED and record.reason is None


def test_a_vanished_execution_is_failed_as_not_found(ledger):
    key = launch(ledger, "gone")
    report = reconcile(ledger, FakeRunner({execution("gone"): None}))
    assert (report.failed, report.not_found) == (1, 1)
    record = ledger.get(key)
    assert record.status is Status.FAILED and record.reason == NOT_FOUND


def test_one_bad_record_does_not_stop_the_others(ledger):
    bad = launch(ledger, "flaky")
    good = launch(ledger, "fine")
    weird = launch(ledger, "weird")
    runner = FakeRunner(
        {
            execution("flaky"): RetryableRunError("reading execution failed: 503"),
            execution("fine"): state("succeeded"),
            execution("weird"): {"done": True, "outcome": "exploded"},
        }
    )
    report = reconcile(ledger, runner)
    assert (report.checked, report.succeeded, report.errors) == (3, 1, 2)
    assert {d["key"] for d in report.details} == {bad, weird}
    assert "503" in next(d["error"] for d in report.details if d["key"] == bad)
    assert ledger.get(bad).status is Status.LAUNCHED
    assert ledger.get(weird).status is Status.LAUNCHED
    assert ledger.get(good).status is Status.SUCCEEDED


def test_only_launched_records_are_looked_at_and_a_second_pass_changes_nothing(ledger):
    launch(ledger, "done")
    runner = FakeRunner({execution("done"): state("succeeded")})
    assert reconcile(ledger, runner).succeeded == 1
    before = [r.as_dict() for r in ledger.list(limit=10)]
    again = reconcile(ledger, runner)
    assert again.checked == 0 and again.updated == 0
    assert [r.as_dict() for r in ledger.list(limit=10)] == before
    assert runner.asked == [execution("done")]


def test_a_record_that_changed_meanwhile_is_a_conflict(ledger):
    key = launch(ledger, "raced")

    class Racing(FakeRunner):
        def execution_status(self, name):
            # someone else updates the record (a new token) while we ask Cloud Run
            current = ledger.get(key)
            ledger.backend.update(key, current.token, {"token": "someone-else"})
            return super().execution_status(name)

    report = reconcile(ledger, Racing({execution("raced"): state("failed")}))
    assert (report.conflicts, report.failed) == (1, 0)
    assert ledger.get(key).status is Status.LAUNCHED


def test_since_and_limit(ledger, clock):
    launch(ledger, "old")
    clock.now = NOW + timedelta(hours=2)
    launch(ledger, "new1")
    clock.now = NOW + timedelta(hours=3)
    launch(ledger, "new2")
    runner = FakeRunner({execution(k): state("succeeded") for k in ("old", "new1", "new2")})
    report = reconcile(ledger, runner, since=NOW + timedelta(hours=1), limit=1)
    assert report.checked == 1
    assert runner.asked == [execution("new2")]  # newest first


def test_the_outcome_keeps_the_execution_details_and_the_message_is_the_reason(ledger, clock):
    key = launch(ledger, "failed")
    runner = FakeRunner(
        {execution("failed"): state("failed", failed_count=2, task_count=4, message="timed out")}
    )
    reconcile(ledger, runner)
    record = ledger.get(key)
    assert record.reason == "timed out"
    assert record.outcome == {
        "outcome": "failed",
        "succeeded_count": 0,
        "failed_count": 2,
        "cancelled_count": 0,
        "task_count": 4,
        "retried_count": 0,
        "started_at": "2026-11-21T12:00:01.5Z",
        "completed_at": "2026-11-21T12:00:09.25Z",
        "log_uri": record.outcome["log_uri"],
        "message": "timed out",
    }


def test_the_sqlite_backend_stores_the_outcome(tmp_path, clock):
    ledger = Ledger(SQLiteBackend(tmp_path / "ledger.sqlite3"), clock=clock)
    key = launch(ledger, "sqlite")
    reconcile(ledger, FakeRunner({execution("sqlite"): state("cancelled")}))
    record = ledger.get(key)
    assert record.status is Status.CANCELLED
    assert record.outcome["cancelled_count"] == 1


# -- the function target ----------------------------------------------------------------------


def test_handle_reconcile_answers_the_report(ledger):
    from triggers import main

    launch(ledger, "target")
    main.set_app(SimpleNamespace(ledger=ledger, runner=FakeRunner({execution("target"): None})))
    try:
        body, status, headers = main.handle_reconcile(None)
    finally:
        main.set_app(None)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["not_found"] == 1


def test_handle_reconcile_answers_503_when_the_ledger_is_down():
    from triggers import main

    class Down:
        def list(self, **_):
            raise OSError("database is locked")

    main.set_app(SimpleNamespace(ledger=Down(), runner=FakeRunner({})))
    try:
        body, status, _ = main.handle_reconcile(None)
    finally:
        main.set_app(None)
    assert status == 503 and "database is locked" in json.loads(body)["error"]


# -- the command line -------------------------------------------------------------------------


def test_cli_reconcile_without_a_ledger_is_a_usage_error(tmp_path, capsys):
    from triggers.cli import main

    code = main(["reconcile", "--sqlite-path", str(tmp_path / "none.sqlite3")])
    assert code == 2
    assert "no ledger at" in capsys.readouterr().err


def test_cli_reconcile_with_nothing_launched(tmp_path, capsys):
    from triggers.cli import main

    SQLiteBackend(tmp_path / "ledger.sqlite3").list()  # creates the file and its schema
    code = main(["reconcile", "--sqlite-path", str(tmp_path / "ledger.sqlite3"), "--json"])
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads(out)["checked"] == 0


def test_an_older_sqlite_ledger_file_gains_the_outcome_column(tmp_path, clock):
    import sqlite3

    # GIVEN a ledger file written before records had an outcome
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE runs (key TEXT PRIMARY KEY, rule TEXT NOT NULL, dedup_key TEXT NOT NULL,"
            " job TEXT NOT NULL, status TEXT NOT NULL, token TEXT NOT NULL, event TEXT NOT NULL,"
            " request TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,"
            " lease_until TEXT NOT NULL, expire_at TEXT NOT NULL, attempts INTEGER NOT NULL,"
            " duplicates INTEGER NOT NULL, execution TEXT, operation TEXT, reason TEXT,"
            " ambiguous INTEGER NOT NULL, event_document TEXT)"
        )
    # WHEN it is opened and reconciled THEN the outcome is stored
    ledger = Ledger(SQLiteBackend(path), clock=clock)
    key = launch(ledger, "succeeded")
    reconcile(ledger, FakeRunner({execution("succeeded"): state("succeeded")}))
    assert ledger.get(key).outcome["outcome"] == "succeeded"
