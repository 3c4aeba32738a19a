"""Small, strict conversions shared by the decoders: headers, media types, JSON, base64.

Every function here either returns a plain value or raises ``DecodeError`` with a message that
names *where* the problem is (the ``where`` argument, e.g. ``"raw Pub/Sub push: message.data"``),
so that no ``ValueError``/``UnicodeDecodeError``/``binascii.Error`` ever leaves the package.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from triggers.errors import DecodeError


def lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """HTTP header names are case-insensitive: normalise them once, at the edge."""
    return {str(name).lower(): value for name, value in headers.items()}


def media_type(content_type: str | None) -> str:
    """``"Application/JSON; charset=utf-8"`` -> ``"application/json"``; absent -> ``""``."""
    if not content_type:
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def is_json_media_type(mtype: str) -> bool:
    """JSON proper and every structured-syntax ``+json`` type (RFC 6839)."""
    return mtype in ("application/json", "text/json") or mtype.endswith("+json")


def json_type_name(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages such as "is an array"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); Python accepts them by default, and a NaN in
    # the event document would break equality, templates and Firestore writes downstream.
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str) -> Any:
    """Strict ``json.loads``. Raises ``ValueError`` or ``RecursionError`` on bad input."""
    return json.loads(text, parse_constant=_reject_constant)


def try_loads(text: str | None) -> tuple[bool, Any]:
    """``(True, value)`` when ``text`` is a JSON text, else ``(False, None)``.

    Used where JSON is optional (Pub/Sub message text, a Scheduler body): the text stays
    available either way, so failing to parse is information, not an error.
    """
    if text is None:
        return False, None
    try:
        return True, loads(text)
    except (ValueError, RecursionError):
        return False, None


def utf8_or_none(raw: bytes | None) -> str | None:
    """Text when the bytes are UTF-8, else ``None`` (the caller keeps the bytes elsewhere)."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def require_utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(
            "bad_encoding", f"{where} is not valid UTF-8 (byte {exc.start}: {exc.reason})"
        ) from None


def parse_json(raw: bytes | str, where: str) -> Any:
    """Parse JSON that is required: not UTF-8 -> ``bad_encoding``, not JSON -> ``bad_json``."""
    text = require_utf8(raw, where) if isinstance(raw, bytes) else raw
    try:
        return loads(text)
    except RecursionError:
        raise DecodeError("bad_json", f"{where} is not valid JSON (nested too deeply)") from None
    except ValueError as exc:
        raise DecodeError("bad_json", f"{where} is not valid JSON ({exc})") from None


def b64decode(value: str, where: str) -> bytes:
    """Strict standard base64, as Pub/Sub writes it; lenient decoding would hide corruption."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecodeError("bad_base64", f"{where} is not valid base64 ({exc})") from None


def b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")
