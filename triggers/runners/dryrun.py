"""A runner that launches nothing: for trying rules against live traffic without running jobs.

`run` records a fake execution, `{job}/executions/dry-run-<first 12 characters of the ledger
key>`, so that the ledger, `triggers runs` and duplicates behave as they would for real.
`execution_status` answers the reconciler for those fake executions: each one is done, and
*succeeded* with no tasks (nothing failed, because nothing ran), with the message
``dry run: nothing was launched``, which the reconciler records as the record's reason. A real
execution name (one the dry-run runner did not make up) is not answered: it raises
RetryableRunError, so the reconciler counts an error and leaves that record alone for a pass
with the Cloud Run runner.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ..errors import RetryableRunError
from ..plan import RunRequest
from .base import Launch

PREFIX = "dry-run-"
MESSAGE = "dry run: nothing was launched"
# What `run` makes: ".../executions/dry-run-" and 12 hex characters. Cloud Run's own execution
# names end in the job's name and a 5-character suffix, so they never look like this.
_FAKE = re.compile(r"/executions/" + re.escape(PREFIX) + r"[0-9a-f]{12}$")


class DryRunRunner:
    def run(self, request: RunRequest, *, validate_only: bool = False) -> Launch:
        return Launch(execution=f"{request.job}/executions/{PREFIX}{request.ledger_key[:12]}")

    def find(self, request: RunRequest, *, since: datetime) -> Launch | None:
        return None

    def running(self, job: str) -> list[str]:
        return []  # nothing it launches runs, so `max_running` is never reached

    def cancel(self, execution: str) -> None:
        return None

    def execution_status(self, name: str) -> dict[str, Any] | None:
        """A fake execution of `run`: done, succeeded, zero tasks, `MESSAGE`. Any other name
        raises RetryableRunError (the dry-run runner cannot know about real executions)."""
        if not is_dry_run(name):
            raise RetryableRunError(
                f"{name} is not a dry-run execution: the dry-run runner cannot look it up"
                " (reconcile it with TRIGGERS_RUNNER=cloudrun)"
            )
        return {
            "name": name,
            "done": True,
            "outcome": "succeeded",
            "task_count": 0,
            "succeeded_count": 0,
            "failed_count": 0,
            "cancelled_count": 0,
            "running_count": 0,
            "retried_count": 0,
            "started_at": None,
            "completed_at": None,
            "log_uri": None,
            "message": MESSAGE,
        }


def is_dry_run(execution: str | None) -> bool:
    """Whether an execution name is one `DryRunRunner.run` made up."""
    return execution is not None and _FAKE.search(execution) is not None
