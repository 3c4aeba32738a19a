"""The console's HTTP side: a small WSGI app of static files and JSON endpoints.

    GET  /                      the page (static/index.html; console.js fills it in)
    GET  /static/<file>         its CSS and JS
    GET  /api/rules             the rules in use (after a reload: the new ones)
    GET  /api/events?after=N    the requests the function answered, after number N
    GET  /api/runs              the ledger's newest records, each with its emulator execution
    GET  /api/logs/<execution>/<task>/<attempt>   one task attempt's log (text)
    POST /api/plan              body: an event file or a bare JSON body -> every rule's verdict
                                and the exact request (what `triggers plan` shows)
    POST /api/reconcile         one `triggers reconcile` pass over this stack's ledger

`LocalServer` mounts it at `/_console` on the function's own server (werkzeug's
DispatcherMiddleware), so the deployed function never serves it. The page uses relative URLs:
it works under whatever prefix it is mounted at.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Any

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.utils import redirect
from werkzeug.wrappers import Request, Response

from .recorder import EventLog
from .views import executions_by_name, plan_json, rules_json, runs_json

log = logging.getLogger("triggers.local.console")

PREFIX = "/_console"
STATIC_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
RUNS_LIMIT = 100
MAX_LOG_BYTES = 256 * 1024  # a log's tail beyond this is what a user wants to see anyway


class Console:
    """WSGI app over a running `LocalServer` (its rules, ledger, emulator) and its EventLog."""

    def __init__(self, server: Any, events: EventLog) -> None:
        self.server = server
        self.events = events
        self.urls = Map(
            [
                Rule("/", endpoint="page", methods=["GET"]),
                Rule("/static/<name>", endpoint="static", methods=["GET"]),
                Rule("/api/rules", endpoint="rules", methods=["GET"]),
                Rule("/api/events", endpoint="events", methods=["GET"]),
                Rule("/api/runs", endpoint="runs", methods=["GET"]),
                Rule(
                    "/api/logs/<short>/<int:index>/<int:attempt>",
                    endpoint="logs",
                    methods=["GET"],
                ),
                Rule("/api/plan", endpoint="plan", methods=["POST"]),
                Rule("/api/reconcile", endpoint="reconcile", methods=["POST"]),
            ],
            strict_slashes=False,
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        if not environ.get("PATH_INFO"):
            # `/_console` without the slash: the page's relative URLs need it.
            return redirect(request.script_root + "/")(environ, start_response)
        adapter = self.urls.bind_to_environ(environ)
        try:
            endpoint, values = adapter.match()
            response = getattr(self, f"_{endpoint}")(request, **values)
        except MethodNotAllowed as exc:
            response = _json({"error": exc.description}, exc.code or 405)
        except NotFound:
            response = _json({"error": f"no such console path: {request.path}"}, 404)
        except HTTPException as exc:
            response = _json({"error": exc.description}, exc.code or 400)
        except Exception as exc:  # a console bug must show as an error, not kill the server
            log.exception("console request %s failed", request.path)
            response = _json({"error": f"{type(exc).__name__}: {exc}"}, 500)
        return response(environ, start_response)

    # -- endpoints ------------------------------------------------------------------------------

    def _page(self, request: Request) -> Response:
        return self._static(request, "index.html")

    def _static(self, request: Request, name: str) -> Response:
        kind = STATIC_TYPES.get(name[name.rfind(".") :] if "." in name else "")
        source = resources.files(__package__).joinpath("static", name)
        if kind is None or "/" in name or not source.is_file():
            raise NotFound()
        response = Response(source.read_bytes(), content_type=f"{kind}; charset=utf-8")
        response.headers["Cache-Control"] = "no-cache"
        return response

    def _rules(self, request: Request) -> Response:
        server = self.server
        return _json(
            {
                "file": server.options.rules,
                "function": server.url,
                "ledger": str(server.sqlite_path) if server.sqlite_path else "memory",
                "emulator": server.emulator.url if server.emulator is not None else None,
                "dry_run": server.options.dry_run,
                "rules": rules_json(server.rules),
            }
        )

    def _events(self, request: Request) -> Response:
        try:
            after = int(request.args.get("after", "0"))
        except ValueError:
            return _json({"error": "after: a number (the last seq the page has)"}, 400)
        return _json({"instance": self.events.instance, "events": self.events.after(after)})

    def _runs(self, request: Request) -> Response:
        try:
            records = self.server.app.ledger.list(limit=RUNS_LIMIT)
        except Exception as exc:  # a busy SQLite file: the page asks again next second
            return _json({"error": f"cannot read the ledger: {exc}"}, 503)
        emulator = self.server.emulator
        executions = executions_by_name(emulator.store.dump()) if emulator is not None else {}
        return _json({"runs": runs_json(records, executions)})

    def _logs(self, request: Request, short: str, index: int, attempt: int) -> Response:
        emulator = self.server.emulator
        records = emulator.store.records() if emulator is not None else []
        execution = next((r for r in records if r.short == short), None)
        found = next(
            (
                a
                for a in (execution.attempts if execution else [])
                if a.index == index and a.attempt == attempt
            ),
            None,
        )
        if found is None:
            raise NotFound()
        try:
            with open(found.log_path, "rb") as file:
                file.seek(0, 2)
                size = file.tell()
                file.seek(max(0, size - MAX_LOG_BYTES))
                data = file.read()
        except FileNotFoundError:
            data, size = b"", 0  # the task has not written anything yet
        prefix = b"[...]\n" if size > MAX_LOG_BYTES else b""
        return Response(prefix + data, content_type="text/plain; charset=utf-8")

    def _plan(self, request: Request) -> Response:
        text = request.get_data(as_text=True)
        if not text.strip():
            return _json({"error": "paste an event file ({headers, body}) or a JSON body"}, 400)
        return _json(plan_json(text, self.server.rules))

    def _reconcile(self, request: Request) -> Response:
        return _json(self.server.reconcile())


def _json(value: Any, status: int = 200) -> Response:
    response = Response(json.dumps(value, default=str), status, content_type="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
