"""A compiled rule: decides whether an event matches, and plans the run it asks for.

Everything here is pure and was compiled at load time; per event we only evaluate.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import RenderError
from ..events.model import Event
from ..flow.spec import Flow
from ..plan import MAX_ENV_VALUE_BYTES, Overrides, RunIdentity, RunRequest, SecretRef
from ..runners.systems import renderer_of
from ._frozen import Frozen, init
from .condition import Condition
from .patterns import Pattern
from .templates import Template

if TYPE_CHECKING:  # pragma: no cover - the schema (pydantic) is not needed to route or plan
    from .schema import RuleSpec

MAX_DEDUP_KEY_BYTES = 4096
# The overrides of one run (args and env together): the ledger record keeps them next to at most
# 256 KiB of event document, and a Firestore document holds 1 MiB in all.
MAX_RUN_OVERRIDES_BYTES = 512 * 1024
_RAW_PUSH_HINT = (
    " (a raw Pub/Sub push names its topic only when its push endpoint carries"
    " ?topic=projects/P/topics/T, as the Terraform module's do; else scope the rule with"
    " `subscription:`)"
)


class Location(Frozen):
    __slots__ = ("file", "line")
    file: str
    line: int | None

    def __init__(self, file: str, line: int | None) -> None:
        init(self, "file", file)
        init(self, "line", line)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line is not None else self.file


class Verdict(Frozen):
    """One rule's answer for one event, as `triggers plan` shows it."""

    __slots__ = ("rule", "matched", "reason", "request", "error")
    rule: Rule
    matched: bool
    reason: str | None  # why it did not match
    request: RunRequest | None
    error: RenderError | None  # matched, but the run could not be planned

    def __init__(
        self,
        rule: Rule,
        matched: bool,
        reason: str | None = None,
        request: RunRequest | None = None,
        error: RenderError | None = None,
    ) -> None:
        init(self, "rule", rule)
        init(self, "matched", matched)
        init(self, "reason", reason)
        init(self, "request", request)
        init(self, "error", error)


class RunOptions(Frozen):
    """What planning needs of a rule's spec besides its templates. Rules with the same values
    share one instance (the loaders intern them): most rules of a large set have one of a few."""

    __slots__ = (
        "enabled",
        "system",
        "container",
        "clear_args",
        "task_count",
        "timeout_seconds",
        "secret_env",
        "dedup_window_seconds",
    )
    enabled: bool
    system: str
    container: str | None
    clear_args: bool
    task_count: int | None
    timeout_seconds: int | None
    secret_env: tuple[tuple[str, SecretRef], ...]
    dedup_window_seconds: int

    def __init__(
        self,
        enabled: bool,
        system: str,
        container: str | None,
        clear_args: bool,
        task_count: int | None,
        timeout_seconds: int | None,
        secret_env: tuple[tuple[str, SecretRef], ...],
        dedup_window_seconds: int,
    ) -> None:
        init(self, "enabled", enabled)
        init(self, "system", system)
        init(self, "container", container)
        init(self, "clear_args", clear_args)
        init(self, "task_count", task_count)
        init(self, "timeout_seconds", timeout_seconds)
        init(self, "secret_env", secret_env)
        init(self, "dedup_window_seconds", dedup_window_seconds)

    @classmethod
    def of(cls, spec: RuleSpec) -> RunOptions:
        overrides = spec.overrides
        return cls(
            enabled=spec.enabled,
            system=spec.system,
            container=overrides.container,
            clear_args=overrides.clear_args,
            task_count=overrides.task_count,
            timeout_seconds=overrides.timeout,
            secret_env=tuple(
                (name, SecretRef(ref.secret, ref.version))
                for name, ref in overrides.secret_env.items()
            ),
            dedup_window_seconds=spec.dedup.window,
        )


