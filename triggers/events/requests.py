"""The HTTP requests Google's services send, built from their parts: the inverse of `decode`.

The builders are pure (give them ids and times and they return the same bytes every time) so
tests, `triggers send`, the sample events of `triggers check` and benchmarks can make exactly
the request a source would send:

    request = pubsub_message("orders", b'{"status": "paid"}', {"kind": "order"})
    request = storage_object("raw-data", "incoming/a.csv", generation=1, size=10)
    request = scheduler_tick("nightly-report", datetime(2026, 11, 21, 1, tzinfo=UTC))

What each form looks like on the wire is in docs/events.md; the shapes here are the ones the
sample events in config/events/ show. Only the standard library is used.
"""

from __future__ import annotations

import base64
import json
import mimetypes
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

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


def event_file_text(request: Request) -> str:
    """The request as an event file (config/events/README.md), which `parse_event_file` turns
    back into the same headers and bytes: the body as JSON when its compact form is exactly the
    bytes sent, else as its text."""
    body: Any = request.body.decode("utf-8")
    try:
        value = json.loads(body)
        if _json(value) == request.body:
            body = value
    except ValueError:
        pass
    document = {"description": request.summary, "headers": request.headers, "body": body}
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _is_json(payload: bytes) -> bool:
    try:
        json.loads(payload)
    except ValueError:
        return False
    return True
