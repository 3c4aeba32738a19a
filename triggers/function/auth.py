"""Optional OIDC verification of direct HTTP callers (Cloud Scheduler HTTP targets, mostly).

A Cloud Scheduler HTTP target with an OIDC token sends `Authorization: Bearer <ID token>`: a JWT
signed by Google (issuer `https://accounts.google.com`) whose `aud` is the audience configured on
the job (the function's URL) and whose `email` is the job's service account. `OIDCAuthenticator`
checks, in order:

    header      present, `Bearer <token>`, the token shaped like a JWT      else 401
    signature   by one of Google's current keys (the token's `kid`)        else 401
    times       `iat` / `exp`, with `clock_skew_seconds` of tolerance      else 401
    audience    one of the configured ones (a `*` in one stands for a run
                of [a-z0-9], for Cloud Run's hashed run.app host names)    else 401
    issuer      accounts.google.com or https://accounts.google.com         else 401
    caller      `email_verified`, and `email` in the allowed list
                (an empty list allows any verified email)                  else 403

Verification is google-auth's `id_token.verify_token`. google-auth fetches the certificates on
every call; here they are kept for the lifetime the certs endpoint gives them (Cache-Control
max-age, about six hours for Google's), so a warm instance verifies with no network at all. A
token signed with a key the cached set does not know makes one early refetch (Google rotated
its keys), at most once a minute whatever callers send.

If the certificates cannot be fetched, `verify` raises `CertificatesUnavailable`, which is not
`Unauthorized`: the app answers 503 and the caller retries, as for any failure on our side.

The token itself is never logged nor put into an error message (google-auth's own messages can
contain it, so they are never passed on).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import Unauthorized

log = logging.getLogger("triggers.function.auth")

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})

# Certificate cache lifetimes, in seconds: without cache headers, and the bounds applied to any
# lifetime the endpoint gives (a `no-cache` endpoint must still not be fetched per request).
DEFAULT_CERTS_TTL = 300.0
MIN_CERTS_TTL = 60.0
MAX_CERTS_TTL = 24 * 3600.0
# A token with an unknown key id refetches the certificates early, but not more often than this.
KEY_REFRESH_INTERVAL = 60.0
# When a refetch fails, cached certificates are used this much longer before trying again.
STALE_RETRY_SECONDS = 30.0
FETCH_TIMEOUT_SECONDS = 10.0


def parse_audiences(value: str) -> tuple[str, ...]:
    """`TRIGGERS_OIDC_AUDIENCE`: one audience, or a JSON list of them.

    A function is called under several URLs: Cloud Scheduler and push subscriptions use the
    audience they are configured with (the module: the cloudfunctions.net URL), while Eventarc's
    tokens for a Cloud Run destination carry the service's run.app URL.
    """
    text = value.strip()
    if not text.startswith("["):
        return (text,) if text else ()
    parsed = json.loads(text)
    if not isinstance(parsed, list) or not all(isinstance(a, str) for a in parsed):
        raise ValueError("TRIGGERS_OIDC_AUDIENCE must be a URL or a JSON list of URLs")
    return tuple(a.strip() for a in parsed if a.strip())


def _audience_matcher(audiences: Iterable[str]) -> Callable[[str], bool]:
    exact = {a for a in audiences if "*" not in a}
    patterns = [
        re.compile("[a-z0-9]+".join(re.escape(part) for part in a.split("*")))
        for a in audiences
        if "*" in a
    ]
    return lambda aud: aud in exact or any(p.fullmatch(aud) for p in patterns)


class CertificatesUnavailable(RuntimeError):
    """Google's certificates could not be fetched: nothing can be verified now (a 503)."""


