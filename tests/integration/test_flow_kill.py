"""The function killed (SIGKILL) while a queue task is inside its jobs.run: the execution is
created after all, the task is retried by the emulator's Cloud Tasks against a new function
process on the same port, which waits out the dead one's lease, takes the claim over, finds
the execution by its run key and records it. One execution, one `launched` record.

Real processes and clients throughout: functions-framework serving triggers/main.py with rules
that have `limits:` in YAML, an SQLite ledger file shared with the test, the Cloud Tasks and
Cloud Run emulators (the RunJob handled 3 s late by a latency fault, so the kill lands in it).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import (
    ServerProcess,
    eventually,
    free_port,
    function_process,
    http_status,
)
from triggers.ledger import Ledger, Status
from triggers.ledger.sqlite import SQLiteBackend

pytestmark = pytest.mark.integration

SCALE = 10.0
RULES = """\
project: demo-project
region: europe-west1
rules:
  - name: paced
    on: storage.finalized
    bucket: paced
    job: paced
    limits:
      rate: 10/s
"""
JOBS = """\
project: demo-project
region: europe-west1
inherit_env: [PATH]
jobs:
  - {name: paced, command: ["true"], timeout: 1m, max_retries: 0}
"""


def start_function(tmp: Path, port: int, env: dict[str, str], name: str) -> ServerProcess:
    process = function_process(f"the function ({name})", port, env, tmp / f"{name}.log").start()
    process.wait_ready(lambda: http_status("127.0.0.1", port, "GET", "/robots.txt") == 404)
    return process


def test_the_function_killed_inside_the_tasks_jobs_run_launches_exactly_once(tmp_path):
    from triggers.emulators.server import EmulatorServer
    from triggers.flow.cloudtasks import CloudTasksQueue, ensure_queues
    from triggers.flow.spec import Limits

    (tmp_path / "rules.yaml").write_text(RULES)
    (tmp_path / "jobs.yaml").write_text(JOBS)
    sqlite = tmp_path / "ledger.sqlite3"
    port = free_port()
    target = f"http://127.0.0.1:{port}/_triggers/task"
    with EmulatorServer(
        tmp_path / "jobs.yaml",
        log_dir=tmp_path / "logs",
        log_to_stderr=False,
        apis=("cloudrun", "cloudtasks"),
        tasks_time_scale=SCALE,
    ) as emulator:
        queues = CloudTasksQueue("demo-project", "europe-west1", target, endpoint=emulator.url)
        ensure_queues(queues, {"triggers-paced": Limits("triggers-paced", 10.0)})
        env = {
            "TRIGGERS_RULES": str(tmp_path / "rules.yaml"),
            "TRIGGERS_LEDGER": "sqlite",
            "TRIGGERS_SQLITE_PATH": str(sqlite),
            "TRIGGERS_CLOUD_RUN_ENDPOINT": emulator.url,
            "TRIGGERS_TASKS_ENDPOINT": emulator.url,
            "TRIGGERS_TASK_TARGET_URL": target,
            "TRIGGERS_LEASE_SECONDS": "10",
            "TRIGGERS_CLOUD_RUN_TIMEOUT_SECONDS": "5",
            "TRIGGERS_AMBIGUOUS_MARGIN_SECONDS": "1",
            "TRIGGERS_RETRY_AFTER_SECONDS": "1",
        }
        first = start_function(tmp_path, port, env, "first")
        second = None
        try:
            slow = emulator.faults.add("latency", "RunJob", seconds=3.0)
            answer = requests.post(
                f"http://127.0.0.1:{port}/",
                headers={
                    "Content-Type": "application/json",
                    "ce-specversion": "1.0",
                    "ce-id": "kill-1",
                    "ce-source": "//storage.googleapis.com/projects/_/buckets/paced",
                    "ce-type": "google.cloud.storage.object.v1.finalized",
                },
                data=json.dumps({"bucket": "paced", "name": "a.csv"}),
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["rules"][0]["outcome"] == "queued"
            # The task's jobs.run has reached the emulator and is being held: kill the function.
            eventually(lambda: slow.hits == 1, timeout=30, what="the task's jobs.run")
            assert first.process is not None
            os.killpg(first.process.pid, signal.SIGKILL)  # gunicorn's arbiter and its worker
            first.process.wait(10)
            second = start_function(tmp_path, port, env, "second")
            ledger = Ledger(SQLiteBackend(sqlite))
            [record] = eventually(
                lambda: ledger.list(status=[Status.LAUNCHED]),
                timeout=90,
                what="the launch recorded by the second process",
                context=lambda: second.describe() if second else "",
            )
        finally:
            first.stop()
            if second is not None:
                second.stop()
        executions = emulator.store.records()
        assert [e.name for e in executions] == [record.execution]  # created once, adopted
        assert (record.attempts, record.ambiguous, record.rule) == (2, False, "paced")
        assert record.operation is None  # found by its run key (adopted), not started again
        statuses = [e["status"] for e in emulator.tasks.dispatch_log("triggers-paced")]
        assert statuses[-1] == 200 and statuses.count(200) == 1
