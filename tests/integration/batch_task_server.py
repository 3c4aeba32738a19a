"""A batch-task handler as a process of its own, for the kill test (test_flow_batch_kill.py):
`python -m tests.integration.batch_task_server PORT LEDGER EMULATOR_URL MANIFESTS [DIE_AT]`.

It serves `POST /_triggers/task` with `handle_batch_task` over the SQLite ledger at LEDGER and
the Cloud Run emulator at EMULATOR_URL. With DIE_AT = n the process kills itself (SIGKILL: no
cleanup, no answer) just before its n-th store write, the way an instance dies mid-batch.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

from tests.batching import FusedBackend, FusedStore, batched, reply_json
from triggers.dispatch import Dispatcher
from triggers.flow.batches import Batches, handle_batch_task
from triggers.flow.manifest import ManifestWriter
from triggers.flow.queue import MemoryTaskQueue
from triggers.ledger import Ledger
from triggers.ledger.batchstore import SQLiteBatchStore
from triggers.ledger.sqlite import SQLiteBackend
from triggers.rules import load_text
from triggers.rules.ruleset import RuleSet
from triggers.runners.cloudrun import CloudRunRunner

RULES_YAML = """\
project: demo-project
region: europe-west1
rules:
  - name: ingest
    on: storage.finalized
    job: probe
"""
LEASE = timedelta(seconds=2)
MAX_EVENTS = 100
PER_TASK = 40


def rules() -> RuleSet:
    rule = load_text(RULES_YAML, environ={}).rules[0]
    return RuleSet([batched(rule, window=600, max_events=MAX_EVENTS, per_task=PER_TASK)])


class Death:
    """A fuse that kills the whole process at the n-th write."""

    def __init__(self, at: int) -> None:
        self.at, self.count = at, 0

    def write(self) -> None:
        self.count += 1
        if self.count >= self.at:
            os.kill(os.getpid(), signal.SIGKILL)


def main(argv: list[str]) -> None:
    port, ledger_path, emulator_url, manifests = argv[:4]
    die_at = int(argv[4]) if len(argv) > 4 else 0
    backend: object = SQLiteBackend(ledger_path)
    store: object = SQLiteBatchStore(backend)  # type: ignore[arg-type]
    if die_at:
        death = Death(die_at)
        store, backend = FusedStore(store, death), FusedBackend(backend, death)
    ledger = Ledger(backend, lease=LEASE)  # type: ignore[arg-type]
    # The batch task enqueues nothing; members (in the test process) make the tasks.
    batches = Batches(store, MemoryTaskQueue(), ledger, ManifestWriter(directory=Path(manifests)))  # type: ignore[arg-type]
    runner = CloudRunRunner(endpoint=emulator_url, timeout=10.0)
    context = SimpleNamespace(dispatcher=Dispatcher(rules(), ledger, runner, batcher=batches))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, answer = handle_batch_task(context, body)
            reply_json(self, status, answer)
            print(self.headers.get("X-CloudTasks-TaskName"), status, answer, flush=True)

    ThreadingHTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
