"""A runner that launches nothing: for trying rules against live traffic without running jobs."""

from __future__ import annotations

from datetime import datetime

from ..plan import RunRequest
from .base import Launch


class DryRunRunner:
    def run(self, request: RunRequest, *, validate_only: bool = False) -> Launch:
        return Launch(execution=f"{request.job}/executions/dry-run-{request.ledger_key[:12]}")

    def find(self, request: RunRequest, *, since: datetime) -> Launch | None:
        return None
