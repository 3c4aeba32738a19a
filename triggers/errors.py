"""Every exception the framework raises on purpose.

    TriggersError
    ├── DecodeError          an HTTP request is not an event we understand (permanent)
    ├── PatternError         an EventBridge pattern is invalid (also a ValueError)
    ├── RulesError           a rules file is invalid; carries every Problem at once
    ├── SettingsError        TRIGGERS_* settings are invalid; lists every problem at once
                             (also a ValueError)
    ├── RenderError          a template failed for one event (permanent for that event)
    ├── Unauthorized         a direct caller's OIDC token is missing or not allowed (401 / 403)
    └── RunError             jobs.run failed; `.retryable` says whether a redelivery may succeed
        ├── PermanentRunError    the API refused the request (400, 403, 404, 409 on the job)
        ├── RetryableRunError    it surely did not run (429, refused connection): retry later
        └── AmbiguousRunError    it may have run (timeout, 5xx, connection lost after sending):
                                 look for the execution before launching again

Errors that come from a request or an event are permanent: the sender's retries can never fix
them, so the HTTP layer acknowledges them and records the reason instead of asking for a retry.
"""

from __future__ import annotations

from dataclasses import dataclass


class TriggersError(Exception):
    """Base class of every error raised on purpose by triggers."""


class DecodeError(TriggersError, ValueError):
    """The request cannot be decoded into an Event.

    ``reason`` is a stable, documented code (see ``DecodeError.REASONS``) that logs, metrics and
    the recorded outcome carry; the message says what exactly is wrong.
    """

    REASONS = {
        "body_too_large": "the request body is larger than the configured limit",
        "bad_json": "the body (or a part of it that must be JSON) is not valid JSON",
        "bad_base64": "Pub/Sub message data is not valid base64",
        "bad_encoding": (
            "the body is not valid UTF-8 where text is required, or decoded text holds a"
            " character UTF-8 cannot encode (a lone surrogate, JSON escape \\ud800)"
        ),
        "bad_number": "a number is not finite (NaN, Infinity, or out of range such as 1e400)",
        "too_deep": "a value is nested deeper than the event document allows",
        "value_too_large": "an event attribute (id, source, type, subject, time) is too long",
        "missing_field": "a field or header that this kind of event requires is absent",
        "bad_field": "a field has the wrong type or an invalid value",
        "unsupported_content_type": "the content type cannot carry this kind of event",
        "bad_cloudevent": "the request claims to be a CloudEvent but breaks the specification",
        "unrecognised": "the request is none of the forms triggers accepts",
    }

    def __init__(self, reason: str, message: str) -> None:
        if reason not in self.REASONS:
            raise ValueError(f"unknown DecodeError reason {reason!r}")
        if not message.isascii():
            # A message may quote the input (the CloudEvents SDK's do); it is answered, logged
            # and stored, so a character UTF-8 cannot encode is written as its escape.
            message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a rules file, located as precisely as the loader could."""

    file: str
    line: int | None
    rule: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        who = f" rule '{self.rule}':" if self.rule else ""
        return f"{where}:{who} {self.message}"


class RulesError(TriggersError):
    """A rules file (or directory) is invalid. ``problems`` lists all of them, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the rules"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class SettingsError(TriggersError, ValueError):
    """The function's settings are invalid. ``problems`` lists all of them, each as
    `TRIGGERS_LEASE_SECONDS='5': must be at least 10` (a keyword argument: `lease_seconds=5`)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the settings"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class PatternError(TriggersError, ValueError):
    """An EventBridge pattern is invalid.

    ``problems`` holds every ``(path, message)`` found, where ``path`` is the tuple of keys (and
    list indexes) from the pattern's root to the offending node, so that a rules loader can point
    at the right line of its file.
    """

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = list(problems)
        super().__init__(
            "; ".join(
                (".".join(str(p) for p in path) + ": " if path else "") + message
                for path, message in self.problems
            )
        )


class RenderError(TriggersError):
    """A rule's template failed for one event. Permanent: the same event fails the same way."""

    def __init__(self, rule: str, field: str, location: str, message: str) -> None:
        self.rule = rule
        self.field = field
        self.location = location
        self.message = message
        super().__init__(f"{location}: rule '{rule}': {field}: {message}")


class RunError(TriggersError):
    """`jobs.run` failed. ``status`` is the HTTP status when there was one."""

    retryable = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class PermanentRunError(RunError):
    retryable = False


class RetryableRunError(RunError):
    """The request certainly did not start an execution."""


class AmbiguousRunError(RunError):
    """The request may have started an execution whose name we never learned."""


class Unauthorized(TriggersError):
    """A direct caller is not allowed: ``status`` is 401 (no or bad token) or 403 (not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
