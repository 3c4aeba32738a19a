"""The Alibaba Cloud SAE runner: `ExecJob` through the alibabacloud-sae20190506 SDK.

    runner = SaeRunner()                                      # production: HTTPS, credential chain
    runner = SaeRunner(endpoint="http://127.0.0.1:8123")      # the emulator: HTTP, a dummy key
    launch = runner.run(request)    # Launch(execution="sae/cn-hangzhou/apps/<AppId>/jobs/<JobId>")

A rule's `job:` is `REGION/APP_ID`: the SAE job template's AppId (a UUID) in its region, which
picks the regional endpoint (`sae.REGION.aliyuncs.com`). The request is `GET
/pop/v1/sam/job/execJob` with the rule's overrides as SAE spells them (`CommandArgs`, `Envs`,
`Replicas`) and **`EventId` = the ledger key**: SAE creates "only one job for requests that have
the same event ID", so the run key travels as SAE's own idempotency id, not in the env.

Failures are classified as for Cloud Run (docs/runner.md): a 200 whose `Success` or
`Data.Success` is false is an error too; throttling codes and connect failures are retryable,
other 4xx permanent, 5xx and transport errors after sending ambiguous. After an ambiguous
failure `find` repeats `ExecJob` with the same `EventId`: SAE answers with the job the first
request created, or creates it if the first never arrived (docs/runners.md, "sae").

The SDK (and requests behind it) is imported on first use, never at module import.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from ..errors import AmbiguousRunError, PermanentRunError, RetryableRunError, RunError
from ..plan import RunRequest
from .base import Launch, unsupported_running
from .systems import get as get_system

# `job:` (REGION/APP_ID) and the execution names this runner makes
# (sae/REGION/apps/APP_ID/jobs/JOB_ID) are declared once, in the systems table.
_SYSTEM = get_system("sae")

# Error codes with which SAE (the POP gateway in front of it) refuses a call for its rate: the
# request was not acted on, so the next delivery may simply try again.
THROTTLING_CODES = frozenset(
    {"Throttling", "Throttling.User", "Throttling.Api", "Throttling.System", "ServiceBusy"}
)

# What SAE's DescribeJobStatus `State` means, and what the reconciler calls it.
_STATES = {"0": "running", "1": "succeeded", "2": "failed", "3": "running"}

_DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class SaeJob:
    """Where a rule's `job:` points: an SAE job template (AppId) in a region."""

    region: str
    app_id: str

    @classmethod
    def parse(cls, job: str) -> SaeJob:
        assert _SYSTEM.job_pattern is not None
        if _SYSTEM.job_pattern.fullmatch(job) is None:
            raise PermanentRunError(f"{job!r} is not an SAE job (REGION/APP_ID)")
        region, app_id = job.split("/")
        return cls(region, app_id)

    def execution(self, job_id: str) -> str:
        return f"sae/{self.region}/apps/{self.app_id}/jobs/{job_id}"


def render_exec_job(request: RunRequest) -> dict[str, Any]:
    """The exact query of `GET /pop/v1/sam/job/execJob` (the SDK's `ExecJobRequest` map) for
    ``request``: what `triggers plan` prints, the ledger records and the runner sends.

    Only the overrides SAE can express reach here (the loader rejects the others). `CommandArgs`
    and `Envs` are JSON strings, `Replicas` a decimal string, as the API takes them.
    """
    job = SaeJob.parse(request.job)
    query: dict[str, Any] = {"AppId": job.app_id, "EventId": request.ledger_key}
    overrides = request.overrides
    if overrides.args is not None:
        query["CommandArgs"] = json.dumps(list(overrides.args), ensure_ascii=False)
    if overrides.env:
        envs = [{"name": name, "value": value} for name, value in overrides.env]
        query["Envs"] = json.dumps(envs, ensure_ascii=False)
    if overrides.task_count is not None:
        query["Replicas"] = str(overrides.task_count)
    return query


def parse_execution(name: str) -> tuple[SaeJob, str]:
    """(the job template, the JobId) of an execution name this runner made."""
    if not _SYSTEM.owns_execution(name):
        raise PermanentRunError(f"{name!r} is not an SAE execution name")
    _, region, _, app_id, _, job_id = name.split("/")
    return SaeJob(region, app_id), job_id


