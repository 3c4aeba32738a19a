"""Build the HTTP requests Google's services send, and post them to a running function.

The builders are pure (give them ids and times and they return the same bytes every time) so
tests and benchmarks can make exactly the request a source would send:

    request = pubsub_message("orders", b'{"status": "paid"}', {"kind": "order"})
    request = storage_object("raw-data", "incoming/a.csv", generation=1, size=10)
    request = scheduler_tick("nightly-report", datetime(2026, 11, 21, 1, tzinfo=UTC))
    answer = post("http://127.0.0.1:8080/", request)

What each form looks like on the wire is in docs/events.md; the shapes here are the ones the
sample events in config/events/ show. Only the standard library is used, so this module also
runs where the function's dependencies are not installed.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

DEFAULT_URL = "http://127.0.0.1:8080/"
DEFAULT_PROJECT = "demo-project"

# The sample order of config/events/, which the sample rule paid-orders runs.
SAMPLE_ORDER = '{"order_id": "A-1001", "status": "paid", "amount": 42.5}'

PUBSUB_FORMS = ("cloudevent", "push")
STORAGE_FORMS = ("cloudevent", "notification")
# `--event` name (the CloudEvent type's last part) -> the notification's eventType attribute
STORAGE_EVENTS = {
    "finalized": "OBJECT_FINALIZE",
    "deleted": "OBJECT_DELETE",
    "archived": "OBJECT_ARCHIVE",
    "metadataUpdated": "OBJECT_METADATA_UPDATE",
}
PUBSUB_TYPE = "google.cloud.pubsub.topic.v1.messagePublished"
STORAGE_TYPE_PREFIX = "google.cloud.storage.object.v1."
# What Pub/Sub push deliveries carry; nothing decodes it, it only makes the request realistic.
PUSH_USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
SCHEDULER_USER_AGENT = "Google-Cloud-Scheduler"


@dataclass(frozen=True)
class Request:
    """One HTTP request to post: what a Google service would send, and a line about it."""

    headers: dict[str, str]
    body: bytes
    summary: str = ""


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


# -- ids and times ----------------------------------------------------------------------------


def new_message_id() -> str:
    """A Pub/Sub-like message id: 16 decimal digits, new for every message."""
    return str(secrets.randbelow(9 * 10**15) + 10**15)


def now_utc() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime, *, millis: bool = True) -> str:
    """UTC with a Z; Pub/Sub and Storage write milliseconds, Scheduler whole seconds."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{moment.microsecond // 1000:03d}Z" if millis else "Z")


