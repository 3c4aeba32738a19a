"""Flow control end to end: events over HTTP to the function (functions-framework's app on
werkzeug, in this process so the rules can carry `Rule.flow`), an SQLite ledger, the project's
Cloud Tasks emulator calling the function back through the real google-cloud-tasks client, and
the Cloud Run emulator driven through the real google-cloud-run client.

Time runs SCALE times faster on the emulators (queue rates, backoffs, the jobs.run quota), so
a minute-long scenario takes seconds; assertions on rates use the emulators' own clock.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import triggers.main
from tests.integration.conftest import ROOT, eventually
from triggers.flow.queue import TASK_PATH
from triggers.flow.spec import Flow, Limits, WhenBusy
from triggers.ledger import Ledger, Status
from triggers.plan import RUN_KEY_ENV
from triggers.rules import load_text
from triggers.rules.rule import Rule
from triggers.rules.ruleset import RuleSet

SCALE = 40.0  # emulator seconds per real second
PROJECT, REGION = "demo-project", "europe-west1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
JOBS = """\
project: demo-project
region: europe-west1
inherit_env: [PATH]
jobs:
  - {name: fast, command: ["true"], timeout: 1m, max_retries: 0}
  - {name: storm, command: ["true"], timeout: 1m, max_retries: 0}
  - {name: crash, command: ["true"], timeout: 1m, max_retries: 0}
  - {name: held-skip, command: ["sleep", "120"], timeout: 5m, max_retries: 0}
  - {name: held-queue, command: ["sleep", "120"], timeout: 5m, max_retries: 0}
  - {name: held-replace, command: ["sleep", "120"], timeout: 5m, max_retries: 0}
