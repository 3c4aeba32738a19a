"""The HTTP layer: Cloud Run Admin API v2 REST routes (as the google-cloud-run client calls them),
the ``/_emulator/*`` control routes, fault injection, one log line per request.

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

    GET    /_emulator/health | /_emulator/jobs | /_emulator/executions
    GET|POST|DELETE /_emulator/faults      DELETE /_emulator/faults/{id}
    POST   /_emulator/reset
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..faults import Decision, Faults
from ..rpc import ApiError
from .overrides import parse_proto_duration, parse_run_body
from .resources import to_int_enums
from .state import Store

log = logging.getLogger("triggers.emulators")

MAX_BODY_BYTES = 4 * 1024 * 1024
_SEG = r"([^/:]+)"
_LOC = rf"/v2/projects/{_SEG}/locations/{_SEG}"


@dataclass(frozen=True, slots=True)
class Call:
    """One parsed request, handed to a route handler."""

    params: tuple[str, ...]
    query: Mapping[str, str]
    body: Any


Handler = Callable[[Call], dict[str, Any]]


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


class Api:
    """Maps requests to the store; knows nothing about sockets (see ``RequestHandler``)."""

    def __init__(self, store: Store, faults: Faults) -> None:
        self.store = store
        self.faults = faults
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

    # ------------------------------------------------------------------ v2 handlers

    def _run_job(self, call: Call) -> dict[str, Any]:
        request = parse_run_body(call.body)
        return self.store.run_job(_job_name(call.params), request)

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
            execution = self.store.get_execution(name)
            return {
                "name": "",
                "done": True,
                "metadata": _any(execution),
                "response": _any(execution),
            }
        return self.store.cancel_execution(name)

    def _delete_execution(self, call: Call) -> dict[str, Any]:
        name = _exec_name(call.params)
        if _q_bool(call, "validateOnly", "validate_only"):
            execution = self.store.get_execution(name)
            return {
                "name": "",
                "done": True,
                "metadata": _any(execution),
                "response": _any(execution),
            }
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


def _any(execution: dict[str, Any]) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.cloud.run.v2.Execution", **execution}


def _job_name(p: tuple[str, ...]) -> str:
    return f"projects/{p[0]}/locations/{p[1]}/jobs/{p[2]}"


def _exec_name(p: tuple[str, ...]) -> str:
    return f"projects/{p[0]}/locations/{p[1]}/jobs/{p[2]}/executions/{p[3]}"


def _op_name(p: tuple[str, ...]) -> str:
    return f"projects/{p[0]}/locations/{p[1]}/operations/{p[2]}"


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "triggers-cloud-run-emulator"
    # Headers and body go out in two writes on a keep-alive connection; with Nagle on, the body
    # waits for the client's delayed ACK: ~40 ms added to every response.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("http: " + format, *args)

    # ------------------------------------------------------------------ plumbing

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise ApiError(413, "Request body too large", "INVALID_ARGUMENT")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ApiError(413, "Request body too large", "INVALID_ARGUMENT")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, separators=(",", ":")).encode("utf-8")
        self._log_request(status)  # before the client can see the response and move on
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _log_request(self, status: int, extra: str = "") -> None:
        if self._logged:
            return
        self._logged = True
        elapsed = (time.monotonic() - self._started) * 1000
        note = ", ".join(x for x in (self._note, extra) if x)
        shown = str(status) if status else "dropped"
        log.info(
            "%s %s %s -> %s %.1fms%s",
            self.command,
            self.path,
            self._rpc,
            shown,
            elapsed,
            f" [{note}]" if note else "",
        )

    def _dispatch(self, verb: str) -> None:
        self._started = time.monotonic()
        self._rpc, self._note, self._logged = "-", "", False
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            try:
                raw = self._read_body()
                body = None
                if raw.strip():
                    try:
                        body = json.loads(raw)
                    except ValueError as exc:
                        raise ApiError.invalid(f"Invalid JSON payload received. {exc}") from None
                if path.startswith("/_emulator/") or path == "/_emulator":
                    self._rpc = "emulator"
                    status, result = self._control(verb, path, body)
                    self._send(status, result)
                    return
                routed = self.server.api.route(verb, path)
                if routed is None:
                    raise ApiError(
                        404,
                        f"The requested URL {verb} {path} was not found on this server.",
                        "NOT_FOUND",
                    )
                self._rpc, handler, params = routed
                decision = self.server.api.faults.take(self._rpc, path)
                self._note = _describe(decision)
                if decision.latency:
                    self.server.stopping.wait(decision.latency)
                if decision.error is not None:
                    f = decision.error
                    raise ApiError.injected(f.status, f.message or None)
                result = handler(Call(params, query, body))
                if decision.drop is not None:
                    self._drop(decision)
                    return
                if "enum-encoding=int" in query.get("$alt", ""):
                    result = to_int_enums(result)
                self._send(200, result)
            except ApiError as err:
                self._send(err.http_status, err.body())
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self._log_request(0, "client went away")
        except Exception as exc:  # a bug: answer 500, keep serving
            log.exception("internal error handling %s %s", verb, path)
            try:
                self._send(500, ApiError(500, f"emulator internal error: {exc}").body())
            except OSError:
                self.close_connection = True
        finally:
            self._log_request(0)

    def _drop(self, decision: Decision) -> None:
        fault = decision.drop
        assert fault is not None
        if fault.mode == "status":
            err = ApiError.injected(fault.status, fault.message or None)
            self._send(err.http_status, err.body())
            return
        self._log_request(0)
        if fault.mode == "timeout":
            self.server.stopping.wait(fault.seconds)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _control(self, verb: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        api = self.server.api
        if path == "/_emulator/health" and verb == "GET":
            return 200, {"status": "ok", "jobs": len(api.store.catalog)}
        if path == "/_emulator/jobs" and verb == "GET":
            return 200, {
                "jobs": [{"name": j.full_name, "source": j.source} for j in api.store.catalog]
            }
        if path == "/_emulator/executions" and verb == "GET":
            return 200, api.store.dump()
        if path == "/_emulator/reset" and verb == "POST":
            api.faults.clear()
            api.store.reset()
            return 200, {}
        if path == "/_emulator/faults":
            if verb == "GET":
                return 200, {"faults": api.faults.list()}
            if verb == "DELETE":
                api.faults.clear()
                return 200, {}
            if verb == "POST":
                try:
                    fault = api.faults.add_from_json(body)
                except (ValueError, TypeError) as exc:
                    raise ApiError.invalid(str(exc)) from None
                return 200, fault.as_json()
        m = re.fullmatch(r"/_emulator/faults/(\d+)", path)
        if m and verb == "DELETE":
            if api.faults.remove(int(m.group(1))):
                return 200, {}
            raise ApiError(404, f"no fault {m.group(1)}", "NOT_FOUND")
        raise ApiError(
            404, f"The requested URL {verb} {path} was not found on this server.", "NOT_FOUND"
        )


def _describe(decision: Decision) -> str:
    parts = []
    if decision.latency:
        parts.append(f"fault: +{decision.latency:g}s")
    if decision.error is not None:
        parts.append(f"fault: error {decision.error.status}")
    if decision.drop is not None:
        parts.append(f"fault: drop ({decision.drop.mode})")
    return ", ".join(parts)


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: Api) -> None:
        self.api = api
        self.stopping = threading.Event()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, RequestHandler)