class SaeRunner:
    """Runs a `RunRequest` as one SAE job (`ExecJob`). Thread-safe.

    endpoint: ``http://host:port`` (the emulator: plain HTTP, a placeholder access key unless
        ``access_key_id``/``access_key_secret`` are given), or ``host[:port]`` (HTTPS, e.g. a
        VPC endpoint). Without it: the SDK's regional endpoint ``sae.REGION.aliyuncs.com``.
    credential: an ``alibabacloud_credentials`` client; by default the SDK's standard chain
        (``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, an OIDC or RAM
        role, the credentials file).
    timeout: seconds to connect and to read each answer.
    """

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        credential: Any = None,
        access_key_id: str | None = None,
        access_key_secret: str | None = None,
        timeout: float = _DEFAULT_TIMEOUT,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.endpoint = endpoint
        self.timeout = timeout
        self._credential = credential
        self._access_key = (access_key_id, access_key_secret)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ clients

    def client(self, region: str) -> Any:
        """The SDK client of ``region``, created on first use and reused."""
        client = self._clients.get(region)
        if client is None:
            with self._lock:
                client = self._clients.get(region)
                if client is None:
                    client = self._clients[region] = self._new_client(region)
        return client

    def _new_client(self, region: str) -> Any:
        from alibabacloud_sae20190506.client import Client
        from alibabacloud_tea_openapi.utils_models import Config

        milliseconds = int(self.timeout * 1000)
        config = Config(region_id=region, read_timeout=milliseconds, connect_timeout=milliseconds)
        key_id, key_secret = self._access_key
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint if "//" in self.endpoint else f"//{self.endpoint}")
            config.endpoint = parts.netloc
            config.protocol = "HTTP" if parts.scheme == "http" else "HTTPS"
            if parts.scheme == "http" and key_id is None and self._credential is None:
                # The emulator checks no signature; the SDK still wants a key to sign with.
                key_id, key_secret = "emulator", "emulator"
        if key_id and key_secret:
            config.access_key_id, config.access_key_secret = key_id, key_secret
        else:
            config.credential = self._credential or _default_credential()
        return Client(config)

    def _runtime(self) -> Any:
        from darabonba.runtime import RuntimeOptions

        # No SDK retries (autoretry off is its default; said here so it stays so): a repeat is
        # the dispatcher's decision, after it has classified the failure.
        return RuntimeOptions(autoretry=False, max_attempts=1)

    # ------------------------------------------------------------------ run

    def run(self, request: RunRequest, validate_only: bool = False) -> Launch:
        """Start one SAE job and return its execution name; never waits for the job.

        SAE has no dry run: with ``validate_only`` the request is built and checked locally and
        nothing is sent (``Launch(execution="")``). Raises PermanentRunError, RetryableRunError
        or AmbiguousRunError (`classify_error`).
        """
        job = SaeJob.parse(request.job)
        exec_request = build_exec_job_request(request)
        if validate_only:
            return Launch(execution="", operation=None)
        job_id = self._exec_job(job, exec_request, f"ExecJob {request.job}")
        return Launch(execution=job.execution(job_id), operation=None)

    def _exec_job(self, job: SaeJob, exec_request: Any, what: str) -> str:
        try:
            response = self.client(job.region).exec_job_with_options(
                exec_request, {}, self._runtime()
            )
        except Exception as exc:
            raise classify_error(exc, what) from exc
        body = response.body
        refused = _refusal(body)
        if refused is not None:
            raise classify_refusal(refused, what)
        job_id = body.data.data if body.data is not None else None
        if not job_id:
            # Accepted (Success true) but no JobId: it may run; repeating with the EventId
            # tells us which job it is.
            raise AmbiguousRunError(f"{what}: SAE accepted the job but named no JobId")
        return str(job_id)

    # ------------------------------------------------------------------ find

    def find(self, request: RunRequest, since: datetime | None = None) -> Launch | None:
        """The job a previous `run` of ``request`` created, adopted.

        SAE's job history does not show a job's EventId, so this repeats `ExecJob` with the same
        `EventId` (= the ledger key), which SAE answers with the job it already created for it.
        If the earlier request never reached SAE, this creates the job: still exactly one, the
        claim being held. ``since`` is not needed (the EventId names the job). A permanent
        refusal answers None (the next `run` reports it); any other error raises
        RetryableRunError: not knowing is no answer.
        """
        job = SaeJob.parse(request.job)
        try:
            job_id = self._exec_job(job, build_exec_job_request(request), f"ExecJob {request.job}")
        except PermanentRunError:
            return None
        except RunError as exc:
            raise RetryableRunError(
                f"repeating ExecJob {request.job} with its EventId failed: {exc.message}",
                status=exc.status,
            ) from exc
        return Launch(execution=job.execution(job_id), operation=None, adopted=True)

    # ------------------------------------------------------------------ status

    def running(self, job: str) -> list[str]:
        raise unsupported_running("sae")

    def cancel(self, execution: str) -> None:
        raise unsupported_running("sae")

    def execution_status(self, name: str) -> dict[str, Any] | None:
        """What the SAE job ``name`` has come to (`DescribeJobStatus`), for the reconciler.

        ``outcome``: `State` "1" succeeded, "2" failed, "0" (not started) and "3" running.
        SAE has no cancelled state. Counts from `Active`/`Succeeded`/`Failed`. A job or template
        SAE does not know (404 or a `*.NotFound` code) answers None; any other error raises
        RetryableRunError.
        """
        from alibabacloud_sae20190506 import models

        job, job_id = parse_execution(name)
        what = f"DescribeJobStatus {name}"
        try:
            response = self.client(job.region).describe_job_status_with_options(
                models.DescribeJobStatusRequest(app_id=job.app_id, job_id=job_id),
                {},
                self._runtime(),
            )
        except Exception as exc:
            if _not_found(exc):
                return None
            error = classify_error(exc, what)
            raise RetryableRunError(error.message, status=error.status) from exc
        body = response.body
        refused = _refusal(body)
        if refused is not None:
            if refused.code.endswith(".NotFound"):
                return None
            raise RetryableRunError(f"{what}: {refused}")
        if body.data is None:
            raise RetryableRunError(f"{what}: the answer has no Data")
        return status_of(name, body.data.to_map())


