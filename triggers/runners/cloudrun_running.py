"""What `max_running` needs from the Cloud Run Admin API v2: the job's running executions, and
cancelling one (`when_busy: replace`). Used by `CloudRunRunner.running` / `.cancel`.

An execution runs until it has a completion time (the API sets it once every task finished,
failed or was cancelled). ListExecutions answers newest first, in pages; a long-running
execution may be older than many finished ones, so every page is read, within a time budget
(past it: RetryableRunError, since a count that is not known is no answer).
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import RetryableRunError

# The largest page ListExecutions serves (the API caps page_size at 1000; cloudrun.py too).
MAX_PAGE_SIZE = 1000


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def running_executions(client: Any, job: str, *, timeout: float, budget: float) -> list[str]:
    """Names of the executions of ``job`` that have no completion time yet, newest first."""
    from google.cloud import run_v2

    deadline = time.monotonic() + budget
    names: list[str] = []
    page_token = ""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise RetryableRunError(
                f"counting the running executions of {job} took more than {budget:g} s"
            )
        try:
            page = client.list_executions(
                request=run_v2.ListExecutionsRequest(
                    parent=job, page_size=MAX_PAGE_SIZE, page_token=page_token
                ),
                timeout=min(timeout, remaining),
            )
        except Exception as exc:
            status = getattr(exc, "code", None)
            raise RetryableRunError(
                f"listing the executions of {job} failed: {_describe(exc)}",
                status=status if isinstance(status, int) else None,
            ) from exc
        names.extend(e.name for e in page.executions if not e.completion_time)
        page_token = page.next_page_token
        if not page_token:
            return names


def cancel_execution(client: Any, name: str, *, timeout: float) -> None:
    """Ask the API to cancel ``name`` and return without waiting for it to stop. An execution
    that is gone or already finished (404, 400/FAILED_PRECONDITION) needs nothing more."""
    from google.api_core import exceptions as gexc

    try:
        client.cancel_execution(name=name, timeout=timeout)
    except (gexc.NotFound, gexc.FailedPrecondition, gexc.BadRequest):
        return
    except Exception as exc:
        status = getattr(exc, "code", None)
        raise RetryableRunError(
            f"cancelling {name} failed: {_describe(exc)}",
            status=status if isinstance(status, int) else None,
        ) from exc
