"""The Cloud Tasks emulator through the real google-cloud-tasks client (REST transport), and
CloudTasksQueue on it: queues, name dedup and tombstones, scheduleTime, rate and concurrency
limits on the emulator's clock, retries with backoff, OIDC headers, pause/resume/purge/run,
and injected faults. The HTTP target is a small server in the test, on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import eventually, free_port, require_module
from triggers.flow.cloudtasks import CloudTasksQueue, ensure_queues
from triggers.flow.queue import QueueUnavailable, Task, TaskQueueError
from triggers.flow.spec import Limits

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

PROJECT, LOCATION = "demo-project", "europe-west1"
PARENT = f"projects/{PROJECT}/locations/{LOCATION}"
TIME_SCALE = 50.0  # rates and backoffs 50x faster: 60/min = 50 dispatches per real second
TOMBSTONE = 3.0  # real seconds a used task name stays taken
SA = "tasks@demo-project.iam.gserviceaccount.com"


class Target:
    """An HTTP target: records each request; answers what `answer(task, attempt)` says
    (default 200) after `gate` is open; tracks how many requests it holds at once."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.answer: Callable[[str, int], tuple[int, dict[str, str]]] = lambda t, a: (200, {})
        self.gate = threading.Event()
        self.gate.set()
        self.holding = 0
        self.max_holding = 0
        self._lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                task = self.headers.get("X-CloudTasks-TaskName", "")
                with target._lock:
                    target.requests.append({"headers": dict(self.headers), "body": body})
                    attempt = sum(
                        1
                        for r in target.requests
                        if r["headers"].get("X-CloudTasks-TaskName") == task
                    )
                    target.holding += 1
                    target.max_holding = max(target.max_holding, target.holding)
                target.gate.wait(30)
                status, headers = target.answer(task, attempt)
                with target._lock:
                    target.holding -= 1
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/_triggers/task"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of(self, task: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["headers"].get("X-CloudTasks-TaskName") == task]

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_module("google.cloud.tasks_v2", "Cloud Tasks client", "google-cloud-tasks")
    from triggers.emulators.probe import write_probe_jobs
    from triggers.emulators.server import EmulatorServer

    directory = tmp_path_factory.mktemp("cloudtasks")
    with EmulatorServer(
        write_probe_jobs(directory),
        log_dir=directory / "logs",
        apis=("cloudtasks",),
        tasks_time_scale=TIME_SCALE,
        tasks_tombstone_seconds=TOMBSTONE,
    ) as emulator:
        yield emulator


@pytest.fixture
def emu(server: Any) -> Iterator[Any]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture
def target() -> Iterator[Target]:
    t = Target()
    yield t
    t.close()


@pytest.fixture
def queue(emu: Any, target: Target) -> CloudTasksQueue:
    return CloudTasksQueue(
        PROJECT, LOCATION, target.url, service_account=SA, audience="https://fn", endpoint=emu.url
    )


@pytest.fixture
def client(queue: CloudTasksQueue) -> Any:
    return queue.client


def make_queue(client: Any, queue_id: str, **fields: Any) -> str:
    name = f"{PARENT}/queues/{queue_id}"
    client.create_queue(parent=PARENT, queue={"name": name, **fields})
    return name


def drained(emu: Any, queue: str | None = None, timeout: float = 30.0) -> None:
    assert emu.tasks.wait_drained(timeout, queue), emu.tasks.summary()


# -- queues ----------------------------------------------------------------------------------------


