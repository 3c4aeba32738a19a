"""The Cloud Run Admin API v1 runner (`namespaces.jobs.run`), through google-auth's
`AuthorizedSession` (requests), and find-by-run-key over `namespaces.executions.list`.

    runner = CloudRunV1Runner()                                   # production: ADC, regional URLs
    runner = CloudRunV1Runner(endpoint="http://127.0.0.1:8123")   # the emulator, anonymous
    launch = runner.run(request)        # POST .../namespaces/P/jobs/J:run -> the Execution itself

Why not google-api-python-client, which has a `run.v1` discovery document: its httplib2
transport sends a POST again when the server closes the connection without an answer (which can
start a job twice) and is not thread-safe. Here every call is sent once (requests' adapters do
not retry by default; AuthorizedSession only repeats a call answered 401, which the server
refused), and each thread has its own session.

v1 is the Knative-style API: `jobs.run` answers the Execution (no Operation), resources are
`{apiVersion, kind, metadata, spec, status}`, and the API is served per region
(`https://{region}-run.googleapis.com`). Execution names here are `namespaces/P/executions/E`
(the v1 form; `of_execution` cannot take them for v2's `projects/P/locations/R/jobs/J/...`).
They carry no region, so `execution_status` asks the region that launched or found the
execution when this process knows it, else each of ``regions`` (TRIGGERS_CLOUD_RUN_V1_REGIONS)
in turn; "gone" only when every one of them answers 404.

`requests` and google-auth are imported on first use, never at module import.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from ..errors import AmbiguousRunError, PermanentRunError, RetryableRunError, RunError
from ..plan import RUN_KEY_ENV, RunRequest
from .base import Launch, unsupported_running
from .cloudrun import _transport_error_before_sending

API_PREFIX = "/apis/run.googleapis.com/v1"
JOB_LABEL = "run.googleapis.com/job"
_SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


def render_run_job(request: RunRequest) -> dict[str, Any]:
    """The exact JSON body of `POST .../namespaces/P/jobs/J:run` (v1 `RunJobRequest`), run key
    included. The v2 body with v1's one difference: the timeout is `timeoutSeconds` (an
    integer), not a Duration string."""
    overrides = request.overrides.to_rest(((RUN_KEY_ENV, request.ledger_key),))
    overrides.pop("timeout", None)
    if request.overrides.timeout_seconds is not None:
        overrides["timeoutSeconds"] = request.overrides.timeout_seconds
    return {"overrides": overrides}


def execution_name(project: str, execution: str) -> str:
    return f"namespaces/{project}/executions/{execution}"


class CloudRunV1Runner:
    """Runs a `RunRequest` as a Cloud Run job execution through the v1 API. Thread-safe.

    endpoint: e.g. ``http://127.0.0.1:8123`` (the emulator): every call goes there, with
        anonymous credentials unless ``credentials`` are given. Without it: the job's regional
        endpoint, with ``credentials`` or Application Default Credentials.
    regions: where `execution_status` looks for an execution it did not launch or find itself
        (v1 execution names carry no region); unused with an ``endpoint``.
    timeout: seconds for each HTTP call; `find` as a whole stays within it too.
    find_window: how far back `find` looks when it is given no ``since``.
    page_size: executions per page when listing (`limit`).
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        credentials: Any = None,
        regions: Sequence[str] = (),
        timeout: float = 30.0,
        find_window: timedelta = timedelta(hours=1),
        page_size: int = 100,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        self.endpoint = endpoint.rstrip("/") if endpoint else None
        self._credentials = credentials
        self.regions = tuple(regions)
        self.timeout = timeout
        self.find_window = find_window
        self.page_size = page_size
        self._local = threading.local()
        self._lock = threading.Lock()
        # execution name -> region, for executions this process launched or found
        self._region_of: dict[str, str] = {}

    # ------------------------------------------------------------------ transport

    def _session(self) -> Any:
        """This thread's AuthorizedSession (a requests.Session is not shared across threads)."""
        session = getattr(self._local, "session", None)
        if session is None:
            from google.auth.transport.requests import AuthorizedSession

            credentials = self._credentials_for_session()
            from google.auth.credentials import AnonymousCredentials

            # A 401 makes AuthorizedSession refresh the token and send the call again (safe: a
            # 401 was refused). Anonymous credentials cannot be refreshed: the 401 itself must
            # come back, a RetryableRunError, not an error from the refresh.
            refresh = () if isinstance(credentials, AnonymousCredentials) else (401,)
            session = AuthorizedSession(credentials, refresh_status_codes=refresh)
            self._local.session = session
        return session

    def _credentials_for_session(self) -> Any:
        with self._lock:
            if self._credentials is None:
                if self.endpoint is not None:
                    from google.auth.credentials import AnonymousCredentials

                    self._credentials = AnonymousCredentials()
                else:
                    import google.auth

                    self._credentials, _ = google.auth.default(scopes=_SCOPES)
            return self._credentials

    def _base(self, region: str) -> str:
        return self.endpoint or f"https://{region}-run.googleapis.com"

    def _url(self, region: str, path: str) -> str:
        return f"{self._base(region)}{API_PREFIX}/{path}"

    # ------------------------------------------------------------------ run

    def run(self, request: RunRequest, *, validate_only: bool = False) -> Launch:
        """Start one execution and return its name; never wait for it, never retry.

        v1 `jobs.run` has no validate-only mode: with ``validate_only`` the job is read instead
        (`namespaces.jobs.get`: it exists, we may see it, the container named by the overrides
        is there), nothing is launched and the Launch has an empty ``execution``.

        Raises PermanentRunError, RetryableRunError or AmbiguousRunError (`classify_response`,
        `classify_exception`).
        """
        job_path = f"namespaces/{quote(request.project, safe='')}/jobs/{quote(request.job_id)}"
        what = f"v1 jobs.run {request.job}"
        if validate_only:
            return self._validate(request, job_path)
        body = render_run_job(request)
        try:
            response = self._session().post(
                self._url(request.region, f"{job_path}:run"), json=body, timeout=self.timeout
            )
        except Exception as exc:
            raise classify_exception(exc, what) from exc
        if not 200 <= response.status_code < 300:
            raise classify_response(response, what)
        try:
            short = response.json()["metadata"]["name"]
            if not isinstance(short, str) or not short:
                raise ValueError("no metadata.name")
        except Exception as exc:
            # Accepted (2xx), so it runs; only its name is lost. `find` will adopt it.
            raise AmbiguousRunError(
                f"{what} was accepted (HTTP {response.status_code}) but the answer did not name"
                f" the execution: {_describe(exc)}",
                status=response.status_code,
            ) from exc
        name = execution_name(request.project, short)
        self._region_of[name] = request.region
        return Launch(execution=name, operation=None)

    def _validate(self, request: RunRequest, job_path: str) -> Launch:
        what = f"v1 jobs.get {request.job}"
        try:
            response = self._session().get(
                self._url(request.region, job_path), timeout=self.timeout
            )
        except Exception as exc:
            raise classify_exception(exc, what) from exc
        if response.status_code != 200:
            error = classify_response(response, what)
            # a read is safe to repeat: nothing it could have started
            if isinstance(error, AmbiguousRunError):
                raise RetryableRunError(error.message, status=error.status)
            raise error
        wanted = request.overrides.container
        if wanted:
            containers = (
                response.json()
                .get("spec", {})
                .get("template", {})
                .get("spec", {})
                .get("template", {})
                .get("spec", {})
                .get("containers", [])
            )
            names = [c.get("name", "") for c in containers]
            if wanted not in names:
                raise PermanentRunError(
                    f"{what}: the job has no container {wanted!r} (it has {names})", status=400
                )
        return Launch(execution="", operation=None)

    # ------------------------------------------------------------------ find

    def find(self, request: RunRequest, *, since: datetime | None = None) -> Launch | None:
        """The newest execution of ``request.job`` created at or after ``since`` whose container
        env has ``TRIGGERS_RUN_KEY == request.ledger_key``, adopted; None when there is none.

        Lists the job's executions (`labelSelector=run.googleapis.com/job=J`) page by page.
        Paging stops at the first execution older than ``since`` while the listing has been
        newest first (as the emulator lists them); if it ever is not, every page is read, so an
        undocumented order can cost time but never an adoption. The whole search stays within
        ``timeout`` seconds; any error, or running out of time, raises RetryableRunError: not
        knowing is no answer, so the caller must try again later.
        """
        if since is None:
            since = datetime.now(UTC) - self.find_window
        elif since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        try:
            found = self._find(request, since, time.monotonic() + self.timeout)
        except RetryableRunError:
            raise
        except Exception as exc:
            raise RetryableRunError(
                f"looking for v1 executions of {request.job} failed: {_describe(exc)}",
                status=getattr(exc, "status", None),
            ) from exc
        if found is None:
            return None
        name = execution_name(request.project, found)
        self._region_of[name] = request.region
        return Launch(execution=name, operation=None, adopted=True)

    def _find(self, request: RunRequest, since: datetime, deadline: float) -> str | None:
        best: tuple[datetime, str] | None = None
        newest_first = True
        previous: datetime | None = None
        for item in self._list_executions(request, deadline):
            created = _parse_time(item.get("metadata", {}).get("creationTimestamp"))
            if created is not None and previous is not None and created > previous:
                newest_first = False
            if created is not None:
                previous = created
            if created is not None and created < since:
                if newest_first:
                    break  # everything after this is older still
                continue
            if _carries_key(item, request.ledger_key):
                moment = created or datetime.max.replace(tzinfo=UTC)
                if best is None or moment > best[0]:
                    best = (moment, item["metadata"]["name"])
                if newest_first:
                    break  # the first match is the newest
        return best[1] if best else None

    def _list_executions(self, request: RunRequest, deadline: float) -> Iterator[dict[str, Any]]:
        url = self._url(request.region, f"namespaces/{quote(request.project, safe='')}/executions")
        params = {"labelSelector": f"{JOB_LABEL}={request.job_id}", "limit": str(self.page_size)}
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RetryableRunError(
                    f"looking for v1 executions of {request.job}: out of time after"
                    f" {self.timeout:g}s, still paging"
                )
            response = self._session().get(url, params=params, timeout=min(left, self.timeout))
            if response.status_code != 200:
                raise RetryableRunError(
                    f"looking for v1 executions of {request.job}: HTTP {response.status_code}"
                    f" {_error_message(response)}",
                    status=response.status_code,
                )
            page = response.json()
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return
            params["continue"] = token

    # ------------------------------------------------------------------ status

    def running(self, job: str) -> list[str]:
        raise unsupported_running("cloudrun-v1")

    def cancel(self, execution: str) -> None:
        raise unsupported_running("cloudrun-v1")

    def execution_status(self, name: str) -> dict[str, Any] | None:
        """What the execution ``name`` (`namespaces/P/executions/E`) has come to, for the
        reconciler, in the shape `CloudRunRunner.execution_status` returns; None when it is
        gone (404 in every region asked). Any other error raises RetryableRunError."""
        parts = name.split("/")
        if len(parts) != 4 or parts[0] != "namespaces" or parts[2] != "executions":
            raise PermanentRunError(f"not a Cloud Run v1 execution name: {name!r}")
        path = f"namespaces/{quote(parts[1], safe='')}/executions/{quote(parts[3], safe='')}"
        for region in self._regions_for(name):
            try:
                response = self._session().get(self._url(region, path), timeout=self.timeout)
            except Exception as exc:
                raise RetryableRunError(
                    f"reading execution {name} failed: {_describe(exc)}"
                ) from exc
            if response.status_code == 404:
                continue
            if response.status_code != 200:
                raise RetryableRunError(
                    f"reading execution {name} failed: HTTP {response.status_code}"
                    f" {_error_message(response)}",
                    status=response.status_code,
                )
            self._region_of[name] = region
            return execution_status_of(name, response.json())
        return None

    def _regions_for(self, name: str) -> list[str]:
        if self.endpoint is not None:
            return [""]  # one endpoint answers for every region
        known = self._region_of.get(name)
        regions = ([known] if known else []) + [r for r in self.regions if r != known]
        if not regions:
            raise PermanentRunError(
                f"cannot ask about {name}: v1 execution names carry no region and none is"
                " configured; set TRIGGERS_CLOUD_RUN_V1_REGIONS (e.g. europe-west1)"
            )
        return regions


