"""A rule's flow control, compiled at load: the file's `limits:` defaults merged into the rule's
own, checked where the check needs more than one field, the rule's system or the other rules,
and built into `triggers.flow.spec.Flow`.

How the file's `limits:` and a rule's merge: field by field. Every field a rule's `limits:` does
not set is the file's; a rule without `limits:` gets the file's whole. A problem is reported once,
where it was written: a file-level field that is wrong whatever the rule is reported at the
file's `limits:`; one that is wrong only for a rule (max_running for a system that cannot count
its executions) at that rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import Problem
from ..flow.naming import default_queue_id
from ..flow.spec import Batching, Flow, Limits, WhenBusy
from .schema_flow import DEFAULT_MAX_WAIT_SECONDS, LimitsSpec, limits_conflicts, parse_rate

if TYPE_CHECKING:
    from ..runners.systems import System
    from .rule import Rule
    from .schema import RuleSpec

At = Callable[..., "int | None"]
Report = Callable[["int | None", str], None]


@dataclass(frozen=True)
class FileLimits:
    """The file-level `limits:` as written (only the fields set), and where."""

    values: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None


def file_limits(raw: Any, at: At, report: Report) -> FileLimits | None:
    """The file-level `limits:` (None when the file has none, or it is wrong: every problem
    is reported, and the rules are then checked without defaults)."""
    if raw is None:
        return None
    try:
        spec = LimitsSpec.model_validate(raw)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            where = ".".join(str(p) for p in ("limits", *loc))
            if error["type"] == "extra_forbidden":
                message = f"limits: unknown field '{loc[-1]}' (known: {', '.join(_FIELDS)})"
            elif error["type"] == "model_type":
                message = "limits: must be a mapping of " + ", ".join(_FIELDS)
            else:
                message = f"{where}: {error['msg'].removeprefix('Value error, ')}"
            report(at("limits", *loc), message)
        return None
    values = {name: getattr(spec, name) for name in spec.model_fields_set}
    ok = True
    for blame, message, _ in limits_conflicts(values):
        report(at("limits", blame), f"limits.{blame}: {message}")
        ok = False
    return FileLimits(values, at("limits")) if ok else None


_FIELDS = tuple(LimitsSpec.model_fields)


def build_flow(
    spec: RuleSpec,
    defaults: FileLimits | None,
    system: System,
    at: At,
    report: Report,
) -> Flow | None:
    """The rule's Flow (None: launched inline). Reports what is wrong and returns None then."""
    own = spec.limits
    if own is None and spec.batch is None and defaults is None:
        return None
    own_values = {} if own is None else {n: getattr(own, n) for n in own.model_fields_set}
    inherited = {} if defaults is None else dict(defaults.values)
    merged = {**inherited, **own_values}
    report_here = _Counter(report)

    blamed: set[str] = set()

    def blame(name: str, message: str, involved: frozenset[str] = frozenset()) -> None:
        blamed.add(name)
        if name in own_values:
            report_here(at("limits", name), f"limits.{name}: {message}")
            return
        # From the file's `limits:`: reported at the rule's own field it meets, if any, else at
        # the rule, which is where it does not fit.
        mine = sorted(involved & set(own_values))
        where = at("limits", mine[0]) if mine else at()
        line = None if defaults is None else defaults.line
        report_here(where, f"limits.{name} (from the file's limits: at line {line}): {message}")

    for name, message, involved in limits_conflicts(merged):
        if involved & set(own_values):  # else the file's `limits:` was reported already
            blame(name, message, involved)
    for name in ("when_busy", "max_wait"):
        if name in own_values and name not in blamed and merged.get("max_running") is None:
            blame(name, "applies only with max_running (the limit that makes it busy)")
    if merged.get("max_running") is not None and not system.counts_running:
        blame(
            "max_running",
            f"{system.title} (system: {system.name}) cannot list and cancel its running"
            " executions: max_running needs system: cloudrun",
        )
    if spec.batch is not None and "task_count" in spec.overrides.model_fields_set:
        report_here(
            at("overrides", "task_count"),
            "overrides.task_count: a batched rule's task_count is decided by its batch"
            " (ceil(events / batch.per_task)); set batch.per_task instead",
        )
    if report_here.count:
        return None

    rate = merged.get("rate")
    max_running = merged.get("max_running")
    limits = Limits(
        queue=merged.get("queue") or default_queue_id(spec.name),
        rate_per_second=None if rate is None else parse_rate(rate),
        max_running=max_running,
        # Without max_running nothing is ever busy: a `when_busy` inherited from the file then
        # says nothing, and the value stays the default so that equal flows compare equal.
        when_busy=WhenBusy(merged.get("when_busy") or "queue") if max_running else WhenBusy.QUEUE,
        max_wait_seconds=(merged.get("max_wait") if max_running else None)
        or DEFAULT_MAX_WAIT_SECONDS,
    )
    batch = None
    if spec.batch is not None:
        batch = Batching(
            window_seconds=spec.batch.window,
            max_events=spec.batch.max_events,
            per_task=spec.batch.per_task,
            fields=None if spec.batch.fields is None else tuple(spec.batch.fields),
        )
    return Flow(limits, batch)


