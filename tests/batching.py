"""Batched rules, batches, a recording runner and crash injection for the batching tests (pure:
no I/O), and the JSON reply of their task routes.

`batched` gives a loaded rule its `flow` and `batch_key` directly, as the loader compiles a
`batch:` block, so that a test can vary them without writing YAML.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from tests.fakes import ScriptedRunner
from triggers.flow.batching import Batch, BatchStatus
from triggers.flow.spec import Batching, Flow, Limits
from triggers.rules import load_text
from triggers.rules.rule import Rule
from triggers.rules.ruleset import RuleSet
from triggers.rules.templates import compile_template

BATCH_RULES_YAML = """\
project: demo-project
region: europe-west1
rules:
  - name: ingest
    on: storage.finalized
    job: loader
    overrides:
      args: ["--first={{ data.name }}"]
      env: {BUCKET: "{{ data.bucket }}"}
"""


def batched(
    rule: Rule,
    *,
    window: int = 60,
    max_events: int = 5,
    per_task: int = 2,
    key: str | None = None,
    fields: tuple[str, ...] | None = None,
) -> Rule:
    """`rule` with a `batch:` block, as the loader compiles it."""
    values = {name: getattr(rule, name) for name in Rule.__slots__}
    values["flow"] = Flow(
        Limits(queue=f"triggers-{rule.name}"), Batching(window, max_events, per_task, fields)
    )
    values["batch_key"] = None if key is None else compile_template(key)
    return Rule(**values)


def a_batch(batch_id: str, at: datetime, **changes) -> Batch:
    """An open batch of rule `ingest` with one member, opened `at`, kept 7 days; `changes`
    override any field."""
    batch = Batch(
        id=batch_id,
        rule="ingest",
        key="raw",
        status=BatchStatus.OPEN,
        token=uuid.uuid4().hex,
        opened_at=at,
        closes_at=at + timedelta(minutes=2),
        max_events=3,
        expire_at=at + timedelta(days=7),
        members=("k1",),
    )
    return replace(batch, **changes)


def batch_rules(**batching) -> RuleSet:
    """The `ingest` rule, batched as given (see `batched`)."""
    loaded = load_text(BATCH_RULES_YAML, environ={})
    return RuleSet([batched(rule, **batching) for rule in loaded])


class RecordingRunner(ScriptedRunner):
    """A ScriptedRunner that keeps every request it was asked to run."""

    def __init__(self, clock=None) -> None:
        super().__init__(clock)
        self.requests: list = []

    def run(self, request, *, validate_only=False):
        self.requests.append(request)
        return super().run(request, validate_only=validate_only)


def env_of(request) -> dict[str, str]:
    return dict(request.overrides.env)


class Crash(Exception):
    pass


class Fuse:
    """Counts writes across the ledger and the batch store; at the n-th the process "dies":
    that write and every later one raise (nothing more reaches the stores)."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.count = 0

    def write(self) -> None:
        self.count += 1
        if self.count >= self.at:
            raise Crash(f"crashed at write {self.count}")


class FusedBackend:
    WRITES = ("create", "replace", "update", "count_duplicate")

    def __init__(self, inner, fuse: Fuse) -> None:
        self.inner, self.fuse = inner, fuse

    def __getattr__(self, name):
        target = getattr(self.inner, name)
        if name not in self.WRITES:
            return target

        def call(*args, **kwargs):
            self.fuse.write()
            return target(*args, **kwargs)

        return call


class FusedStore(FusedBackend):
    WRITES = ("create_batch", "replace_batch", "create_cursor", "replace_cursor")


def reply_json(handler, status: int, answer: dict) -> None:
    """Answer the request `handler` (an http.server handler) with `answer` as JSON: how the
    task routes of the batch tests reply to Cloud Tasks."""
    import json

    data = json.dumps(answer).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@contextlib.contextmanager
def task_route(port: int, handler: type, world: Any) -> Iterator[None]:
    """Serve `handler` (an http.server handler class, given `world` as its attribute) on
    127.0.0.1:`port` in a thread, for as long as the block runs: a batch test's task route."""
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", port), type("Route", (handler,), {"world": world}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
