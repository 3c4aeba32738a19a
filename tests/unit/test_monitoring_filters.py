"""The Terraform module's log-based metrics (terraform/monitoring.tf) select the log lines the
function and the reconciler really write.

Each metric's filter and label extractors are read from monitoring.tf, evaluated by a small
interpreter of the Logging query language subset the module uses (tests/logquery.py), and run
over lines captured from the real `App` (memory ledger, scripted runner)
and the real reconciler, written by `logs.configure` to a buffer and turned into the log entries
Cloud Logging makes of them (JSON payload, `logging.googleapis.com/labels` -> labels, the
function's Cloud Run service as resource).
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import ScriptedRunner
from tests.logquery import (
    Entry,
    Metric,
    counts,
    load_metrics,
    log_entry,
    parse_extractor,
    parse_filter,
    series,
)
from triggers.errors import PermanentRunError, RetryableRunError
from triggers.function import logs
from triggers.function.app import App
from triggers.function.deadletter import PubSubDeadLetters
from triggers.function.settings import Settings
from triggers.ledger import Ledger
from triggers.ledger.memory import MemoryBackend
from triggers.ops.reconcile import reconcile
from triggers.rules import load_text

hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is in the test extra")

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "config" / "events"
FUNCTION = "triggers"  # var.name
RECONCILER = "triggers-reconcile"  # local.reconcile_name
TOPIC = "projects/demo-project/topics/triggers-dead-letter"

RULES = load_text(
    """\
project: demo-project
region: europe-west1
rules:
  - name: load
    on: storage.finalized
    bucket: raw-data
    job: loader
  - name: audit
    on: storage.finalized
    job: auditor
""",
    environ={},
)


@pytest.fixture(scope="module")
def metrics() -> dict[str, Metric]:
    return load_metrics(FUNCTION, RECONCILER)


# -- log lines from the real function -----------------------------------------------------------


class CapturedLogs:
    """What `logs.configure` writes, as the log entries Cloud Logging makes of it."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.service = FUNCTION

    def entries(self) -> list[Entry]:
        """The entries written since the last call."""
        text = self.stream.getvalue()
        self.stream.seek(0)
        self.stream.truncate()
        return [self._entry(json.loads(line)) for line in text.splitlines() if line]

    def _entry(self, line: dict[str, Any]) -> Entry:
        return log_entry(line, self.service)


@pytest.fixture
def captured() -> Iterator[CapturedLogs]:
    """`logs.configure` writing to a buffer; the `triggers` logger is put back afterwards."""
    logger = logging.getLogger("triggers")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    streams = {h: h.stream for h in handlers if isinstance(h, logging.StreamHandler)}
    capture = CapturedLogs()
    logs.configure("INFO", project="demo-project", stream=capture.stream)
    try:
        yield capture
    finally:
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
        for handler, stream in streams.items():
            handler.setStream(stream)
        logger.setLevel(level)
        logger.propagate = propagate


class Publisher:
    """google-cloud-pubsub's PublisherClient surface PubSubDeadLetters uses (pure: no I/O);
    the real publisher against the emulator is tests/integration/test_deadletter.py."""

    def __init__(self) -> None:
        self.error: Exception | None = None

    def publish(self, topic: str, data: bytes, **attrs: str) -> Future:
        future: Future = Future()
        if self.error is not None:
            future.set_exception(self.error)
        else:
            future.set_result("message-1")
        return future


@dataclass
class Stack:
    app: App
    ledger: Ledger
    runner: ScriptedRunner
    publisher: Publisher


@pytest.fixture
def stack() -> Stack:
    settings = Settings(ledger="memory", runner="dry-run", retry_after_seconds=7)
    ledger = Ledger(MemoryBackend(), lease=timedelta(minutes=5))
    runner = ScriptedRunner()
    publisher = Publisher()
    sink = PubSubDeadLetters(TOPIC, client=publisher)
    app = App(settings, rules=RULES, ledger=ledger, runner=runner, dead_letters=sink)
    return Stack(app, ledger, runner, publisher)


