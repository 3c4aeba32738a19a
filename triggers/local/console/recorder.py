"""The events the local function received, with each rule's verdict, kept for the console.

`RecordingApp` is the function's `App` with one addition: after answering a request it appends
what happened to an `EventLog`, a bounded ring in memory. The answer is computed first and is
never changed by the recording (a recording that fails is logged and dropped), so the function
behaves exactly as deployed; the deployed function never uses this class.

The verdicts are computed again from the request, with the rules the function routed with:
`Decision` holds only the rules that matched, and the console shows why the others did not.
"""

from __future__ import annotations

import itertools
import logging
import secrets
import threading
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from ...errors import DecodeError
from ...events import decode
from ...flow.queue import TASK_PATH
from ...function.app import App, Response
from .views import event_json, jsonable, verdicts_json

log = logging.getLogger("triggers.local.console")

# How many requests the console remembers, and how much of each body it keeps for "try again".
DEFAULT_CAPACITY = 200
MAX_KEPT_BODY = 64 * 1024
# Headers that say nothing about the event (or hold a credential): not kept. functions-framework
# adds Function-Execution-Id to every request itself.
_DROPPED_HEADERS = frozenset(
    {
        "authorization",
        "host",
        "content-length",
        "connection",
        "accept",
        "accept-encoding",
        "function-execution-id",
    }
)


class EventLog:
    """The last `capacity` requests, oldest first, each numbered (`seq`) so a page can ask for
    only the ones after the last it has. Thread-safe: the server handles requests in threads."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=capacity)
        self._seq = itertools.count(1)
        self._lock = threading.Lock()
        # Numbers start again when the server does: a page left open sees a new instance and
        # starts its list afresh instead of waiting for numbers it has already passed.
        self.instance = secrets.token_hex(4)

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            entry = {"seq": next(self._seq), **entry}
            self._entries.append(entry)
        return entry

    def after(self, seq: int = 0) -> list[dict[str, Any]]:
        with self._lock:
            return [entry for entry in self._entries if entry["seq"] > seq]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def describe(
    headers: Mapping[str, str],
    body: bytes,
    response: Response,
    rules: Any,
    *,
    received: datetime,
    max_body_bytes: int,
    query: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """One request as the console lists it: the answer, the event, every rule's verdict, and
    the request itself as an event file (to paste into "try an event")."""
    answer = response.body
    entry: dict[str, Any] = {
        "received": received.isoformat().replace("+00:00", "Z"),
        "status": response.status,
        "decision": answer.get("decision"),
        "outcomes": answer.get("rules", []),
        "request": _event_file(headers, body),
    }
    if response.status in (401, 403):  # refused before decoding: nothing more to say
        entry["reason"] = answer.get("reason")
        return entry
    try:
        event = decode(headers, body, max_body_bytes=max_body_bytes, query=query)
    except DecodeError as exc:
        entry["rejected"] = {"reason": exc.reason, "message": exc.message}
        return entry
    entry["event"] = event_json(event)
    entry["verdicts"] = verdicts_json(rules.verdicts(event), requests=False)
    if answer.get("reason"):
        entry["reason"] = answer["reason"]
    return entry


def _event_file(headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    kept = {k: v for k, v in headers.items() if k.lower() not in _DROPPED_HEADERS}
    text = body[:MAX_KEPT_BODY].decode("utf-8", errors="replace")
    request: dict[str, Any] = {"headers": kept, "body": text}
    if len(body) > MAX_KEPT_BODY:
        request["truncated"] = len(body)
    return jsonable(request)


class RecordingApp(App):
    """The function's App, recording every request it answers in `events`."""

    def __init__(
        self,
        *args: Any,
        events: EventLog,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.events = events
        self._clock = clock

    def handle(
        self,
        headers: Mapping[str, str],
        body: bytes,
        query: Mapping[str, str] | None = None,
        path: str | None = None,
    ) -> Response:
        received = self._clock()
        rules = self.rules  # the rules this request is routed with, even if a reload follows
        response = super().handle(headers, body, query, path=path)
        if path is not None and path.rstrip("/") == TASK_PATH:
            return response  # a queue task's callback, not an event: its record is the ledger's
        try:
            self.events.append(
                describe(
                    headers,
                    body,
                    response,
                    rules,
                    received=received,
                    max_body_bytes=self.settings.max_body_bytes,
                    query=query,
                )
            )
        except Exception:  # the console is a view: it must never cost the sender its answer
            log.exception("could not record a request for the console")
        return response