def parse_time(text: str) -> datetime:
    """An RFC 3339 / ISO 8601 time; without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO time such as 2026-11-21T02:00:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def topic_path(topic: str, project: str) -> str:
    """`orders` -> `projects/P/topics/orders`; a full path is kept."""
    return topic if topic.startswith("projects/") else f"projects/{project}/topics/{topic}"


# -- Pub/Sub ----------------------------------------------------------------------------------


def pubsub_message(
    topic: str,
    data: bytes | str,
    attributes: Mapping[str, str] | None = None,
    *,
    form: str = "cloudevent",
    project: str = DEFAULT_PROJECT,
    subscription: str | None = None,
    message_id: str | None = None,
    publish_time: datetime | None = None,
    ordering_key: str | None = None,
) -> Request:
    """A message published to `topic`, delivered as an Eventarc CloudEvent or a raw push.

    Only the CloudEvent names the topic (in `ce-source`); a raw push names its subscription
    alone, and is sent here without the `?topic=` query a deployed push subscription of the
    Terraform module carries, so rules scoped with `topic:` do not match it.
    """
    if form not in PUBSUB_FORMS:
        raise ValueError(f"form {form!r}: use one of {', '.join(PUBSUB_FORMS)}")
    full_topic = topic_path(topic, project)
    topic_project, short = full_topic.split("/")[1], full_topic.rsplit("/", 1)[-1]
    message_id = message_id or new_message_id()
    published = rfc3339(publish_time or now_utc())
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    message: dict[str, Any] = {"attributes": dict(attributes or {})}
    if payload:
        message["data"] = base64.b64encode(payload).decode("ascii")
    message.update(messageId=message_id, publishTime=published)
    if ordering_key:
        message["orderingKey"] = ordering_key
    if form == "push":
        sub = subscription or f"projects/{topic_project}/subscriptions/{short}-push"
        body = {"message": message, "subscription": sub}
        headers = {"Content-Type": "application/json", "User-Agent": PUSH_USER_AGENT}
    else:
        # Eventarc's push subscription spells the message fields both ways.
        message.update(message_id=message_id, publish_time=published)
        sub = subscription or f"projects/{topic_project}/subscriptions/eventarc-{short}-sub"
        body = {"message": message, "subscription": sub}
        headers = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": message_id,
            "ce-source": f"//pubsub.googleapis.com/{full_topic}",
            "ce-type": PUBSUB_TYPE,
            "ce-time": published,
        }
    return Request(headers, _json(body), f"pubsub {form}: message {message_id} on {full_topic}")


# -- Cloud Storage ----------------------------------------------------------------------------


def storage_object(
    bucket: str,
    name: str,
    *,
    generation: int,
    size: int,
    event: str = "finalized",
    form: str = "cloudevent",
    content_type: str | None = None,
    metadata: Mapping[str, str] | None = None,
    project: str = DEFAULT_PROJECT,
    event_id: str | None = None,
    time: datetime | None = None,
) -> Request:
    """A change to object `bucket/name#generation`, as an Eventarc CloudEvent (binary mode) or
    a Cloud Storage Pub/Sub notification (JSON_API_V1 payload) delivered by a raw push."""
    if event not in STORAGE_EVENTS:
        raise ValueError(f"event {event!r}: use one of {', '.join(STORAGE_EVENTS)}")
    if form not in STORAGE_FORMS:
        raise ValueError(f"form {form!r}: use one of {', '.join(STORAGE_FORMS)}")
    when = rfc3339(time or now_utc())
    event_id = event_id or new_message_id()
    resource = object_resource(
        bucket,
        name,
        generation=generation,
        size=size,
        content_type=content_type,
        metadata=metadata,
        time=when,
        archived=event == "archived",
    )
    what = f"storage {event} {form}: gs://{bucket}/{name}#{generation}"
    if form == "cloudevent":
        headers = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": event_id,
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "ce-type": STORAGE_TYPE_PREFIX + event,
            "ce-subject": f"objects/{name}",
            "ce-time": when,
            "ce-bucket": bucket,
        }
        return Request(headers, _json(resource), what)
    message = {
        "attributes": {
            "notificationConfig": f"projects/_/buckets/{bucket}/notificationConfigs/1",
            "eventType": STORAGE_EVENTS[event],
            "payloadFormat": "JSON_API_V1",
            "bucketId": bucket,
            "objectId": name,
            "objectGeneration": str(generation),
            "eventTime": when,
        },
        "data": base64.b64encode(_json(resource)).decode("ascii"),
        "messageId": event_id,
        "publishTime": when,
    }
    subscription = f"projects/{project}/subscriptions/{bucket}-notifications"
    body = {"message": message, "subscription": subscription}
    headers = {"Content-Type": "application/json", "User-Agent": PUSH_USER_AGENT}
    return Request(headers, _json(body), what)


def object_resource(
    bucket: str,
    name: str,
    *,
    generation: int,
    size: int,
    content_type: str | None = None,
    metadata: Mapping[str, str] | None = None,
    time: str,
    archived: bool = False,
) -> dict[str, Any]:
    """The JSON API object resource (int64 fields as strings, as the API writes them)."""
    path = f"b/{bucket}/o/{quote(name, safe='')}"
    resource: dict[str, Any] = {
        "kind": "storage#object",
        "id": f"{bucket}/{name}/{generation}",
        "selfLink": f"https://www.googleapis.com/storage/v1/{path}",
        "mediaLink": f"https://storage.googleapis.com/download/storage/v1/{path}"
        f"?generation={generation}&alt=media",
        "name": name,
        "bucket": bucket,
        "generation": str(generation),
        "metageneration": "1",
        "contentType": content_type or guess_content_type(name),
        "storageClass": "ARCHIVE" if archived else "STANDARD",
        "size": str(size),
        "timeCreated": time,
        "updated": time,
    }
    if metadata:
        resource["metadata"] = dict(metadata)
    return resource


def guess_content_type(name: str) -> str:
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


# -- Cloud Scheduler --------------------------------------------------------------------------


def scheduler_tick(job: str, schedule_time: datetime, body: bytes | str | None = None) -> Request:
    """What a Scheduler job with an HTTP target sends when it fires at `schedule_time`."""
    headers = {
        "User-Agent": SCHEDULER_USER_AGENT,
        "X-CloudScheduler": "true",
        "X-CloudScheduler-JobName": job,
        "X-CloudScheduler-ScheduleTime": rfc3339(schedule_time, millis=False),
    }
    payload = body.encode("utf-8") if isinstance(body, str) else (body or b"")
    if payload:
        # Scheduler sends a job's body as application/octet-stream unless the job sets a type.
        json_body = _is_json(payload)
        headers["Content-Type"] = "application/json" if json_body else "application/octet-stream"
    when = headers["X-CloudScheduler-ScheduleTime"]
    return Request(headers, payload, f"scheduler tick: job {job} at {when}")


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


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _is_json(payload: bytes) -> bool:
    try:
        json.loads(payload)
    except ValueError:
        return False
    return True
