"""The fields of each kind's event `data`, declared once, so that rules are checked at load.

A template or a `when:` condition that reads `data.schedul_time` on a Scheduler rule can never
see a value: every event would be rejected (a template) or silently not match (a condition).
The decoders in this package build `data` (see docs/events.md); this module says what they
build, and the rules loader refuses a read of anything else, with a "did you mean".

A shape is either a leaf type name or a mapping of field names to shapes (a closed object).
`OPEN` is any JSON value whose content the sender chooses (a Pub/Sub payload's `json`,
attributes, object `metadata`, a custom CloudEvent's `data`): nothing below it is checked.

Pure data and logic: no I/O, no imports beyond the standard library.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TypeAlias

STRING = "string"
INT = "int"
BOOL = "bool"
STRING_MAP = "map<string, string>"  # any key, string values (attributes, metadata)
OPEN = "any"  # any JSON value chosen by the sender: not checked below

Shape: TypeAlias = "str | Mapping[str, Shape]"

_PUBSUB_MESSAGE: Mapping[str, Shape] = {
    "data": STRING,
    "text": STRING,
    "json": OPEN,
    "attributes": STRING_MAP,
    "message_id": STRING,
    "publish_time": STRING,
    "ordering_key": STRING,
}

# The Cloud Storage JSON API v1 object resource, which is what both the Eventarc CloudEvent and
# the notification payload carry (storage.py keeps every field, with the int64s as ints).
_STORAGE_OBJECT: Mapping[str, Shape] = {
    "kind": STRING,
    "id": STRING,
    "selfLink": STRING,
    "mediaLink": STRING,
    "name": STRING,
    "bucket": STRING,
    "generation": INT,
    "metageneration": INT,
    "contentType": STRING,
    "storageClass": STRING,
    "size": INT,
    "md5Hash": STRING,
    "crc32c": STRING,
    "etag": STRING,
    "contentEncoding": STRING,
    "contentDisposition": STRING,
    "contentLanguage": STRING,
    "cacheControl": STRING,
    "componentCount": INT,
    "kmsKeyName": STRING,
    "temporaryHold": BOOL,
    "eventBasedHold": BOOL,
    "retentionExpirationTime": STRING,
    "retention": {"mode": STRING, "retainUntilTime": STRING},
    "timeCreated": STRING,
    "updated": STRING,
    "timeDeleted": STRING,
    "timeFinalized": STRING,
    "timeStorageClassUpdated": STRING,
    "customTime": STRING,
    "softDeleteTime": STRING,
    "hardDeleteTime": STRING,
    "restoreToken": STRING,
    "metadata": STRING_MAP,
    "acl": OPEN,
    "owner": {"entity": STRING, "entityId": STRING},
    "customerEncryption": {"encryptionAlgorithm": STRING, "keySha256": STRING},
    "contexts": OPEN,
}

_SCHEDULER_TICK: Mapping[str, Shape] = {
    "job_name": STRING,
    "schedule_time": STRING,
    "schedule_time_inferred": BOOL,
    "text": STRING,
    "json": OPEN,
    "attributes": STRING_MAP,
}

# kind -> the shape of `data`. A custom CloudEvent's data is whatever its producer sends.
DATA_FIELDS: Mapping[str, Shape] = MappingProxyType(
    {
        "pubsub": {
            "message": _PUBSUB_MESSAGE,
            "subscription": STRING,
            "topic": STRING,
        },
        "storage": _STORAGE_OBJECT,
        "scheduler": _SCHEDULER_TICK,
        "generic": OPEN,
    }
)

# The document's own top level: these plus the CloudEvent extensions of the delivery (Eventarc
# adds some, producers add their own), so reads of other top-level names are not refused.
DOCUMENT_FIELDS: Mapping[str, Shape] = MappingProxyType(
    {"id": STRING, "source": STRING, "type": STRING, "subject": STRING, "time": STRING}
)

# Names a template may read on a closed object that are methods, not fields (`data.get('x')`).
_MAPPING_METHODS = frozenset({"get", "items", "keys", "values"})


def data_problem(kinds: Iterable[str], path: Sequence[str | int]) -> str | None:
    """Why no event of `kinds` can have `data.<path>`, or None when at least one can.

    `path` is what follows `data`: names, or ints for list items. The message names the first
    unknown step and the closest field names any of the kinds has at that place.
    """
    kinds = sorted(set(kinds))
    offered: set[str] = set()
    failed_at = len(path)
    for kind in kinds:
        depth, names = _walk(DATA_FIELDS.get(kind, OPEN), path)
        if depth is None:
            return None
        if depth < failed_at:
            failed_at, offered = depth, set(names)
        elif depth == failed_at:
            offered |= names
    where = "data." + ".".join(str(p) for p in path[: failed_at + 1])
    step = path[failed_at]
    whose = " or ".join(f"'{k}'" for k in kinds)
    message = f"{where}: no {whose} event has this field"
    if isinstance(step, str):
        close = difflib.get_close_matches(step, sorted(offered), n=1, cutoff=0.6)
        if close:
            message += f"; did you mean {close[0]!r}?"
        elif offered:
            message += f"; {listed(offered)}"
    return message


def listed(names: Iterable[str]) -> str:
    """The fields to choose from, or where to find them when they are too many to read."""
    names = sorted(names)
    if len(names) > 12:
        return "its fields are listed in docs/events.md"
    return f"its fields are {', '.join(names)}"


def _walk(shape: Shape, path: Sequence[str | int]) -> tuple[int | None, frozenset[str]]:
    """(None, _) when `path` can exist under `shape`; else (index of the step that cannot,
    the field names available there)."""
    for depth, step in enumerate(path):
        if not isinstance(shape, Mapping):
            # A leaf: what follows is a method of the value (`name.split`), a map key, or
            # anything inside free-form content; none of it is a field to check.
            return None, frozenset()
        if isinstance(step, str) and step in shape:
            shape = shape[step]
            continue
        if isinstance(step, str) and step in _MAPPING_METHODS:
            return None, frozenset()
        return depth, frozenset(shape)
    return None, frozenset()


def merged_data_shape(kinds: Iterable[str]) -> Shape:
    """One shape for `data` that several kinds share: every field any of them has; a field
    they type differently becomes OPEN, and so does all of `data` if any kind is open."""
    shapes = [DATA_FIELDS.get(kind, OPEN) for kind in sorted(set(kinds))]
    if not shapes:
        return OPEN
    merged = shapes[0]
    for shape in shapes[1:]:
        merged = _merge(merged, shape)
    return merged


def _merge(left: Shape, right: Shape) -> Shape:
    if isinstance(left, Mapping) and isinstance(right, Mapping):
        out = dict(left)
        for name, shape in right.items():
            out[name] = _merge(out[name], shape) if name in out else shape
        return out
    return left if left == right else OPEN
