"""`triggers serve` with rules that have `limits:`: the stack creates their queues on the
emulator's Cloud Tasks, points the tasks at the served function, and a paced event is launched
by its queue task (LocalServer in this process: the rules carry `Rule.flow` directly)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import eventually
from tests.integration.test_flow_runtime import JOBS, flowing
from triggers.flow.queue import TASK_PATH
from triggers.flow.spec import Limits, WhenBusy
from triggers.ledger import Status
from triggers.local import send, serve


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(JOBS)
    limits = {
        "fast": Limits(queue="triggers-fast", rate_per_second=2.0),
        "held-skip": Limits(queue="triggers-held-skip", max_running=1, when_busy=WhenBusy.SKIP),
    }
    monkeypatch.setattr(serve, "_load_rules", lambda path: flowing(limits))
    options = serve.ServeOptions(
        rules=str(tmp_path / "rules.yaml"),  # not read: _load_rules is replaced above
        jobs=str(jobs),
        port=0,
        sqlite_path=str(tmp_path / "ledger.sqlite3"),
        log_dir=str(tmp_path / "logs"),
        clock=False,
        reload_interval=0,
        console=False,
        time_scale=20.0,
    )
    with serve.LocalServer(options) as server:
        yield server


def test_serve_creates_the_queues_and_the_queued_launch_calls_it_back(served):
    queues = served.emulator.tasks.queues("projects/demo-project/locations/europe-west1")
    assert sorted(q.short_id for q in queues) == ["triggers-fast", "triggers-held-skip"]
    # a queue whose rule counts executions runs one task at a time (no count-then-launch race)
    concurrency = {q.short_id: q.max_concurrent_dispatches for q in queues}
    assert concurrency["triggers-held-skip"] == 1 and concurrency["triggers-fast"] > 1
    assert any("queues     Cloud Tasks on the emulator" in line for line in served.banner())
    event = send.Request(
        headers={
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": "serve-1",
            "ce-source": "//storage.googleapis.com/projects/_/buckets/fast",
            "ce-type": "google.cloud.storage.object.v1.finalized",
        },
        body=json.dumps({"bucket": "fast", "name": "a.csv"}).encode(),
    )
    answer = send.post(served.url, event)
    assert answer.body["rules"][0]["outcome"] == "queued"
    [record] = eventually(
        lambda: served.app.ledger.list(status=[Status.LAUNCHED]), timeout=30, what="the launch"
    )
    assert record.rule == "fast" and record.task.startswith("l-")
    # (a first callback may come before the event's `queued` write: 503, then retried)
    entries = eventually(
        lambda: (
            (log := served.emulator.tasks.dispatch_log("triggers-fast"))
            and log[-1]["status"] == 200
            and log
        ),
        timeout=30,
        what="the task's last answer",
    )
    assert [e["status"] for e in entries[:-1]] == [503] * (len(entries) - 1)
    assert served.app.dispatcher.queue.queue.target_url == served.url.rstrip("/") + TASK_PATH
