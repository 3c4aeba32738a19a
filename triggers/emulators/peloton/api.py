"""Peloton's v0 JobManager over YARPC-HTTP with the JSON encoding, as a Service of the shared
shell (``triggers.emulators.http``).

Every call is ``POST /api/v1``; the procedure is named by a header, as YARPC does::

    Rpc-Caller: triggers                 required, non-empty
    Rpc-Service: peloton-jobmgr          required, must be this
    Rpc-Procedure: peloton.api.v0.job.JobManager::Create     (::Get, ::Query, ::Delete,
                   peloton.api.v0.task.TaskManager::Stop)
    Rpc-Encoding: json                   required, must be json
    Context-TTL-MS: 30000                required, a positive integer

Bodies are the protobuf JSON mapping of the v0 messages (camelCase field names, enums as
names). Results the API defines as errors *of the procedure* come back in the body with HTTP
200 (``{"error": {"alreadyExists": {...}}}``, ``notFound``, ``invalidConfig``,
``invalidJobId``); transport and server errors are YARPC errors: an HTTP status with the
``Rpc-Status`` header (``invalid-argument``, ``unimplemented``, ``unavailable``,
``resource-exhausted``, ...) and the message as a text/plain body. Fault names are the full
procedure names; an injected 503 says "not leader" (a follower job manager answered) and a 429
is a rate limit, unless the fault gives its own message.

    GET /_emulator/peloton/jobs     every job's JobInfo (this service's control route)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..http import Call, Handler, Headers
from ..rpc import ApiError
from .store import AlreadyExists, InvalidConfig, JobStore, NotRunning

PATH = "/api/v1"
SERVICE = "peloton-jobmgr"
JOB_MANAGER = "peloton.api.v0.job.JobManager"
TASK_MANAGER = "peloton.api.v0.task.TaskManager"

#: YARPC error code -> the HTTP status its HTTP transport answers with.
YARPC_STATUS = {
    "cancelled": 499,
    "unknown": 500,
    "invalid-argument": 400,
    "deadline-exceeded": 504,
    "not-found": 404,
    "already-exists": 409,
    "permission-denied": 403,
    "resource-exhausted": 429,
    "failed-precondition": 400,
    "aborted": 409,
    "out-of-range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "data-loss": 500,
    "unauthenticated": 401,
}
_CODE_OF_STATUS = {
    400: "invalid-argument",
    401: "unauthenticated",
    403: "permission-denied",
    404: "not-found",
    409: "aborted",
    429: "resource-exhausted",
    499: "cancelled",
    501: "unimplemented",
    503: "unavailable",
    504: "deadline-exceeded",
}
_INJECTED_MESSAGES = {
    "unavailable": "not leader: this peloton-jobmgr is a follower (injected by the emulator)",
    "resource-exhausted": "rate limit exceeded for peloton-jobmgr (injected by the emulator)",
}


class YarpcError(ApiError):
    """A YARPC error: ``code`` is its Rpc-Status."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(YARPC_STATUS[code], message)
        self.code = code


