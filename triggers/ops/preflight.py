"""Preflight: for every rule, the `jobs.run` it would send, checked by Cloud Run itself.

    report = preflight(rules, CloudRunRunner(endpoint=...), live=True)
    report.ok            # every rule checked passed
    report.checks        # one RuleCheck per rule: status, problem, the request sent

For each rule the request is planned from a sample event (`triggers.rules.samples`: the rule's
`example:`, or one synthesized for its `on:` kind) exactly as the function plans it, run key
included, and, with ``live``, sent through the runner with ``validateOnly: true``: Cloud Run
checks the job exists, the caller may run it with overrides (`run.jobs.runWithOverrides`) and
accepts the overrides, and launches nothing. So a deployment learns before its first event what
would otherwise be a dead-lettered run.

Without ``live`` nothing is sent: each rule's request is only planned (what `triggers plan` does
for one event, for every rule at once).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..errors import DecodeError, RenderError, RunError
from ..rules.rule import Rule
from ..rules.ruleset import RuleSet
from ..runners.base import Runner

OK = "ok"
PLANNED = "planned"  # not live: the request was planned, nothing was sent
FAILED = "failed"
SKIPPED = "skipped"

# The role the Terraform module grants the function's account on each job; it holds
# run.jobs.runWithOverrides, which every triggers run needs (each carries TRIGGERS_RUN_KEY).
EXECUTOR_ROLE = "roles/run.jobsExecutorWithOverrides"
_REQUEST_LINE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE) \S+: ")


@dataclass(frozen=True, slots=True)
class RuleCheck:
    """What the preflight found for one rule.

    ``problem``: a short class (``job_not_found``, ``permission_denied``, ``override_refused``,
    ``not_authenticated``, ``api_error``, ``unreachable``, ``sample``) and ``message`` the API's
    own error (or why no request could be planned); ``request``: the jobs.run request as sent
    (``name``, ``overrides``, ``validateOnly``), None when none could be planned.
    """

    rule: str
    job: str
    status: str
    sample: str | None = None  # "example" or "synthesized"
    sample_mismatch: str | None = None  # why the rule would not match its synthesized sample
    problem: str | None = None
    message: str | None = None
    http_status: int | None = None
    request: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": self.rule, "job": self.job, "status": self.status}
        for name in ("sample", "sample_mismatch", "problem", "message", "http_status", "request"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


@dataclass(frozen=True, slots=True)
class Report:
    live: bool
    endpoint: str | None
    checks: list[RuleCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(check.status == FAILED for check in self.checks)

    def counts(self) -> dict[str, int]:
        counts = {OK: 0, PLANNED: 0, FAILED: 0, SKIPPED: 0}
        for check in self.checks:
            counts[check.status] += 1
        return counts

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "live": self.live,
            "endpoint": self.endpoint,
            "counts": self.counts(),
            "rules": [check.as_dict() for check in self.checks],
        }


def preflight(
    rules: RuleSet,
    runner: Runner | None,
    *,
    live: bool,
    only: Iterable[str] = (),
    include_disabled: bool = False,
    endpoint: str | None = None,
    now: datetime | None = None,
) -> Report:
    """Check every rule (or those named in ``only``); ``runner`` is needed when ``live``.

    Disabled rules are skipped unless ``include_disabled``: they are not routed to, but a rule
    about to be enabled can be checked that way. Never raises for what one rule finds.
    """
    if live and runner is None:
        raise ValueError("a live preflight needs a runner")
    wanted = set(only)
    report = Report(live=live, endpoint=endpoint)
    for rule in rules:
        if wanted and rule.name not in wanted:
            continue
        if not rule.enabled and not include_disabled:
            report.checks.append(RuleCheck(rule.name, rule.job, SKIPPED, message="disabled"))
            continue
        report.checks.append(check_rule(rule, runner if live else None, now=now))
    return report


def check_rule(rule: Rule, runner: Runner | None, *, now: datetime | None = None) -> RuleCheck:
    """One rule: plan its request from a sample event, then (with a runner) validate it."""
    from ..rules.samples import sample as sample_of

    try:
        sample = sample_of(rule, now)
    except DecodeError as exc:  # only a rule built without the loader's checks gets here
        return RuleCheck(
            rule.name, rule.job, FAILED, problem="sample", message=f"example: {exc.message}"
        )
    try:
        request = rule.plan(sample.event)
    except RenderError as exc:
        hint = "" if sample.origin == "example" else "; give the rule an `example:` event"
        return RuleCheck(
            rule.name,
            rule.job,
            FAILED,
            sample=sample.origin,
            sample_mismatch=sample.mismatch,
            problem="sample",
            message=f"no request could be planned from the {sample.origin} event: {exc}{hint}",
        )
    planned = RuleCheck(
        rule.name,
        rule.job,
        PLANNED,
        sample=sample.origin,
        sample_mismatch=sample.mismatch,
        request={"name": request.job, **request.run_job_body(), "validateOnly": True},
    )
    if runner is None:
        return planned
    try:
        runner.run(request, validate_only=True)
    except RunError as exc:
        problem, message = classify(exc, rule.job)
        return replace(
            planned, status=FAILED, problem=problem, message=message, http_status=exc.status
        )
    return replace(planned, status=OK)


def classify(exc: RunError, job: str) -> tuple[str, str]:
    """(problem class, message) of a validateOnly jobs.run that failed; the message is the
    API's, with what to do when the class says it."""
    text = _api_message(exc)
    status = exc.status
    if status == 404:
        return "job_not_found", f"{text} (create the job, or fix the rule's job/project/region)"
    if status == 403:
        return (
            "permission_denied",
            f"{text} (the caller needs run.jobs.runWithOverrides on {job}, e.g. {EXECUTOR_ROLE};"
            " run the check as the function's service account to test its grants)",
        )
    if status == 401 or _credentials_problem(exc):
        return (
            "not_authenticated",
            f"{text} (no usable credentials: `gcloud auth application-default login`, or"
            " --endpoint for the emulator)",
        )
    if status == 400:  # INVALID_ARGUMENT, FAILED_PRECONDITION: the request itself
        return "override_refused", text
    if status is None:
        return "unreachable", text
    return "api_error", text


def _api_message(exc: RunError) -> str:
    """The API's own words (`403 Forbidden: Permission 'run.jobs.runWithOverrides' denied ...`)
    rather than the runner's wrapping, which repeats the job and the request URL."""
    cause = exc.__cause__
    message = getattr(cause, "message", None)
    code = getattr(cause, "code", None)
    if isinstance(message, str) and message and isinstance(code, int):
        # The REST transport prefixes the message with the request line: it names the job
        # again and the endpoint, both in the report already.
        message = _REQUEST_LINE.sub("", message, count=1)
        return f"{code} {type(cause).__name__}: {message}"
    return str(exc)


def _credentials_problem(exc: RunError) -> bool:
    """No Application Default Credentials, or a token that could not be obtained: the call
    never left, and no endpoint is to blame."""
    try:
        from google.auth import exceptions as auth_exceptions
    except ImportError:  # pragma: no cover - google-auth comes with google-cloud-run
        return False
    return isinstance(
        exc.__cause__, auth_exceptions.DefaultCredentialsError | auth_exceptions.RefreshError
    )
