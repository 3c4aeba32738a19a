"""SAE's job routes as the `alibabacloud-sae20190506` SDK calls them (ROA style: `GET` with the
parameters in the query), over the Cloud Run emulator's store, which runs the tasks.

    GET /pop/v1/sam/job/execJob              ExecJob             AppId, EventId, CommandArgs,
                                                                 Envs, Replicas (Command, Jar*,
                                                                 War*, Time: accepted, unused)
    GET /pop/v1/sam/job/describeJobStatus    DescribeJobStatus   AppId, JobId
    GET /pop/v1/sam/job/describeJobHistory   DescribeJobHistory  AppId, CurrentPage, PageSize,
                                                                 State

    GET    /_emulator/sae/apps       the job templates: AppId -> job of the jobs file
    GET    /_emulator/sae/jobs       every SAE job: JobId, AppId, EventId, execution, State
    POST   /_emulator/sae/refusals   the next calls answer 200 with Success false (below)
    DELETE /_emulator/sae/refusals

The AppId of a job of the jobs file is its Cloud Run uid, ``uuid5(NAMESPACE_URL, full name)``
(`app_id_of`). **EventId**: the first `ExecJob` of an (AppId, EventId) creates the job; every
later one answers the same JobId and runs nothing (SAE: "only one job for requests that have the
same event ID"). A job's State: "0" not started, "3" running, "1" succeeded, "2" failed (a
cancelled execution, through the Cloud Run routes, is "2" too: SAE has no cancelled state).

Errors are SAE's shape, ``{"RequestId", "HostId", "Code", "Message", "Recommend"}`` with the
HTTP status, for the handlers' errors and for faults injected through the shared fault model
(`SaeService.injected_error`): a fault's ``message``, when it looks like a code
(``Throttling.User``), is the error's Code; otherwise the Code follows the status (429:
``Throttling.User``, 500: ``InternalError``, 503: ``ServiceUnavailable``...).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from ..cloudrun.jobs import JobSpec
from ..cloudrun.limits import MAX_TASK_COUNT, env_name_problem, env_value_problem
from ..cloudrun.overrides import ContainerOverride, RunOverrides, RunRequest
from ..cloudrun.records import ExecutionRecord
from ..cloudrun.state import Store
from ..http import Call, Handler
from ..machine import Outcome
from ..rpc import ApiError

PREFIX = "/pop/v1/sam/job/"
ROUTES = {
    "execJob": "ExecJob",
    "describeJobStatus": "DescribeJobStatus",
    "describeJobHistory": "DescribeJobHistory",
}

# The Code of an injected fault's error when its message does not name one.
_CODE_BY_STATUS = {
    400: "InvalidParameter",
    401: "InvalidAccessKeyId.NotFound",
    403: "Forbidden.NoPermission",
    404: "InvalidApplication.NotFound",
    429: "Throttling.User",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_MESSAGES = {
    "Throttling.User": "Request was denied due to user flow control.",
    "InternalError": "The request processing has failed due to some unknown error.",
    "ServiceUnavailable": "The request has failed due to a temporary failure of the server.",
}
_CODE_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:\.[A-Za-z0-9]+)*$")


def app_id_of(job: JobSpec) -> str:
    """The SAE AppId the emulator gives a job of the jobs file (its Cloud Run uid)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, job.full_name))


