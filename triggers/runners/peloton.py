"""The Uber Peloton runner: batch jobs through the v0 JobManager, over YARPC-HTTP with `requests`.

    runner = PelotonRunner("http://peloton-jobmgr:5292")    # POST {endpoint}/api/v1
    launch = runner.run(request)       # JobManager::Create with the job id of the ledger key
    launch = runner.find(request, since=...)                # JobManager::Get of that same id
    runner.execution_status("peloton/jobs/<uuid>")          # JobManager::Get, runtime.state

A rule's ``job:`` names a *job template*: ``<templates dir>/<job>.yaml``, a Peloton ``JobConfig``
as the Peloton CLI's job YAML writes it (camelCase fields: name, respoolID, instanceCount, sla,
defaultConfig.command...). The directory is ``TRIGGERS_PELOTON_TEMPLATES`` (default
``config/peloton``). `render_create` copies the template, applies the rule's overrides (command
arguments, environment, ``instanceCount``, ``sla.maxRunningTime``), adds ``TRIGGERS_RUN_KEY`` to
the environment and the run key as a label, and gives the job a UUID derived from the ledger
key: the exact ``CreateRequest`` that `triggers plan` prints and the ledger records.

Dedup is Peloton's own: ``Create`` with a client-chosen id answers ``alreadyExists`` for an id
it has, so a repeat can never start a second job; the runner adopts the existing one. After an
ambiguous failure, `find` is a ``Get`` of that id: always before any new ``Create``.

Errors (docs/runners.md#peloton): YARPC ``unavailable`` "not leader" and ``resource-exhausted``
(rate limit), and connections that were never made, are retryable (nothing was acted on);
``invalid-argument``, ``unimplemented``, ``permission-denied``, ``unauthenticated``,
``not-found``, ``failed-precondition`` and the in-body ``invalidConfig`` / ``invalidJobId`` are
permanent; anything else (5xx, timeouts, connections lost after sending) is ambiguous.

`requests` is imported on first use. The session never retries (``max_retries=0``): a POST that
is re-sent after a lost answer is exactly what the job id protects against, but the runner, not
the transport, decides when to ask again.
"""

from __future__ import annotations

import copy
import functools
import os
import re
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import AmbiguousRunError, PermanentRunError, RetryableRunError, RunError
from ..plan import RUN_KEY_ENV, RunRequest
from .base import Launch, unsupported_running

SERVICE = "peloton-jobmgr"
JOB_MANAGER = "peloton.api.v0.job.JobManager"
CALLER = "triggers"
PATH = "/api/v1"
DEFAULT_TEMPLATES = "config/peloton"
TEMPLATES_ENV = "TRIGGERS_PELOTON_TEMPLATES"
#: A rule's `job:`: the name of a template file (without .yaml) in the templates directory.
TEMPLATE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
#: The label that carries the run key on every job the runner creates.
RUN_KEY_LABEL = "triggers.run-key"
EXECUTION_PREFIX = "peloton/jobs/"
EXECUTIONS = re.compile(
    r"^peloton/jobs/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
# Every job id is uuid5(this, ledger key): the same (rule, dedup key) is always the same job.
_JOB_ID_NAMESPACE = uuid.UUID("6f1c2b8e-5d0a-4e4b-9a57-2a1f0c9e7d31")

# YARPC codes (Rpc-Status) after which the request surely was not acted on, or never will be.
_RETRYABLE = frozenset({"resource-exhausted"})
_PERMANENT = frozenset(
    {
        "invalid-argument",
        "unimplemented",
        "permission-denied",
        "unauthenticated",
        "not-found",
        "failed-precondition",
        "out-of-range",
        "already-exists",
    }
)
_STATUS_CODES = {400: "invalid-argument", 401: "unauthenticated", 403: "permission-denied",
                 404: "not-found", 429: "resource-exhausted", 501: "unimplemented",
                 503: "unavailable"}  # fmt: skip
_OUTCOMES = {"SUCCEEDED": "succeeded", "FAILED": "failed", "KILLED": "cancelled"}


def job_id(request: RunRequest) -> str:
    """The Peloton job UUID of ``request``: derived from its ledger key, so stable."""
    return str(uuid.uuid5(_JOB_ID_NAMESPACE, request.ledger_key))


def execution_name(job: str) -> str:
    return f"{EXECUTION_PREFIX}{job}"


# ---------------------------------------------------------------------- the request


class TemplateError(ValueError):
    """A job template is missing or is not a JobConfig."""


def templates_dir() -> Path:
    return Path(os.environ.get(TEMPLATES_ENV) or DEFAULT_TEMPLATES)


@functools.lru_cache(maxsize=256)
def _load_template(path: Path) -> dict[str, Any]:
    from ruamel.yaml import YAML, YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"no Peloton job template {path}: {exc.strerror}") from None
    try:
        config = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise TemplateError(f"Peloton job template {path} is not YAML: {exc}") from None
    if not isinstance(config, dict):
        raise TemplateError(f"Peloton job template {path} is not a JobConfig mapping")
    return config


