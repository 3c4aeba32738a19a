"""A sample event for a rule: its `example:`, or one synthesized from what the rule asks for.

`triggers check` plans the `jobs.run` request a rule would send, and needs an event to plan it
from. A rule's `example:` is a request written like an event file (config/events/README.md):
`{headers, body}`, or the JSON body alone; the loader checks that it decodes, that the rule
matches it and that its templates render (`example_problem`). Without one, `synthesize` builds
the request Google would send for the rule's first `on:` kind, filled so that the rule's scope
(topic, subscription, bucket, Scheduler job), its pattern and the fields its templates read are
satisfied where that can be read off the rule. A CEL `when:` or an `anything-but` may still
refuse it: the `Sample` then says why, and the request is planned all the same, since what the
job and the overrides look like is what a preflight is after.

Pure: builds and decodes requests in memory (triggers.events.requests' builders), no I/O.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..errors import DecodeError
from ..events.model import (
    PUBSUB_PUBLISHED,
    SCHEDULER_EXECUTED,
    STORAGE_PREFIX,
    Event,
)
from .rule import Rule

# Values used where the rule asks for nothing in particular.
SAMPLE_TEXT = "triggers-check"
SAMPLE_BUCKET = "triggers-check-bucket"
SAMPLE_OBJECT = "triggers-check/sample.txt"
SAMPLE_TOPIC = "triggers-check"
SAMPLE_ID = "triggers-check-0001"


@dataclass(frozen=True, slots=True)
class Sample:
    """The event a rule's request is planned from. ``origin``: ``example`` or ``synthesized``;
    ``mismatch``: why the rule would not match it (None when it does)."""

    event: Event
    origin: str
    mismatch: str | None = None


# -- example: ---------------------------------------------------------------------------------


def example_request(example: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """``(headers, body)`` of an `example:` (the event-file shapes). Raises DecodeError."""
    from ..events.eventfile import parse_event_file

    return parse_event_file(json.dumps(example), "example")


def example_event(example: Mapping[str, Any], now: datetime | None = None) -> Event:
    """The decoded `example:`. Raises DecodeError."""
    from ..events import decode

    moment = now or datetime.now(UTC)
    return decode(*example_request(example), now=lambda: moment)


def example_problem(rule: Rule) -> str | None:
    """What is wrong with the rule's `example:` (None when there is none or it is right): it
    must decode, be of a type of `on:`, match the rule, and plan a run."""
    from ..errors import RenderError

    if rule.spec.example is None:
        return None
    try:
        event = example_event(rule.spec.example)
    except DecodeError as exc:
        return f"example: cannot be decoded ({exc.reason}): {exc.message}"
    reason = rule.explain(event)
    if reason is not None:
        return f"example: the rule does not match it: {reason}"
    try:
        rule.plan(event)
    except RenderError as exc:
        return f"example: its run cannot be planned: {exc}"
    return None


def sample(rule: Rule, now: datetime | None = None) -> Sample:
    """The rule's example, or a synthesized event. Raises DecodeError only for a broken
    example (a loaded rule's example was checked already)."""
    if rule.spec.example is not None:
        event = example_event(rule.spec.example, now)
        return Sample(event, "example", rule.explain(event))
    event = synthesize(rule, now)
    return Sample(event, "synthesized", rule.explain(event))


# -- synthesis --------------------------------------------------------------------------------


def synthesize(rule: Rule, now: datetime | None = None) -> Event:
    """An event of the rule's first `on:` type, shaped to pass its scope, pattern and templates
    where possible (the caller checks with `rule.explain`)."""
    from ..events import decode

    moment = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    wanted = desired_document(rule)
    event_type = _first_type(rule)
    if event_type == PUBSUB_PUBLISHED:
        headers, body = _pubsub(rule, wanted, moment)
    elif event_type.startswith(STORAGE_PREFIX):
        headers, body = _storage(event_type, wanted, moment)
    elif event_type == SCHEDULER_EXECUTED:
        headers, body = _scheduler(rule, wanted, moment)
    else:
        headers, body = _generic(event_type, wanted, moment)
    return decode(headers, body, now=lambda: moment)


def _first_type(rule: Rule) -> str:
    from .schema import ON_SHORTHANDS

    first = rule.spec.on[0]
    return ON_SHORTHANDS.get(first, (first,))[0]


def desired_document(rule: Rule) -> dict[str, Any]:
    """The event document fields the rule asks for: its pattern's (first alternative of each
    choice), its scope's, then a placeholder for every field a template reads."""
    wanted: dict[str, Any] = {}
    if rule.spec.match:
        _fill_pattern(wanted, rule.spec.match)
    if rule.scope is not None:
        _fill_pattern(wanted, rule.scope.source)
    for path in sorted(_template_paths(rule), key=len, reverse=True):
        _put(wanted, path, SAMPLE_TEXT, replace=False)
    return wanted


def _fill_pattern(target: dict[str, Any], pattern: Mapping[str, Any]) -> None:
    for key, value in pattern.items():
        if key == "$or" and isinstance(value, list) and value:
            first = value[0]
            if isinstance(first, Mapping):
                _fill_pattern(target, first)
        elif isinstance(value, Mapping):
            child = target.get(key)
            if not isinstance(child, dict):
                child = target[key] = {}
            _fill_pattern(child, value)
        elif isinstance(value, list):
            found, chosen = _satisfying(value)
            if found:
                target[key] = chosen


_MISSING = object()


def _satisfying(conditions: list[Any]) -> tuple[bool, Any]:
    """(True, a value one of the leaf's conditions accepts), or (False, None) for none/absent."""
    for condition in conditions:
        value = _value_for(condition)
        if value is not _MISSING:
            return True, value
    return False, None


def _value_for(condition: Any) -> Any:
    if not isinstance(condition, Mapping):
        return condition  # an exact value (string, number, bool, null)
    if len(condition) != 1:
        return _MISSING
    ((operator, operand),) = condition.items()
    if operator == "prefix":
        return _text(operand) + "sample"
    if operator == "suffix":
        return "sample" + _text(operand)
    if operator == "equals-ignore-case":
        return _text(operand)
    if operator == "wildcard" and isinstance(operand, str):
        # `*` is any run of characters (`\*` a literal star): fill each with a word.
        return re.sub(r"(\\\*)|\*", lambda m: "*" if m.group(1) else "sample", operand)
    if operator == "numeric" and isinstance(operand, list):
        return _number_within(operand)
    if operator == "exists":
        return SAMPLE_TEXT if operand is True else _MISSING
    if operator == "cidr" and isinstance(operand, str):
        try:
            network = ipaddress.ip_network(operand, strict=False)
        except ValueError:
            return _MISSING
        return str(network[1] if network.num_addresses > 1 else network[0])
    if operator == "anything-but":
        refused = operand if isinstance(operand, list) else [operand]
        candidate = SAMPLE_TEXT
        while candidate in refused:
            candidate += "-x"
        return 0 if refused and all(isinstance(r, int | float) for r in refused) else candidate
    return _MISSING


def _text(operand: Any) -> str:
    if isinstance(operand, Mapping):  # {"prefix": {"equals-ignore-case": "x"}}
        operand = next(iter(operand.values()), "")
    return str(operand)


def _number_within(operand: list[Any]) -> Any:
    """A number inside `[">", 0, "<=", 5]`-style bounds."""
    low: float | None = None
    high: float | None = None
    for operator, bound in zip(operand[::2], operand[1::2], strict=False):
        if not isinstance(bound, int | float):
            return _MISSING
        if operator == "=":
            return bound
        if operator in (">", ">="):
            low = bound if low is None else max(low, bound)
        elif operator in ("<", "<="):
            high = bound if high is None else min(high, bound)
    if low is not None and high is not None:
        middle = (low + high) / 2
        return int(middle) if middle == int(middle) and low < int(middle) < high else middle
    if low is not None:
        return low + 1
    if high is not None:
        return high - 1
    return 0


def _template_paths(rule: Rule) -> set[tuple[str, ...]]:
    """Document paths the rule's templates read: `data.message.json.id` -> (data, message,
    json, id); `event.x.y` is the document's x.y."""
    sources = [t.source for t in (rule.args or ()) if not t.is_literal]
    sources += [t.source for _, t in rule.env if not t.is_literal]
    if rule.dedup_key is not None and not rule.dedup_key.is_literal:
        sources.append(rule.dedup_key.source)
    if not sources:
        return set()
    from jinja2 import nodes

    from .templates import _env

    paths: set[tuple[str, ...]] = set()
    for source in sources:
        for node in _env().parse(source).find_all((nodes.Getattr, nodes.Getitem)):
            path = _chain(node, nodes)
            if path:
                paths.add(path)
    return paths


def _chain(node: Any, nodes: Any) -> tuple[str, ...] | None:
    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if not isinstance(node.arg.value, str):
                return None  # a list index: nothing to invent
            parts.append(node.arg.value)
            node = node.node
        elif isinstance(node, nodes.Name):
            parts.reverse()
            return tuple(parts) if node.name == "event" else (node.name, *parts)
        else:
            return None


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any, *, replace: bool) -> None:
    for key in path[:-1]:
        child = target.get(key)
        if child is None:
            child = target[key] = {}
        if not isinstance(child, dict):
            return  # a value is already there (from the pattern): keep it
        target = child
    if replace or path[-1] not in target:
        target[path[-1]] = value


