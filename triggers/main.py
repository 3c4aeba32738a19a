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

import functools
import gc
import threading

# Loaded by path (functions-framework starting an instance), the cyclic garbage collector is
# paused while the instance starts: while the app is built, and again while it answers its first
# event (which imports the Google clients). Both allocate tens of thousands of objects that live
# as long as the process and leave next to no garbage (a few hundred objects); collecting while
# they pile up cost each phase ~40 million instructions, 20-50 ms (a full collection at start,
# a hundred young ones in the first event; docs/performance.md). After each phase everything
# allocated so far is frozen out of later collections (gc.freeze: never scanned again, which
# also spares a forked gunicorn worker from touching, and so copying, the arbiter's pages) and
# collection resumes.
_STARTING = __name__ != "triggers.main" and gc.isenabled()
if _STARTING:
    gc.disable()

import functions_framework  # noqa: E402

from triggers.function.app import App  # noqa: E402
from triggers.function.logs import configure  # noqa: E402
from triggers.function.settings import Settings, log_project  # noqa: E402

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


_first_answered = False


def first_event_without_gc(answer):
    """Call `answer()` with the cyclic GC paused if this is the instance's first event (see the
    top of this file); later calls just answer."""
    global _first_answered
    if _first_answered:
        return answer()
    with _lock:
        first, _first_answered = not _first_answered, True
    if not first or not gc.isenabled():
        return answer()
    gc.disable()
    try:
        return answer()
    finally:
        gc.freeze()
        gc.enable()


if __name__ != "triggers.main":
    # functions-framework executes this file by path as a second module (`main`): share the
    # one app of `triggers.main`, where set_app installs it, instead of building another.
    from triggers.main import first_event_without_gc, get_app  # noqa: F811

    try:
        get_app()  # fail at start, with every rules problem listed, rather than at the first event
        if _STARTING:
            gc.freeze()
    finally:
        if _STARTING:
            gc.enable()


def _first_event_paused(target):
    """The function-framework target `target`, with the instance's first event answered with
    the garbage collector paused (only when this file was loaded by path, as a start)."""
    if not _STARTING:
        return target

    @functools.wraps(target)
    def paused(*args, **kwargs):
        return first_event_without_gc(lambda: target(*args, **kwargs))

    return paused


@functions_framework.http
@_first_event_paused
def handle_http(request):
    # The query string carries what a push subscription cannot put in its body: its topic
    # (`?topic=projects/P/topics/T`, set by the Terraform module's push endpoints).
    # The path tells a queue task's callback (`/_triggers/task`, flow control) from an event.
    response = get_app().handle(
        request.headers, request.get_data(cache=False), query=request.args, path=request.path
    )
    return response.body, response.status, response.headers


# Request headers that are about the delivery, not the event: kept for the CloudEvent target.
_TRANSPORT_HEADERS = ("authorization", "x-cloud-trace-context", "user-agent")


@functions_framework.cloud_event
@_first_event_paused
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
@_first_event_paused
def handle_reconcile(request):
    """Scheduled (Cloud Scheduler, HTTP): move finished `launched` records to their outcome.

    200 with the JSON report; 503 when the ledger cannot be listed (the next tick retries).
    """
    import json
    import logging

    from triggers.ops.reconcile import reconcile

    app = get_app()
    try:
        report = reconcile(app.ledger, app.runner)
    except Exception as exc:  # the ledger is down or locked: nothing was decided
        logging.getLogger("triggers.ops.reconcile").exception(
            "reconcile failed", extra={"labels": {"kind": "reconcile_error"}}
        )
        body = json.dumps({"error": f"ledger unavailable: {type(exc).__name__}: {exc}"})
        return body, 503, {"Content-Type": "application/json"}
    return json.dumps(report.as_dict()), 200, {"Content-Type": "application/json"}