class PelotonService:
    """The JobManager procedures over ``store``; routed by the ``Rpc-Procedure`` header."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self._procedures: dict[str, Callable[[Any], dict[str, Any]]] = {
            f"{JOB_MANAGER}::Create": self._create,
            f"{JOB_MANAGER}::Get": self._get,
            f"{JOB_MANAGER}::Query": self._query,
            f"{JOB_MANAGER}::Delete": self._delete,
            f"{TASK_MANAGER}::Stop": self._stop,
        }

    # ------------------------------------------------------------------ Service

    def route(self, verb: str, path: str) -> tuple[str, Handler, tuple[str, ...]] | None:
        return None  # YARPC names the procedure in a header: see route_request

    def route_request(
        self, verb: str, path: str, headers: Headers
    ) -> tuple[str, Handler, tuple[str, ...]] | None:
        if path != PATH:
            return None
        procedure = headers.get("Rpc-Procedure") or ""
        known = procedure in self._procedures
        return (procedure if known else "peloton", self._handler(verb), ())

    def control(self, verb: str, path: str, body: Any) -> tuple[int, dict[str, Any]] | None:
        if path == "/_emulator/peloton/jobs" and verb == "GET":
            jobs, _ = self.store.query([], [], 0, 0)
            return 200, {"jobs": jobs}
        return None

    def health(self) -> dict[str, Any]:
        return {"peloton_jobs": self.store.count()}

    def render(self, result: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        return result

    def render_error(self, err: ApiError) -> tuple[int, dict[str, str], bytes]:
        if isinstance(err, YarpcError):
            code, message = err.code, err.message
        else:  # from the shell: an injected fault, a body that is not JSON, ...
            fallback = "internal" if err.http_status >= 500 else "invalid-argument"
            code = _CODE_OF_STATUS.get(err.http_status, fallback)
            message = err.message
            if "(emulator fault)" in message or "(injected by the emulator)" in message:
                message = _INJECTED_MESSAGES.get(code, message)
        headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "Rpc-Status": code,
            "Rpc-Service": SERVICE,
        }
        return YARPC_STATUS.get(code, err.http_status), headers, message.encode()

    def reset(self) -> None:
        self.store.reset()

    def shutdown(self, timeout: float) -> None:
        self.store.shutdown(timeout)

    # ------------------------------------------------------------------ YARPC inbound

    def _handler(self, verb: str) -> Handler:
        def handle(call: Call) -> dict[str, Any]:
            if verb != "POST":
                raise YarpcError("invalid-argument", f"YARPC over HTTP takes POST, not {verb}")
            procedure = _check_headers(call.headers)
            run = self._procedures.get(procedure)
            if run is None:
                raise YarpcError(
                    "unimplemented",
                    f'unrecognized procedure "{procedure}" for service "{SERVICE}"',
                )
            if not isinstance(call.body, dict):
                raise YarpcError("invalid-argument", "the request body must be a JSON object")
            return run(call.body)

        return handle

    # ------------------------------------------------------------------ procedures

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id = _job_id(body, required=False)
        try:
            created = self.store.create(job_id, body.get("config"))
        except AlreadyExists:
            message = f"job {job_id} already exists"
            return {"error": {"alreadyExists": {"id": {"value": job_id}, "message": message}}}
        except InvalidConfig as exc:
            return {"error": {"invalidConfig": {"id": {"value": job_id}, "message": str(exc)}}}
        except ValueError as exc:
            return {"error": {"invalidJobId": {"id": {"value": job_id}, "message": str(exc)}}}
        except NotRunning as exc:
            raise YarpcError("unavailable", str(exc)) from None
        return {"jobId": {"value": created}}

    def _get(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id = _job_id(body)
        info = self.store.get(job_id)
        if info is None:
            return {"error": {"notFound": _not_found(job_id)}}
        return {"jobInfo": info}

    def _query(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = body.get("spec") or {}
        pagination = spec.get("pagination") or {}
        labels = spec.get("labels") or []
        states = spec.get("jobStates") or []
        offset, limit = pagination.get("offset", 0), pagination.get("limit", 0)
        if not all(isinstance(n, int) and n >= 0 for n in (offset, limit)):
            raise YarpcError("invalid-argument", "pagination offset and limit must be >= 0")
        records, total = self.store.query(labels, states, offset, limit)
        return {
            "records": records,
            "pagination": {"offset": offset, "limit": limit, "total": total},
            "spec": spec,
        }

    def _delete(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id = _job_id(body)
        try:
            deleted = self.store.delete(job_id)
        except NotRunning as exc:
            raise YarpcError("failed-precondition", str(exc)) from None
        return {} if deleted else {"error": {"notFound": _not_found(job_id)}}

    def _stop(self, body: dict[str, Any]) -> dict[str, Any]:
        job_id = _job_id({"id": body.get("jobId")})
        stopped = self.store.stop(job_id)
        if stopped is None:
            return {"error": {"notFound": _not_found(job_id)}}
        return {"stoppedInstanceIds": stopped, "invalidInstanceIds": []}


def _check_headers(headers: Headers) -> str:
    """The procedure of a YARPC-HTTP request whose headers are all right; YarpcError else."""
    if not headers.get("Rpc-Caller"):
        raise YarpcError("invalid-argument", "missing caller name (Rpc-Caller)")
    service = headers.get("Rpc-Service")
    if not service:
        raise YarpcError("invalid-argument", "missing service name (Rpc-Service)")
    procedure = headers.get("Rpc-Procedure")
    if not procedure:
        raise YarpcError("invalid-argument", "missing procedure (Rpc-Procedure)")
    if service != SERVICE:
        raise YarpcError(
            "unimplemented", f'unrecognized procedure "{procedure}" for service "{service}"'
        )
    encoding = headers.get("Rpc-Encoding")
    if not encoding:
        raise YarpcError("invalid-argument", "missing encoding (Rpc-Encoding)")
    if encoding != "json":
        raise YarpcError("invalid-argument", f'unsupported encoding "{encoding}": use json')
    ttl = headers.get("Context-TTL-MS")
    if not ttl:
        raise YarpcError("invalid-argument", "missing TTL (Context-TTL-MS)")
    if not ttl.isdigit() or int(ttl) <= 0:
        raise YarpcError("invalid-argument", f'invalid TTL "{ttl}": must be a positive integer')
    return procedure


def _job_id(body: dict[str, Any], *, required: bool = True) -> Any:
    ident = body.get("id")
    value = ident.get("value") if isinstance(ident, dict) else None
    if required and not isinstance(value, str):
        raise YarpcError("invalid-argument", "id.value (the job UUID) is required")
    return value


def _not_found(job_id: str) -> dict[str, Any]:
    return {"id": {"value": job_id}, "message": f"job {job_id} not found"}
