"""`RunRequest`: what the rules hand to a runner — one job run plus its identity.

A RunRequest is pure data. It renders itself as the exact request its system is sent (the Cloud
Run Admin API v2 `jobs.run` REST body by default, another system's through the renderer its rule
gave it), so `triggers plan` shows users byte for byte what would be sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .events.model import EventRef

# Cloud Run's limit on one env var's value (shared/notes/delivery-and-limits.md): the rules'
# schema checks literal values against it at load, the planner rendered ones at event time.
MAX_ENV_VALUE_BYTES = 32 * 1024

# Carried in every run's env so that, after an ambiguous failure, the execution that a request
# started can be found again (`jobs.run` has no request id and execution labels are output-only).
RUN_KEY_ENV = "TRIGGERS_RUN_KEY"


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A Secret Manager version an env var takes its value from (`valueSource.secretKeyRef`).

    Only the reference travels through triggers: Cloud Run reads the value when the task starts,
    with the job's runtime service account, so no secret value reaches the function or its logs.
    """

    secret: str  # a secret id in the job's project, or projects/P/secrets/S
    version: str = "latest"

    def to_rest(self) -> dict[str, Any]:
        return {"secretKeyRef": {"secret": self.secret, "version": self.version}}


@dataclass(frozen=True, slots=True)
class Overrides:
    """Cloud Run `RunJobRequest.Overrides`, with None meaning "keep what the job has"."""

    container: str | None = None
    args: tuple[str, ...] | None = None
    clear_args: bool = False
    env: tuple[tuple[str, str], ...] = ()
    task_count: int | None = None
    timeout_seconds: int | None = None
    # Env vars whose value Cloud Run reads from Secret Manager, after the plain `env`.
    secret_env: tuple[tuple[str, SecretRef], ...] = ()

    def to_rest(self, extra_env: tuple[tuple[str, str], ...] = ()) -> dict[str, Any]:
        """The `overrides` object of the REST body, in the API's camelCase JSON mapping."""
        body: dict[str, Any] = {}
        container: dict[str, Any] = {}
        if self.container:
            container["name"] = self.container
        # The API cannot tell `args: []` from "no override" (proto3 lists have no presence),
        # so an empty list is sent as what the user meant: clear the job's args.
        clear = self.clear_args or self.args == ()
        if self.args and not clear:
            container["args"] = list(self.args)
        env: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in self.env]
        env += [{"name": name, "valueSource": ref.to_rest()} for name, ref in self.secret_env]
        env += [{"name": name, "value": value} for name, value in extra_env]
        if env:
            container["env"] = env
        if clear:
            container["clearArgs"] = True
        if container:
            body["containerOverrides"] = [container]
        if self.task_count is not None:
            body["taskCount"] = self.task_count
        if self.timeout_seconds is not None:
            body["timeout"] = f"{self.timeout_seconds}s"
        return body


def ledger_key_of(rule: str, dedup_key: str) -> str:
    """Identity of (rule, dedup key): the ledger document id and the run-key env value. A hex
    digest is a valid Firestore document id of fixed size that never hotspots, whatever the
    rendered key contains ('/', 1,500+ bytes, ...)."""
    return hashlib.sha256(f"{rule}\x00{dedup_key}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class RunIdentity:
    """Which run an event asks a rule for, before it is planned: all a ledger claim needs.

    Dispatch claims with this and renders the run's args and env only once the claim is its
    own, so a duplicate (the common redelivery) costs its dedup key and nothing more.
    """

    rule: str
    job: str
    dedup_key: str
    dedup_window_seconds: int
    event: EventRef
    _ledger_key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ledger_key", ledger_key_of(self.rule, self.dedup_key))

    @classmethod
    def of_event(cls, rule: Any, event: Any) -> RunIdentity:
        """`rule`'s run under the event's own identity (`source#id`) rather than the rule's
        dedup key: what a rejection is recorded under when the rule cannot plan the event."""
        return cls(
            rule=rule.name,
            job=rule.job,
            dedup_key=event.default_dedup_key,
            dedup_window_seconds=rule.options.dedup_window_seconds,
            event=event.ref,
        )

    @property
    def ledger_key(self) -> str:
        return self._ledger_key

    def in_scope(self, scope: str | None) -> RunIdentity:
        """See `RunRequest.in_scope`."""
        if not scope:
            return self
        return replace(self, dedup_key=f"{scope}/{self.dedup_key}")


@dataclass(frozen=True, slots=True)
class RunRequest:
    """One planned `jobs.run`: the job, its overrides and the dedup identity of this run."""

    rule: str
    job: str  # full name: projects/P/locations/R/jobs/J
    overrides: Overrides
    dedup_key: str
    dedup_window_seconds: int
    event: EventRef
    # The job system that runs it (triggers.runners.systems), and how its exact request is
    # rendered there; None: the Cloud Run v2 `jobs.run` body.
    system: str = "cloudrun"
    renderer: Callable[[RunRequest], dict[str, Any]] | None = field(
        default=None, repr=False, compare=False
    )
    _ledger_key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_ledger_key", ledger_key_of(self.rule, self.dedup_key))

    @property
    def ledger_key(self) -> str:
        """Identity of (rule, dedup key): the ledger document id and the run-key env value."""
        return self._ledger_key

    def in_scope(self, scope: str | None) -> RunRequest:
        """This request under a dedup scope: a new identity (`scope/dedup key`), so that a
        replay runs once per event again, and once only however often it is repeated."""
        if not scope:
            return self
        return replace(self, dedup_key=f"{scope}/{self.dedup_key}")

    @property
    def project(self) -> str:
        return self.job.split("/")[1]

    @property
    def region(self) -> str:
        return self.job.split("/")[3]

    @property
    def job_id(self) -> str:
        return self.job.rsplit("/", 1)[1]

    def run_job_body(self) -> dict[str, Any]:
        """The exact JSON body of `POST /v2/{job}:run`, run key included."""
        return {"overrides": self.overrides.to_rest(((RUN_KEY_ENV, self.ledger_key),))}

    def request_body(self) -> dict[str, Any]:
        """The exact request its system is sent (run key included), as the ledger records it:
        the `jobs.run` body for Cloud Run v2, the system's own request otherwise."""
        if self.renderer is None:
            return self.run_job_body()
        return self.renderer(self)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description, for the CLI, logs and the ledger."""
        request = {"name": self.job, **self.run_job_body()} if self.renderer is None else None
        return {
            "rule": self.rule,
            "system": self.system,
            "job": self.job,
            "dedup_key": self.dedup_key,
            "ledger_key": self.ledger_key,
            "event": self.event.as_dict(),
            "request": request if request is not None else self.request_body(),
        }
