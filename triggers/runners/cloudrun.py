"""The Cloud Run Admin API v2 runner: `jobs.run` through google-cloud-run, and find-by-run-key.

    runner = CloudRunRunner()                                   # production: gRPC + ADC
    runner = CloudRunRunner(endpoint="http://127.0.0.1:8123")   # the emulator: REST, anonymous
    launch = runner.run(request)          # returns once the execution's name is known
    launch = runner.find(request, since=claimed_at - skew)   # after an AmbiguousRunError

`run` never waits for the execution, and never retries: `jobs.run` has no request id, so a
blind retry can start a second execution. Every failure is classified instead (see
`classify_error` and docs/runner.md): permanent, retryable (it surely did not run) or ambiguous
(it may have run: the dispatcher calls `find` before launching again).

google-cloud-run (and grpc, protobuf, requests behind it) is imported on first use, never at
module import: a Cloud Function that only acknowledges duplicates should not pay for it on a
cold start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .._gapic import client_kwargs
from ..errors import AmbiguousRunError, PermanentRunError, RetryableRunError, RunError
from ..plan import RUN_KEY_ENV, RunRequest
from ._run_job_request import build_run_job_request
from .base import Launch

# Messages with which gRPC itself (not the server) fails a call that never reached a server:
# the channel could not connect or resolve the name, or the credentials plugin could not get a
# token. Only these UNAVAILABLE errors are known not to have run; any other is ambiguous. If a
# grpc release rewords them, they fall back to "ambiguous", the safe side.
_GRPC_NOT_SENT_MARKERS = (
    "failed to connect to all addresses",
    "DNS resolution failed",
    "errors resolving ",
    "Getting metadata from plugin failed",
)

# Backoff while waiting for an operation's metadata to name its execution (the service and the
# emulator name it in the first response; this is only a fallback).
_NAME_POLL_FIRST = 0.1
_NAME_POLL_MAX = 1.0

# The largest page ListExecutions serves (the API caps page_size at 1000).
MAX_PAGE_SIZE = 1000


class CloudRunRunner:
    """Runs a `RunRequest` as a Cloud Run job execution (v2 API). Thread-safe.

    client: a ready `run_v2.JobsClient` (tests, custom transports); by default one is created
        on first use and reused. executions_client: the same for `run_v2.ExecutionsClient`.
    endpoint: e.g. ``http://127.0.0.1:8123`` (the emulator): REST transport, anonymous
        credentials unless ``credentials`` are given. Without it: gRPC to run.googleapis.com
        with ``credentials`` or Application Default Credentials.
    timeout: seconds for each API call (the whole `run` stays within it; so does each page
        `find` reads). It also bounds how long after a failed `run` the API may still act on
        it: the dispatcher keeps an ambiguous claim for at least this plus a margin.
    find_window: how far back `find` looks when it is given no ``since``.
    find_page_size: executions per `ListExecutions` page that `find` asks for.
    find_budget: seconds `find` may spend paging back to ``since``; past it, `find` raises
        RetryableRunError (not knowing is no answer) instead of answering "none".
    """

    def __init__(
        self,
        client: Any = None,
        *,
        executions_client: Any = None,
        endpoint: str | None = None,
        credentials: Any = None,
        timeout: float = 30.0,
        find_window: timedelta = timedelta(hours=1),
        find_page_size: int = 100,
        find_budget: float = 20.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if not 1 <= find_page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"find_page_size must be 1 to {MAX_PAGE_SIZE}")
        if find_budget <= 0:
            raise ValueError("find_budget must be positive")
        self._jobs = client
        self._executions = executions_client
        self.endpoint = endpoint
        self._credentials = credentials
        self.timeout = timeout
        self.find_window = find_window
        self.find_page_size = find_page_size
        self.find_budget = find_budget
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ clients

    def _client_kwargs(self) -> dict[str, Any]:
        return client_kwargs(self.endpoint, self._credentials)

    @property
    def jobs_client(self) -> Any:
        if self._jobs is None:
            with self._lock:
                if self._jobs is None:
                    from google.cloud import run_v2

                    self._jobs = run_v2.JobsClient(**self._client_kwargs())
        return self._jobs

    @property
    def executions_client(self) -> Any:
        if self._executions is None:
            with self._lock:
                if self._executions is None:
                    from google.cloud import run_v2

                    self._executions = run_v2.ExecutionsClient(**self._client_kwargs())
        return self._executions

    # ------------------------------------------------------------------ run

    def run(self, request: RunRequest, validate_only: bool = False) -> Launch:
        """Start one execution and return as soon as its name is known; never wait for it.

        With ``validate_only`` the service checks the request and launches nothing: the Launch
        then has an empty ``execution`` and no ``operation``.

        Raises PermanentRunError, RetryableRunError or AmbiguousRunError (`classify_error`).
        """
        proto = build_run_job_request(request, validate_only=validate_only)
        deadline = time.monotonic() + self.timeout
        try:
            # retry=None: the library must not retry a non-idempotent call behind our back.
            operation = self.jobs_client.run_job(request=proto, retry=None, timeout=self.timeout)
        except Exception as exc:
            raise classify_error(exc, f"jobs.run {request.job}") from exc
        if validate_only:
            return Launch(execution="", operation=None)
        return self._launch_of(operation, request, deadline)

    def _launch_of(self, operation: Any, request: RunRequest, deadline: float) -> Launch:
        """The Launch once the operation's metadata (the Execution) carries a name."""
        op_name = operation.operation.name or None
        delay = _NAME_POLL_FIRST
        try:
            while True:
                execution = operation.metadata
                if execution is not None and execution.name:
                    return Launch(execution=execution.name, operation=op_name)
                if operation.operation.done or time.monotonic() + delay > deadline:
                    break
                time.sleep(delay)
                delay = min(delay * 2, _NAME_POLL_MAX)
                operation.done()  # refreshes the operation (operations.get)
        except Exception as exc:
            # Accepted, so it runs; only its name is lost. `find` will adopt it.
            raise AmbiguousRunError(
                f"jobs.run {request.job} was accepted (operation {op_name}) but reading its"
                f" execution name failed: {_describe(exc)}"
            ) from exc
        raise AmbiguousRunError(
            f"jobs.run {request.job} was accepted (operation {op_name}) but its metadata"
            " never named the execution"
        )

    # ------------------------------------------------------------------ find

    def find(self, request: RunRequest, since: datetime | None = None) -> Launch | None:
        """The newest execution of ``request.job`` created at or after ``since`` that carries
        ``TRIGGERS_RUN_KEY == request.ledger_key``, adopted; None when there is none.

        ``since`` defaults to now - ``find_window``; a naive datetime is taken as UTC. Pass it
        with a margin for clock skew: executions are stamped by the server's clock. The API
        lists executions newest first: `find` reads page after page (``find_page_size`` each)
        until it reaches one created before ``since`` or the last page, however many that
        takes, so a busy job cannot hide an execution. Its cost is bounded by time instead:
        ``find_budget`` seconds. Any error, or running out of budget before reaching
        ``since``, raises RetryableRunError: not knowing is no answer, so the caller must try
        again later rather than launch blind.
        """
        if since is None:
            since = datetime.now(UTC) - self.find_window
        elif since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        try:
            return self._find(request, since)
        except RetryableRunError:
            raise
        except Exception as exc:
            status = getattr(exc, "code", None)
            raise RetryableRunError(
                f"looking for executions of {request.job} failed: {_describe(exc)}",
                status=status if isinstance(status, int) else None,
            ) from exc

    def _find(self, request: RunRequest, since: datetime) -> Launch | None:
        from google.cloud import run_v2

        deadline = time.monotonic() + self.find_budget
        page_token = ""
        pages = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RetryableRunError(
                    f"looking for executions of {request.job}: {pages} page(s) read in"
                    f" {self.find_budget:g} s without reaching {since.isoformat()}"
                )
            # One page per call (not the pager's own iteration), each within what is left of
            # the budget: the budget bounds the whole walk, not each page.
            try:
                page = self.executions_client.list_executions(
                    request=run_v2.ListExecutionsRequest(
                        parent=request.job,
                        page_size=self.find_page_size,
                        page_token=page_token,
                        # a run that was deleted since still ran: adopt it rather than run again
                        show_deleted=True,
                    ),
                    timeout=min(self.timeout, remaining),
                )
            except Exception as exc:
                if time.monotonic() < deadline:
                    raise
                raise RetryableRunError(
                    f"looking for executions of {request.job}: {pages} page(s) read in"
                    f" {self.find_budget:g} s without reaching {since.isoformat()} (the next"
                    f" page ran out of time: {_describe(exc)})"
                ) from exc
            pages += 1
            for execution in page.executions:
                created = execution.create_time
                if created is not None and created < since:
                    return None  # newest first: everything after this is older still
                if _carries_key(execution, request.ledger_key):
                    return Launch(execution=execution.name, operation=None, adopted=True)
            page_token = page.next_page_token
            if not page_token:
                return None

    # ------------------------------------------------------------------ max_running

    def running(self, job: str) -> list[str]:
        """Names of ``job``'s executions not finished yet (no completion time); raises
        RetryableRunError when they cannot all be listed within ``find_budget``."""
        from .cloudrun_running import running_executions

        return running_executions(
            self.executions_client, job, timeout=self.timeout, budget=self.find_budget
        )

    def cancel(self, execution: str) -> None:
        """Ask the API to cancel ``execution`` (`when_busy: replace`); does not wait."""
        from .cloudrun_running import cancel_execution

        cancel_execution(self.executions_client, execution, timeout=self.timeout)

    # ------------------------------------------------------------------ status

    def execution_status(self, name: str) -> dict[str, Any] | None:
        """What the execution ``name`` has come to, for the reconciler; None when it is gone.

        Returns ``done`` (it has a completion time), ``outcome`` (``succeeded``, ``failed``,
        ``cancelled``, or ``running`` while not done), the task counts (``task_count``,
        ``succeeded_count``, ``failed_count``, ``cancelled_count``, ``running_count``,
        ``retried_count``), ``started_at`` / ``completed_at`` (RFC 3339 UTC, or None),
        ``log_uri`` and ``message`` (the ``Completed`` condition's, or None). A 404 answers
        None; any other error raises RetryableRunError: not knowing is no answer.
        """
        try:
            execution = self.executions_client.get_execution(name=name, timeout=self.timeout)
        except Exception as exc:
            from google.api_core import exceptions as gexc

            if isinstance(exc, gexc.NotFound):
                return None
            status = getattr(exc, "code", None)
            raise RetryableRunError(
                f"reading execution {name} failed: {_describe(exc)}",
                status=status if isinstance(status, int) else None,
            ) from exc
        return _execution_status(execution)


