"""2,000 storage events for a batched rule, end to end on real components: the SQLite ledger,
Cloud Tasks on the project's emulator through the real google-cloud-tasks client (a queue, its
timers and seal tasks, retries), batch tasks delivered over HTTP to a handler that calls
`handle_batch_task`, manifests as objects on fake-gcs-server, and the executions on the Cloud
Run emulator, whose probe tasks record the env they were given. Members and batch tasks are
crashed on the way; every member still ends in exactly one execution's manifest slice.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

import pytest

from tests.batching import Fuse, FusedBackend, FusedStore, batched, reply_json, task_route
from tests.fakes import storage_event
from tests.integration.conftest import eventually, free_port
from triggers.dispatch import Dispatcher, Outcome
from triggers.flow.batches import Batches, handle_batch_task
from triggers.flow.batching import BatchStatus
from triggers.flow.manifest import MANIFEST_URI_ENV, ManifestWriter, read_slice
from triggers.flow.queue import TASK_PATH
from triggers.flow.spec import Limits
from triggers.ledger import Ledger, Status
from triggers.ledger.batchstore import SQLiteBatchStore
from triggers.ledger.sqlite import SQLiteBackend
from triggers.rules import load_text
from triggers.rules.ruleset import RuleSet

pytestmark = pytest.mark.integration

EVENTS = 2000
MAX_EVENTS = 600
PER_TASK = 150
WINDOW = 20  # long enough that the three full batches fill first; the last is sealed by it
CRASHED_MEMBERS = 60
LEASE = timedelta(seconds=2)

RULES_YAML = """\
project: demo-project
region: europe-west1
rules:
  - name: ingest
    on: storage.finalized
    job: probe
    overrides:
      args: ["--first={{ data.name }}"]