class Rule(Frozen):
    """A compiled rule. Immutable; two rules are equal only if they are the same object.

    It keeps what matching and planning read, not the pydantic spec: `spec_source` is the
    spec's JSON text (see _spec_text.py) until `spec` is first asked for, and the RuleSpec then.
    """

    __slots__ = (
        "name",
        "spec_source",
        "options",
        "types",
        "job",
        "location",
        "scope",
        "pattern",
        "condition",
        "args",
        "env",
        "dedup_key",
        "schedule",
        "template_lines",
        "flow",
        "batch_key",
    )
    name: str
    spec_source: RuleSpec | str
    options: RunOptions
    types: frozenset[str]
    job: str
    location: Location
    scope: Pattern | None  # constraints implied by topic/subscription/bucket/scheduler job
    pattern: Pattern | None
    condition: Condition | None
    args: tuple[Template, ...] | None
    env: tuple[tuple[str, Template], ...]
    dedup_key: Template | None
    # The cron schedule of the Scheduler job the rule owns (`schedule:`), to name ticks.
    schedule: Any
    # Where each template came from, e.g. {"args[0]": 12}, so render errors point at a line.
    template_lines: Mapping[str, int]
    # Flow control (`limits:` / `batch:`, triggers.flow.spec.Flow), None for inline launches;
    # and the batch key template of a batched rule (None: one open batch per rule).
    flow: Flow | None
    batch_key: Template | None

    def __init__(
        self,
        name: str,
        spec_source: RuleSpec | str,
        options: RunOptions,
        types: frozenset[str],
        job: str,
        location: Location,
        scope: Pattern | None,
        pattern: Pattern | None,
        condition: Condition | None,
        args: tuple[Template, ...] | None,
        env: tuple[tuple[str, Template], ...],
        dedup_key: Template | None,
        schedule: Any = None,
        template_lines: Mapping[str, int] | None = None,
        flow: Flow | None = None,
        batch_key: Template | None = None,
    ) -> None:
        init(self, "name", name)
        init(self, "spec_source", spec_source)
        init(self, "options", options)
        init(self, "types", types)
        init(self, "job", job)
        init(self, "location", location)
        init(self, "scope", scope)
        init(self, "pattern", pattern)
        init(self, "condition", condition)
        init(self, "args", args)
        init(self, "env", env)
        init(self, "dedup_key", dedup_key)
        init(self, "schedule", schedule)
        init(self, "template_lines", {} if template_lines is None else template_lines)
        init(self, "flow", flow)
        init(self, "batch_key", batch_key)

    __eq__ = object.__eq__  # identity, as the dataclass with eq=False had
    __hash__ = object.__hash__

    @property
    def spec(self) -> RuleSpec:
        """The rule as written (validated), rebuilt from its JSON text on first use."""
        source = self.spec_source
        if isinstance(source, str):
            from ._spec_text import load_spec

            source = load_spec(source, self.pattern)
            # Kept: tools that ask once ask again. Two threads may both build it; equal specs.
            init(self, "spec_source", source)
        return source

    @property
    def enabled(self) -> bool:
        return self.options.enabled

    # -- matching ---------------------------------------------------------------------------

    def matches(self, event: Event) -> bool:
        if event.type not in self.types:
            return False
        return self.matches_content(event.document)

    def matches_content(self, document: Mapping[str, Any]) -> bool:
        """The content part of matching, for callers (the router) that checked the type."""
        if self.scope is not None and not self.scope.matches(document):
            return False
        if self.pattern is not None and not self.pattern.matches(document):
            return False
        return self.condition is None or self.condition.evaluate(document)[0]

    def explain(self, event: Event) -> str | None:
        """None when the rule matches; otherwise the first reason it does not."""
        if event.type not in self.types:
            wanted = ", ".join(sorted(self.types))
            return f"type: {event.type!r} is not {wanted}"
        document = event.document
        for constraint in (self.scope, self.pattern):
            if constraint is not None:
                reason = constraint.explain(document)
                if reason is not None:
                    if constraint is self.scope and reason.startswith("data.topic: null"):
                        reason += _RAW_PUSH_HINT
                    return reason
        if self.condition is not None:
            return self.condition.evaluate(document)[1]
        return None

    # -- planning ---------------------------------------------------------------------------

    def identify(self, event: Event) -> RunIdentity:
        """Which run `event` asks for: its dedup key rendered, nothing else. Raises RenderError
        (permanent) when the key's template fails or renders empty or too long."""
        if self.dedup_key is None:
            key = self._default_key(event)
        else:
            key = self._render("dedup.key", self.dedup_key, event.document)
            if not key.strip():
                raise self._error("dedup.key", "rendered to an empty key")
        if self._utf8_size("dedup.key", key) > MAX_DEDUP_KEY_BYTES:
            raise self._error("dedup.key", f"rendered key is over {MAX_DEDUP_KEY_BYTES} bytes")
        return RunIdentity(
            rule=self.name,
            job=self.job,
            dedup_key=key,
            dedup_window_seconds=self.options.dedup_window_seconds,
            event=event.ref,
        )

    def plan(self, event: Event, identity: RunIdentity | None = None) -> RunRequest:
        """The run this rule asks for. Raises RenderError (permanent) when a template fails.

        identity: what `identify` gave for this event (dispatch claims with it first), so that
        the dedup key is not rendered twice; its dedup key is used as it is (scope included).
        """
        if identity is None:
            identity = self.identify(event)
        document = event.document
        options = self.options
        args = None
        if self.args is not None:
            args = tuple(self._render(f"args[{i}]", t, document) for i, t in enumerate(self.args))
        env = tuple((name, self._render(f"env.{name}", t, document)) for name, t in self.env)
        total = sum(self._utf8_size(f"args[{i}]", a) for i, a in enumerate(args or ()))
        for name, value in env:
            size = self._utf8_size(f"env.{name}", value)
            if size > MAX_ENV_VALUE_BYTES:
                raise self._error(f"env.{name}", "rendered value is over Cloud Run's 32 KiB limit")
            total += size
        if total > MAX_RUN_OVERRIDES_BYTES:
            raise self._error(
                "overrides",
                f"value_too_large: rendered args and env are {total} bytes, over the"
                f" {MAX_RUN_OVERRIDES_BYTES} bytes a run's ledger record can hold",
            )
        return RunRequest(
            rule=self.name,
            job=self.job,
            overrides=Overrides(
                container=options.container,
                args=args,
                clear_args=options.clear_args,
                env=env,
                task_count=options.task_count,
                timeout_seconds=options.timeout_seconds,
                secret_env=options.secret_env,
            ),
            dedup_key=identity.dedup_key,
            dedup_window_seconds=identity.dedup_window_seconds,
            event=identity.event,
            system=options.system,
            renderer=renderer_of(options.system),
        )

    def _default_key(self, event: Event) -> str:
        """`source#id`, or `job#tick` for a Scheduler tick.

        A tick that came through a Pub/Sub target carries no schedule time (Scheduler adds no
        attributes), so the decoder used the publish time, and Scheduler's own publish retries
        have later ones. When the rule owns the schedule, the tick is the last fire time at or
        before the publish: the same for every retry of one tick.
        """
        data = event.data
        if (
            self.schedule is not None
            and event.form == "scheduler-pubsub"
            and isinstance(data, dict)
            and data.get("schedule_time_inferred")
        ):
            try:
                published = datetime.fromisoformat(str(data["schedule_time"]))
                tick = self.schedule.previous_before(published)
            except (KeyError, ValueError):
                return event.default_dedup_key
            return f"{data.get('job_name')}#{tick.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        return event.default_dedup_key

    def verdict(self, event: Event) -> Verdict:
        reason = self.explain(event)
        if reason is not None:
            return Verdict(self, matched=False, reason=reason)
        try:
            return Verdict(self, matched=True, request=self.plan(event))
        except RenderError as exc:
            return Verdict(self, matched=True, error=exc)

    def _render(self, field_name: str, template: Template, document: Mapping[str, Any]) -> str:
        try:
            return template.render(document)
        except Exception as exc:  # Jinja raises UndefinedError, SecurityError, TypeError, ...
            raise self._error(field_name, f"{type(exc).__name__}: {exc}") from None

    def _utf8_size(self, field_name: str, value: str) -> int:
        """The size of a rendered value as sent; a value UTF-8 cannot encode (a lone surrogate
        a template literal made: event content was checked when decoded) can never be hashed,
        stored or sent, which makes it a permanent rejection, not an error to retry."""
        try:
            return len(value.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise self._error(
                field_name,
                f"bad_encoding: rendered value holds U+{ord(value[exc.start]):04X} at character"
                f" {exc.start}, which UTF-8 cannot encode",
            ) from None

    def _error(self, field_name: str, message: str) -> RenderError:
        line = self.template_lines.get(field_name, self.location.line)
        where = str(Location(self.location.file, line))
        return RenderError(self.name, field_name, where, message)