def from_options(options: Mapping[str, Any]) -> CloudRunRunner:
    """The runner the function uses, from its settings (`TRIGGERS_CLOUD_RUN_ENDPOINT`, ...)."""
    return CloudRunRunner(
        endpoint=options.get("cloud_run_endpoint"),
        timeout=options.get("cloud_run_timeout_seconds", 30.0),
        find_page_size=options.get("find_page_size", 100),
        find_budget=options.get("find_budget_seconds", 20.0),
    )


def _carries_key(execution: Any, key: str) -> bool:
    return any(
        env.name == RUN_KEY_ENV and env.value == key
        for container in execution.template.containers
        for env in container.env
    )


def _execution_status(execution: Any) -> dict[str, Any]:
    from google.cloud import run_v2

    Condition = run_v2.Condition
    completed = next((c for c in execution.conditions if c.type_ == "Completed"), None)
    counts = {
        "task_count": int(execution.task_count),
        "succeeded_count": int(execution.succeeded_count),
        "failed_count": int(execution.failed_count),
        "cancelled_count": int(execution.cancelled_count),
        "running_count": int(execution.running_count),
        "retried_count": int(execution.retried_count),
    }
    done = bool(execution.completion_time)
    if not done:
        outcome = "running"
    elif (
        completed is not None and completed.execution_reason == Condition.ExecutionReason.CANCELLED
    ):
        outcome = "cancelled"
    elif completed is not None and completed.state == Condition.State.CONDITION_SUCCEEDED:
        outcome = "succeeded"
    elif (
        completed is not None
        and completed.state == Condition.State.CONDITION_FAILED
        or counts["failed_count"]
    ):
        outcome = "failed"
    elif counts["cancelled_count"]:
        outcome = "cancelled"
    elif counts["succeeded_count"] >= max(counts["task_count"], 1):
        outcome = "succeeded"
    else:
        outcome = "failed"
    return {
        "name": execution.name,
        "done": done,
        "outcome": outcome,
        **counts,
        "started_at": _rfc3339(execution.start_time),
        "completed_at": _rfc3339(execution.completion_time),
        "log_uri": execution.log_uri or None,
        "message": (completed.message or None) if completed is not None else None,
    }


