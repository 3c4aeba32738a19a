"""The HTTP shell every emulated API is served by: one socket, several services.

A ``Service`` (one per emulated API: ``cloudrun.CloudRunService`` today) knows its routes and its
state and nothing about sockets; the shell reads bodies, parses JSON, applies the shared fault
model (``faults.Faults``: latency, errors and dropped responses by RPC name), answers errors in
Google's shape (``rpc.ApiError``) and logs one line per request. Several services can share one
server because their routes do not overlap (each API has its own path prefix).

Control routes, common to every server:

    GET    /_emulator/health                  {"status": "ok", ...each service's facts}
    GET|POST|DELETE /_emulator/faults         DELETE /_emulator/faults/{id}
    POST   /_emulator/reset                   clear the faults, reset every service

and any other ``/_emulator/...`` route a service answers (``Service.control``).

Two optional hooks serve APIs that are not Google's: a service that names its RPC in a header
rather than the path (YARPC's ``Rpc-Procedure``) defines ``route_request(verb, path, headers)``,
used instead of ``route``; one with its own error shape defines ``render_error(err)`` returning
``(status, headers, body bytes)``, used for every error of its routes (injected faults too).
Handlers see the request headers in ``Call.headers``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from .faults import Decision, Faults
from .rpc import ApiError

log = logging.getLogger("triggers.emulators")

MAX_BODY_BYTES = 4 * 1024 * 1024


class Headers(Protocol):
    """A request's headers, looked up case-insensitively (http.server's email Message)."""

    def get(self, name: str, default: None = None, /) -> str | None: ...


def _no_headers() -> dict[str, str]:
    return {}


@dataclass(frozen=True, slots=True)
class Call:
    """One parsed request, handed to a route handler."""

    params: tuple[str, ...]
    query: Mapping[str, str]
    body: Any
    # the request's headers (case-insensitive: an email.message.Message from http.server)
    headers: Headers = field(default_factory=_no_headers)


Handler = Callable[[Call], dict[str, Any]]


class Service(Protocol):
    """One emulated API, as the shell serves it."""

    def route(self, verb: str, path: str) -> tuple[str, Handler, tuple[str, ...]] | None:
        """(RPC name, handler, path parameters) for a request of this API, else None."""
        ...

    def control(self, verb: str, path: str, body: Any) -> tuple[int, dict[str, Any]] | None:
        """Answer a ``/_emulator/...`` route of this service's own, else None."""
        ...

    def health(self) -> dict[str, Any]:
        """Facts for ``/_emulator/health``."""
        ...

    def render(self, result: dict[str, Any], query: Mapping[str, str]) -> dict[str, Any]:
        """The response body for a handler's result (e.g. enums as numbers on request)."""
        ...

    def reset(self) -> None:
        """Forget every resource created since the start."""
        ...

    def shutdown(self, timeout: float) -> None:
        """Stop what the service runs (task processes), waiting up to ``timeout`` seconds."""
        ...


def not_found(verb: str, path: str) -> ApiError:
    return ApiError(
        404, f"The requested URL {verb} {path} was not found on this server.", "NOT_FOUND"
    )


class RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "triggers-emulator"
    # Headers and body go out in two writes on a keep-alive connection; with Nagle on, the body
    # waits for the client's delayed ACK: ~40 ms added to every response.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer
    # per request, set first thing in _dispatch
    _started: float
    _rpc: str
    _note: str
    _logged: bool

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
        self._send_bytes(status, {"Content-Type": "application/json; charset=UTF-8"}, data)

    def _send_bytes(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._log_request(status)  # before the client can see the response and move on
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, service: Service | None, err: ApiError) -> None:
        render_error = getattr(service, "render_error", None)
        if render_error is None:
            self._send(err.http_status, err.body())
        else:
            self._send_bytes(*render_error(err))

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
        service: Service | None = None
        try:
            try:
                raw = self._read_body()
                if path.startswith("/_emulator/") or path == "/_emulator":
                    self._rpc = "emulator"
                    status, result = self._control(verb, path, _json_body(raw))
                    self._send(status, result)
                    return
                service, routed = self.server.route(verb, path, self.headers)
                self._rpc, handler, params = routed
                body = _json_body(raw)
                decision = self.server.faults.take(self._rpc, path)
                self._note = _describe(decision)
                if decision.latency:
                    self.server.stopping.wait(decision.latency)
                if decision.error is not None:
                    f = decision.error
                    raise _injected(service, f.status, f.message or None)
                result = handler(Call(params, query, body, self.headers))
                if decision.drop is not None:
                    self._drop(service, decision)
                    return
                self._send(200, service.render(result, query))
            except ApiError as err:
                self._send_error(service, err)
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

    def _drop(self, service: Service, decision: Decision) -> None:
        fault = decision.drop
        assert fault is not None
        if fault.mode == "status":
            self._send_error(service, _injected(service, fault.status, fault.message or None))
            return
        self._log_request(0)
        if fault.mode == "timeout":
            self.server.stopping.wait(fault.seconds)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _control(self, verb: str, path: str, body: Any) -> tuple[int, dict[str, Any]]:
        server = self.server
        if path == "/_emulator/health" and verb == "GET":
            facts: dict[str, Any] = {"status": "ok"}
            for service in server.services:
                facts.update(service.health())
            return 200, facts
        if path == "/_emulator/reset" and verb == "POST":
            server.reset()
            return 200, {}
        if path == "/_emulator/faults":
            if verb == "GET":
                return 200, {"faults": server.faults.list()}
            if verb == "DELETE":
                server.faults.clear()
                return 200, {}
            if verb == "POST":
                try:
                    fault = server.faults.add_from_json(body)
                except (ValueError, TypeError) as exc:
                    raise ApiError.invalid(str(exc)) from None
                return 200, fault.as_json()
        m = re.fullmatch(r"/_emulator/faults/(\d+)", path)
        if m and verb == "DELETE":
            if server.faults.remove(int(m.group(1))):
                return 200, {}
            raise ApiError(404, f"no fault {m.group(1)}", "NOT_FOUND")
        for service in server.services:
            answer = service.control(verb, path, body)
            if answer is not None:
                return answer
        raise not_found(verb, path)


def _json_body(raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ApiError.invalid(f"Invalid JSON payload received. {exc}") from None


def _injected(service: Service, status: int, message: str | None) -> ApiError:
    """An injected fault's error, in the service's own wire shape when it has one (a non-Google
    API defines ``injected_error(status, message)``), else Google's."""
    make = getattr(service, "injected_error", None)
    return make(status, message) if make is not None else ApiError.injected(status, message)


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
    """Serves ``services`` on one address, with one fault model for all of them."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], services: Sequence[Service], faults: Faults
    ) -> None:
        self.services = tuple(services)
        self.faults = faults
        self.stopping = threading.Event()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, RequestHandler)

    def route(
        self, verb: str, path: str, headers: Headers | None = None
    ) -> tuple[Service, tuple[str, Handler, tuple[str, ...]]]:
        for service in self.services:
            route_request = getattr(service, "route_request", None)
            if route_request is not None:
                routed = route_request(verb, path, {} if headers is None else headers)
            else:
                routed = service.route(verb, path)
            if routed is not None:
                return service, routed
        raise not_found(verb, path)

    def reset(self) -> None:
        self.faults.clear()
        for service in self.services:
            service.reset()