def from_options(options: Mapping[str, Any]) -> SaeRunner:
    """The runner the function uses, from its settings (`TRIGGERS_SAE_ENDPOINT`)."""
    return SaeRunner(endpoint=options.get("sae_endpoint"))


def _default_credential() -> Any:
    from alibabacloud_credentials.client import Client as CredentialClient

    return CredentialClient()


# ---------------------------------------------------------------------- request


def build_exec_job_request(request: RunRequest) -> Any:
    """The SDK's `ExecJobRequest`, read from `render_exec_job` (one mapping, no drift)."""
    from alibabacloud_sae20190506 import models

    exec_request = models.ExecJobRequest().from_map(render_exec_job(request))
    try:
        exec_request.validate()
    except Exception as exc:
        raise PermanentRunError(f"cannot build ExecJob for {request.job}: {exc}") from exc
    return exec_request


# ---------------------------------------------------------------------- status


def status_of(name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The reconciler's dict for one `DescribeJobStatus` Data map."""
    state = str(data.get("State", ""))
    outcome = _STATES.get(state, "running")
    succeeded, failed, active = (int(data.get(k) or 0) for k in ("Succeeded", "Failed", "Active"))
    message = data.get("Message") or None
    return {
        "name": name,
        "done": outcome in ("succeeded", "failed"),
        "outcome": outcome,
        "state": state,
        "task_count": succeeded + failed + active,
        "succeeded_count": succeeded,
        "failed_count": failed,
        "cancelled_count": 0,
        "running_count": active,
        "retried_count": 0,
        "started_at": _epoch(data.get("StartTime")),
        "completed_at": _epoch(data.get("CompletionTime")),
        "log_uri": None,
        "message": None if message == "success" else message,
    }


def _epoch(value: Any) -> str | None:
    """RFC 3339 UTC of an SAE time (epoch seconds, or milliseconds when that large)."""
    if value in (None, "", 0):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number > 1e11:  # milliseconds: seconds would be past the year 5000
        number /= 1000
    moment = datetime.fromtimestamp(number, UTC)
    return moment.isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class Refusal:
    """A 200 answer that says the call failed (`Success` or `Data.Success` false)."""

    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.code}: {self.message}" if self.message else self.code