"""


class TaskHandler(BaseHTTPRequestHandler):
    """The function's task route, in miniature: the first delivery of every task crashes part
    way (its writes stop at a point that depends on the task), the retries are served."""

    world: SimpleNamespace

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        world = self.world
        name = self.headers.get("X-CloudTasks-TaskName", "")
        if self.path != TASK_PATH or body.get("kind") != "batch":
            status, answer = 400, {"error": "unknown task"}
        elif self.headers.get("X-CloudTasks-TaskRetryCount") == "0":
            fuse = Fuse(1 + sum(map(ord, name)) % 4)  # dies at its 1st..4th write
            status, answer = handle_batch_task(world.crashing(fuse), body)
            if fuse.count >= fuse.at:
                status = 500  # the instance died: Cloud Tasks saw the connection drop
        else:
            status, answer = handle_batch_task(world.context, body)
        world.answers.append((name, status, answer))
        reply_json(self, status, answer)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stack(tmp_path, storage_client):
    from triggers.emulators.probe import write_probe_jobs
    from triggers.emulators.server import EmulatorServer
    from triggers.flow.cloudtasks import CloudTasksQueue, ensure_queues
    from triggers.runners.cloudrun import CloudRunRunner

    bucket = f"manifests-{uuid.uuid4().hex[:8]}"
    storage_client.create_bucket(bucket)
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    port = free_port()
    with EmulatorServer(
        write_probe_jobs(probe_dir),
        log_dir=probe_dir / "logs",
        kill_grace=0.5,
        apis=("cloudrun", "cloudtasks"),
    ) as emulator:
        queue = CloudTasksQueue(
            "demo-project",
            "europe-west1",
            f"http://127.0.0.1:{port}{TASK_PATH}",
            endpoint=emulator.url,
        )
        ensure_queues(queue, {"triggers-ingest": Limits(queue="triggers-ingest")})
        backend = SQLiteBackend(tmp_path / "ledger.sqlite3")
        store = SQLiteBatchStore(backend)
        rule = batched(
            load_text(RULES_YAML, environ={}).rules[0],
            window=WINDOW,
            max_events=MAX_EVENTS,
            per_task=PER_TASK,
        )
        rules = RuleSet([rule])
        runner = CloudRunRunner(endpoint=emulator.url, timeout=10.0)
        manifests = ManifestWriter(bucket=bucket, storage_client=storage_client)

        def dispatcher(store=store, backend=backend) -> Dispatcher:
            ledger = Ledger(backend, lease=LEASE)
            batches = Batches(store, queue, ledger, manifests)
            return Dispatcher(rules, ledger, runner, batcher=batches)

        def crashing(fuse: Fuse) -> SimpleNamespace:
            return SimpleNamespace(
                dispatcher=dispatcher(FusedStore(store, fuse), FusedBackend(backend, fuse))
            )

        world = SimpleNamespace(
            emulator=emulator,
            probe_dir=probe_dir,
            backend=backend,
            store=store,
            dispatcher=dispatcher,
            crashing=crashing,
            context=SimpleNamespace(dispatcher=dispatcher()),
            answers=[],
            storage_client=storage_client,
        )
        try:
            with task_route(port, TaskHandler, world):
                yield world
        finally:
            backend.close()


def test_two_thousand_events_become_one_execution_per_batch_with_every_member_once(stack):
    events = [storage_event(f"in/{i:04d}.csv", f"e-{i}") for i in range(EVENTS)]
    instances = [stack.dispatcher() for _ in range(4)]
    started = time.monotonic()

    # A function instance dies inside each of the first members (at its 1st..6th write).
    crashed = []
    for i in range(CRASHED_MEMBERS):
        fuse = Fuse(1 + i % 6)
        crashed.append(stack.crashing(fuse).dispatcher.dispatch(events[i]).outcomes[0])
    assert {o.outcome for o in crashed} <= {Outcome.RETRY, Outcome.BATCHED}

    def send(i: int):
        return instances[i % 4].dispatch(events[i]).outcomes[0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        rest = range(CRASHED_MEMBERS, EVENTS)
        outcomes = dict(zip(rest, pool.map(send, rest), strict=True))
        # Pub/Sub redelivers until every event is acknowledged (a crashed claim after its lease)
        pending = [i for i in range(EVENTS) if outcomes.get(i) is None]
        deadline = time.monotonic() + 60
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} events never decided"
            for i, outcome in zip(pending, pool.map(send, pending), strict=True):
                outcomes[i] = outcome
            pending = [i for i in pending if outcomes[i].outcome is Outcome.RETRY]
            if pending:
                time.sleep(0.5)
    send_seconds = time.monotonic() - started
    assert {o.outcome for o in outcomes.values()} <= {Outcome.BATCHED, Outcome.DUPLICATE}

    # Every batch is sealed (three by size, the last by its window) and launched, once.
    expected = math.ceil(EVENTS / MAX_EVENTS)
    batches = eventually(
        lambda: (
            found
            if len(found := stack.store.list_batches(limit=100)) == expected
            and all(b.status is BatchStatus.LAUNCHED for b in found)
            else None
        ),
        timeout=WINDOW + 90,
        what="every batch launched",
    )
    members = [m for b in batches for m in b.members]
    assert len(members) == len(set(members)) == EVENTS
    assert sorted(len(b.members) for b in batches) == [EVENTS % MAX_EVENTS] + [MAX_EVENTS] * 3

    executions = {b.execution for b in batches}
    assert len(executions) == expected
    job = "projects/demo-project/locations/europe-west1/jobs/probe"
    listed = stack.emulator.store.list_executions(job)["executions"]
    assert {e["name"] for e in listed} == executions  # nothing else was launched

    records = stack.store.get_records(members)
    owner = {m: b for b in batches for m in b.members}
    for key, record in records.items():
        assert record.status is Status.BATCHED and record.batch == owner[key].id

    # Each execution's tasks read their slices from the manifest object: together, its
    # members, each once, in join order.
    from triggers.emulators.probe import probe_records

    for batch in batches:
        count = math.ceil(len(batch.members) / PER_TASK)
        assert batch.task_count == count
        assert batch.manifest.startswith("gs://")
        tasks = eventually(
            lambda b=batch, c=count: (
                found if len(found := probe_records(stack.probe_dir, b.execution)) >= c else None
            ),
            timeout=60,
            what=f"the probe tasks of {batch.execution}",
        )
        seen = []
        for task in sorted(tasks, key=lambda t: t["task"]):
            env = task["env"]
            assert env["TRIGGERS_BATCH_ID"] == batch.id
            assert env[MANIFEST_URI_ENV] == batch.manifest
            part = read_slice(env, storage_client=stack.storage_client)
            seen += [m["ledger_key"] for m in part]
        assert seen == list(batch.members)

    crashed_tasks = [a for a in stack.answers if a[1] == 500]
    assert crashed_tasks, "the first delivery of every batch task was crashed"
    print(
        f"\n{EVENTS} events -> {expected} executions; sending took {send_seconds:.1f}s;"
        f" {len(stack.answers)} task deliveries ({len(crashed_tasks)} crashed)"
    )
