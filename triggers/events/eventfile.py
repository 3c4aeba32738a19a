"""Sample-event files: an HTTP request written as JSON, for ``triggers plan`` and tests.

Two shapes are accepted::

    {"headers": {"Content-Type": "application/json", ...}, "body": <JSON value or string>}
    <any other JSON document>        # the body itself, sent as application/json

A JSON-value body is re-serialised compactly; a string body is sent as its UTF-8 text, which is
how a test writes a body that is not JSON (or a JSON text that must be byte-exact). An optional
``"description"`` member documents the file and is ignored.
"""

from __future__ import annotations

import json
from typing import Any

from triggers.errors import DecodeError
from triggers.events import _wire

_ENVELOPE_KEYS = frozenset({"headers", "body", "description"})


def parse_event_file(text: str, name: str = "<event>") -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` for ``decode``. A malformed file raises ``DecodeError("bad_json")``."""
    try:
        document = _wire.loads(text)
    except RecursionError:
        raise DecodeError("bad_json", f"{name}: not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise DecodeError("bad_json", f"{name}: not valid JSON ({exc})") from None
    if not (isinstance(document, dict) and ("headers" in document or "body" in document)):
        return {"Content-Type": "application/json"}, _encode(_compact(document, name), name)
    unknown = sorted(set(document) - _ENVELOPE_KEYS)
    if unknown:
        raise DecodeError(
            "bad_json",
            f"{name}: unknown member {unknown[0]!r} next to headers/body"
            " (allowed: headers, body, description)",
        )
    headers = _headers(document.get("headers", {}), name)
    body = document.get("body", "")
    raw = body if isinstance(body, str) else _compact(body, name)
    return headers, _encode(raw, name)


def _headers(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise DecodeError(
            "bad_json", f"{name}: headers is {_wire.json_type_name(value)}, expected an object"
        )
    for header, item in value.items():
        if not isinstance(item, str):
            raise DecodeError(
                "bad_json",
                f"{name}: headers.{header} is {_wire.json_type_name(item)}, expected a string",
            )
    return dict(value)


def _compact(value: Any, name: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    except RecursionError:
        raise DecodeError("bad_json", f"{name}: body is nested too deeply") from None


def _encode(text: str, name: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        # Only a JSON escape of a lone surrogate (e.g. "\ud800") gets here.
        raise DecodeError(
            "bad_json", f"{name}: body contains a lone surrogate escape at character {exc.start}"
        ) from None
