"""One dispatch attempt of a task to its HTTP target, as Cloud Tasks makes it: the task's own
method, headers and body, plus the ``X-CloudTasks-*`` headers and, for an ``oidcToken``, an
``Authorization: Bearer`` token (unsigned here: see ``oidc_token``).
"""

from __future__ import annotations

import base64
import http.client
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from .resources import HttpRequest

USER_AGENT = "Google-Cloud-Tasks"
TOKEN_LIFETIME = 3600


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt got: an HTTP status, or none (``error`` says why: refused, timed out)."""

    status: int | None
    error: str = ""
    retry_after: str | None = None  # the target's Retry-After header (reported, not honoured)

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def oidc_token(email: str, audience: str, now: float) -> str:
    """A JWT-shaped ID token with the claims Google's would carry (iss, aud, email, sub, iat,
    exp), *not signed* (``alg: none``, empty signature): a target that verifies signatures must
    skip that check against the emulator."""
    header = {"alg": "none", "typ": "JWT"}
    claims = {
        "iss": "https://accounts.google.com",
        "aud": audience,
        "azp": email,
        "email": email,
        "email_verified": True,
        "sub": email,
        "iat": int(now),
        "exp": int(now) + TOKEN_LIFETIME,
    }
    parts = (json.dumps(header).encode(), json.dumps(claims, separators=(",", ":")).encode())
    return f"{_b64url(parts[0])}.{_b64url(parts[1])}."


def build_headers(
    request: HttpRequest,
    *,
    queue_id: str,
    task_id: str,
    retry_count: int,
    execution_count: int,
    eta: float,
    previous_response: int | None,
    now: float,
) -> dict[str, str]:
    """The headers of one attempt: the task's own, then those Cloud Tasks sets (which win)."""
    headers = dict(request.headers)
    if request.body and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/octet-stream"
    headers.update(
        {
            "User-Agent": USER_AGENT,
            "X-CloudTasks-QueueName": queue_id,
            "X-CloudTasks-TaskName": task_id,
            "X-CloudTasks-TaskRetryCount": str(retry_count),
            "X-CloudTasks-TaskExecutionCount": str(execution_count),
            "X-CloudTasks-TaskETA": f"{eta:.6f}",
        }
    )
    if previous_response is not None:
        headers["X-CloudTasks-TaskPreviousResponse"] = str(previous_response)
    if request.oidc_email is not None:
        audience = request.oidc_audience or request.url
        headers["Authorization"] = f"Bearer {oidc_token(request.oidc_email, audience, now)}"
    return headers


def send(request: HttpRequest, headers: dict[str, str], deadline: float) -> Outcome:
    """Make the request; any answer is an Outcome, a failure to get one too (never raises)."""
    parts = urlsplit(request.url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection = connection_class(parts.netloc, timeout=deadline)
    try:
        connection.request(request.method, path, body=request.body or None, headers=headers)
        response = connection.getresponse()
        response.read()
        return Outcome(response.status, retry_after=response.getheader("Retry-After"))
    except TimeoutError:
        return Outcome(None, "DEADLINE_EXCEEDED: the target did not answer in time")
    except (OSError, http.client.HTTPException) as exc:
        return Outcome(None, f"UNAVAILABLE: {type(exc).__name__}: {exc}")
    finally:
        connection.close()