class OIDCAuthenticator:
    def __init__(
        self,
        audience: str | Iterable[str],
        allowed_emails: Iterable[str] = (),
        *,
        certs_url: str = GOOGLE_CERTS_URL,
        clock_skew_seconds: int = 10,
        clock: Callable[[], float] = time.monotonic,
        fetch_timeout_seconds: float = FETCH_TIMEOUT_SECONDS,
    ) -> None:
        audiences = (audience,) if isinstance(audience, str) else tuple(audience)
        self.audiences = tuple(a.strip() for a in audiences if a and a.strip())
        if not self.audiences:
            raise ValueError("an OIDC audience is required (the function's URL)")
        self.audience = self.audiences[0]
        self._audience_ok = _audience_matcher(self.audiences)
        self.allowed_emails = frozenset(e.strip().lower() for e in allowed_emails if e.strip())
        self.certs_url = certs_url
        self.clock_skew_seconds = clock_skew_seconds
        self._clock = clock
        self._fetch_timeout = fetch_timeout_seconds
        self._request: CachingRequest | None = None
        self._init_lock = threading.Lock()
        if not self.allowed_emails:
            log.warning(
                "OIDC: any Google account with a verified email may call for audience %s; "
                "set TRIGGERS_OIDC_ALLOWED_EMAILS to restrict callers",
                ", ".join(self.audiences),
            )

    def verify(self, authorization: str | None) -> dict[str, Any]:
        """The verified claims; else `Unauthorized` (401 / 403) or `CertificatesUnavailable`."""
        token = _bearer_token(authorization)
        header = _jwt_header(token)
        claims = self._verified_claims(token, header)
        audience = claims.get("aud")
        if not isinstance(audience, str) or not self._audience_ok(audience):
            raise Unauthorized(
                401, f"token audience {_shown(audience)} is not this function's audience"
            )
        issuer = claims.get("iss")
        if issuer not in GOOGLE_ISSUERS:
            raise Unauthorized(401, f"token issuer {_shown(issuer)} is not Google")
        self._check_caller(claims)
        return claims

    # -- signature, times, audience ----------------------------------------------------------

    def _verified_claims(self, token: str, header: Mapping[str, Any]) -> dict[str, Any]:
        from google.auth import exceptions

        request = self._transport()
        for attempt in (1, 2):
            try:
                return dict(self._verify_token(token, request))
            except exceptions.TransportError as exc:
                raise CertificatesUnavailable(
                    f"cannot fetch the token certificates from {self.certs_url}: {exc}"
                ) from None
            except (ValueError, exceptions.GoogleAuthError) as exc:
                problem = _problem(str(exc), header)
                unknown_key = problem.startswith("token signed with an unknown key")
                # Google rotated its keys since we cached them: fetch them again, once.
                if (
                    unknown_key
                    and attempt == 1
                    and request.invalidate(self.certs_url, older_than=KEY_REFRESH_INTERVAL)
                ):
                    log.info("OIDC: unknown key id, fetching the certificates again")
                    continue
                raise Unauthorized(401, problem) from None
        raise AssertionError("unreachable")

    def _verify_token(self, token: str, request: Any) -> Mapping[str, Any]:
        from google.oauth2 import id_token

        # The audience is checked by verify() against the configured list and patterns.
        return id_token.verify_token(
            token,
            request,
            audience=None,
            certs_url=self.certs_url,
            clock_skew_in_seconds=self.clock_skew_seconds,
        )

    def _transport(self) -> CachingRequest:
        if self._request is None:
            with self._init_lock:
                if self._request is None:
                    import google.auth.transport.requests

                    self._request = CachingRequest(
                        google.auth.transport.requests.Request(),
                        clock=self._clock,
                        timeout=self._fetch_timeout,
                    )
        return self._request

    # -- who is calling ----------------------------------------------------------------------

    def _check_caller(self, claims: Mapping[str, Any]) -> None:
        address = claims.get("email")
        if not isinstance(address, str) or not address:
            raise Unauthorized(403, "token has no email claim")
        verified = claims.get("email_verified")
        if verified is not True and str(verified).lower() != "true":
            raise Unauthorized(403, f"email {_shown(address)} is not verified")
        if self.allowed_emails and address.lower() not in self.allowed_emails:
            raise Unauthorized(403, f"{_shown(address)} is not allowed to call this function")


# -- the header and the token's shape ----------------------------------------------------------


def _bearer_token(authorization: str | None) -> str:
    if authorization is None or not authorization.strip():
        raise Unauthorized(401, "missing Authorization header")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthorized(401, "the Authorization header must be 'Bearer <ID token>'")
    token = token.strip()
    if not token:
        raise Unauthorized(401, "empty Bearer token")
    return token


def _jwt_header(token: str) -> Mapping[str, Any]:
    """The token's JOSE header, checked for shape only (google-auth's errors quote the token)."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise Unauthorized(401, "malformed token: not a signed JWT")
    try:
        raw = base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4))
        header = json.loads(raw)
    except (binascii.Error, ValueError):
        raise Unauthorized(401, "malformed token: its header is not base64url JSON") from None
    if not isinstance(header, dict):
        raise Unauthorized(401, "malformed token: its header is not a JSON object")
    return header


def _problem(message: str, header: Mapping[str, Any]) -> str:
    """A message of our own for a google-auth verification error (its text may hold the token)."""
    if "Certificate for key id" in message:
        return f"token signed with an unknown key id {_shown(header.get('kid'))}"
    if "Could not verify token signature" in message:
        return "token signature is invalid"
    if "Token expired" in message:
        return "token expired"
    if "Token used too early" in message:
        return "token used before its issue time"
    if "wrong audience" in message:
        # "Token has wrong audience X, expected one of [...]": X is the token's aud claim.
        received = message.split("wrong audience", 1)[1].split(", expected", 1)[0].strip()
        return f"token audience {_shown(received)} is not this function's audience"
    if "does not contain required claim" in message:
        return "token lacks the iat or exp claim"
    if "signature algorithm" in message or "does not match signature algorithm" in message:
        return f"token signing algorithm {_shown(header.get('alg'))} is not supported"
    return "token is invalid"


def _shown(value: Any, limit: int = 100) -> str:
    """A claim quoted for a message: caller-controlled, so shortened."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- certificates, cached for their HTTP lifetime ---------------------------------------------


