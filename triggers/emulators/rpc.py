"""Google API wire conventions shared by the emulators: errors and timestamps.

An error body is ``{"error": {"code", "message", "status", "details"}}`` as Google APIs send it;
a Timestamp is RFC 3339 in UTC with a ``Z``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def timestamp(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


#: HTTP status -> canonical google.rpc.Code name, for the error body's ``status`` field.
HTTP_TO_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    412: "FAILED_PRECONDITION",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

#: google.rpc.Code numbers, for an Operation's ``error.code``.
RPC_CODES = {
    "OK": 0,
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}

_DEFAULT_MESSAGES = {
    429: "Quota exceeded for quota metric 'Job run requests' and limit 'Job run requests per "
    "minute per region' of service 'run.googleapis.com' (injected by the emulator).",
    500: "Internal error encountered (injected by the emulator).",
    503: "The service is currently unavailable (injected by the emulator).",
    504: "The request timed out (injected by the emulator).",
}


class ApiError(Exception):
    """An error response: HTTP status, canonical status name, message, optional details."""

    def __init__(
        self,
        http_status: int,
        message: str,
        status: str | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.message = message
        self.status = status or HTTP_TO_STATUS.get(http_status, "UNKNOWN")
        self.details = details or []

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "code": self.http_status,
            "message": self.message,
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}

    @classmethod
    def not_found(cls, what: str) -> ApiError:
        return cls(404, f"Resource '{what}' was not found")

    @classmethod
    def invalid(cls, message: str, field: str | None = None) -> ApiError:
        details = None
        if field:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": field, "description": message}],
                }
            ]
        return cls(400, message, "INVALID_ARGUMENT", details)

    @classmethod
    def injected(
        cls, http_status: int, message: str | None = None, status: str | None = None
    ) -> ApiError:
        details = None
        if http_status == 429:
            details = [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "RATE_LIMIT_EXCEEDED",
                    "domain": "googleapis.com",
                    "metadata": {
                        "service": "run.googleapis.com",
                        "quota_limit": "JobRunRequestsPerMinutePerRegion",
                    },
                }
            ]
        return cls(
            http_status,
            message
            or _DEFAULT_MESSAGES.get(
                http_status, f"Injected error {http_status} (emulator fault)."
            ),
            status,
            details,
        )