def test_queues_are_created_once_read_listed_patched_and_deleted(client: Any) -> None:
    from google.api_core import exceptions as gexc
    from google.cloud import tasks_v2

    name = make_queue(client, "q-admin", rate_limits={"max_dispatches_per_second": 10})
    with pytest.raises(gexc.Conflict):
        make_queue(client, "q-admin")
    got = client.get_queue(name=name)
    assert got.state == tasks_v2.Queue.State.RUNNING
    assert got.rate_limits.max_dispatches_per_second == 10
    assert got.rate_limits.max_burst_size == 2  # output only: derived from the rate
    assert got.rate_limits.max_concurrent_dispatches == 1000  # Cloud Tasks' default
    assert got.retry_config.max_attempts == 100
    patched = client.update_queue(
        queue={"name": name, "retry_config": {"max_attempts": -1}},
        update_mask={"paths": ["retry_config.max_attempts"]},
    )
    assert patched.retry_config.max_attempts == -1
    assert patched.rate_limits.max_dispatches_per_second == 10  # not in the mask: kept
    make_queue(client, "q-other")
    assert [q.name for q in client.list_queues(parent=PARENT)] == [name, f"{PARENT}/queues/q-other"]
    client.delete_queue(name=name)
    with pytest.raises(gexc.NotFound):
        client.get_queue(name=name)


def test_ensure_queues_creates_then_leaves_then_updates(
    queue: CloudTasksQueue, client: Any
) -> None:
    limits = {"q-a": Limits("q-a", rate_per_second=1.0), "q-b": Limits("q-b")}
    assert ensure_queues(queue, limits) == {"q-a": "created", "q-b": "created"}
    assert ensure_queues(queue, limits) == {"q-a": "unchanged", "q-b": "unchanged"}
    faster = {**limits, "q-a": Limits("q-a", rate_per_second=2.5)}
    assert ensure_queues(queue, faster) == {"q-a": "updated", "q-b": "unchanged"}
    got = client.get_queue(name=queue.queue_path("q-a"))
    assert got.rate_limits.max_dispatches_per_second == 2.5
    assert got.retry_config.max_attempts == -1
    assert got.retry_config.min_backoff.total_seconds() == 1
    assert got.retry_config.max_backoff.total_seconds() == 300


# -- names ---------------------------------------------------------------------------------------


def test_a_name_is_taken_while_the_task_lives_and_for_the_tombstone_period_after(
    emu: Any, queue: CloudTasksQueue, target: Target, client: Any
) -> None:
    ensure_queues(queue, {"q-names": Limits("q-names")})
    target.gate.clear()  # hold the first attempt: the task is alive
    launch = Task("q-names", "l-key-1", {"kind": "launch", "ledger_key": "key-1"})
    assert queue.enqueue(launch) is True
    assert queue.enqueue(launch) is False  # live
    target.gate.set()
    drained(emu)
    assert len(target.of("l-key-1")) == 1
    assert queue.enqueue(launch) is False  # ran moments ago: tombstoned
    deleted = Task("q-names", "l-key-2", {}, schedule_time=datetime.now(UTC) + timedelta(hours=1))
    assert queue.enqueue(deleted) is True
    client.delete_task(name=f"{queue.queue_path('q-names')}/tasks/l-key-2")
    assert queue.enqueue(deleted) is False  # deleted moments ago: tombstoned too
    eventually(lambda: queue.enqueue(launch), timeout=TOMBSTONE + 10, what="the name to be free")
    drained(emu)
    assert len(target.of("l-key-1")) == 2


def test_a_task_without_a_name_gets_one_and_a_bad_name_is_refused(
    queue: CloudTasksQueue, client: Any, target: Target
) -> None:
    from google.api_core import exceptions as gexc

    parent = make_queue(client, "q-anon")
    created = client.create_task(parent=parent, task={"http_request": {"url": target.url}})
    assert created.name.startswith(parent + "/tasks/") and created.name.rsplit("/", 1)[1].isdigit()
    with pytest.raises(gexc.BadRequest):
        client.create_task(
            parent=parent,
            task={"name": f"{parent}/tasks/bad.name", "http_request": {"url": target.url}},
        )
    with pytest.raises(gexc.NotFound):
        client.create_task(
            parent=f"{PARENT}/queues/absent", task={"http_request": {"url": target.url}}
        )