def load_template(name: str, directory: Path | None = None) -> dict[str, Any]:
    """A copy of the JobConfig of template ``name``; TemplateError if there is none."""
    return copy.deepcopy(_load_template((directory or templates_dir()) / f"{name}.yaml"))


def render_create(request: RunRequest) -> dict[str, Any]:
    """The exact ``JobManager::Create`` request body of ``request``.

    Never raises: the ledger records this before the run. A template that cannot be read renders
    as ``{"id", "config": null, "templateError": why}``, which `run` refuses as permanent.
    """
    ident = {"value": job_id(request)}
    try:
        config = load_template(request.job)
    except TemplateError as exc:
        return {"id": ident, "config": None, "templateError": str(exc)}
    overrides = request.overrides
    if overrides.task_count is not None:
        config["instanceCount"] = overrides.task_count
    if overrides.timeout_seconds is not None:
        config.setdefault("sla", {})["maxRunningTime"] = overrides.timeout_seconds
    labels = [label for label in config.get("labels") or [] if label.get("key") != RUN_KEY_LABEL]
    config["labels"] = [*labels, {"key": RUN_KEY_LABEL, "value": request.ledger_key}]
    command = config.setdefault("defaultConfig", {}).setdefault("command", {})
    if overrides.clear_args or overrides.args == ():
        command["arguments"] = []
    elif overrides.args:
        command["arguments"] = list(overrides.args)
    variables = {
        v.get("name"): v.get("value", "")
        for v in (command.get("environment") or {}).get("variables") or []
    }
    variables.update(overrides.env)
    variables[RUN_KEY_ENV] = request.ledger_key
    command["environment"] = {
        "variables": [{"name": name, "value": value} for name, value in variables.items()]
    }
    return {"id": ident, "config": config}


# ---------------------------------------------------------------------- the runner


class PelotonRunner:
    """Runs a `RunRequest` as a Peloton batch job through the JobManager. Thread-safe (one
    `requests.Session` per thread).

    endpoint: the job manager's YARPC-HTTP address, e.g. ``http://peloton-jobmgr:5292``.
    timeout: seconds for each call; also sent as ``Context-TTL-MS``.
    caller: the ``Rpc-Caller`` header (what the job manager's logs and metrics name us).
    """

    def __init__(self, endpoint: str, *, timeout: float = 30.0, caller: str = CALLER) -> None:
        if not endpoint:
            raise ValueError("the Peloton job manager endpoint is required")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self.caller = caller
        self._local = threading.local()

    # ------------------------------------------------------------------ transport

    @property
    def session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            import requests
            from requests.adapters import HTTPAdapter

            session = requests.Session()
            session.mount("http://", HTTPAdapter(max_retries=0))
            session.mount("https://", HTTPAdapter(max_retries=0))
            self._local.session = session
        return session

    def headers(self, procedure: str) -> dict[str, str]:
        return {
            "Rpc-Caller": self.caller,
            "Rpc-Service": SERVICE,
            "Rpc-Procedure": procedure,
            "Rpc-Encoding": "json",
            "Context-TTL-MS": str(int(self.timeout * 1000)),
            "Content-Type": "application/json",
        }

    def call(self, method: str, body: Mapping[str, Any], *, service: str = JOB_MANAGER) -> Any:
        """One YARPC call (``service::method``); the decoded JSON answer. Raises a RunError
        classified for a call that may have changed something (see `classify_error`)."""
        procedure = f"{service}::{method}"
        try:
            response = self.session.post(
                self.endpoint + PATH,
                json=body,
                headers=self.headers(procedure),
                timeout=self.timeout,
            )
        except Exception as exc:
            raise classify_error(exc, procedure) from exc
        if response.status_code != 200:
            raise yarpc_error(response, procedure)
        try:
            answer = response.json()
        except ValueError as exc:
            raise AmbiguousRunError(f"{procedure}: the answer is not JSON: {exc}") from exc
        if not isinstance(answer, dict):
            raise AmbiguousRunError(f"{procedure}: the answer is not a JSON object")
        return answer

    # ------------------------------------------------------------------ Runner

    def run(self, request: RunRequest, validate_only: bool = False) -> Launch:
        """Create the request's job; adopt it if the job manager already has it."""
        body = request.request_body()
        if body.get("config") is None:
            raise PermanentRunError(
                f"Peloton job {request.job}: {body.get('templateError', 'no job config')}"
            )
        if validate_only:  # the JobManager has no dry run: the template renders, that is all
            return Launch(execution="", operation=None)
        answer = self.call("Create", body)
        error = answer.get("error") or {}
        ident = body["id"]["value"]
        if "alreadyExists" in error:
            return Launch(execution=execution_name(ident), adopted=True)
        for kind in ("invalidConfig", "invalidJobId"):
            if kind in error:
                message = (error[kind] or {}).get("message", "")
                raise PermanentRunError(f"Peloton Create {request.job}: {kind}: {message}")
        if error:
            raise PermanentRunError(f"Peloton Create {request.job}: {error}")
        created = (answer.get("jobId") or {}).get("value")
        if created != ident:
            raise AmbiguousRunError(
                f"Peloton Create {request.job} answered job {created!r}, not {ident}"
            )
        return Launch(execution=execution_name(ident))

    def find(self, request: RunRequest, since: datetime | None = None) -> Launch | None:
        """The job of ``request`` (its id is the ledger key's), adopted; None if there is none.

        ``since`` is not needed: the id names exactly this run. Any error raises
        RetryableRunError: not knowing is no answer.
        """
        ident = job_id(request)
        info = self._get(ident, f"looking for Peloton job {ident} of {request.job}")
        return None if info is None else Launch(execution=execution_name(ident), adopted=True)

    def running(self, job: str) -> list[str]:
        raise unsupported_running("peloton")

    def cancel(self, execution: str) -> None:
        raise unsupported_running("peloton")

    def execution_status(self, name: str) -> dict[str, Any] | None:
        """How the job ``peloton/jobs/<uuid>`` stands, for the reconciler; None when the job
        manager no longer knows it."""
        if not EXECUTIONS.match(name):
            raise PermanentRunError(f"not a Peloton job name: {name!r}")
        info = self._get(name.removeprefix(EXECUTION_PREFIX), f"reading {name}")
        return None if info is None else job_status(name, info)

    def _get(self, ident: str, what: str) -> dict[str, Any] | None:
        try:
            answer = self.call("Get", {"id": {"value": ident}})
        except RunError as exc:
            raise RetryableRunError(f"{what} failed: {exc.message}", status=exc.status) from exc
        error = answer.get("error") or {}
        if "notFound" in error:
            return None
        info = answer.get("jobInfo")
        if error or not isinstance(info, dict):
            raise RetryableRunError(f"{what} failed: {error or 'no jobInfo in the answer'}")
        return info


