"""The Cloud Run Admin API v2 REST routes, as the google-cloud-run client calls them, over the
store; served by the shared shell (``triggers.emulators.http``), which owns sockets, faults and
the common control routes.

Routes (``{name}`` segments are single path segments):

    POST   /v2/projects/{p}/locations/{l}/jobs/{job}:run                         RunJob
    GET    /v2/projects/{p}/locations/{l}/jobs/{job}                             GetJob
    GET    /v2/projects/{p}/locations/{l}/jobs                                   ListJobs
    GET    /v2/projects/{p}/locations/{l}/jobs/{job}/executions                  ListExecutions
    GET    /v2/projects/{p}/locations/{l}/jobs/{job}/executions/{e}              GetExecution
    POST   /v2/projects/{p}/locations/{l}/jobs/{job}/executions/{e}:cancel       CancelExecution
    DELETE /v2/projects/{p}/locations/{l}/jobs/{job}/executions/{e}              DeleteExecution
    GET    /v2/projects/{p}/locations/{l}/operations/{op}                        GetOperation
    GET    /v2/projects/{p}/locations/{l}/operations                             ListOperations
    POST   /v2/projects/{p}/locations/{l}/operations/{op}:wait                   WaitOperation
    DELETE /v2/projects/{p}/locations/{l}/operations/{op}                        DeleteOperation

    GET    /_emulator/jobs | /_emulator/executions      (this service's control routes)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from ..http import Call, Handler
from ..rpc import ApiError
from .overrides import parse_proto_duration, parse_run_body
from .quota import RunQuota
from .resources import to_int_enums
from .state import Store

_SEG = r"([^/:]+)"
_LOC = rf"/v2/projects/{_SEG}/locations/{_SEG}"


def _q_int(call: Call, json_name: str, proto_name: str) -> int:
    raw = call.query.get(json_name, call.query.get(proto_name, ""))
    if raw == "":
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ApiError.invalid(
            f"Invalid value at '{proto_name}' (TYPE_INT32), \"{raw}\"", proto_name
        ) from None


def _q_str(call: Call, json_name: str, proto_name: str) -> str:
    return call.query.get(json_name, call.query.get(proto_name, ""))


def _q_bool(call: Call, json_name: str, proto_name: str) -> bool:
    raw = call.query.get(json_name, call.query.get(proto_name, "")).lower()
    if raw in ("", "false", "0"):
        return False
    if raw in ("true", "1"):
        return True
    raise ApiError.invalid(f"Invalid value at '{proto_name}' (TYPE_BOOL), \"{raw}\"", proto_name)


def _body_obj(call: Call) -> Mapping[str, Any]:
    if call.body is None:
        return {}
    if not isinstance(call.body, Mapping):
        raise ApiError.invalid("Invalid JSON payload received. Expected an object.")
    return call.body


class CloudRunService:
    """The Cloud Run Admin API v2 as a ``triggers.emulators.http.Service``: requests to the
    store; knows nothing about sockets."""

    def __init__(self, store: Store, quota: RunQuota | None = None) -> None:
        self.store = store
        self.quota = quota  # jobs.run requests per minute per region (429 past it); None: none
        s = store
        job = rf"{_LOC}/jobs/{_SEG}"
        execution = rf"{job}/executions/{_SEG}"
        op = rf"{_LOC}/operations/{_SEG}"
        self.routes: list[tuple[str, re.Pattern[str], str, Handler]] = [
            ("POST", re.compile(rf"^{job}:run$"), "RunJob", self._run_job),
            ("GET", re.compile(rf"^{job}$"), "GetJob", lambda c: s.get_job(_job_name(c.params))),
            ("GET", re.compile(rf"^{_LOC}/jobs$"), "ListJobs", self._list_jobs),
            ("GET", re.compile(rf"^{job}/executions$"), "ListExecutions", self._list_executions),
            (
                "GET",
                re.compile(rf"^{execution}$"),
                "GetExecution",
                lambda c: s.get_execution(_exec_name(c.params)),
            ),
            (
                "POST",
                re.compile(rf"^{execution}:cancel$"),
                "CancelExecution",
                self._cancel_execution,
            ),
            ("DELETE", re.compile(rf"^{execution}$"), "DeleteExecution", self._delete_execution),
            (
                "GET",
                re.compile(rf"^{op}$"),
                "GetOperation",
                lambda c: s.get_operation(_op_name(c.params)),
            ),
            ("GET", re.compile(rf"^{_LOC}/operations$"), "ListOperations", self._list_operations),
            ("POST", re.compile(rf"^{op}:wait$"), "WaitOperation", self._wait_operation),
            (
                "DELETE",
                re.compile(rf"^{op}$"),
                "DeleteOperation",
                lambda c: s.delete_operation(_op_name(c.params)),
            ),
        ]

    def route(self, verb: str, path: str) -> tuple[str, Handler, tuple[str, ...]] | None:
        for method, pattern, rpc, handler in self.routes:
            if method != verb:
                continue
            m = pattern.match(path)
            if m:
                return rpc, handler, tuple(unquote(g) for g in m.groups())
        return None

    def control(self, verb: str, path: str, body: Any) -> tuple[int, dict[str, Any]] | None:
        if verb != "GET":
            return None
        if path == "/_emulator/jobs":
            jobs = [{"name": j.full_name, "source": j.source} for j in self.store.catalog]
            return 200, {"jobs": jobs}
        if path == "/_emulator/executions":
            return 200, self.store.dump()
        return None

    def health(self) -> dict[str, Any]:
        return {"jobs": len(self.store.catalog)}

    def render(self, result: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        # The Python client asks with `$alt=json;enum-encoding=int`.
        if "enum-encoding=int" in query.get("$alt", ""):
            return to_int_enums(result)
        return result

    def reset(self) -> None:
        self.store.reset()
        if self.quota is not None:
            self.quota.reset()  # a clean slate: no run counted against this minute

    def shutdown(self, timeout: float) -> None:
        self.store.shutdown(timeout)

    # ------------------------------------------------------------------ v2 handlers

    def _run_job(self, call: Call) -> dict[str, Any]:
        request = parse_run_body(call.body)
        name = _job_name(call.params)
        if self.quota is not None and not request.validate_only:
            self.quota.take(name.split("/")[3])  # projects/P/locations/REGION/jobs/J
        return self.store.run_job(name, request)

    def _list_jobs(self, call: Call) -> dict[str, Any]:
        project, location = call.params
        return self.store.list_jobs(
            project,
            location,
            _q_int(call, "pageSize", "page_size"),
            _q_str(call, "pageToken", "page_token"),
        )

    def _list_executions(self, call: Call) -> dict[str, Any]:
        return self.store.list_executions(
            _job_name(call.params),
            _q_int(call, "pageSize", "page_size"),
            _q_str(call, "pageToken", "page_token"),
        )

    def _cancel_execution(self, call: Call) -> dict[str, Any]:
        body = _body_obj(call)
        name = _exec_name(call.params)
        if body.get("validateOnly", body.get("validate_only", False)) is True:
            return _validated(self.store.get_execution(name))
        return self.store.cancel_execution(name)

    def _delete_execution(self, call: Call) -> dict[str, Any]:
        name = _exec_name(call.params)
        if _q_bool(call, "validateOnly", "validate_only"):
            return _validated(self.store.get_execution(name))
        return self.store.delete_execution(name)

    def _list_operations(self, call: Call) -> dict[str, Any]:
        project, location = call.params
        return self.store.list_operations(
            f"projects/{project}/locations/{location}",
            _q_int(call, "pageSize", "page_size"),
            _q_str(call, "pageToken", "page_token"),
        )

    def _wait_operation(self, call: Call) -> dict[str, Any]:
        body = _body_obj(call)
        timeout = None
        if body.get("timeout") is not None:
            timeout = parse_proto_duration(body["timeout"], "timeout")
        return self.store.wait_operation(_op_name(call.params), timeout)


def _validated(execution: dict[str, Any]) -> dict[str, Any]:
    """What a validate-only cancel or delete answers: a done Operation naming the execution."""
    return {"name": "", "done": True, "metadata": _any(execution), "response": _any(execution)}


def _any(execution: dict[str, Any]) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.cloud.run.v2.Execution", **execution}


def _job_name(p: tuple[str, ...]) -> str:
    return f"projects/{p[0]}/locations/{p[1]}/jobs/{p[2]}"


def _exec_name(p: tuple[str, ...]) -> str:
    return f"projects/{p[0]}/locations/{p[1]}/jobs/{p[2]}/executions/{p[3]}"


def _op_name(p: tuple[str, ...]) -> str:
    return f"projects/{p[0]}/locations/{p[1]}/operations/{p[2]}"