def _rfc3339(moment: Any) -> str | None:
    if not moment:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------- errors


def classify_error(exc: BaseException, what: str = "jobs.run") -> RunError:
    """Map an exception raised by a `jobs.run` call to the RunError the dispatcher acts on.

    The question is not only "may a retry succeed" but "may this call have started an
    execution": only errors raised before the request could have been acted on are
    RetryableRunError. Parent classes of google.api_core.exceptions are matched, so gRPC and
    REST (which maps by HTTP status only) classify alike. See docs/runner.md for the table.
    """
    from google.api_core import exceptions as gexc

    message = f"{what}: {_describe(exc)}"
    if isinstance(exc, gexc.GoogleAPICallError):
        status = exc.code if isinstance(exc.code, int) else None
        if isinstance(exc, gexc.TooManyRequests):  # 429: quota/rate limit, refused up front
            return RetryableRunError(message, status=status)
        if isinstance(exc, gexc.Unauthorized):  # 401: refused before anything; a stale token
            return RetryableRunError(message, status=status)
        if isinstance(exc, gexc.Cancelled):  # 499: the call was cancelled mid-way
            return AmbiguousRunError(message, status=status)
        if isinstance(exc, gexc.ClientError):
            # 400 (incl. FAILED_PRECONDITION), 403, 404, 409 and the rest: the API refused this
            # request and will refuse it again. (The only 409 jobs.run documents is an etag
            # mismatch, and we send no etag.)
            return PermanentRunError(message, status=status)
        if isinstance(exc, gexc.MethodNotImplemented):  # 501: no such method at this endpoint
            return PermanentRunError(message, status=status)
        if isinstance(exc, gexc.ServiceUnavailable) and any(
            marker in str(exc.message) for marker in _GRPC_NOT_SENT_MARKERS
        ):
            return RetryableRunError(message, status=status)
        # 500, 502, 503, 504/DEADLINE_EXCEEDED and anything else: the server (or a proxy) may
        # have acted on the request before it failed or before its answer was lost.
        return AmbiguousRunError(message, status=status)

    if _transport_error_before_sending(exc):
        return RetryableRunError(message)
    # Read timeouts, resets, connections closed without a response, and anything unexpected.
    return AmbiguousRunError(message)


def _transport_error_before_sending(exc: BaseException) -> bool:
    """True for transport errors that happened before a byte of the request left.

    The REST transport lets `requests` exceptions through unwrapped; getting a token is done
    by google-auth before the call.
    """
    try:
        from google.auth import exceptions as auth_exceptions

        if isinstance(exc, auth_exceptions.TransportError | auth_exceptions.RefreshError):
            return True
    except ImportError:  # pragma: no cover - google-auth comes with google-cloud-run
        pass
    try:
        import requests
        import urllib3.exceptions
    except ImportError:  # pragma: no cover - only the gRPC transport is installed
        return False
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True  # the TCP/TLS connection was never established
    if isinstance(exc, requests.exceptions.ConnectionError) and not isinstance(
        exc, requests.exceptions.SSLError
    ):
        # Refused or unresolvable: urllib3 wraps NewConnectionError (NameResolutionError is
        # one) in MaxRetryError. A reset or a closed connection is a ProtocolError instead.
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, urllib3.exceptions.NewConnectionError)
    return False


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