def from_options(options: Mapping[str, Any]) -> PelotonRunner:
    """The runner the function uses, from its settings (`TRIGGERS_PELOTON_ENDPOINT`)."""
    endpoint = options.get("peloton_endpoint")
    if not endpoint:
        raise PermanentRunError(
            "a rule targets Peloton but TRIGGERS_PELOTON_ENDPOINT (the job manager) is not set"
        )
    return PelotonRunner(endpoint)


def job_status(name: str, info: Mapping[str, Any]) -> dict[str, Any]:
    """The reconciler's view of a ``JobInfo``: its runtime state and task counts."""
    runtime = info.get("runtime") or {}
    state = runtime.get("state", "UNKNOWN")
    stats = {k: int(v) for k, v in (runtime.get("taskStats") or {}).items()}
    config = info.get("config") or {}
    total = int(config.get("instanceCount") or sum(stats.values()))
    outcome = _OUTCOMES.get(state, "running")
    done = state in _OUTCOMES
    failed = stats.get("FAILED", 0) + stats.get("LOST", 0)
    message = None
    if done and outcome != "succeeded":
        message = f"job {state}: {failed} of {total} instances failed"
    return {
        "name": name,
        "done": done,
        "outcome": outcome,
        "state": state,
        "task_count": total,
        "succeeded_count": stats.get("SUCCEEDED", 0),
        "failed_count": failed,
        "cancelled_count": stats.get("KILLED", 0),
        "running_count": sum(
            stats.get(s, 0) for s in ("LAUNCHED", "STARTING", "RUNNING", "KILLING")
        ),
        "retried_count": 0,
        "started_at": runtime.get("startTime") or None,
        "completed_at": (runtime.get("completionTime") or None) if done else None,
        "log_uri": None,
        "message": message,
    }


# ---------------------------------------------------------------------- errors


def yarpc_error(response: Any, procedure: str) -> RunError:
    """The RunError for a non-200 YARPC-HTTP answer: by its ``Rpc-Status`` header, else by the
    HTTP status (a proxy in between answered)."""
    status = response.status_code
    code = response.headers.get("Rpc-Status") or _STATUS_CODES.get(status, "unknown")
    text = (response.text or "").strip()[:500]
    message = f"{procedure}: {code} ({status}): {text}"
    if code in _RETRYABLE:
        return RetryableRunError(message, status=status)
    if code == "unavailable" and "not leader" in text.lower():
        # A follower refuses before doing anything; the next call may reach the leader.
        return RetryableRunError(message, status=status)
    if code in _PERMANENT:
        return PermanentRunError(message, status=status)
    return AmbiguousRunError(message, status=status)


def classify_error(exc: BaseException, what: str) -> RunError:
    """The RunError for an exception raised by `requests` while calling ``what``: retryable if
    the connection was never made, ambiguous otherwise (the request may have been acted on)."""
    import requests
    import urllib3.exceptions

    message = f"{what}: {type(exc).__name__}: {exc}"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return RetryableRunError(message)
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(
        exc, requests.exceptions.SSLError
    ):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        if isinstance(reason, urllib3.exceptions.NewConnectionError):
            return RetryableRunError(message)
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return PermanentRunError(message)
    return AmbiguousRunError(message)
