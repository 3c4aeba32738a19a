"""The `Runner` protocol: how a RunRequest becomes a Cloud Run execution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from ..errors import PermanentRunError
from ..plan import RunRequest


@dataclass(frozen=True, slots=True)
class Launch:
    """What a runner learned about the execution it started (or found)."""

    execution: str  # projects/P/locations/R/jobs/J/executions/E
    operation: str | None = None
    adopted: bool = False  # found by run key after an ambiguous failure, not started now


class Runner(Protocol):
    def run(self, request: RunRequest, *, validate_only: bool = False) -> Launch:
        """Start one execution and return as soon as its name is known; never wait for it.

        Raises PermanentRunError, RetryableRunError or AmbiguousRunError (triggers.errors).
        """

    def find(self, request: RunRequest, *, since: datetime) -> Launch | None:
        """A recent execution of the request's job that carries its run key, if any."""

    def running(self, job: str) -> list[str]:
        """Names of the job's executions that have not finished (`max_running`). Only Cloud
        Run v2 answers; other systems raise PermanentRunError (`unsupported_running`)."""

    def cancel(self, execution: str) -> None:
        """Ask the API to cancel a running execution (`when_busy: replace`); do not wait."""

    def execution_status(self, name: str) -> dict[str, Any] | None:
        """How an execution stands, for the reconciler: ``done``, ``outcome`` (succeeded,
        failed, cancelled), counts and times; None if the API no longer knows it."""


def unsupported_running(system: str) -> PermanentRunError:
    """What `running` and `cancel` raise on a system that has no concurrency limits."""
    return PermanentRunError(
        f"max_running and when_busy need system cloudrun (Cloud Run Admin API v2); {system}"
        " cannot count or cancel executions"
    )
