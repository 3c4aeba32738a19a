"""A rule's flow control as JSON data and back: what the compiled artifact stores of each rule's
`Flow`. Apart from rules/flow.py (which checks `limits:` and `batch:` with the pydantic schema)
so that reading the artifact imports no pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..flow.spec import Batching, Flow, Limits, WhenBusy


def flow_document(flow: Flow | None) -> dict[str, Any] | None:
    """The exact values of a Flow as JSON data (the compiled artifact stores them)."""
    if flow is None:
        return None
    limits = flow.limits
    return {
        "limits": {
            "queue": limits.queue,
            "rate_per_second": limits.rate_per_second,
            "max_running": limits.max_running,
            "when_busy": limits.when_busy.value,
            "max_wait_seconds": limits.max_wait_seconds,
        },
        "batch": None
        if flow.batch is None
        else {
            "window_seconds": flow.batch.window_seconds,
            "max_events": flow.batch.max_events,
            "per_task": flow.batch.per_task,
            "fields": None if flow.batch.fields is None else list(flow.batch.fields),
        },
    }


def flow_from_document(data: Mapping[str, Any] | None) -> Flow | None:
    """`flow_document` read back."""
    if data is None:
        return None
    limits = dict(data["limits"])
    limits["when_busy"] = WhenBusy(limits["when_busy"])
    batch = data["batch"]
    if batch is not None:
        fields = batch.get("fields")
        batch = Batching(**{**batch, "fields": None if fields is None else tuple(fields)})
    return Flow(Limits(**limits), batch)