def storage(event_id: str) -> tuple[dict[str, str], bytes]:
    document = json.loads((EVENTS / "storage-finalized.cloudevent-binary.json").read_text())
    headers = {**document["headers"], "ce-id": event_id}
    return headers, json.dumps(document["body"]).encode()


def scheduler() -> tuple[dict[str, str], bytes]:
    document = json.loads((EVENTS / "scheduler-nightly.http.json").read_text())
    return dict(document["headers"]), json.dumps(document["body"]).encode()


# -- the tests ----------------------------------------------------------------------------------


def test_the_module_declares_the_metrics_per_rule(metrics):
    assert set(metrics) == {
        "matched",
        "launched",
        "duplicate",
        "rejected",
        "retried",
        "dead_lettered",
        "executions",
        "reconcile_errors",
    }
    assert all("rule" in metric.labels for metric in metrics.values())


def test_a_launch_counts_as_matched_and_launched_for_each_rule(metrics, captured, stack):
    assert stack.app.handle(*storage("e-1")).status == 200
    assert counts(metrics, captured.entries()) == {
        "matched": Counter(
            {
                series(rule="load", outcome="launched"): 1,
                series(rule="audit", outcome="launched"): 1,
            }
        ),
        "launched": Counter({series(rule="load"): 1, series(rule="audit"): 1}),
    }


def test_a_redelivery_counts_as_duplicate_not_launched(metrics, captured, stack):
    stack.app.handle(*storage("e-1"))
    captured.entries()
    assert stack.app.handle(*storage("e-1")).status == 200
    assert counts(metrics, captured.entries()) == {
        "matched": Counter(
            {
                series(rule="load", outcome="duplicate"): 1,
                series(rule="audit", outcome="duplicate"): 1,
            }
        ),
        "duplicate": Counter({series(rule="load"): 1, series(rule="audit"): 1}),
    }


def test_an_event_no_rule_matches_is_counted_by_no_metric(metrics, captured, stack):
    assert stack.app.handle(*scheduler()).status == 200
    entries = captured.entries()
    assert any("matched no rule" in entry["jsonPayload"]["message"] for entry in entries)
    assert counts(metrics, entries) == {}


def test_a_permanent_failure_counts_as_rejected_and_dead_lettered_with_its_reason(
    metrics, captured, stack
):
    stack.runner.fail("loader", PermanentRunError("job not found", status=404))
    assert stack.app.handle(*storage("e-2")).status == 200
    found = counts(metrics, captured.entries())
    assert found == {
        "matched": Counter(
            {
                series(rule="load", outcome="rejected"): 1,
                series(rule="audit", outcome="launched"): 1,
            }
        ),
        "launched": Counter({series(rule="audit"): 1}),
        "rejected": Counter({series(rule="load", reason="job not found"): 1}),
        "dead_lettered": Counter({series(rule="load", reason="job not found"): 1}),
    }


def test_a_retryable_failure_counts_as_retried(metrics, captured, stack):
    stack.runner.fail("loader", RetryableRunError("quota exceeded", status=429))
    assert stack.app.handle(*storage("e-3")).status == 503
    found = counts(metrics, captured.entries())
    assert set(found) == {"matched", "launched", "retried"}
    assert found["launched"] == Counter({series(rule="audit"): 1})
    ((labels, count),) = found["retried"].items()
    assert count == 1 and dict(labels)["rule"] == "load"
    assert "quota exceeded" in dict(labels)["reason"]


def test_a_request_that_is_not_an_event_counts_as_rejected_without_a_rule(metrics, captured, stack):
    response = stack.app.handle({"Content-Type": "application/json"}, b"{not json")
    assert response.status == 200 and response.body["decision"] == "rejected"
    reason = response.body["reason"]
    assert counts(metrics, captured.entries()) == {
        "rejected": Counter({series(rule="", reason=reason[:60].split(":")[0]): 1}),
        "dead_lettered": Counter({series(rule="", reason=reason[:60].split(":")[0]): 1}),
    }


