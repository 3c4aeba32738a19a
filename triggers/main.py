"""functions-framework entry points. Deploy with `--entry-point handle_http` (every input form:
Pub/Sub push, GCS notifications, Scheduler HTTP, CloudEvents) or `handle_cloudevent` (an
Eventarc trigger). Both share one path: `App.handle(headers, body)`.

    functions-framework --source triggers/main.py --target handle_http

Imports are absolute because functions-framework loads this file by path, as module `main`.
The app is built when functions-framework loads this file, so that a broken rules file or
setting fails the instance's start (and so the deployment) instead of every event, and is
reused by every request on this instance. Google clients are still created on first use.
"""

from __future__ import annotations

import threading

import functions_framework

from triggers.app import App
from triggers.logs import configure
from triggers.settings import Settings, log_project

_app: App | None = None
_lock = threading.Lock()


class RetryLater(Exception):
    """Raised from the CloudEvent target to make functions-framework answer 500 (a NACK)."""


def get_app() -> App:
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                settings = Settings()
                configure(settings.log_level, log_project(settings))
                _app = App(settings)
    return _app


def set_app(app: App | None) -> None:
    """Install a prepared app (tests, `triggers serve`)."""
    global _app
    with _lock:
        _app = app


if __name__ != "triggers.main":
    # functions-framework executes this file by path as a second module (`main`): share the
    # one app of `triggers.main`, where set_app installs it, instead of building another.
    from triggers.main import get_app, set_app  # noqa: F811

    get_app()  # fail at start, with every rules problem listed, rather than at the first event


@functions_framework.http
def handle_http(request):
    response = get_app().handle(request.headers, request.get_data(cache=False))
    return response.body, response.status, response.headers


# Request headers that are about the delivery, not the event: kept for the CloudEvent target.
_TRANSPORT_HEADERS = ("authorization", "x-cloud-trace-context", "user-agent")


@functions_framework.cloud_event
def handle_cloudevent(cloud_event):
    from cloudevents.conversion import to_binary
    from flask import request

    headers, body = to_binary(cloud_event)
    headers = dict(headers)
    for name in _TRANSPORT_HEADERS:  # the event alone carries no trace and no token
        value = request.headers.get(name)
        if value is not None:
            headers[name] = value
    response = get_app().handle(headers, body or b"")
    if response.status >= 300:
        raise RetryLater(f"{response.status}: {response.body}")


@functions_framework.http
def handle_reconcile(request):
    """Scheduled (Cloud Scheduler, HTTP): move finished `launched` records to their outcome.

    200 with the JSON report; 503 when the ledger cannot be listed (the next tick retries).
    """
    import json
    import logging

    from triggers.reconcile import reconcile

    app = get_app()
    try:
        report = reconcile(app.ledger, app.runner)
    except Exception as exc:  # the ledger is down or locked: nothing was decided
        logging.getLogger("triggers.reconcile").exception("reconcile failed")
        body = json.dumps({"error": f"ledger unavailable: {type(exc).__name__}: {exc}"})
        return body, 503, {"Content-Type": "application/json"}
    return json.dumps(report.as_dict()), 200, {"Content-Type": "application/json"}
