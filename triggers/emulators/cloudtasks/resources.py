"""Cloud Tasks v2 resources as the REST API shows them: Queue and Task values, parsed from and
rendered to proto3 JSON (camelCase names, Durations as ``"1.5s"``, Timestamps in RFC 3339,
``bytes`` as base64, enums by name or, when the client asks ``enum-encoding=int``, by number).

Pure: no clock, no locks; the store (store.py) owns the live state.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..cloudrun.limits import format_duration
from ..rpc import ApiError, timestamp
from .pacing import (
    DEFAULT_MAX_CONCURRENT_DISPATCHES,
    DEFAULT_MAX_DISPATCHES_PER_SECOND,
    MAX_CONCURRENT_DISPATCHES,
    MAX_DISPATCHES_PER_SECOND,
    RetryPolicy,
    derived_burst_size,
)

QUEUE_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
QUEUE_STATES = {"STATE_UNSPECIFIED": 0, "RUNNING": 1, "PAUSED": 2, "DISABLED": 3}
HTTP_METHODS = {
    "HTTP_METHOD_UNSPECIFIED": 0,
    "POST": 1,
    "GET": 2,
    "HEAD": 3,
    "PUT": 4,
    "DELETE": 5,
    "PATCH": 6,
    "OPTIONS": 7,
}
VIEWS = {"VIEW_UNSPECIFIED": 0, "BASIC": 1, "FULL": 2}
DEFAULT_DISPATCH_DEADLINE = 600.0  # HTTP targets: 10 minutes (15 s .. 30 min allowed)
MAX_SCHEDULE_AHEAD = 30 * 86400.0  # scheduleTime at most 30 days ahead
# A queue's fields UpdateQueue may name in its updateMask (the others are output only).
UPDATABLE = {
    "rateLimits",
    "rateLimits.maxDispatchesPerSecond",
    "rateLimits.maxConcurrentDispatches",
    "retryConfig",
    "retryConfig.maxAttempts",
    "retryConfig.maxRetryDuration",
    "retryConfig.minBackoff",
    "retryConfig.maxBackoff",
    "retryConfig.maxDoublings",
    "stackdriverLoggingConfig",
    "stackdriverLoggingConfig.samplingRatio",
}


# ---------------------------------------------------------------------- scalars


def parse_duration(value: Any, where: str) -> float:
    """Seconds from a proto3 JSON Duration (``"3.5s"``)."""
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d{1,9})?s", value):
        return float(value[:-1])
    raise ApiError.invalid(
        f"Invalid value at '{where}' (type.googleapis.com/google.protobuf.Duration), {value!r}",
        where,
    )


def parse_timestamp(value: Any, where: str) -> datetime:
    """A proto3 JSON Timestamp (RFC 3339, any offset) as an aware UTC datetime."""
    if isinstance(value, str):
        text = value.strip().replace("z", "Z")
        m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", text)
        if m:
            micros = (m.group(2) or ".0")[1:7].ljust(6, "0")
            zone = "+00:00" if m.group(3) == "Z" else m.group(3)
            try:
                return datetime.fromisoformat(f"{m.group(1)}.{micros}{zone}").astimezone(UTC)
            except ValueError:
                pass
    raise ApiError.invalid(
        f"Invalid value at '{where}' (type.googleapis.com/google.protobuf.Timestamp), {value!r}",
        where,
    )


def enum_value(value: Any, names: Mapping[str, int], where: str) -> str:
    """An enum given by name or by number (the Python client sends numbers), as its name."""
    if isinstance(value, str) and value in names:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        for name, number in names.items():
            if number == value:
                return name
    raise ApiError.invalid(f"Invalid value at '{where}', {value!r}", where)


def _number(value: Any, where: str, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ApiError.invalid(f"Invalid value at '{where}', {value!r}", where)
    try:
        return kind(value)
    except ValueError:
        raise ApiError.invalid(f"Invalid value at '{where}', {value!r}", where) from None


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ApiError.invalid(f"Invalid value at '{where}': expected an object", where)
    return value


# ---------------------------------------------------------------------- queues


@dataclass
class Queue:
    name: str  # projects/P/locations/L/queues/Q
    max_dispatches_per_second: float = DEFAULT_MAX_DISPATCHES_PER_SECOND
    max_concurrent_dispatches: int = DEFAULT_MAX_CONCURRENT_DISPATCHES
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    state: str = "RUNNING"
    purge_time: datetime | None = None
    sampling_ratio: float | None = None

    @property
    def short_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def max_burst_size(self) -> int:
        return derived_burst_size(self.max_dispatches_per_second)

    def as_json(self) -> dict[str, Any]:
        r = self.retry
        body: dict[str, Any] = {
            "name": self.name,
            "rateLimits": {
                "maxDispatchesPerSecond": self.max_dispatches_per_second,
                "maxBurstSize": self.max_burst_size,
                "maxConcurrentDispatches": self.max_concurrent_dispatches,
            },
            "retryConfig": {
                "maxAttempts": r.max_attempts,
                "minBackoff": format_duration(r.min_backoff),
                "maxBackoff": format_duration(r.max_backoff),
                "maxDoublings": r.max_doublings,
            },
            "state": self.state,
        }
        if r.max_retry_duration:
            body["retryConfig"]["maxRetryDuration"] = format_duration(r.max_retry_duration)
        if self.purge_time is not None:
            body["purgeTime"] = timestamp(self.purge_time)
        if self.sampling_ratio is not None:
            body["stackdriverLoggingConfig"] = {"samplingRatio": self.sampling_ratio}
        return body


def apply_queue_fields(queue: Queue, body: Mapping[str, Any], paths: set[str] | None) -> None:
    """Set ``queue``'s fields from a Queue JSON ``body``: all given fields (``paths`` None) or
    only those an updateMask names (a named field absent from the body is reset to default)."""

    def wanted(path: str) -> bool:
        if paths is None:
            return True
        return path in paths or path.split(".")[0] in paths

    rate = _object(body.get("rateLimits"), "queue.rate_limits")
    if wanted("rateLimits.maxDispatchesPerSecond") and (
        paths is not None or "maxDispatchesPerSecond" in rate
    ):
        value = _number(
            rate.get("maxDispatchesPerSecond", 0), "queue.rate_limits.max_dispatches_per_second"
        )
        if value == 0:
            value = DEFAULT_MAX_DISPATCHES_PER_SECOND
        if not 0 < value <= MAX_DISPATCHES_PER_SECOND:
            raise ApiError.invalid(
                f"max_dispatches_per_second must be in (0, 500], not {value}",
                "queue.rate_limits.max_dispatches_per_second",
            )
        queue.max_dispatches_per_second = value
    if wanted("rateLimits.maxConcurrentDispatches") and (
        paths is not None or "maxConcurrentDispatches" in rate
    ):
        value = _number(
            rate.get("maxConcurrentDispatches", 0),
            "queue.rate_limits.max_concurrent_dispatches",
            int,
        )
        if value == 0:
            value = DEFAULT_MAX_CONCURRENT_DISPATCHES
        if not 0 < value <= MAX_CONCURRENT_DISPATCHES:
            raise ApiError.invalid(
                f"max_concurrent_dispatches must be in [1, 5000], not {value}",
                "queue.rate_limits.max_concurrent_dispatches",
            )
        queue.max_concurrent_dispatches = value
    queue.retry = _retry_policy(
        queue.retry,
        _object(body.get("retryConfig"), "queue.retry_config"),
        wanted,
        paths is not None,
    )
    logging = _object(body.get("stackdriverLoggingConfig"), "queue.stackdriver_logging_config")
    if wanted("stackdriverLoggingConfig.samplingRatio") and "samplingRatio" in logging:
        queue.sampling_ratio = _number(
            logging["samplingRatio"], "queue.stackdriver_logging_config.sampling_ratio"
        )


def _retry_policy(
    current: RetryPolicy, retry: Mapping[str, Any], wanted: Any, masked: bool
) -> RetryPolicy:
    defaults = RetryPolicy()
    fields: dict[str, Any] = {}
    specs = (
        ("maxAttempts", "max_attempts", int),
        ("maxRetryDuration", "max_retry_duration", None),
        ("minBackoff", "min_backoff", None),
        ("maxBackoff", "max_backoff", None),
        ("maxDoublings", "max_doublings", int),
    )
    for json_name, attr, kind in specs:
        if not wanted(f"retryConfig.{json_name}"):
            fields[attr] = getattr(current, attr)
            continue
        where = f"queue.retry_config.{attr}"
        if json_name not in retry:
            fields[attr] = getattr(defaults if masked else current, attr)
        elif kind is int:
            fields[attr] = _number(retry[json_name], where, int)
        else:
            fields[attr] = parse_duration(retry[json_name], where)
    policy = RetryPolicy(**fields)
    if policy.max_attempts < -1:
        raise ApiError.invalid(
            "max_attempts must be -1 (unlimited) or more", "queue.retry_config.max_attempts"
        )
    if policy.max_doublings < 0 or policy.min_backoff < 0 or policy.max_retry_duration < 0:
        raise ApiError.invalid("retry_config values must not be negative", "queue.retry_config")
    if policy.max_backoff < policy.min_backoff:
        raise ApiError.invalid(
            "max_backoff must not be less than min_backoff", "queue.retry_config.max_backoff"
        )
    return policy


def update_mask_paths(raw: str) -> set[str] | None:
    """The paths of an ``updateMask`` query parameter (camelCase or snake_case), None if empty."""
    if not raw.strip():
        return None
    paths = set()
    for part in raw.split(","):
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), part.strip())
        if camel not in UPDATABLE:
            raise ApiError.invalid(f"Invalid update_mask path {part.strip()!r}", "update_mask")
        paths.add(camel)
    return paths


# ---------------------------------------------------------------------- tasks


@dataclass
class HttpRequest:
    url: str
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    oidc_email: str | None = None
    oidc_audience: str | None = None

    def as_json(self, full: bool) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "httpMethod": self.method}
        if self.headers:
            out["headers"] = dict(self.headers)
        if full and self.body:
            out["body"] = base64.b64encode(self.body).decode("ascii")
        if self.oidc_email is not None:
            token = {"serviceAccountEmail": self.oidc_email}
            if self.oidc_audience:
                token["audience"] = self.oidc_audience
            out["oidcToken"] = token
        return out


def parse_http_request(raw: Any) -> HttpRequest:
    body = _object(raw, "task.http_request")
    url = body.get("url")
    if not isinstance(url, str) or not re.match(r"https?://[^/\s]+", url):
        raise ApiError.invalid(
            "task.http_request.url must be an http(s) URL", "task.http_request.url"
        )
    method = enum_value(
        body.get("httpMethod", "POST"), HTTP_METHODS, "task.http_request.http_method"
    )
    if method == "HTTP_METHOD_UNSPECIFIED":
        method = "POST"
    headers_raw = _object(body.get("headers"), "task.http_request.headers")
    headers = {}
    for key, value in headers_raw.items():
        if not isinstance(value, str):
            raise ApiError.invalid(f"header {key!r} must be a string", "task.http_request.headers")
        headers[str(key)] = value
    payload = b""
    if body.get("body") not in (None, ""):
        try:
            text = str(body["body"])
            payload = base64.b64decode(
                text + "=" * (-len(text) % 4),
                altchars=b"-_" if "-" in text or "_" in text else None,
                validate=True,
            )
        except (binascii.Error, ValueError):
            raise ApiError.invalid(
                "task.http_request.body must be base64", "task.http_request.body"
            ) from None
        if method not in ("POST", "PUT", "PATCH"):
            raise ApiError.invalid(
                "a body is only allowed for POST, PUT and PATCH", "task.http_request.body"
            )
    if "oauthToken" in body:
        raise ApiError(501, "oauthToken is not emulated (use oidcToken)", "UNIMPLEMENTED")
    oidc = _object(body.get("oidcToken"), "task.http_request.oidc_token")
    email = oidc.get("serviceAccountEmail") if oidc else None
    if oidc and not isinstance(email, str):
        raise ApiError.invalid(
            "oidc_token.service_account_email is required", "task.http_request.oidc_token"
        )
    audience = oidc.get("audience") or None if oidc else None
    return HttpRequest(url, method, headers, payload, email, audience)


@dataclass
class Attempt:
    schedule_time: datetime
    dispatch_time: datetime
    response_time: datetime | None = None
    status_code: int | None = None  # google.rpc.Code
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scheduleTime": timestamp(self.schedule_time),
            "dispatchTime": timestamp(self.dispatch_time),
        }
        if self.response_time is not None:
            out["responseTime"] = timestamp(self.response_time)
            out["responseStatus"] = {"code": self.status_code or 0, "message": self.message}
        return out


@dataclass
class TaskState:
    name: str  # projects/P/locations/L/queues/Q/tasks/T
    request: HttpRequest
    schedule_time: datetime  # real clock: not dispatched before
    create_time: datetime
    dispatch_deadline: float = DEFAULT_DISPATCH_DEADLINE
    dispatch_count: int = 0
    response_count: int = 0
    execution_count: int = 0  # non-5xx responses (X-CloudTasks-TaskExecutionCount)
    first_attempt: Attempt | None = None
    last_attempt: Attempt | None = None
    first_attempt_elapsed: float | None = None  # emulator seconds, for maxRetryDuration
    in_flight: bool = False
    forced: bool = False  # RunTask: dispatch now, whatever the rate or the queue's state
    previous_response: int | None = None  # HTTP status of the last attempt

    @property
    def short_id(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def queue_name(self) -> str:
        return self.name.rsplit("/tasks/", 1)[0]

    def as_json(self, view: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "httpRequest": self.request.as_json(full=view == "FULL"),
            "scheduleTime": timestamp(self.schedule_time),
            "createTime": timestamp(self.create_time),
            "dispatchDeadline": format_duration(self.dispatch_deadline),
            "dispatchCount": self.dispatch_count,
            "responseCount": self.response_count,
            "view": view,
        }
        if self.first_attempt is not None:
            out["firstAttempt"] = {"dispatchTime": timestamp(self.first_attempt.dispatch_time)}
        if self.last_attempt is not None:
            out["lastAttempt"] = self.last_attempt.as_json()
        return out


def to_int_enums(body: Any) -> Any:
    """Enum fields by number, for a client that asked ``$alt=json;enum-encoding=int``."""
    if isinstance(body, list):
        return [to_int_enums(item) for item in body]
    if not isinstance(body, dict):
        return body
    out = {}
    for key, value in body.items():
        if key == "state" and isinstance(value, str):
            out[key] = QUEUE_STATES.get(value, 0)
        elif key == "httpMethod" and isinstance(value, str):
            out[key] = HTTP_METHODS.get(value, 0)
        elif key == "view" and isinstance(value, str):
            out[key] = VIEWS.get(value, 0)
        else:
            out[key] = to_int_enums(value)
    return out