@dataclass(slots=True)
class _Entry:
    response: Any
    fetched_at: float
    expires_at: float


class CachingRequest:
    """A google-auth transport `Request` for the certificates endpoint.

    It keeps a successful GET response (200, a non-empty JSON object) for its HTTP cache
    lifetime: Cache-Control max-age minus Age, else Expires, else DEFAULT_CERTS_TTL, bounded to
    [MIN_CERTS_TTL, MAX_CERTS_TTL].

    One fetch at a time: concurrent callers of an expired entry wait for a single refetch. A
    failed refetch serves the previous response for STALE_RETRY_SECONDS more, then tries again.
    """

    def __init__(
        self,
        inner: Any,
        *,
        clock: Callable[[], float] = time.monotonic,
        timeout: float = FETCH_TIMEOUT_SECONDS,
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.timeout = timeout
        self.fetches = 0
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        if method.upper() != "GET" or body is not None:
            return self.inner(
                url,
                method=method,
                body=body,
                headers=headers,
                timeout=timeout or self.timeout,
                **kwargs,
            )
        with self._lock:
            entry = self._entries.get(url)
            now = self.clock()
            if entry is not None and now < entry.expires_at:
                return entry.response
            try:
                self.fetches += 1
                response = self.inner(
                    url, method="GET", headers=headers, timeout=timeout or self.timeout, **kwargs
                )
                failure = _unusable(response)
            except Exception as exc:  # google-auth wraps transport errors in TransportError
                if entry is None:
                    raise
                response, failure = None, str(exc)
            if failure is None:
                now = self.clock()
                self._entries[url] = _Entry(response, now, now + _lifetime(response.headers))
                return response
            if entry is None:
                if response.status != 200:
                    return response  # google-auth reports it as a TransportError
                from google.auth import exceptions

                raise exceptions.TransportError(f"{url}: {failure}")
            log.warning("refetching %s failed (%s): using the cached copy", url, failure)
            entry.expires_at = now + STALE_RETRY_SECONDS
            return entry.response

    def invalidate(self, url: str, *, older_than: float = 0.0) -> bool:
        """Expire the cached response of `url` if it was fetched more than `older_than` seconds
        ago; return whether the next call fetches again. The expired copy is kept as the
        fallback should that fetch fail."""
        with self._lock:
            entry = self._entries.get(url)
            if entry is None:
                return True
            if self.clock() - entry.fetched_at < older_than:
                return False
            entry.expires_at = float("-inf")
            return True


def _unusable(response: Any) -> str | None:
    """Why a certificates response must not be used (or cached), or None."""
    if response.status != 200:
        return f"HTTP {response.status}"
    try:
        document = json.loads(response.data)
    except (TypeError, ValueError):
        return "the body is not JSON"
    if not isinstance(document, dict) or not document:
        return "the body is not a JSON object of keys"
    return None


def _lifetime(headers: Mapping[str, str] | None) -> float:
    lowered = {str(k).lower(): str(v) for k, v in (headers or {}).items()}
    directives: dict[str, str | None] = {}
    for part in lowered.get("cache-control", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.lower()] = value.strip().strip('"') or None
    lifetime: float | None = None
    if "no-store" in directives or "no-cache" in directives:
        lifetime = 0.0
    elif directives.get("max-age"):
        try:
            lifetime = float(int(directives["max-age"] or "")) - _seconds(lowered.get("age"))
        except ValueError:
            lifetime = None
    if lifetime is None and "expires" in lowered:
        expires = _http_date(lowered["expires"])
        date = _http_date(lowered.get("date", "")) or time.time()
        lifetime = (expires - date) if expires is not None else 0.0
    if lifetime is None:
        lifetime = DEFAULT_CERTS_TTL
    return min(max(lifetime, MIN_CERTS_TTL), MAX_CERTS_TTL)


def _seconds(value: str | None) -> float:
    try:
        return max(float(int(value or "0")), 0.0)
    except ValueError:
        return 0.0


def _http_date(value: str) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