# -- dispatch ------------------------------------------------------------------------------------


def test_a_scheduled_task_waits_for_its_schedule_time_on_the_real_clock(
    emu: Any, queue: CloudTasksQueue, target: Target
) -> None:
    ensure_queues(queue, {"q-later": Limits("q-later")})
    when = datetime.now(UTC) + timedelta(seconds=1.5)
    assert queue.enqueue(Task("q-later", "b-window", {"kind": "batch"}, schedule_time=when))
    drained(emu)
    [entry] = emu.tasks.dispatch_log("q-later")
    dispatched = datetime.fromisoformat(entry["realTime"].replace("Z", "+00:00"))
    assert dispatched >= when.replace(microsecond=when.microsecond // 1000 * 1000)
    eta = float(target.of("b-window")[0]["headers"]["X-CloudTasks-TaskETA"])
    assert eta == pytest.approx(when.timestamp(), abs=1e-3)


@pytest.mark.parametrize(("rate", "tasks"), [(1.0, 150), (10.0, 300)])
def test_a_burst_never_exceeds_the_rate_on_the_emulators_clock(
    emu: Any, queue: CloudTasksQueue, target: Target, rate: float, tasks: int
) -> None:
    """60/min (and 600/min): every task dispatched once, and in any window of W emulator
    seconds at most burst + rate*W dispatches (burst 1 and 2 for these rates)."""
    ensure_queues(queue, {"q-rate": Limits("q-rate", rate_per_second=rate)})
    for i in range(tasks):
        assert queue.enqueue(Task("q-rate", f"l-{i}", {"i": i}))
    drained(emu, timeout=60)
    log = emu.tasks.dispatch_log("q-rate")
    assert sorted(e["task"] for e in log) == sorted(f"l-{i}" for i in range(tasks))
    assert all(e["status"] == 200 and e["attempt"] == 1 for e in log)
    burst = 1 if rate <= 5 else 2
    times = sorted(e["elapsed"] for e in log)
    for window in (1 / rate, 10 / rate, 60.0):
        busiest = max(
            sum(1 for t in times[i:] if t < start + window - 1e-6) for i, start in enumerate(times)
        )
        assert busiest <= burst + rate * window, (window, busiest)
    assert times[-1] - times[0] >= (tasks - burst) / rate - 1e-6


def test_max_concurrent_dispatches_is_never_exceeded(
    emu: Any, queue: CloudTasksQueue, client: Any, target: Target
) -> None:
    make_queue(
        client,
        "q-conc",
        rate_limits={"max_dispatches_per_second": 500, "max_concurrent_dispatches": 3},
    )
    target.gate.clear()
    for i in range(12):
        queue.enqueue(Task("q-conc", f"c-{i}", {}))
    eventually(lambda: target.holding == 3, timeout=10, what="three requests held")
    assert emu.tasks.summary()["queues"][0]["inFlight"] == 3
    target.gate.set()
    drained(emu)
    assert len(target.requests) == 12 and target.max_holding == 3


def test_failed_attempts_are_retried_with_the_queues_backoff_until_2xx(
    emu: Any, queue: CloudTasksQueue, client: Any, target: Target
) -> None:
    make_queue(
        client,
        "q-retry",
        retry_config={
            "max_attempts": -1,
            "min_backoff": {"seconds": 10},
            "max_backoff": {"seconds": 300},
            "max_doublings": 3,
        },
    )
    answers = {1: (503, {"Retry-After": "3600"}), 2: (429, {}), 3: (404, {}), 4: (200, {})}
    target.answer = lambda task, attempt: answers[attempt]
    queue.enqueue(Task("q-retry", "r-1", {"kind": "launch"}))
    drained(emu)
    log = emu.tasks.dispatch_log("q-retry")
    assert [(e["attempt"], e["status"]) for e in log] == [(1, 503), (2, 429), (3, 404), (4, 200)]
    assert log[0]["retryAfter"] == "3600"  # reported, not honoured (Cloud Tasks does not)
    gaps = [b["elapsed"] - a["elapsed"] for a, b in zip(log, log[1:], strict=False)]
    for gap, backoff in zip(gaps, (10, 20, 40), strict=True):
        assert gap >= backoff - 1e-6  # at least the backoff, on the emulator clock
    assert gaps[0] < 3600  # the queue's 10 s, not the target's Retry-After
    headers = [r["headers"] for r in target.of("r-1")]
    assert [h["X-CloudTasks-TaskRetryCount"] for h in headers] == ["0", "1", "2", "3"]
    # execution count: responses other than 5xx (the 429 and the 404)
    assert [h["X-CloudTasks-TaskExecutionCount"] for h in headers] == ["0", "0", "1", "2"]
    assert [h.get("X-CloudTasks-TaskPreviousResponse") for h in headers] == [
        None,
        "503",
        "429",
        "404",
    ]


def test_a_task_is_dropped_after_max_attempts_and_an_unreachable_target_is_a_failure(
    emu: Any, queue: CloudTasksQueue, client: Any
) -> None:
    from google.api_core import exceptions as gexc

    parent = make_queue(
        client, "q-give-up", retry_config={"max_attempts": 2, "min_backoff": {"seconds": 1}}
    )
    dead_url = f"http://127.0.0.1:{free_port()}/nobody"
    client.create_task(
        parent=parent, task={"name": f"{parent}/tasks/t-dead", "http_request": {"url": dead_url}}
    )
    drained(emu)
    log = emu.tasks.dispatch_log("q-give-up")
    assert [(e["attempt"], e["status"]) for e in log] == [(1, None), (2, None)]
    assert all(e["error"].startswith("UNAVAILABLE") for e in log)
    with pytest.raises(gexc.NotFound):
        client.get_task(name=f"{parent}/tasks/t-dead")


def test_the_target_gets_the_oidc_token_the_cloud_tasks_headers_and_the_task(
    emu: Any, queue: CloudTasksQueue, target: Target
) -> None:
    ensure_queues(queue, {"q-oidc": Limits("q-oidc")})
    queue.enqueue(Task("q-oidc", "l-abc", {"kind": "launch", "rule": "r", "ledger_key": "abc"}))
    drained(emu)
    [request] = target.requests
    headers = request["headers"]
    assert json.loads(request["body"]) == {"kind": "launch", "rule": "r", "ledger_key": "abc"}
    assert headers["Content-Type"] == "application/json"
    assert headers["X-CloudTasks-QueueName"] == "q-oidc"
    assert headers["X-CloudTasks-TaskName"] == "l-abc"
    assert headers["User-Agent"] == "Google-Cloud-Tasks"
    scheme, token = headers["Authorization"].split(" ")
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert scheme == "Bearer"
    assert (claims["aud"], claims["email"]) == ("https://fn", SA)
    assert claims["exp"] > claims["iat"]


def test_a_task_reads_back_with_its_body_only_in_the_full_view(
    queue: CloudTasksQueue, client: Any
) -> None:
    from google.cloud import tasks_v2

    ensure_queues(queue, {"q-view": Limits("q-view")})
    later = datetime.now(UTC) + timedelta(hours=1)
    queue.enqueue(Task("q-view", "v-1", {"a": 1}, schedule_time=later))
    name = f"{queue.queue_path('q-view')}/tasks/v-1"
    basic = client.get_task(name=name)
    full = client.get_task(request={"name": name, "response_view": tasks_v2.Task.View.FULL})
    assert basic.http_request.body == b"" and json.loads(full.http_request.body) == {"a": 1}
    assert full.http_request.http_method == tasks_v2.HttpMethod.POST
    assert full.http_request.oidc_token.service_account_email == SA
    assert abs(full.schedule_time.timestamp() - later.timestamp()) < 1e-3
    assert [t.name for t in client.list_tasks(parent=queue.queue_path("q-view"))] == [name]


# -- queue controls ----------------------------------------------------------------------------------


def _dispatched_marker(
    emu: Any, queue: CloudTasksQueue, client: Any, target: Target, marker: str
) -> None:
    """A task in another, running queue dispatched: the dispatcher has looked at every queue
    since the test's earlier tasks were created (it considers all queues on each pass)."""
    ensure_queues(queue, {"q-marker": Limits("q-marker")})
    queue.enqueue(Task("q-marker", marker, {}))
    eventually(lambda: target.of(marker), timeout=10, what=f"the marker task {marker}")


def test_a_paused_queue_holds_its_tasks_until_resumed_and_run_task_bypasses_the_pause(
    emu: Any, queue: CloudTasksQueue, client: Any, target: Target
) -> None:
    from google.cloud import tasks_v2

    parent = make_queue(client, "q-pause")
    assert client.pause_queue(name=parent).state == tasks_v2.Queue.State.PAUSED
    for i in range(3):
        queue.enqueue(Task("q-pause", f"p-{i}", {}))
    _dispatched_marker(emu, queue, client, target, "m-1")
    assert emu.tasks.dispatch_log("q-pause") == []
    ran = client.run_task(name=f"{parent}/tasks/p-0")
    assert ran.name.endswith("/p-0")
    eventually(lambda: target.of("p-0"), timeout=10, what="RunTask to dispatch p-0")
    assert client.resume_queue(name=parent).state == tasks_v2.Queue.State.RUNNING
    drained(emu)
    assert sorted(e["task"] for e in emu.tasks.dispatch_log("q-pause")) == ["p-0", "p-1", "p-2"]


def test_purge_deletes_every_task_and_their_names_stay_taken(
    emu: Any, queue: CloudTasksQueue, client: Any, target: Target
) -> None:
    parent = make_queue(client, "q-purge")
    client.pause_queue(name=parent)
    for i in range(5):
        queue.enqueue(Task("q-purge", f"g-{i}", {}))
    purged = client.purge_queue(name=parent)
    assert purged.purge_time.timestamp() > 0
    assert list(client.list_tasks(parent=parent)) == []
    assert queue.enqueue(Task("q-purge", "g-0", {})) is False
    client.resume_queue(name=parent)
    _dispatched_marker(emu, queue, client, target, "m-2")
    assert emu.tasks.dispatch_log("q-purge") == []


def test_the_control_routes_report_dispatches_and_wait_for_a_drain(
    emu: Any, queue: CloudTasksQueue, target: Target
) -> None:
    ensure_queues(queue, {"q-ctl": Limits("q-ctl", rate_per_second=5.0)})
    for i in range(20):
        queue.enqueue(Task("q-ctl", f"k-{i}", {}))
    request = urllib.request.Request(
        f"{emu.url}/_emulator/tasks/drain",
        data=json.dumps({"timeout": 30, "queue": "q-ctl"}).encode(),
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=40) as answer:
        assert json.load(answer) == {"drained": True, "pending": 0}
    with urllib.request.urlopen(f"{emu.url}/_emulator/tasks/dispatches/q-ctl", timeout=5) as answer:
        dispatches = json.load(answer)["dispatches"]
    assert len(dispatches) == 20 and {d["status"] for d in dispatches} == {200}
    assert {"queue", "task", "attempt", "time", "elapsed", "status"} <= set(dispatches[0])
    with urllib.request.urlopen(f"{emu.url}/_emulator/tasks", timeout=5) as answer:
        summary = json.load(answer)
    assert summary["timeScale"] == TIME_SCALE and summary["queues"][0]["tasks"] == 0


# -- faults, as CloudTasksQueue sees them ----------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_an_injected_create_task_error_is_queue_unavailable_and_a_retry_creates(
    emu: Any, queue: CloudTasksQueue, status: int
) -> None:
    ensure_queues(queue, {"q-fault": Limits("q-fault")})
    emu.faults.fail("CreateTask", status)
    with pytest.raises(QueueUnavailable, match="q-fault"):
        queue.enqueue(Task("q-fault", "f-1", {}))
    assert queue.enqueue(Task("q-fault", "f-1", {})) is True


