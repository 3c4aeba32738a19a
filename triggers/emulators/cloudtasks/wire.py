"""Proto3 JSON on the wire, for the Cloud Tasks emulator: Durations (``"1.5s"``), Timestamps
(RFC 3339), enums by name or by number (the Python client sends and asks for numbers:
``$alt=json;enum-encoding=int``), and INVALID_ARGUMENT errors naming the field. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..rpc import ApiError

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


def number(value: Any, where: str, kind: type = float) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ApiError.invalid(f"Invalid value at '{where}', {value!r}", where)
    try:
        return kind(value)
    except ValueError:
        raise ApiError.invalid(f"Invalid value at '{where}', {value!r}", where) from None


def json_object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ApiError.invalid(f"Invalid value at '{where}': expected an object", where)
    return value


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


def http_to_rpc_code(status: int) -> int:
    """google.rpc.Code of an HTTP answer, for lastAttempt.responseStatus."""
    codes = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1, 501: 12, 503: 14, 504: 4}
    if status in codes:
        return codes[status]
    return 13 if status >= 500 else 9
