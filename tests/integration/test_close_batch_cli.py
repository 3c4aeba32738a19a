"""`triggers close-batch`: an operator closes an open batch early, on real components.

The SQLite ledger, Cloud Tasks on the project's emulator through the real google-cloud-tasks
client, a task route that answers batch tasks as the function does (`handle_batch_task`), and
the Cloud Run emulator. Three events open a batch whose window is ten minutes; the command
seals it and queues its launch; the emulator delivers the task at once and the batch becomes
one execution, long before its window would have ended.
"""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

import pytest

from tests.batching import reply_json, task_route
from tests.fakes import storage_event
from tests.integration.batch_task_server import RULES_YAML as SERVER_RULES
from tests.integration.conftest import eventually, free_port
from triggers.cli import main
from triggers.dispatch import Dispatcher, Outcome
from triggers.flow.batches import Batches, handle_batch_task
from triggers.flow.batching import BatchStatus
from triggers.flow.queue import TASK_PATH
from triggers.flow.spec import Limits
from triggers.ledger import Ledger
from triggers.ledger.batchstore import SQLiteBatchStore
from triggers.ledger.sqlite import SQLiteBackend
from triggers.rules import load

pytestmark = pytest.mark.integration

# The batch-task server's rule (a probe job), with a ten-minute window, as a rules file.
RULES_YAML = SERVER_RULES + "    batch:\n      window: 10m\n      max_events: 50\n"


class TaskRoute(BaseHTTPRequestHandler):
    """The function's task route, in miniature: batch tasks through `handle_batch_task`."""

    world: SimpleNamespace

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == TASK_PATH and body.get("kind") == "batch":
            status, answer = handle_batch_task(
                SimpleNamespace(dispatcher=self.world.dispatcher()), body
            )
        else:
            status, answer = 400, {"error": "unknown task"}
        self.world.answers.append((self.headers.get("X-CloudTasks-TaskName", ""), status, answer))
        reply_json(self, status, answer)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def world(tmp_path, monkeypatch):
    from triggers.emulators.probe import write_probe_jobs
    from triggers.emulators.server import EmulatorServer
    from triggers.flow.cloudtasks import CloudTasksQueue, ensure_queues
    from triggers.runners.cloudrun import CloudRunRunner

    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(RULES_YAML, encoding="utf-8")
    rules = load(rules_file)
    queue_id = rules.get("ingest").flow.limits.queue
    ledger_path = tmp_path / "ledger.sqlite3"
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    port = free_port()
    target = f"http://127.0.0.1:{port}{TASK_PATH}"
    with EmulatorServer(
        write_probe_jobs(probe_dir),
        log_dir=probe_dir / "logs",
        log_to_stderr=False,
        apis=("cloudrun", "cloudtasks"),
    ) as emulator:
        queue = CloudTasksQueue("demo-project", "europe-west1", target, endpoint=emulator.url)
        ensure_queues(queue, {queue_id: Limits(queue=queue_id)})
        backend = SQLiteBackend(ledger_path)
        runner = CloudRunRunner(endpoint=emulator.url, timeout=10.0)

        def dispatcher() -> Dispatcher:
            ledger = Ledger(backend)
            return Dispatcher(rules, ledger, runner, batcher=Batches.over(ledger, queue))

        world = SimpleNamespace(
            dispatcher=dispatcher,
            store=SQLiteBatchStore(backend),
            answers=[],
            rules_file=rules_file,
            ledger_path=ledger_path,
        )
        # What the command reads, as the function's deployment sets it.
        monkeypatch.setenv("TRIGGERS_TASK_TARGET_URL", target)
        monkeypatch.setenv("TRIGGERS_TASKS_PROJECT", "demo-project")
        monkeypatch.setenv("TRIGGERS_TASKS_LOCATION", "europe-west1")
        monkeypatch.setenv("TRIGGERS_TASKS_ENDPOINT", emulator.url)
        try:
            with task_route(port, TaskRoute, world):
                yield world
        finally:
            backend.close()


def close_batch(world, batch_id: str, *more: str) -> int:
    return main(
        ["close-batch", batch_id, "-c", str(world.rules_file), "--ledger", "sqlite"]
        + ["--sqlite-path", str(world.ledger_path), *more]
    )


def test_closing_an_open_batch_launches_it_now_and_later_events_open_the_next(world, capsys):
    # GIVEN three events in an open batch whose window ends in ten minutes
    dispatcher = world.dispatcher()
    outcomes = [
        dispatcher.dispatch(storage_event(f"in/{i}.csv", f"e-{i}")).outcomes[0] for i in range(3)
    ]
    assert {o.outcome for o in outcomes} == {Outcome.BATCHED}
    (batch,) = world.store.list_batches(limit=10)
    assert batch.status is BatchStatus.OPEN
    # WHEN an operator closes it
    assert close_batch(world, batch.id, "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["status"] == "sealed" and result["queued"] and result["members"] == 3
    # THEN the queue runs its launch at once: one execution for the three members
    launched = eventually(
        lambda: (b := world.store.get_batch(batch.id)).status is BatchStatus.LAUNCHED and b,
        timeout=30,
        what="the closed batch launched through its queued task",
        context=lambda: f"task answers: {world.answers}",
    )
    assert launched.execution and launched.members == batch.members
    assert [a for _, status, a in world.answers if a.get("outcome") == "launched"] != []
    # and an event after the close opens the next batch instead of joining the sealed one
    late = dispatcher.dispatch(storage_event("in/late.csv", "e-late")).outcomes[0]
    assert late.outcome is Outcome.BATCHED
    assert len(world.store.list_batches(limit=10)) == 2
    # WHEN it is closed again THEN it says it was launched, and queues nothing
    assert close_batch(world, batch.id) == 0
    assert f"was launched already: {launched.execution}" in capsys.readouterr().out


def test_unknown_batches_and_a_missing_task_target_are_clear_errors(world, capsys, monkeypatch):
    world.dispatcher().dispatch(storage_event("in/a.csv", "e-a"))
    (batch,) = world.store.list_batches(limit=10)
    assert close_batch(world, "no-such-batch") == 2
    assert "no batch 'no-such-batch' in this ledger" in capsys.readouterr().err
    monkeypatch.delenv("TRIGGERS_TASK_TARGET_URL")
    assert close_batch(world, batch.id) == 2
    assert "TRIGGERS_TASK_TARGET_URL is not set" in capsys.readouterr().err
    # nothing was sealed: the batch still takes members until someone can launch it
    assert world.store.get_batch(batch.id).status is BatchStatus.OPEN
