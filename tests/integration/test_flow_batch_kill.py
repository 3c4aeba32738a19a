"""The function killed mid-batch, for real: the batch task is served by a process of its own
(tests/integration/batch_task_server.py) that SIGKILLs itself before its n-th store write; a new
process takes its place on the same port, and Cloud Tasks (the project's emulator, through the
real client) retries the task there. Each batch still starts exactly one execution on the Cloud
Run emulator, and every member is in exactly one batch."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest

from tests.fakes import storage_event
from tests.integration.batch_task_server import MAX_EVENTS, PER_TASK, rules
from tests.integration.conftest import ServerProcess, _child_env, eventually, free_port
from triggers.dispatch import Dispatcher, Outcome
from triggers.flow.batches import Batches
from triggers.flow.batching import BatchStatus
from triggers.flow.queue import TASK_PATH
from triggers.flow.spec import Limits
from triggers.ledger import Ledger
from triggers.ledger.batchstore import SQLiteBatchStore
from triggers.ledger.sqlite import SQLiteBackend
from triggers.runners.dryrun import DryRunRunner

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 3 * MAX_EVENTS
JOB = "projects/demo-project/locations/europe-west1/jobs/probe"


# The batch task's writes: 1 the seal, 2 the run record's claim, 3 `launched` (after jobs.run:
# the execution exists, unrecorded), 4 the batch marked launched, 5.. the members' pointers.
@pytest.mark.parametrize("die_at", [1, 3, 4])
def test_a_batch_task_killed_at_any_write_still_launches_each_batch_once(tmp_path, die_at):
    from triggers.emulators.probe import write_probe_jobs
    from triggers.emulators.server import EmulatorServer
    from triggers.flow.cloudtasks import CloudTasksQueue, ensure_queues

    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    ledger_path = tmp_path / "ledger.sqlite3"
    port = free_port()
    with EmulatorServer(
        write_probe_jobs(probe_dir),
        log_dir=probe_dir / "logs",
        kill_grace=0.5,
        apis=("cloudrun", "cloudtasks"),
    ) as emulator:
        queue = CloudTasksQueue(
            "demo-project", "europe-west1", f"http://127.0.0.1:{port}{TASK_PATH}",
            endpoint=emulator.url,
        )  # fmt: skip
        ensure_queues(queue, {"triggers-ingest": Limits(queue="triggers-ingest")})

        def handler(name: str, *die: str) -> ServerProcess:
            argv = [sys.executable, "-m", "tests.integration.batch_task_server", str(port)]
            argv += [str(ledger_path), emulator.url, str(tmp_path / "manifests"), *die]
            return ServerProcess(name, argv, _child_env(), tmp_path / f"{name}.log", ROOT).start()

        backend = SQLiteBackend(ledger_path)
        store = SQLiteBatchStore(backend)
        doomed = handler("doomed", str(die_at))
        replacement = None
        try:
            ledger = Ledger(backend, lease=timedelta(seconds=2))
            members = Dispatcher(
                rules(), ledger, DryRunRunner(), batcher=Batches(store, queue, ledger)
            )
            outcomes = [
                members.dispatch(storage_event(f"in/{i}.csv", f"e-{i}")).outcomes[0]
                for i in range(EVENTS)
            ]
            assert {o.outcome for o in outcomes} == {Outcome.BATCHED}
            # The first seal task reaches the doomed instance, which dies part way.
            eventually(
                lambda: doomed.process.poll() is not None,
                timeout=60,
                what="the instance to die",
                context=doomed.describe,
            )
            assert doomed.process.returncode == -9, doomed.describe()  # SIGKILL, mid-task
            replacement = handler("replacement")
            batches = eventually(
                lambda: (
                    found
                    if len(found := store.list_batches()) == EVENTS // MAX_EVENTS
                    and all(b.status is BatchStatus.LAUNCHED for b in found)
                    else None
                ),
                timeout=90,
                what="every batch launched after the kill",
                context=lambda: replacement.describe() + doomed.describe(),
            )
            listed = emulator.store.list_executions(JOB)["executions"]
            assert sorted(e["name"] for e in listed) == sorted(b.execution for b in batches)
            assert all(b.task_count == MAX_EVENTS // PER_TASK + 1 for b in batches)
            joined = [m for b in batches for m in b.members]
            assert sorted(joined) == sorted(o.ledger_key for o in outcomes)
            if die_at == 3:  # killed after jobs.run: the retry adopted that execution
                runs = [ledger.get(b.run) for b in batches]
                assert any(r.attempts > 1 for r in runs)
        finally:
            for process in (doomed, replacement):
                if process is not None:
                    process.stop()
            backend.close()
