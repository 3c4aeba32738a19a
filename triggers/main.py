"""functions-framework entry points. Deploy with `--entry-point handle_http` (every input form:
Pub/Sub push, GCS notifications, Scheduler HTTP, CloudEvents) or `handle_cloudevent` (an
Eventarc trigger). Both share one path: `App.handle(headers, body)`.

    functions-framework --source triggers/main.py --target handle_http

Imports are absolute because functions-framework loads this file by path, as module `main`.
The app is built on the first request and reused by every later one on this instance.
"""

from __future__ import annotations

import threading

import functions_framework

from triggers.app import App
from triggers.logs import configure
from triggers.settings import Settings

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
                configure(settings.log_level, settings.firestore_project)
                _app = App(settings)
    return _app


def set_app(app: App | None) -> None:
    """Install a prepared app (tests, `triggers serve`)."""
    global _app
    with _lock:
        _app = app


@functions_framework.http
def handle_http(request):
    response = get_app().handle(request.headers, request.get_data(cache=False))
    return response.body, response.status, response.headers


@functions_framework.cloud_event
def handle_cloudevent(cloud_event):
    from cloudevents.conversion import to_binary

    headers, body = to_binary(cloud_event)
    response = get_app().handle(headers, body or b"")
    if response.status >= 300:
        raise RetryLater(f"{response.status}: {response.body}")