def test_a_lost_create_task_response_is_unavailable_then_the_retry_finds_the_name(
    emu: Any, queue: CloudTasksQueue
) -> None:
    ensure_queues(queue, {"q-lost": Limits("q-lost", rate_per_second=1.0)})
    emu.faults.drop_response("CreateTask", mode="close")
    with pytest.raises(QueueUnavailable):
        queue.enqueue(Task("q-lost", "f-2", {}))
    assert queue.enqueue(Task("q-lost", "f-2", {})) is False  # created before the loss


def test_a_create_task_answer_held_past_the_timeout_is_unavailable_then_exists(
    emu: Any, target: Target
) -> None:
    queue = CloudTasksQueue(PROJECT, LOCATION, target.url, endpoint=emu.url, timeout=1.0)
    ensure_queues(queue, {"q-slow": Limits("q-slow")})
    emu.faults.drop_response("CreateTask", mode="timeout", seconds=3)
    with pytest.raises(QueueUnavailable, match="q-slow"):
        queue.enqueue(Task("q-slow", "f-3", {}))
    assert queue.enqueue(Task("q-slow", "f-3", {})) is False


def test_refusals_are_task_queue_errors_naming_the_queue(emu: Any, queue: CloudTasksQueue) -> None:
    with pytest.raises(TaskQueueError, match="queues/absent") as err:
        queue.enqueue(Task("absent", "x", {}))
    assert not isinstance(err.value, QueueUnavailable)
    ensure_queues(queue, {"q-denied": Limits("q-denied")})
    emu.faults.fail("CreateTask", 403)
    with pytest.raises(TaskQueueError) as denied:
        queue.enqueue(Task("q-denied", "x", {}))
    assert not isinstance(denied.value, QueueUnavailable)


