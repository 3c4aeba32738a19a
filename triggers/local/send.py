"""Post the requests Google's services send to a running function, and read its answers.

The requests themselves are built by the pure builders of `triggers.events.requests`
(re-exported here, for `triggers send` and the tests):

    request = pubsub_message("orders", b'{"status": "paid"}', {"kind": "order"})
    answer = post("http://127.0.0.1:8080/", request)

Only the standard library is used, so this module also runs where the function's dependencies
are not installed.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events.requests import (
    DEFAULT_PROJECT as DEFAULT_PROJECT,
)
from ..events.requests import (
    PUBSUB_FORMS as PUBSUB_FORMS,
)
from ..events.requests import (
    PUBSUB_TYPE as PUBSUB_TYPE,
)
from ..events.requests import (
    PUSH_USER_AGENT as PUSH_USER_AGENT,
)
from ..events.requests import (
    SAMPLE_ORDER as SAMPLE_ORDER,
)
from ..events.requests import (
    SCHEDULER_USER_AGENT as SCHEDULER_USER_AGENT,
)
from ..events.requests import (
    STORAGE_EVENTS as STORAGE_EVENTS,
)
from ..events.requests import (
    STORAGE_FORMS as STORAGE_FORMS,
)
from ..events.requests import (
    STORAGE_TYPE_PREFIX as STORAGE_TYPE_PREFIX,
)
from ..events.requests import (
    Request as Request,
)
from ..events.requests import (
    event_file_text as event_file_text,
)
from ..events.requests import (
    guess_content_type as guess_content_type,
)
from ..events.requests import (
    new_message_id as new_message_id,
)
from ..events.requests import (
    now_utc as now_utc,
)
from ..events.requests import (
    object_resource as object_resource,
)
from ..events.requests import (
    parse_time as parse_time,
)
from ..events.requests import (
    pubsub_message as pubsub_message,
)
from ..events.requests import (
    rfc3339 as rfc3339,
)
from ..events.requests import (
    scheduler_tick as scheduler_tick,
)
from ..events.requests import (
    storage_object as storage_object,
)
from ..events.requests import (
    topic_path as topic_path,
)

DEFAULT_URL = "http://127.0.0.1:8080/"


@dataclass(frozen=True)
class Answer:
    """The function's answer: its status and its JSON (or, if it sent none, its text)."""

    status: int
    reason: str
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def decision(self) -> str | None:
        return self.body.get("decision") if isinstance(self.body, dict) else None


class Unreachable(Exception):
    """Nothing answered at the URL (refused, unresolvable, timed out)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"no server at {url} ({reason}) — start one with `triggers serve`")
        self.url = url
        self.reason = reason


# -- sample event files -----------------------------------------------------------------------


def event_file(path: str | Path) -> Request:
    """A request file (config/events/README.md). Raises ValueError when it is malformed."""
    from ..events.eventfile import parse_event_file

    text = Path(path).read_text(encoding="utf-8")
    headers, body = parse_event_file(text, str(path))  # DecodeError is a ValueError
    return Request(headers, body, f"event file {path}")


# -- posting ----------------------------------------------------------------------------------


def post(url: str, request: Request, *, timeout: float = 30.0) -> Answer:
    """POST `request` to `url`. Any HTTP answer is returned; raises Unreachable otherwise."""
    http = urllib.request.Request(url, data=request.body, headers=request.headers, method="POST")
    try:
        with urllib.request.urlopen(http, timeout=timeout) as response:
            return _answer(response.status, response.reason, response.headers, response.read())
    except urllib.error.HTTPError as error:  # a 4xx/5xx is still the server's answer
        with error:
            return _answer(error.code, error.reason, error.headers, error.read())
    except urllib.error.URLError as error:
        raise Unreachable(url, str(error.reason)) from None
    except (OSError, ValueError) as error:  # timeouts, resets; ValueError: a malformed URL
        raise Unreachable(url, str(error) or type(error).__name__) from None


def _answer(status: int, reason: str, headers: Any, raw: bytes) -> Answer:
    text = raw.decode("utf-8", errors="replace")
    try:
        body: Any = json.loads(text) if text.strip() else None
    except ValueError:
        body = text
    return Answer(status, str(reason or ""), body, dict(headers.items()) if headers else {})


def describe(answer: Answer) -> list[str]:
    """The answer in a few lines: status and decision, then one line per rule's outcome."""
    head = f"{answer.status} {answer.reason}".strip()
    body = answer.body
    if not isinstance(body, dict):
        return [head] + ([f"  {str(body).strip()[:500]}"] if body else [])
    decision = body.get("decision", "")
    if decision in ("rejected", "refused"):
        detail = body.get("message") or body.get("reason") or ""
        reason = f" ({body['reason']})" if body.get("message") and body.get("reason") else ""
        return [f"{head}  {decision}{reason}: {detail}"]
    line = f"{head}  {decision}"
    if body.get("event"):
        line += f"  event {body['event']}"
    if answer.headers.get("Retry-After"):
        line += f"  (Retry-After: {answer.headers['Retry-After']}s)"
    lines = [line]
    rules = body.get("rules")
    if rules == []:
        lines.append("  no rule matched")
    width = max((len(str(r.get("rule", ""))) for r in rules or []), default=0)
    for outcome in rules or []:
        detail = short_execution(outcome.get("execution")) or outcome.get("reason") or ""
        rule, verdict = outcome.get("rule", "?"), outcome.get("outcome", "?")
        lines.append(f"  {rule:<{width}}  {verdict:<9}  {detail}".rstrip())
    if decision == "retry" and not rules and body.get("reason"):
        lines.append(f"  {body['reason']}")
    return lines


def one_line(answer: Answer) -> str:
    """`200 ack: csv-ingest launched csv-loader-x1y2z, csv-deleted duplicate` (for logs)."""
    body = answer.body if isinstance(answer.body, dict) else {}
    head = f"{answer.status} {body.get('decision') or answer.reason}".strip()
    rules = body.get("rules")
    if rules is None:
        detail = body.get("message") or body.get("reason") or (answer.body if not body else "")
        return f"{head}: {str(detail)[:200]}" if detail else head
    if not rules:
        return f"{head}: no rule matched"
    parts = []
    for outcome in rules:
        detail = short_execution(outcome.get("execution")) or outcome.get("reason") or ""
        parts.append(f"{outcome.get('rule')} {outcome.get('outcome')} {detail}".strip())
    return f"{head}: " + ", ".join(parts)


def short_execution(name: str | None) -> str | None:
    """`projects/.../jobs/j/executions/j-abc12` -> `j-abc12`."""
    return name.rsplit("/", 1)[-1] if name else None