class _Counter:
    """A report function that counts what it reported."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.count = 0

    def __call__(self, line: int | None, message: str) -> None:
        self.count += 1
        self.report(line, message)


def check_shared_queues(rules: list[Rule], problems: list[Problem]) -> None:
    """Rules sharing a queue share its rate (a queue has one): each rule whose rate differs
    from the first rule on that queue is a problem naming both."""
    first: dict[str, Rule] = {}
    for rule in rules:
        if rule.flow is None:
            continue
        queue = rule.flow.limits.queue
        other = first.setdefault(queue, rule)
        if other is rule or other.flow is None:
            continue
        mine, theirs = rule.flow.limits.rate_per_second, other.flow.limits.rate_per_second
        if mine != theirs:
            problems.append(
                Problem(
                    rule.location.file,
                    rule.location.line,
                    rule.name,
                    f"limits.rate: rules '{other.name}' ({other.location}) and '{rule.name}'"
                    f" share the queue '{queue}' but not its rate ({describe_rate(theirs)} and"
                    f" {describe_rate(mine)}): give them the same rate, or each its own queue",
                )
            )


def describe_rate(per_second: float | None) -> str:
    """A rate as people write it, in the largest unit that makes it whole: 1.0 -> `1/s`,
    0.5 -> `30/min`, 1/3600 -> `1/h`."""
    if per_second is None:
        return "unlimited"
    for unit, seconds in (("s", 1), ("min", 60), ("h", 3600)):
        count = per_second * seconds
        if abs(count - round(count)) < 1e-9 and round(count) >= 1:
            return f"{round(count)}/{unit}"
    return f"{per_second:g}/s"


def flow_summary(flow: Flow) -> dict[str, Any]:
    """A rule's flow control as plain data (`triggers plan --json`, `validate --json`)."""
    limits = flow.limits
    out: dict[str, Any] = {
        "queue": limits.queue,
        "rate": describe_rate(limits.rate_per_second) if limits.rate_per_second else None,
        "rate_per_second": limits.rate_per_second,
        "max_running": limits.max_running,
        "when_busy": limits.when_busy.value if limits.max_running else None,
        "max_wait_seconds": (
            limits.max_wait_seconds
            if limits.max_running and limits.when_busy is WhenBusy.QUEUE
            else None
        ),
        "batch": None,
    }
    if flow.batch is not None:
        out["batch"] = {
            "window_seconds": flow.batch.window_seconds,
            "max_events": flow.batch.max_events,
            "per_task": flow.batch.per_task,
            "fields": None if flow.batch.fields is None else list(flow.batch.fields),
        }
    return out


def flow_lines(flow: Flow, batch_key: str | None) -> list[str]:
    """A rule's flow control in words, one line per part (`validate` and `plan` print them)."""
    summary = flow_summary(flow)
    parts = [f"queue {summary['queue']}"]
    parts.append(f"rate {summary['rate']}" if summary["rate"] else "no rate limit")
    if summary["max_running"]:
        busy = summary["when_busy"]
        if summary["max_wait_seconds"] is not None:
            busy += f" up to {_seconds(summary['max_wait_seconds'])}"
        parts.append(f"max_running {summary['max_running']} (when busy: {busy})")
    lines = ["limits: " + ", ".join(parts)]
    if flow.batch is not None:
        lines.append(
            f"batch: window {_seconds(flow.batch.window_seconds)}, up to"
            f" {flow.batch.max_events} events, {flow.batch.per_task} per task, key "
            + (repr(batch_key) if batch_key else "none (one batch at a time)")
            + ("" if flow.batch.fields is None else ", fields " + ", ".join(flow.batch.fields))
        )
    return lines


def _seconds(value: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}s"
