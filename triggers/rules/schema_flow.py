"""The flow control part of the rules schema: a rule's `limits:` and `batch:`, and the
file-level `limits:` whose fields are the defaults of every rule in the file.

Field formats and bounds are checked here (pydantic); what depends on more than one field after
the file's defaults are merged in, on the rule's system, or on other rules (two rules sharing a
queue must agree on its rate) is checked by the loader (triggers/rules/flow.py). The compiled
values are triggers.flow.spec's.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema, field_validator

from ..flow.naming import QUEUE_ID
from ..flow.spec import MAX_QUEUE_ID
from ._schema_base import Duration, SchemaModel

# Cloud Tasks refuses a queue faster than 500 dispatches per second.
MAX_RATE_PER_SECOND = 500.0
MAX_WAIT_SECONDS = 30 * 86400  # a Cloud Tasks task lives at most 31 days
MAX_BATCH_WINDOW_SECONDS = 86400
MAX_BATCH_EVENTS = 5000
MAX_BATCH_FIELDS = 100
DEFAULT_BATCH_EVENTS = 1000
DEFAULT_MAX_WAIT_SECONDS = 3600

# `60/min`: a whole number of launches per second, minute or hour. The short units are the
# documented ones; `sec`, `second`, `minute` and `hour` are accepted too, since people write
# them (`m` is not: it reads as minutes in a duration and as metres elsewhere).
RATE_UNITS = {"s": 1, "sec": 1, "second": 1, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_RATE = re.compile(r"^\s*(?P<count>[0-9]+)\s*/\s*(?P<unit>[a-z]+)\s*$")
_RATE_HELP = "write N/s, N/min or N/h with N a whole number, e.g. 60/min"


def parse_rate(value: Any) -> float:
    """`"60/min"` -> 1.0 launch per second. Raises ValueError with what is wrong."""
    match = _RATE.match(value) if isinstance(value, str) else None
    if match is None or match["unit"] not in RATE_UNITS:
        raise ValueError(f"rate {value!r} is not a rate: {_RATE_HELP}")
    per_second = int(match["count"]) / RATE_UNITS[match["unit"]]
    if per_second <= 0:
        raise ValueError(f"rate {value!r} must be more than 0")
    if per_second > MAX_RATE_PER_SECOND:
        raise ValueError(
            f"rate {value!r} is over Cloud Tasks' 500/s limit for one queue ({per_second:g}/s)"
        )
    return per_second


Rate = Annotated[
    str,
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^\s*[0-9]+\s*/\s*(s|sec|second|min|minute|h|hour)\s*$",
            "examples": ["60/min", "5/s", "100/h"],
        }
    ),
]
WhenBusyName = Literal["queue", "skip", "replace"]


class LimitsSpec(SchemaModel):
    """How fast and how many at once this rule's launches go: through a Cloud Tasks queue."""

    rate: Rate | None = Field(
        None,
        description="Launches per second, minute or hour through the rule's queue: N/s, N/min"
        " or N/h (more than 0, at most 500/s). Rules sharing a queue share its rate.",
    )
    max_running: int | None = Field(
        None,
        ge=1,
        description="At most this many executions of the rule's job running at once (counted"
        " from the job API before each launch). Only for systems that can count and cancel"
        " executions (cloudrun).",
    )
    when_busy: WhenBusyName | None = Field(
        None,
        description="What a launch does at max_running: queue (wait, up to max_wait; the"
        " default), skip (record `skipped`), replace (cancel the running ones, then launch).",
    )
    max_wait: Duration | None = Field(
        None,
        description="when_busy: queue: give up (reject, dead-letter) after waiting this long."
        " Default 1h, at most 30d.",
    )
    queue: str | None = Field(
        None,
        description="The Cloud Tasks queue id (letters, digits, '-'; at most 100). Default:"
        " triggers-<rule name>, one queue per rule.",
    )

    @field_validator("rate")
    @classmethod
    def _rate_format(cls, value: str | None) -> str | None:
        if value is not None:
            parse_rate(value)
        return value

    @field_validator("max_wait")
    @classmethod
    def _max_wait_bounds(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_WAIT_SECONDS:
            raise ValueError(f"max_wait must be between 1s and 30d, not {value}s")
        return value

    @field_validator("queue")
    @classmethod
    def _queue_id(cls, value: str | None) -> str | None:
        if value is not None and not QUEUE_ID.fullmatch(value):
            raise ValueError(
                f"queue {value!r} is not a Cloud Tasks queue id: letters, digits and '-',"
                f" 1 to {MAX_QUEUE_ID} characters"
            )
        return value


class BatchSpec(SchemaModel):
    """Collect matching events into one execution per window (and key)."""

    window: Duration = Field(
        description="How long a batch collects events, from its first: '30s', '2m', '1h'"
        " (1s to 24h)."
    )
    max_events: int = Field(
        DEFAULT_BATCH_EVENTS,
        ge=1,
        le=MAX_BATCH_EVENTS,
        description="Seal the batch early when it holds this many events (1 to 5000;"
        " default 1000).",
    )
    key: str | None = Field(
        None,
        description="Template: one open batch per value, e.g. '{{ data.bucket }}'."
        " Default: one open batch per rule.",
    )
    per_task: int = Field(
        1,
        ge=1,
        description="Events per task: task_count = ceil(events / per_task), at most 10,000."
        " Default 1.",
    )

    fields: list[str] | None = Field(
        None,
        description="The event fields each member of the manifest keeps, as dotted paths"
        " ('data.name', 'id'); a member without one leaves it out. Default: the whole event.",
    )

    @field_validator("fields")
    @classmethod
    def _field_paths(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        problems = field_path_problems(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    @field_validator("window")
    @classmethod
    def _window_bounds(cls, value: int) -> int:
        if not 1 <= value <= MAX_BATCH_WINDOW_SECONDS:
            raise ValueError(f"window must be between 1s and 24h, not {value}s")
        return value


def field_path_problems(paths: list[str]) -> list[str]:
    """What is wrong with a `batch.fields` list, every problem at once."""
    problems = []
    if not paths:
        problems.append("fields must name at least one field (leave it out for the whole event)")
    if len(paths) > MAX_BATCH_FIELDS:
        problems.append(f"fields names {len(paths)} fields, at most {MAX_BATCH_FIELDS}")
    well_formed = []
    for path in paths:
        if not path or any(not part.strip() for part in path.split(".")):
            problems.append(f"{path!r} is not a dotted field path like 'data.name'")
        elif path in well_formed:
            problems.append(f"{path!r} is named twice")
        else:
            well_formed.append(path)
    for path in well_formed:
        for other in well_formed:
            if other.startswith(path + "."):
                problems.append(f"{other!r} is inside {path!r}, which keeps it already")
    return problems


def limits_conflicts(values: dict[str, Any]) -> list[tuple[str, str, frozenset[str]]]:
    """What is wrong with a `limits:` as a whole (after the file's defaults are merged in):
    (field to blame, message about it, the fields involved) for each problem."""
    found = []
    when_busy = values.get("when_busy") or "queue"
    if values.get("max_wait") is not None and when_busy != "queue":
        found.append(
            (
                "max_wait",
                f"applies only with when_busy: queue (when_busy is {when_busy})",
                frozenset({"max_wait", "when_busy"}),
            )
        )
    return found
