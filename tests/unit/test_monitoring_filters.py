"""The Terraform module's log-based metrics (terraform/monitoring.tf) select the log lines the
function and the reconciler really write.

Each metric's filter and label extractors are read from monitoring.tf (python-hcl2), evaluated by
a small interpreter of the subset of the Logging query language the module uses (comparisons
`=`, `!=`, `=~`, `:` of a field path with a quoted string; AND, OR, NOT, parentheses; EXTRACT and
REGEXP_EXTRACT), and run over lines captured from the real `App` (memory ledger, scripted runner)
and the real reconciler, written by `logs.configure` to a buffer and turned into the log entries
Cloud Logging makes of them (JSON payload, `logging.googleapis.com/labels` -> labels, the
function's Cloud Run service as resource).
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import ScriptedRunner
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
MONITORING = ROOT / "terraform" / "monitoring.tf"
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


# -- the Logging query language subset ---------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<paren>[()])
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>=~|!=|=|:)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.\-/]*)
    )""",
    re.VERBOSE,
)


def _tokens(text: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if not match:
            raise SyntaxError(f"cannot read the filter at {text[position:]!r}")
        kind = match.lastgroup
        assert kind is not None
        found.append((kind, match.group(kind)))
        position = match.end()
    return found


Entry = dict[str, Any]
Predicate = Callable[[Entry], bool]


def _field(entry: Entry, path: str) -> Any:
    value: Any = entry
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _compare(path: str, op: str, literal: str) -> Predicate:
    expected = json.loads(literal)

    def test(entry: Entry) -> bool:
        value = _field(entry, path)
        if op == "!=":
            return value is None or str(value) != expected
        if value is None:
            return False
        text = str(value)
        if op == "=":
            return text == expected
        if op == ":":
            return expected.lower() in text.lower()
        return re.search(expected, text) is not None  # =~

    return test


class _Parser:
    """expr := term (OR term)*; term := factor ([AND] factor)*; factor := NOT factor |
    ( expr ) | FIELD OP STRING.  (AND binds tighter than OR only in this subset's uses.)"""

    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0

    def parse(self) -> Predicate:
        predicate = self._expr()
        if self.at != len(self.tokens):
            raise SyntaxError(f"unexpected {self.tokens[self.at]!r}")
        return predicate

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _take(self) -> tuple[str, str]:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def _expr(self) -> Predicate:
        parts = [self._term()]
        while self._peek() == ("word", "OR"):
            self._take()
            parts.append(self._term())
        return lambda entry: any(part(entry) for part in parts)

    def _term(self) -> Predicate:
        parts = [self._factor()]
        while (token := self._peek()) is not None and token not in (("word", "OR"), ("paren", ")")):
            if token == ("word", "AND"):
                self._take()
            parts.append(self._factor())
        return lambda entry: all(part(entry) for part in parts)

    def _factor(self) -> Predicate:
        kind, value = self._take()
        if (kind, value) == ("word", "NOT"):
            inner = self._factor()
            return lambda entry: not inner(entry)
        if (kind, value) == ("paren", "("):
            inner = self._expr()
            if self._take() != ("paren", ")"):
                raise SyntaxError("missing )")
            return inner
        if kind != "word":
            raise SyntaxError(f"expected a field, not {value!r}")
        op_kind, op = self._take()
        literal_kind, literal = self._take()
        if op_kind != "op" or literal_kind != "string":
            raise SyntaxError(f'expected FIELD OP "VALUE" after {value}')
        return _compare(value, op, literal)


def parse_filter(text: str) -> Predicate:
    return _Parser(text).parse()


_EXTRACT = re.compile(r"^EXTRACT\(([\w.]+)\)$")
_REGEXP_EXTRACT = re.compile(r'^REGEXP_EXTRACT\(([\w.]+),\s*("(?:[^"\\]|\\.)*")\)$')


def parse_extractor(text: str) -> Callable[[Entry], str]:
    """A label extractor; an absent field gives the empty label value."""
    if match := _EXTRACT.match(text):
        path = match.group(1)
        return lambda entry: str(_field(entry, path) or "")
    if match := _REGEXP_EXTRACT.match(text):
        path, pattern = match.group(1), re.compile(json.loads(match.group(2)))

        def extract(entry: Entry) -> str:
            found = pattern.search(str(_field(entry, path) or ""))
            return found.group(1) if found else ""

        return extract
    raise SyntaxError(f"unknown extractor {text!r}")


# -- the metrics as monitoring.tf declares them -------------------------------------------------


def _hcl_string(value: str) -> str:
    """python-hcl2 8 keeps a literal's quotes and escapes; 7 does not."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value.replace('\\"', '"').replace("\\\\", "\\")


def _resolve(value: str, names: dict[str, str]) -> str:
    resolved = _hcl_string(value)
    while "${" in resolved:
        resolved = re.sub(r"\$\{([^{}]+)\}", lambda m: names[m.group(1)], resolved)
    return resolved


@dataclass
class Metric:
    name: str
    matches: Predicate
    labels: dict[str, Callable[[Entry], str]]

    def count(self, entries: list[Entry]) -> Counter[tuple[tuple[str, str], ...]]:
        """Time series (label values) -> how many entries the metric counts."""
        return Counter(
            tuple(sorted((key, extract(entry)) for key, extract in self.labels.items()))
            for entry in entries
            if self.matches(entry)
        )


@pytest.fixture(scope="module")
def metrics() -> dict[str, Metric]:
    module = hcl2.load(MONITORING.open())
    local_values: dict[str, Any] = {}
    for block in module["locals"]:
        local_values.update(block)
    (resource,) = [
        body
        for block in module["resource"]
        for kind, named in block.items()
        for name, body in named.items()
        if (_hcl_string(kind), _hcl_string(name)) == ("google_logging_metric", "rule")
    ]
    names = {
        "var.name": FUNCTION,
        "local.reconcile_name": RECONCILER,
        "local.monitoring_scope": _hcl_string(local_values["monitoring_scope"]),
        "local.reason_extractor": _hcl_string(local_values["reason_extractor"]),
    }
    names = {key: _resolve(value, names) for key, value in names.items()}
    declared: dict[str, Metric] = {}
    for metric_id, spec in local_values["log_metrics"].items():
        filter_text = _resolve(
            resource["filter"], {**names, "each.value.filter": _hcl_string(spec["filter"])}
        )
        declared[metric_id] = Metric(
            metric_id,
            parse_filter(filter_text),
            {key: parse_extractor(_resolve(text, names)) for key, text in spec["labels"].items()},
        )
    return declared


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
        labels = line.pop("logging.googleapis.com/labels", {})
        return {
            "resource": {"type": "cloud_run_revision", "labels": {"service_name": self.service}},
            "severity": line.get("severity"),
            "labels": labels,
            "jsonPayload": line,
        }


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


def series(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


def counts(metrics: dict[str, Metric], entries: list[Entry]) -> dict[str, Counter]:
    """Every metric's counts; metrics that counted nothing are left out."""
    found = {name: metric.count(entries) for name, metric in metrics.items()}
    return {name: counted for name, counted in found.items() if counted}


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
