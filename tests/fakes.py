"""Test doubles shared by the unit and integration tests (pure: no I/O)."""

from __future__ import annotations

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


class ScriptedRunner:
    """A Runner whose runs succeed unless a failure is queued for the job.

    A queued RunError is raised before anything starts, except an AmbiguousRunError, which
    starts the execution and then raises (the response was lost). `find` knows every execution
    it started, by ledger key, as Cloud Run knows them by TRIGGERS_RUN_KEY.
    """

    def __init__(self) -> None:
        self.failures: dict[str, list[Exception]] = {}
        self.executions: dict[str, list[str]] = {}  # ledger key -> executions started
        self.run_calls = 0
        self.find_calls = 0

    def fail(self, job_id: str, *errors: Exception) -> None:
        self.failures.setdefault(job_id, []).extend(errors)

    def run(self, request, *, validate_only=False) -> Launch:
        self.run_calls += 1
        queued = self.failures.get(request.job_id)
        error = queued.pop(0) if queued else None
        if error is not None and not isinstance(error, AmbiguousRunError):
            raise error
        name = f"{request.job}/executions/{request.job_id}-{self.run_calls}"
        self.executions.setdefault(request.ledger_key, []).append(name)
        if error is not None:
            raise error
        return Launch(execution=name, operation=f"op-{self.run_calls}")

    def find(self, request, *, since) -> Launch | None:
        self.find_calls += 1
        started = self.executions.get(request.ledger_key)
        return Launch(execution=started[-1], adopted=True) if started else None


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
      args: ["{{ data.missing_field }}"]
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
