"""Test doubles shared by the unit and integration tests (pure: no I/O)."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from triggers.errors import AmbiguousRunError
from triggers.events.model import STORAGE_FINALIZED, Event
from triggers.runners.base import Launch


@dataclass
class Clock:
    """A clock that stands still until a test moves it."""

    now: datetime = field(default_factory=lambda: datetime(2026, 11, 21, 12, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta | None = None, **parts: float) -> None:
        self.now += (delta or timedelta()) + timedelta(**parts)


@dataclass(frozen=True)
class Ambiguous:
    """A scripted ambiguous failure of `ScriptedRunner.run` (queue it with `fail`).

    started: whether the call started the execution (a lost response) or not (a timeout
        before the API acted: the same error, nothing to adopt).
    appears_after: how long after the call the execution comes into existence (a `jobs.run`
        the API was still working on when the client gave up); `find` does not see it, and
        its creation time is not reached, until the runner's clock has moved that far.
    """

    error: AmbiguousRunError
    started: bool = True
    appears_after: timedelta = timedelta()


class ScriptedRunner:
    """A Runner whose runs succeed unless a failure is queued for the job.

    A queued RunError is raised before anything starts, except an AmbiguousRunError, which
    starts the execution and then raises (the response was lost); queue an `Ambiguous` for the
    other ambiguous cases (nothing started, or the execution appears late). `find` knows every
    execution it started, by ledger key, as Cloud Run knows them by TRIGGERS_RUN_KEY, and like
    Cloud Run answers only those created at or after ``since`` and already in existence by
    ``clock`` (default: the wall clock). `fail_find` queues errors for the next `find` calls.
    """

    def __init__(self, clock=None) -> None:
        self.failures: dict[str, list[Exception | Ambiguous]] = {}
        self.find_failures: list[Exception] = []
        self.executions: dict[str, list[str]] = {}  # ledger key -> executions started
        self.created: dict[str, datetime] = {}  # execution -> when it comes into existence
        self.run_calls = 0
        self.find_calls = 0
        self.find_sinces: list[datetime] = []
        self.clock = clock or (lambda: datetime.now(UTC))

    def fail(self, job_id: str, *errors: Exception | Ambiguous) -> None:
        self.failures.setdefault(job_id, []).extend(errors)

    def fail_find(self, *errors: Exception) -> None:
        self.find_failures.extend(errors)

    def run(self, request, *, validate_only=False) -> Launch:
        self.run_calls += 1
        queued = self.failures.get(request.job_id)
        error = queued.pop(0) if queued else None
        scripted = error if isinstance(error, Ambiguous) else None
        if scripted is None and isinstance(error, AmbiguousRunError):
            scripted = Ambiguous(error)
        if error is not None and scripted is None:
            raise error
        name = f"{request.job}/executions/{request.job_id}-{self.run_calls}"
        if scripted is None or scripted.started:
            delay = scripted.appears_after if scripted is not None else timedelta()
            self.executions.setdefault(request.ledger_key, []).append(name)
            self.created[name] = self.clock() + delay
        if scripted is not None:
            raise scripted.error
        return Launch(execution=name, operation=f"op-{self.run_calls}")

    def find(self, request, *, since) -> Launch | None:
        self.find_calls += 1
        self.find_sinces.append(since)
        if self.find_failures:
            raise self.find_failures.pop(0)
        now = self.clock()
        visible = [
            name
            for name in self.executions.get(request.ledger_key, [])
            if since <= self.created.get(name, since) <= now
        ]
        return Launch(execution=visible[-1], adopted=True) if visible else None

    def started(self, request) -> int:
        """How many executions carry this request's run key (visible yet or not)."""
        return len(self.executions.get(request.ledger_key, []))


# Three storage rules: two that always launch, one whose template fails for `strict/` objects.
STORAGE_RULES_YAML = """\
project: demo-project
region: europe-west1
rules:
  - name: load
    on: storage.finalized
    job: loader
    overrides:
      args: ["{{ data.name }}"]
  - name: audit
    on: storage.finalized
    job: auditor
  - name: needs-field
    on: storage.finalized
    match: {data: {name: [{prefix: "strict/"}]}}
    job: strict
    overrides:
      args: ["{{ event.missing_field }}"]
"""


def storage_event(name: str = "incoming/a.csv", event_id: str = "e-1") -> Event:
    """An object finalized in bucket `raw`, as an Eventarc binary CloudEvent decodes."""
    return Event(
        id=event_id,
        source="//storage.googleapis.com/projects/_/buckets/raw",
        type=STORAGE_FINALIZED,
        kind="storage",
        form="cloudevent-binary",
        data={"bucket": "raw", "name": name, "generation": 1},
    )


class RecordedSpan:
    def __init__(self, name: str, attributes: dict) -> None:
        self.name = name
        self.attributes = dict(attributes)

    def set(self, key: str, value) -> None:
        self.attributes[key] = value


class RecordingSpans:
    """Every span opened, in order, with its attributes (pure: the `Spans` protocol in memory)."""

    def __init__(self) -> None:
        self.opened: list[RecordedSpan] = []

    @contextmanager
    def span(self, name: str, **attributes):
        span = RecordedSpan(name, attributes)
        self.opened.append(span)
        yield span

    def request(self, headers):
        return self.span("triggers.request")

    def writes(self) -> list[str]:
        """The ledger writes recorded, in order (`triggers.record` spans)."""
        return [s.attributes.get("write") for s in self.opened if s.name == "triggers.record"]


def route_counted(monkeypatch, rules, data, event_type=STORAGE_FINALIZED):
    """(the rules an event with `data` routes to, the rules evaluated to find them); and checks
    that the index found exactly what a full scan finds."""
    from triggers.rules.rule import Rule

    evaluated: list[str] = []
    original = Rule.matches_content
    monkeypatch.setattr(
        Rule, "matches_content", lambda self, d: evaluated.append(self.name) or original(self, d)
    )
    event = Event(
        id="1", source="s", type=event_type, kind="storage", form="cloudevent-binary", data=data
    )
    found = [r.name for r in rules.route(event)]
    routed = list(evaluated)
    monkeypatch.setattr(Rule, "matches_content", original)  # the scan below is not counted
    assert found == [r.name for r in rules._router.scan(event)]
    return found, routed
