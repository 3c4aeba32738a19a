"""The last step of decoding: an event whose content can never be stored, hashed or sent is
refused here, as a permanent ``DecodeError``, instead of failing later on every redelivery.

Valid JSON can hold what no later step can handle: the escape ``"\\ud800"`` is a lone surrogate,
which UTF-8 cannot encode (so neither the ledger, nor the dedup-key hash, nor the Cloud Run API
can take it); ``1e400`` parses to infinity; ``[[[[...]]]]`` thousands deep overflows recursive
code downstream; a 100 KB CloudEvent id makes a dedup key and a ledger record that cannot be
written. Any of these used to surface as a ledger or internal error, answered 503, so the sender
redelivered it until it expired. Each is a property of the request alone: no retry can fix it.

The check looks at the event document (the dict that rules see; every decoded value is in it):
a serialisation in C first, which settles encoding and numbers for a valid document at the cost
of about 15 us for a typical event (and depth, for one with fewer brackets than levels allowed),
then an iterative walk, never a recursive one, for depth and, only when something is wrong,
for where.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from triggers.errors import DecodeError
from triggers.events.model import Event

# Deeper than any real payload (Firestore itself stops at 20 levels of maps), far from
# Python's recursion limit in the code that walks a document (patterns, CEL, Jinja, copies).
MAX_DEPTH = 64
# Each of id, source, type, subject and time. The default dedup key is `source#id` and must fit
# the 4 KiB a dedup key may have; real values are far shorter (an object name is <= 1 KiB).
MAX_ATTRIBUTE_BYTES = 2048
_ATTRIBUTES = ("id", "source", "type", "subject", "time")
# The default dedup key (`source#id`, or a Scheduler tick's `job#schedule_time`): a rule's
# dedup key may be at most this long (rules/rule.py), and so must the key a rejection is
# recorded under.
MAX_IDENTITY_BYTES = 4096
_IDENTITY_NAME = "source#id, or job#schedule_time for a Scheduler tick"
_SHOWN_KEY_CHARS = 40
_SHOWN_PATH_CHARS = 160


def check_storable(event: Event, form: str) -> Event:
    """``event`` itself when everything in it can be stored and sent; else ``DecodeError``
    (``bad_encoding``, ``bad_number``, ``too_deep`` or ``value_too_large``). ``form`` names
    the input form in messages."""
    document = event.document
    for name in _ATTRIBUTES:
        value = document.get(name)
        if isinstance(value, str) and len(value) > MAX_ATTRIBUTE_BYTES // 4:
            size = _utf8_size(value)
            if size is not None and size > MAX_ATTRIBUTE_BYTES:
                raise DecodeError(
                    "value_too_large",
                    f"{form}: {name} is {size} bytes, the limit is {MAX_ATTRIBUTE_BYTES} bytes",
                )
    identity = event.default_dedup_key  # what a rejection is recorded under, when no rule key
    if len(identity) > MAX_IDENTITY_BYTES // 4:
        size = _utf8_size(identity)
        if size is not None and size > MAX_IDENTITY_BYTES:
            raise DecodeError(
                "value_too_large",
                f"{form}: the event's identity ({_IDENTITY_NAME}) is {size} bytes,"
                f" the limit is {MAX_IDENTITY_BYTES} bytes",
            )
    problem = _first_problem(document)
    if problem is not None:
        reason, path, what = problem
        raise DecodeError(reason, f"{form}: {path or 'the event'} {what}")
    return event


def _first_problem(document: Mapping[str, Any]) -> tuple[str, str, str] | None:
    # Fast path, in C: a document that serialises as strict JSON and encodes as UTF-8 holds no
    # unencodable text and no non-finite number; only its depth is left to check. A 10 MiB
    # payload takes a third of the time of the full walk below, which also says where.
    try:
        text = json.dumps(document, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return _walk(document)
    # Each level of nesting opens a bracket, so a document with fewer brackets than the limit
    # (those inside strings counted too) is within it: counted in C, no walk for most events.
    if text.count("{") + text.count("[") < MAX_DEPTH:
        return None
    return None if _depth_within(document, MAX_DEPTH) else _walk(document)


def _depth_within(document: Mapping[str, Any], limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(document, 0)]
    while stack:
        value, depth = stack.pop()
        if depth >= limit:
            return False
        children = value.values() if isinstance(value, Mapping) else value
        for child in children:
            if isinstance(child, (Mapping, list, tuple)):
                stack.append((child, depth + 1))
    return True


def _walk(document: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The first problem, with its path: the slow walk, for a document the fast path refused."""
    # A stack of (value, path parts, depth): the path is spelled out only for a problem found.
    stack: list[tuple[Any, tuple[str | int, ...], int]] = [(document, (), 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            if not _encodable(value):
                return "bad_encoding", _dotted(path), _unencodable(value)
        elif isinstance(value, float):
            if not math.isfinite(value):
                return (
                    "bad_number",
                    _dotted(path),
                    f"is {value}, which JSON and the ledger cannot hold",
                )
        elif isinstance(value, Mapping):
            if depth >= MAX_DEPTH:
                return "too_deep", _dotted(path), f"is nested deeper than {MAX_DEPTH} levels"
            for key, item in value.items():
                key_text = str(key)
                if not _encodable(key_text):
                    shown = _dotted((*path, key_text))
                    return "bad_encoding", shown, "(a key) " + _unencodable(key_text)
                stack.append((item, (*path, key_text), depth + 1))
        elif isinstance(value, (list, tuple)):
            if depth >= MAX_DEPTH:
                return "too_deep", _dotted(path), f"is nested deeper than {MAX_DEPTH} levels"
            for index, item in enumerate(value):
                stack.append((item, (*path, index), depth + 1))
    return None


def _encodable(text: str) -> bool:
    if text.isascii():  # the common case, and a check that copies nothing
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _utf8_size(text: str) -> int | None:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None  # reported as bad_encoding by the walk


def _unencodable(text: str) -> str:
    position = next(i for i, c in enumerate(text) if 0xD800 <= ord(c) <= 0xDFFF)
    return (
        f"holds U+{ord(text[position]):04X} at character {position}, a lone surrogate"
        " (a JSON escape such as \\ud800) that UTF-8 cannot encode"
    )


def _dotted(path: tuple[str | int, ...]) -> str:
    """`data.message.attributes.k` for messages. Keys are shown escaped (a message is stored
    and logged, so it must not carry the surrogate it reports) and shortened."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        shown = part.encode("utf-8", "backslashreplace").decode("utf-8")
        if len(shown) > _SHOWN_KEY_CHARS:
            shown = shown[:_SHOWN_KEY_CHARS] + "..."
        out += ("." if out else "") + shown
    if len(out) > _SHOWN_PATH_CHARS:  # a path 64 levels deep says no more than its two ends
        out = out[: _SHOWN_PATH_CHARS // 2] + "..." + out[-_SHOWN_PATH_CHARS // 4 :]
    return out