def test_nothing_listening_is_queue_unavailable(target: Target) -> None:
    nowhere = CloudTasksQueue(
        PROJECT, LOCATION, target.url, endpoint=f"http://127.0.0.1:{free_port()}", timeout=2
    )
    with pytest.raises(QueueUnavailable):
        nowhere.enqueue(Task("q", "x", {}))


def test_the_cli_serves_cloud_tasks_alongside_cloud_run_with_its_options(
    tmp_path: Path, target: Target
) -> None:
    from triggers.emulators.probe import write_probe_jobs

    jobs = str(write_probe_jobs(tmp_path))
    command = [sys.executable, "-m", "triggers.emulators", "--jobs", jobs, "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--api", "cloudrun", "--api", "cloudtasks", "--tasks-time-scale", "60"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(": ", 1)[1].strip()
        queue = CloudTasksQueue(PROJECT, LOCATION, target.url, endpoint=url)
        ensure_queues(queue, {"q-cli": Limits("q-cli", rate_per_second=1.0)})
        assert queue.enqueue(Task("q-cli", "l-cli", {"kind": "launch"}))
        eventually(lambda: target.of("l-cli"), timeout=10, what="the task's dispatch")
        with urllib.request.urlopen(f"{url}/_emulator/tasks", timeout=5) as answer:
            assert json.load(answer)["timeScale"] == 60
        with urllib.request.urlopen(f"{url}/_emulator/health", timeout=5) as answer:
            assert json.load(answer)["taskQueues"] == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stderr is not None and "CreateTask -> 200" in proc.stderr.read()
    refused = subprocess.run(
        [*command, "--tasks-time-scale", "0"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 2 and "time scale must be > 0" in refused.stderr