def from_options(options: Mapping[str, Any]) -> CloudRunV1Runner:
    """The runner the function uses, from its settings (`TRIGGERS_CLOUD_RUN_V1_ENDPOINT`,
    `TRIGGERS_CLOUD_RUN_V1_REGIONS`)."""
    return CloudRunV1Runner(
        endpoint=options.get("cloud_run_v1_endpoint"),
        regions=tuple(options.get("cloud_run_v1_regions") or ()),
    )


# ---------------------------------------------------------------------- status


def execution_status_of(name: str, execution: Mapping[str, Any]) -> dict[str, Any]:
    """The reconciler's view of a v1 Execution: the `Completed` condition decides (True ->
    succeeded; False with reason `Cancelled` -> cancelled; other False -> failed); while it is
    Unknown, or there is no completion time, the execution is still running."""
    status = execution.get("status") or {}
    spec = execution.get("spec") or {}
    completed = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Completed"), None
    )
    state = (completed or {}).get("status")
    done = bool(status.get("completionTime")) or state in ("True", "False")
    if not done or state not in ("True", "False"):
        outcome = "running" if not done else "failed"
    elif state == "True":
        outcome = "succeeded"
    elif (completed or {}).get("reason") == "Cancelled":
        outcome = "cancelled"
    else:
        outcome = "failed"
    return {
        "name": name,
        "done": done,
        "outcome": outcome,
        "task_count": int(spec.get("taskCount") or 0),
        "succeeded_count": int(status.get("succeededCount") or 0),
        "failed_count": int(status.get("failedCount") or 0),
        "cancelled_count": int(status.get("cancelledCount") or 0),
        "running_count": int(status.get("runningCount") or 0),
        "retried_count": int(status.get("retriedCount") or 0),
        "started_at": status.get("startTime") or None,
        "completed_at": status.get("completionTime") or None,
        "log_uri": status.get("logUri") or None,
        "message": (completed or {}).get("message") or None,
    }


