"""Cloud Run values and limits shared by the jobs file and the API: durations, env names.

Limits as documented for Cloud Run jobs: at most 10,000 tasks, task timeout up to 168 h (24 h
GA), at most 10 retries, env values up to 32 KiB, and names Cloud Run reserves for itself.
"""

from __future__ import annotations

import re
from typing import Any

MAX_TASK_COUNT = 10_000
MAX_RETRIES = 10
MAX_TIMEOUT_SECONDS = 168 * 3600  # 7 days, the preview limit; GA is 24 h
MAX_ENV_VALUE_BYTES = 32 * 1024
DEFAULT_TIMEOUT_SECONDS = 600.0
DEFAULT_MAX_RETRIES = 3

#: Names Cloud Run sets itself in a job task; a job or an override may not set them.
RESERVED_ENV_NAMES = frozenset(
    {
        "CLOUD_RUN_JOB",
        "CLOUD_RUN_EXECUTION",
        "CLOUD_RUN_TASK_INDEX",
        "CLOUD_RUN_TASK_ATTEMPT",
        "CLOUD_RUN_TASK_COUNT",
        "PORT",
        "K_SERVICE",
        "K_REVISION",
        "K_CONFIGURATION",
    }
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds from ``600``, ``"600s"``, ``"10m"``, ``"1h30m"``, ``"1.5s"``, ``"250ms"``.

    Raises ``ValueError`` with a readable message for anything else (negative, empty, bool).
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            raise ValueError("invalid duration '' (use e.g. 600s, 10m, 1h)")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            pos, seconds = 0, 0.0
            for m in _DURATION_PART.finditer(text):
                if m.start() != pos:
                    break
                seconds += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
                pos = m.end()
            if pos != len(text) or pos == 0:
                raise ValueError(f"invalid duration {value!r} (use e.g. 600s, 10m, 1h30m)")
    else:
        raise ValueError(f"invalid duration {value!r} (use e.g. 600s, 10m, 1h)")
    if seconds < 0:
        raise ValueError(f"duration {value!r} is negative")
    return seconds


def format_duration(seconds: float) -> str:
    """The proto3 JSON form of a Duration: ``"600s"``, ``"0.5s"``."""
    whole = int(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    if nanos == 0:
        return f"{whole}s"
    return f"{whole}.{nanos:09d}".rstrip("0") + "s"


def env_name_problem(name: Any) -> str | None:
    """Why ``name`` cannot be an environment variable of a Cloud Run task, or None."""
    if not isinstance(name, str) or not name:
        return "an environment variable name must be a non-empty string"
    if "=" in name or "\x00" in name:
        return f"environment variable name {name!r} must not contain '=' or NUL"
    if not re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", name):
        return (
            f"environment variable name {name!r} is invalid: use letters, digits, '_', '-', '.'"
            " and do not start with a digit"
        )
    if name in RESERVED_ENV_NAMES:
        return f"environment variable name {name!r} is reserved by Cloud Run"
    if name.startswith("X_GOOGLE_"):
        return f"environment variable name {name!r} is reserved (prefix X_GOOGLE_)"
    if len(name) > MAX_ENV_VALUE_BYTES:
        return "environment variable name is too long"
    return None


def env_value_problem(name: str, value: str) -> str | None:
    if len(value.encode("utf-8")) > MAX_ENV_VALUE_BYTES:
        return f"environment variable {name!r}: value is longer than 32 KiB"
    if "\x00" in value:
        return f"environment variable {name!r}: value must not contain NUL"
    return None