def test_a_dead_letter_that_could_not_be_published_is_not_counted_as_dead_lettered(
    metrics, captured, stack
):
    stack.publisher.error = TimeoutError("deadline exceeded")
    stack.runner.fail("loader", PermanentRunError("job not found", status=404))
    stack.app.handle(*storage("e-4"))
    found = counts(metrics, captured.entries())
    assert "rejected" in found and "dead_lettered" not in found


class StatusRunner:
    """Answers `execution_status` from a table (what Cloud Run's executions.get says)."""

    def __init__(self, states: dict[str | None, dict[str, Any] | Exception]) -> None:
        self.states = states

    def execution_status(self, name: str) -> dict[str, Any] | None:
        state = self.states.get(name)
        if isinstance(state, Exception):
            raise state
        return state


def test_reconciled_executions_count_by_rule_and_outcome(metrics, captured, stack):
    stack.app.handle(*storage("e-5"))
    stack.app.handle(*storage("e-6"))
    stack.app.handle(*storage("e-7"))
    captured.entries()
    records = {(r.rule, r.event.get("id")): r.execution for r in stack.ledger.list()}
    ended: dict[str | None, dict[str, Any] | Exception] = {
        records["load", "e-5"]: {"done": True, "outcome": "succeeded"},
        records["audit", "e-5"]: {"done": True, "outcome": "failed", "message": "Task failed"},
        records["load", "e-6"]: {"done": False},
        records["audit", "e-6"]: ConnectionError("executions.get timed out"),
    }
    captured.service = RECONCILER
    report = reconcile(stack.ledger, StatusRunner(ended))
    assert (report.succeeded, report.failed, report.errors) == (1, 3, 1)  # 2 not found
    found = counts(metrics, captured.entries())
    assert found == {
        "executions": Counter(
            {
                series(rule="load", outcome="succeeded", reason=""): 1,
                series(rule="audit", outcome="failed", reason="Task failed"): 1,
                series(rule="load", outcome="failed", reason="execution not found"): 1,
                series(rule="audit", outcome="failed", reason="execution not found"): 1,
            }
        ),
        "reconcile_errors": Counter({series(rule="audit"): 1}),
    }


def test_lines_of_another_service_are_not_counted(metrics, captured, stack):
    captured.service = "someone-else"
    stack.app.handle(*storage("e-8"))
    entries = captured.entries()
    assert entries and counts(metrics, entries) == {}


@pytest.mark.parametrize(
    ("text", "entry", "expected"),
    [
        ('labels.kind="decision"', {"labels": {"kind": "decision"}}, True),
        ('labels.kind="decision"', {"labels": {"kind": "decisions"}}, False),
        ('labels.kind="decision"', {"labels": {}}, False),
        ('labels.a="1" AND labels.b="2"', {"labels": {"a": "1", "b": "3"}}, False),
        ('labels.a="1" OR labels.b="2"', {"labels": {"a": "0", "b": "2"}}, True),
        ('(labels.a="1" AND labels.b="2") OR labels.c="3"', {"labels": {"c": "3"}}, True),
        ('labels.a="1" AND (labels.b="2" OR labels.c="3")', {"labels": {"c": "3"}}, False),
        ('NOT labels.a="1"', {"labels": {}}, True),
        ('labels.a=~"^ab"', {"labels": {"a": "abc"}}, True),
    ],
)
def test_the_filter_evaluator_itself(text, entry, expected):
    assert parse_filter(text)(entry) is expected


def test_the_filter_evaluator_refuses_what_it_does_not_understand():
    with pytest.raises(SyntaxError):
        parse_filter('labels.a >= "1"')
    with pytest.raises(SyntaxError):
        parse_extractor("SPLIT(labels.a)")