class SaeError(ApiError):
    """An error answer in SAE's (POP gateway's) shape."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(http_status, message, code)
        self.code = code

    def body(self) -> dict[str, Any]:
        return {
            "RequestId": _request_id(),
            "HostId": "sae.emulator",
            "Code": self.code,
            "Message": self.message,
            "Recommend": "",
            "Success": False,
        }


@dataclass(frozen=True, slots=True)
class Refusal:
    """One planned 200-with-Success-false answer (``level`` "top": `Success` false; "data":
    `Success` true and `Data.Success` "false")."""

    method: str
    code: str
    message: str
    level: str


@dataclass(slots=True)
class SaeJobRecord:
    job_id: str
    app_id: str
    event_id: str
    execution: str  # the Cloud Run execution that runs it
    create_time: datetime
    command: str = ""


class SaeService:
    """SAE's job API as a ``triggers.emulators.http.Service`` over the executions store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.apps: dict[str, JobSpec] = {app_id_of(job): job for job in store.catalog}
        self._lock = threading.Lock()
        self._jobs: dict[str, SaeJobRecord] = {}  # by JobId, in creation order
        self._events: dict[tuple[str, str], str] = {}  # (AppId, EventId) -> JobId
        self._refusals: list[tuple[Refusal, list[int]]] = []  # with the calls left
        self._handlers: dict[str, Handler] = {
            "ExecJob": self._exec_job,
            "DescribeJobStatus": self._describe_job_status,
            "DescribeJobHistory": self._describe_job_history,
        }

    # ------------------------------------------------------------------ Service

    def route(self, verb: str, path: str) -> tuple[str, Handler, tuple[str, ...]] | None:
        if verb != "GET" or not path.startswith(PREFIX):
            return None
        rpc = ROUTES.get(path[len(PREFIX) :])
        if rpc is None:
            return None
        return rpc, self._answer(rpc), ()

    def control(self, verb: str, path: str, body: Any) -> tuple[int, dict[str, Any]] | None:
        if path == "/_emulator/sae/apps" and verb == "GET":
            apps = [
                {"AppId": app, "job": job.full_name, "source": job.source}
                for app, job in self.apps.items()
            ]
            return 200, {"apps": apps}
        if path == "/_emulator/sae/jobs" and verb == "GET":
            with self._lock:
                records = list(self._jobs.values())
            jobs = [
                {
                    **(self._job_json(r) or {"JobId": r.job_id, "State": "deleted"}),
                    "AppId": r.app_id,
                    "EventId": r.event_id,
                    "execution": r.execution,
                }
                for r in records
            ]
            return 200, {"jobs": jobs}
        if path == "/_emulator/sae/refusals":
            if verb == "POST":
                try:
                    refusal = self.refuse(**_refusal_fields(body))
                except (TypeError, ValueError) as exc:
                    raise SaeError(400, "InvalidParameter", str(exc)) from None
                return 200, {"refusal": asdict(refusal)}
            if verb == "DELETE":
                with self._lock:
                    self._refusals.clear()
                return 200, {}
        return None

    def health(self) -> dict[str, Any]:
        return {"sae_apps": len(self.apps)}

    def render(self, result: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        return result

    def reset(self) -> None:
        self.store.reset()  # it runs the jobs; resetting it twice (with Cloud Run's) is harmless
        with self._lock:
            self._jobs.clear()
            self._events.clear()
            self._refusals.clear()

    def shutdown(self, timeout: float) -> None:
        self.store.shutdown(timeout)

    def injected_error(self, http_status: int, message: str | None) -> ApiError:
        """The error a fault of the shared fault model answers, in SAE's shape."""
        code = message if message and _CODE_LIKE.match(message) else None
        code = code or _CODE_BY_STATUS.get(http_status, "InternalError")
        text = message if message and message != code else None
        return SaeError(
            http_status, code, text or _MESSAGES.get(code, f"{code} (injected by the emulator).")
        )

    # ------------------------------------------------------------------ faults of its own

    def refuse(
        self,
        method: str = "ExecJob",
        *,
        code: str = "Throttling.User",
        message: str = "",
        level: str = "top",
        times: int = 1,
    ) -> Refusal:
        """The next ``times`` calls of ``method`` answer HTTP 200 with `Success` false (``level``
        "top") or `Data.Success` "false" (``level`` "data"), and do nothing."""
        if method not in self._handlers:
            raise ValueError(f"unknown method {method!r} (one of {', '.join(self._handlers)})")
        if level not in ("top", "data"):
            raise ValueError("level must be 'top' or 'data'")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be a positive integer")
        refusal = Refusal(method, code, message or _MESSAGES.get(code, code), level)
        with self._lock:
            self._refusals.append((refusal, [times]))
        return refusal

    def _take_refusal(self, method: str) -> Refusal | None:
        with self._lock:
            for refusal, left in self._refusals:
                if refusal.method == method and left[0] > 0:
                    left[0] -= 1
                    return refusal
        return None

    def _answer(self, rpc: str) -> Handler:
        handler = self._handlers[rpc]

        def answer(call: Call) -> dict[str, Any]:
            refusal = self._take_refusal(rpc)
            if refusal is not None:
                return _refused(refusal)
            return handler(call)

        return answer

    # ------------------------------------------------------------------ handlers

    def _app(self, call: Call) -> tuple[str, JobSpec]:
        app_id = call.query.get("AppId", "")
        if not app_id:
            raise SaeError(400, "InvalidParameter.NotEmpty", "AppId is mandatory for this action.")
        job = self.apps.get(app_id)
        if job is None:
            raise SaeError(
                400, "InvalidApplication.NotFound", "The current application does not exist."
            )
        return app_id, job

    def _exec_job(self, call: Call) -> dict[str, Any]:
        app_id, job = self._app(call)
        overrides = _overrides(call.query)
        event_id = call.query.get("EventId", "")
        # One lock over lookup and launch: two requests with one EventId make one job.
        with self._lock:
            known = self._events.get((app_id, event_id)) if event_id else None
            if known is None:
                try:
                    operation = self.store.run_job(job.full_name, RunRequest(overrides=overrides))
                except SaeError:
                    raise
                except ApiError as exc:  # the overrides, checked by the Cloud Run rules
                    raise SaeError(exc.http_status, "InvalidParameter", exc.message) from None
                known = f"manual-{uuid.uuid4()}"
                record = SaeJobRecord(
                    job_id=known,
                    app_id=app_id,
                    event_id=event_id,
                    execution=operation["metadata"]["name"],
                    create_time=self.store.clock(),
                    command=call.query.get("Command", ""),
                )
                self._jobs[known] = record
                if event_id:
                    self._events[(app_id, event_id)] = known
        return _ok({"Data": known, "Msg": "success", "Success": "true", "Code": "200"})

    def _describe_job_status(self, call: Call) -> dict[str, Any]:
        app_id, _ = self._app(call)
        job_id = call.query.get("JobId", "")
        with self._lock:
            record = self._jobs.get(job_id)
        if record is None or record.app_id != app_id:
            raise SaeError(404, "InvalidJob.NotFound", f"The job {job_id!r} does not exist.")
        data = self._job_json(record)
        if data is None:
            raise SaeError(404, "InvalidJob.NotFound", f"The job {job_id!r} was deleted.")
        return _ok(data)

    def _describe_job_history(self, call: Call) -> dict[str, Any]:
        app_id, _ = self._app(call)
        page = _positive(call.query, "CurrentPage", 1)
        size = _positive(call.query, "PageSize", 10)
        state = call.query.get("State", "")
        with self._lock:
            mine = [r for r in reversed(self._jobs.values()) if r.app_id == app_id]
        jobs = [j for j in (self._job_json(r) for r in mine) if j is not None]
        if state:
            jobs = [j for j in jobs if j["State"] == state]
        chunk = jobs[(page - 1) * size : page * size]
        return _ok({"CurrentPage": page, "PageSize": size, "TotalSize": len(jobs), "Jobs": chunk})

    def _job_json(self, record: SaeJobRecord) -> dict[str, Any] | None:
        rec = self.store.execution_record(record.execution)
        if rec is None:
            return None
        return {
            "JobId": record.job_id,
            "State": _state(rec),
            "Active": rec.machine.running_count,
            "Succeeded": rec.machine.succeeded_count,
            "Failed": rec.machine.failed_count + rec.machine.cancelled_count,
            "StartTime": _epoch(rec.start_time),
            "CompletionTime": _epoch(rec.completion_time),
            "Message": _message(rec),
        }


# ---------------------------------------------------------------------- request parsing


def _overrides(query: Mapping[str, str]) -> RunOverrides:
    args: tuple[str, ...] = ()
    clear = False
    if "CommandArgs" in query:
        parsed = _json_param(query, "CommandArgs", '["a","b"]')
        if not isinstance(parsed, list) or not all(isinstance(a, str) for a in parsed):
            raise SaeError(400, "InvalidParameter", "CommandArgs must be a JSON array of strings.")
        args, clear = tuple(parsed), not parsed
    env: tuple[tuple[str, str], ...] = ()
    if "Envs" in query:
        parsed = _json_param(query, "Envs", '[{"name":"envtmp","value":"0"}]')
        if not isinstance(parsed, list) or not all(
            isinstance(e, dict)
            and set(e) == {"name", "value"}
            and isinstance(e["name"], str)
            and isinstance(e["value"], str)
            for e in parsed
        ):
            raise SaeError(
                400,
                "InvalidParameter",
                'Envs must be a JSON array of {"name": ..., "value": ...} with string values.',
            )
        env = tuple((e["name"], e["value"]) for e in parsed)
        for name, value in env:
            # The tasks run under the Cloud Run task contract (CLOUD_RUN_*), checked alike.
            problem = env_name_problem(name) or env_value_problem(name, value)
            if problem is not None:
                raise SaeError(400, "InvalidParameter", f"Envs: {problem}.")
    task_count = None
    if "Replicas" in query:
        raw = query["Replicas"]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_TASK_COUNT:
            raise SaeError(
                400, "InvalidParameter", f"Replicas must be 1 to {MAX_TASK_COUNT}, not {raw!r}."
            )
        task_count = int(raw)
    container = None
    if args or clear or env:
        container = ContainerOverride(args=args, env=env, clear_args=clear)
    return RunOverrides(container=container, task_count=task_count)


def _json_param(query: Mapping[str, str], name: str, example: str) -> Any:
    try:
        return json.loads(query[name])
    except ValueError:
        raise SaeError(
            400, "InvalidParameter", f"{name} must be JSON, such as {example}."
        ) from None


def _positive(query: Mapping[str, str], name: str, default: int) -> int:
    raw = query.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise SaeError(400, "InvalidParameter", f"{name} must be a positive integer.")
    return int(raw)


def _refusal_fields(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise ValueError("the body must be a JSON object")
    allowed = {"method", "code", "message", "level", "times"}
    unknown = set(body) - allowed
    if unknown:
        raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
    return dict(body)


# ---------------------------------------------------------------------- answers


def _state(rec: ExecutionRecord) -> str:
    outcome = rec.machine.outcome
    if outcome is Outcome.SUCCEEDED:
        return "1"
    if outcome is not None:
        return "2"
    return "3" if rec.start_time else "0"


def _message(rec: ExecutionRecord) -> str:
    if rec.machine.outcome is Outcome.CANCELLED:
        return "The job was cancelled."
    return rec.failure_message or "success"


def _epoch(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment is not None else None


def _request_id() -> str:
    return str(uuid.uuid4()).upper()


def _ok(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "RequestId": _request_id(),
        "Message": "success",
        "TraceId": secrets.token_hex(13),
        "Data": data,
        "ErrorCode": "",
        "Code": "200",
        "Success": True,
    }


def _refused(refusal: Refusal) -> dict[str, Any]:
    if refusal.level == "data":
        body = _ok({"Data": "", "Msg": refusal.message, "Success": "false", "Code": refusal.code})
        return body
    return {
        "RequestId": _request_id(),
        "Message": refusal.message,
        "TraceId": secrets.token_hex(13),
        "Data": None,
        "ErrorCode": refusal.code,
        "Code": "400",
        "Success": False,
    }