"""
RULE_NAMES = ["fast", "storm", "crash", "held-skip", "held-queue", "held-replace"]
RULES_YAML = "project: demo-project\nregion: europe-west1\nrules:\n" + "".join(
    f"  - {{name: {n}, on: storage.finalized, bucket: {n}, job: {n}}}\n" for n in RULE_NAMES
)


def flowing(limits: dict[str, Limits]) -> RuleSet:
    rules = []
    for rule in load_text(RULES_YAML, environ={}):
        fields = {name: getattr(rule, name) for name in Rule.__slots__}
        if rule.name in limits:
            fields["flow"] = Flow(limits[rule.name])
        rules.append(Rule(**fields))
    return RuleSet(rules)


class Stack:
    def __init__(self, tmp: Path) -> None:
        from werkzeug.serving import make_server

        from triggers.emulators.server import EmulatorServer

        jobs = tmp / "jobs.yaml"
        jobs.write_text(JOBS)
        self.emulator = EmulatorServer(
            jobs,
            log_dir=tmp / "logs",
            kill_grace=0.5,
            log_to_stderr=False,
            apis=("cloudrun", "cloudtasks"),
            tasks_time_scale=SCALE,
        ).start()
        self.sqlite = tmp / "ledger.sqlite3"
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = listener.getsockname()[1]
        import functions_framework

        self._path, self._main = list(sys.path), sys.modules.get("main")
        flask_app = functions_framework.create_app(
            target="handle_http", source=str(ROOT / "triggers" / "main.py")
        )
        with listener:
            self.httpd = make_server(
                "127.0.0.1", self.port, flask_app, threaded=True, fd=listener.fileno()
            )
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.app: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cloud_run(self) -> Any:
        from triggers.emulators.cloudrun.api import CloudRunService

        return next(s for s in self.emulator.services if isinstance(s, CloudRunService))

    def install(self, limits: dict[str, Limits], ledger_class: type[Ledger] = Ledger) -> Any:
        """A fresh app (rules with these limits, a new ledger) behind the served function, and
        the queues the limits name, created on the emulator."""
        from triggers.flow.cloudtasks import CloudTasksQueue, ensure_queues
        from triggers.function.app import App
        from triggers.function.settings import Settings
        from triggers.ledger.sqlite import SQLiteBackend
        from triggers.runners.cloudrun import CloudRunRunner

        self.emulator.reset()
        self.emulator.tasks.reset()
        self.sqlite.unlink(missing_ok=True)
        settings = Settings(
            ledger="sqlite",
            sqlite_path=str(self.sqlite),
            retry_after_seconds=1,
            running_cache_seconds=0,
        )
        queue = CloudTasksQueue(
            PROJECT, REGION, self.url + TASK_PATH, endpoint=self.emulator.url, timeout=5.0
        )
        ensure_queues(queue, {limit.queue: limit for limit in limits.values()})
        self.ledger = ledger_class(SQLiteBackend(str(self.sqlite)), lease=timedelta(seconds=3))
        self.runner = CloudRunRunner(endpoint=self.emulator.url, timeout=5.0)
        self.app = App(
            settings,
            rules=flowing(limits),
            ledger=self.ledger,
            runner=self.runner,
            queue=queue,
            authenticator=None,
            dead_letters=None,
        )
        triggers.main.set_app(self.app)
        return self.app

    def post_event(self, bucket: str, name: str) -> Any:
        import requests

        headers = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": f"{bucket}-{name}",
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "ce-type": "google.cloud.storage.object.v1.finalized",
            "ce-subject": f"objects/{name}",
            "ce-time": "2026-12-05T00:00:00Z",
        }
        body = json.dumps({"bucket": bucket, "name": name, "generation": "1"})
        return requests.post(self.url + "/", headers=headers, data=body, timeout=30)

    def records(self, rule: str, status: Status | None = None) -> list[Any]:
        filters: dict[str, Any] = {"rule": rule, "limit": 10_000}
        if status is not None:
            filters["status"] = [status]
        return self.ledger.list(**filters)

    def executions(self, job: str) -> list[Any]:
        from google.cloud import run_v2

        client = self.runner.executions_client
        request = run_v2.ListExecutionsRequest(parent=f"{PARENT}/jobs/{job}", page_size=1000)
        return list(client.list_executions(request=request))

    def stop(self) -> None:
        triggers.main.set_app(None)
        self.httpd.shutdown()
        self.emulator.stop()
        sys.path[:] = self._path
        if self._main is None:
            sys.modules.pop("main", None)
        else:
            sys.modules["main"] = self._main


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = Stack(tmp_path_factory.mktemp("flow"))
    try:
        yield stack
    finally:
        stack.stop()


def run_keys(executions: list[Any]) -> list[str]:
    return [
        env.value
        for execution in executions
        for env in execution.template.containers[0].env
        if env.name == RUN_KEY_ENV
    ]


def test_a_burst_of_500_at_60_per_minute_never_exceeds_the_rate_and_launches_each_once(stack):
    limits = Limits(queue="triggers-fast", rate_per_second=1.0)  # rate: 60/min
    stack.install({"fast": limits})
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: stack.post_event("fast", f"o/{i}.csv"), range(500)))
    assert {a.status_code for a in answers} == {200}
    assert {a.json()["rules"][0]["outcome"] for a in answers} == {"queued"}
    eventually(
        lambda: len(stack.records("fast", Status.LAUNCHED)) == 500,
        timeout=60 + 500 / SCALE * 3,
        what="500 launches",
        context=lambda: json.dumps(stack.emulator.tasks.summary()),
    )
    keys = run_keys(stack.executions("fast"))
    assert len(keys) == 500 and len(set(keys)) == 500  # every event launched exactly once
    assert set(keys) == {r.key for r in stack.records("fast")}
    # The pace, on the emulator's clock: at most 60 in any minute, plus the bucket's one token.
    times = sorted(
        e["elapsed"]
        for e in stack.emulator.tasks.dispatch_log("triggers-fast")
        if e["status"] == 200
    )
    assert len(times) == 500
    for i, start in enumerate(times):
        in_minute = sum(1 for t in times[i:] if t < start + 60.0)
        assert in_minute <= 61, f"{in_minute} launches in the minute from {start:.1f}s"
    assert times[-1] - times[0] >= 499 / 1.0 - 1.0  # and it did take the 500 seconds


def test_a_429_storm_is_absorbed_by_task_retries_with_nothing_lost(stack):
    from triggers.emulators.cloudrun.quota import RunQuota

    # Five times the quota: most first attempts get a 429. (Backoff, up to 300 s, can leave
    # the quota idle for a while: the drain time varies, the outcome does not.)
    stack.install({"storm": Limits(queue="triggers-storm", rate_per_second=5.0)})
    stack.cloud_run.quota = RunQuota.parse("60/min", time_scale=SCALE)
    try:
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: stack.post_event("storm", f"s/{i}"), range(100)))
        assert {a.status_code for a in answers} == {200}
        eventually(
            lambda: len(stack.records("storm", Status.LAUNCHED)) == 100,
            timeout=240,
            what="100 launches through the quota",
        )
        quota = stack.cloud_run.quota
        assert quota.refused > 0  # there was a storm
    finally:
        stack.cloud_run.quota = None
    keys = run_keys(stack.executions("storm"))
    assert len(keys) == 100 == len(set(keys))
    retried = [e for e in stack.emulator.tasks.dispatch_log("triggers-storm") if e["status"] == 503]
    assert len(retried) >= quota.refused  # each 429 was a retry of one task, not of an event


def test_a_crash_after_enqueue_before_the_queued_write_launches_exactly_once(stack):
    class CrashOnce(Ledger):
        crashed = False

        def queued(self, claim, task):
            if not CrashOnce.crashed:
                CrashOnce.crashed = True
                raise ConnectionError("the instance died here")
            return super().queued(claim, task)

    stack.install({"crash": Limits(queue="triggers-crash", rate_per_second=5.0)}, CrashOnce)
    first = stack.post_event("crash", "c/1")
    assert first.status_code == 503  # the event is kept: retried by its sender
    [record] = eventually(
        lambda: stack.records("crash", Status.LAUNCHED), timeout=30, what="the launch"
    )
    assert record.attempts == 2 and record.task is None  # the task took the claim over
    assert stack.post_event("crash", "c/1").json()["rules"][0]["outcome"] == "duplicate"
    assert len(stack.executions("crash")) == 1


def _held(stack: Stack, job: str) -> list[str]:
    return [e.name for e in stack.executions(job) if not e.completion_time]


@pytest.mark.parametrize("when_busy", [WhenBusy.SKIP, WhenBusy.QUEUE, WhenBusy.REPLACE])
def test_max_running_1_against_an_execution_held_running(stack, when_busy):
    rule = f"held-{when_busy.value}"
    limits = Limits(queue=f"triggers-{rule}", max_running=1, when_busy=when_busy)
    stack.install({rule: limits})
    assert stack.post_event(rule, "first").status_code == 200
    [running] = eventually(lambda: _held(stack, rule), timeout=30, what="the first execution")
    assert stack.post_event(rule, "second").status_code == 200

    def second() -> Any:
        found = [r for r in stack.records(rule) if r.event_document["data"]["name"] == "second"]
        return found[0] if found else None

    if when_busy is WhenBusy.SKIP:
        record = eventually(
            lambda: (r := second()) and r.status is Status.SKIPPED and r,
            timeout=30,
            what="the second launch skipped",
        )
        assert record.reason == f"skipped: 1 execution(s) of {rule} running (max_running 1)"
        assert record.execution is None and _held(stack, rule) == [running]
    elif when_busy is WhenBusy.QUEUE:
        waiting = eventually(
            lambda: (r := second()) and r.reason and r.reason.startswith("waiting") and r,
            timeout=30,
            what="the second launch waiting for a slot",
        )
        assert waiting.status in (Status.QUEUED, Status.CLAIMED)
        assert _held(stack, rule) == [running]
        stack.runner.cancel(running)  # the slot frees
        record = eventually(
            lambda: (r := second()) and r.status is Status.LAUNCHED and r,
            timeout=60,
            what="the second launch once the first ended",
        )
        assert record.execution != running
    else:
        record = eventually(
            lambda: (r := second()) and r.status is Status.LAUNCHED and r,
            timeout=30,
            what="the replacing launch",
        )
        assert eventually(
            lambda: _held(stack, rule) == [record.execution], timeout=30, what="the replaced ended"
        )
        [cancelled] = [e for e in stack.executions(rule) if e.name == running]
        assert cancelled.cancelled_count == 1
    assert len(stack.executions(rule)) == (1 if when_busy is WhenBusy.SKIP else 2)


@pytest.mark.parametrize("where", ["after the claim", "after jobs.run"])
def test_a_task_that_dies_mid_launch_is_retried_and_launches_exactly_once(stack, where):
    """The task's instance fails between its claim and jobs.run (an unexpected error: the
    handler answers 503 with the claim still held), or after jobs.run before the record."""

    class DiesOnce(Ledger):
        died = False

        def launched(self, claim, execution, operation=None):
            if where == "after jobs.run" and not DiesOnce.died:
                DiesOnce.died = True
                raise ConnectionError("the instance died after jobs.run")
            return super().launched(claim, execution, operation)

    stack.install({"crash": Limits(queue="triggers-crash", rate_per_second=5.0)}, DiesOnce)
    if where == "after the claim":
        real_run = stack.runner.run

        def run_dies_once(request, validate_only=False):
            stack.runner.run = real_run
            raise RuntimeError("the instance died before jobs.run")

        stack.runner.run = run_dies_once
    assert stack.post_event("crash", "c/2").status_code == 200
    [record] = eventually(
        lambda: stack.records("crash", Status.LAUNCHED), timeout=30, what="the launch"
    )
    statuses = eventually(
        lambda: (
            (s := [e["status"] for e in stack.emulator.tasks.dispatch_log("triggers-crash")])
            and s[-1] == 200
            and s
        ),
        timeout=30,
        what="the task's last answer",
    )
    assert statuses[0] == 503 and 200 not in statuses[:-1]
    assert record.attempts == 2  # the retried task took the dead one's claim over
    assert record.execution is not None
    assert len(stack.executions("crash")) == 1
    if where == "after jobs.run":
        assert record.execution == stack.executions("crash")[0].name  # adopted, not run again