def _refusal(body: Any) -> Refusal | None:
    data = getattr(body, "data", None)
    top_ok = body.success is None or body.success is True or str(body.success).lower() == "true"
    data_success = getattr(data, "success", None)
    data_ok = data_success is None or str(data_success).lower() == "true"
    if top_ok and data_ok:
        return None
    if not top_ok:
        code = body.error_code or body.code or "Success=false"
        return Refusal(str(code), str(body.message or ""))
    code = getattr(data, "error_code", None) or getattr(data, "code", None) or "Data.Success=false"
    return Refusal(str(code), str(getattr(data, "msg", None) or body.message or ""))


def classify_refusal(refusal: Refusal, what: str) -> RunError:
    """A 200 with `Success: false`: SAE answered, so it acted or refused knowingly."""
    message = f"{what}: refused with Success=false: {refusal}"
    if refusal.code in THROTTLING_CODES:
        return RetryableRunError(message)
    if refusal.code.isdigit() and int(refusal.code) >= 500:
        return AmbiguousRunError(message, status=int(refusal.code))
    return PermanentRunError(message)


def classify_error(exc: BaseException, what: str = "ExecJob") -> RunError:
    """Map an exception raised by an SDK call to the RunError the dispatcher acts on.

    The SDK raises `ThrottlingException` (rate-limit headers), `ClientException` (4xx) and
    `ServerException` (5xx), each with SAE's error `code`; transport failures come out as an
    `UnretryableException` around a `RetryError` whose context is the `requests` exception.
    """
    from alibabacloud_tea_openapi import exceptions as sdk

    message = f"{what}: {_describe(exc)}"
    if isinstance(exc, sdk.ThrottlingException):
        return RetryableRunError(message, status=exc.status_code)
    if isinstance(exc, sdk.ClientException):
        status = exc.status_code
        code = str(exc.code or "")
        if code in THROTTLING_CODES or status == 429:
            return RetryableRunError(message, status=status)
        if status is None:
            # Raised by the SDK itself before sending (no credentials, a bad parameter).
            if code == "InvalidCredentials":
                return RetryableRunError(message)
            return PermanentRunError(message)
        return PermanentRunError(message, status=status)
    if isinstance(exc, sdk.ServerException):
        if str(exc.code or "") in THROTTLING_CODES:
            return RetryableRunError(message, status=exc.status_code)
        # 500, 502, 503, 504: SAE (or a proxy) may have created the job before failing.
        return AmbiguousRunError(message, status=exc.status_code)
    if _not_sent(exc):
        return RetryableRunError(message)
    # Read timeouts, resets, connections closed without an answer, and anything unexpected.
    return AmbiguousRunError(message)


def _not_sent(exc: BaseException) -> bool:
    """True for failures that happened before a byte of the request left: no connection could
    be made, or no credentials could be had to sign it."""
    try:
        import requests
        import urllib3.exceptions
    except ImportError:  # pragma: no cover - requests comes with the SDK
        return False
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__module__.startswith("alibabacloud_credentials"):
            return True  # the credential chain failed: nothing was signed or sent
        if isinstance(current, requests.exceptions.ConnectTimeout):
            return True
        if isinstance(current, requests.exceptions.ConnectionError) and not isinstance(
            current, requests.exceptions.SSLError
        ):
            reason = getattr(current.args[0], "reason", None) if current.args else None
            return isinstance(reason, urllib3.exceptions.NewConnectionError)
        inner = getattr(current, "inner_exception", None)
        current = inner if isinstance(inner, BaseException) else current.__context__
    return False


def _not_found(exc: BaseException) -> bool:
    from alibabacloud_tea_openapi import exceptions as sdk

    if not isinstance(exc, sdk.ClientException):
        return False
    return exc.status_code == 404 or str(exc.code or "").endswith(".NotFound")


def _describe(exc: BaseException) -> str:
    """One line: the SDK's own str() appends the whole response map."""
    name = type(exc).__name__
    inner = getattr(exc, "inner_exception", None)  # UnretryableException: the transport error
    source = inner if isinstance(inner, BaseException) else exc
    message = getattr(source, "message", None)
    if not isinstance(message, str) or not message:
        message = str(source)
    code = getattr(source, "code", None)
    text = f"{code}: {message}" if code and str(code) not in message else message
    return f"{name}: {text}" if text else name