def _get(document: Mapping[str, Any], *path: str) -> Any:
    value: Any = document
    for key in path:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _first_string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _payload(wanted_json: Any, wanted_text: Any) -> str:
    if isinstance(wanted_json, dict | list):
        return json.dumps(wanted_json)
    if isinstance(wanted_text, str):
        return wanted_text
    return "{}"


# -- one request per source -------------------------------------------------------------------


def _pubsub(rule: Rule, wanted: dict[str, Any], moment: datetime) -> tuple[dict[str, str], bytes]:
    from ..events import requests

    project = rule.job.split("/")[1]
    topic = _first_string(_get(wanted, "data", "topic")) or SAMPLE_TOPIC
    message = _get(wanted, "data", "message") or {}
    attributes = message.get("attributes") if isinstance(message, dict) else None
    request = requests.pubsub_message(
        topic,
        _payload(_get(message, "json"), _get(message, "text")),
        {str(k): str(v) for k, v in (attributes or {}).items() if not isinstance(v, dict)},
        project=project,
        subscription=_first_string(_get(wanted, "data", "subscription")),
        message_id=SAMPLE_ID,
        publish_time=moment,
    )
    return request.headers, request.body


def _storage(
    event_type: str, wanted: dict[str, Any], moment: datetime
) -> tuple[dict[str, str], bytes]:
    from ..events import requests

    data = _get(wanted, "data") or {}
    metadata = data.get("metadata")
    request = requests.storage_object(
        _first_string(data.get("bucket")) or SAMPLE_BUCKET,
        _first_string(data.get("name")) or SAMPLE_OBJECT,
        generation=_integer(data.get("generation"), 1),
        size=_integer(data.get("size"), 1),
        event=event_type.removeprefix(STORAGE_PREFIX),
        content_type=_first_string(data.get("contentType")),
        metadata=(
            {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else None
        ),
        event_id=SAMPLE_ID,
        time=moment,
    )
    return request.headers, request.body


def _scheduler(
    rule: Rule, wanted: dict[str, Any], moment: datetime
) -> tuple[dict[str, str], bytes]:
    from ..events import requests

    job = _first_string(_get(wanted, "data", "job_name")) or rule.spec.scheduler_job or rule.name
    tick = moment
    if rule.schedule is not None:
        tick = rule.schedule.previous_before(moment)
    body = _payload(_get(wanted, "data", "json"), _get(wanted, "data", "text"))
    request = requests.scheduler_tick(job, tick, body if body != "{}" else None)
    return request.headers, request.body


def _generic(
    event_type: str, wanted: dict[str, Any], moment: datetime
) -> tuple[dict[str, str], bytes]:
    envelope: dict[str, Any] = {
        key: value
        for key, value in wanted.items()
        if key not in ("data", "type", "specversion") and re.fullmatch(r"[a-z0-9]{1,20}", key)
    }
    envelope.update(
        specversion="1.0",
        type=event_type,
        id=_first_string(wanted.get("id")) or SAMPLE_ID,
        source=_first_string(wanted.get("source")) or "//triggers/check",
        time=moment.isoformat().replace("+00:00", "Z"),
        data=wanted.get("data", {}),
    )
    return {"Content-Type": "application/cloudevents+json"}, json.dumps(envelope).encode()


def _integer(value: Any, default: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return default
    try:
        return max(int(float(value)), 0)
    except ValueError:
        return default