def _carries_key(execution: Mapping[str, Any], key: str) -> bool:
    containers = (
        execution.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    )
    return any(
        env.get("name") == RUN_KEY_ENV and env.get("value") == key
        for container in containers
        for env in container.get("env") or []
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# ---------------------------------------------------------------------- errors


def classify_response(response: Any, what: str) -> RunError:
    """The RunError for an HTTP error answer to `jobs.run` (the same table as v2's, by status;
    docs/runner.md): 429 and 401 were refused up front (retryable); 499 was cancelled mid-way
    and 5xx may have been acted on (ambiguous); 501 and every other 4xx refuse this request for
    good (permanent)."""
    status = int(response.status_code)
    message = f"{what}: HTTP {status} {_error_message(response)}".rstrip()
    if status in (401, 429):
        return RetryableRunError(message, status=status)
    if status == 499:
        return AmbiguousRunError(message, status=status)
    if status == 501 or 400 <= status < 500:
        return PermanentRunError(message, status=status)
    return AmbiguousRunError(message, status=status)


def classify_exception(exc: BaseException, what: str) -> RunError:
    """A transport failure: retryable only if no byte of the request can have left (refused
    connection, unresolvable name, no token); anything else (reset, closed without an answer,
    read timeout) may have started the execution: ambiguous."""
    message = f"{what}: {_describe(exc)}"
    if _transport_error_before_sending(exc):
        return RetryableRunError(message)
    return AmbiguousRunError(message)


def _error_message(response: Any) -> str:
    """The message of a Google JSON error body, else the start of the body."""
    try:
        body = response.json()
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(body, dict) and body.get("message"):  # a Kubernetes-style Status
            return str(body["message"])
    except ValueError:
        pass
    return (getattr(response, "text", "") or "")[:200]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
