"""The `Runner` protocol: how a RunRequest becomes a Cloud Run execution."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

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

    def execution_status(self, name: str) -> dict[str, Any] | None:
        """How an execution stands, for the reconciler: ``done``, ``outcome`` (succeeded,
        failed, cancelled), counts and times; None if the API no longer knows it."""
