"""Replay: recorded events, through the current rules, again.

    records = select(ledger.list(status=[Status.FAILED], since=yesterday, until=today))
    for comparison in compare(rules, records):         # `triggers replay --dry-run`
        print(comparison.change, comparison.rule)
    for result in replay(dispatcher, records, scope=new_scope(now)):
        print(result.outcome)

A ledger record keeps the event it was decided for: its document (what patterns match and
templates render) and, in `record.event`, its kind and the form it arrived in. `event_of` rebuilds
that Event, so a replay routes and plans exactly what the function did, only with the rules as
they are now.

**Which rules.** By default a record replays its own rule: re-running what failed yesterday must
not re-run, for the same events, the rules that succeeded. `all_rules=True` sends each event
through every current rule instead (a new rule that should have matched).

**Dedup scope.** Replaying cannot reuse the event's dedup identity: the record that is being
replayed holds it (failed, rejected, ...), so the claim would be a duplicate. A replay therefore
runs under a *scope*: each planned request's dedup key becomes `scope/key` (`RunRequest.in_scope`),
a new ledger record. Within one scope a (rule, event) runs once, however often the replay is
repeated or resumed; a new scope runs it once more. The scope is always applied to the key
planned from the event, never to a recorded key, so replaying a replayed record does not nest.

Pure: records, rules and the dispatcher are given; nothing here does I/O of its own.
"""

from __future__ import annotations

import difflib
import enum
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..dispatch import Dispatcher, Outcome, RuleOutcome
from ..errors import RenderError
from ..events.model import Event
from ..events.stored import stored_event
from ..ledger.base import INPUT_RULE, Record, Status
from ..plan import RUN_KEY_ENV
from ..rules.ruleset import RuleSet

SCOPE_PREFIX = "replay-"


class NotReplayable(ValueError):
    """The record holds no event that can be rebuilt (and says why)."""


def new_scope(now: datetime) -> str:
    """A fresh scope named after its time: `replay-20261121T170102Z`."""
    moment = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    return SCOPE_PREFIX + moment.strftime("%Y%m%dT%H%M%SZ")


def event_of(record: Record) -> Event:
    """The Event a record was decided for, as the function decoded it."""
    if record.rule == INPUT_RULE:
        raise NotReplayable(
            "a request that could not be decoded has no event to replay: re-drive it from the"
            " dead-letter subscription (triggers replay --from-topic)"
        )
    if record.dedup_key.startswith("batch/"):
        raise NotReplayable(
            "this is a batch's own run, not an event: replay its members (listed by"
            " `triggers show`), which go through their rule's batch again"
        )
    document = record.event_document
    if not isinstance(document, dict):
        raise NotReplayable(
            "the ledger did not keep this event (its document was over the ledger's size"
            " limit): re-send it from its source"
        )
    try:
        return stored_event(document, record.event if isinstance(record.event, dict) else {})
    except ValueError as exc:
        raise NotReplayable(f"the recorded event cannot be rebuilt: {exc}") from None


def select(records: Iterable[Record]) -> list[Record]:
    """One record per (rule, event), the newest, oldest event first; decode rejections kept
    (they are reported as not replayable). A replayed record and the record it replayed share
    a (rule, event), so an event is never replayed twice in one pass."""
    newest: dict[tuple[str, str, str], Record] = {}
    for record in records:
        reference = record.event if isinstance(record.event, dict) else {}
        identity = (record.rule, str(reference.get("source")), str(reference.get("id")))
        if record.rule == INPUT_RULE:
            identity = (record.rule, record.key, "")
        kept = newest.get(identity)
        if kept is None or record.created_at > kept.created_at:
            newest[identity] = record
    return sorted(newest.values(), key=lambda r: r.created_at)


# -- dry run: what would run now vs what ran --------------------------------------------------


class Change(str, enum.Enum):
    SAME = "same"  # the rule matches and would send the same request
    CHANGED = "changed"  # the rule matches and would send another request (or now can)
    UNMATCHED = "unmatched"  # the rule no longer matches, or is disabled
    REMOVED = "removed"  # no rule of that name any more
    FAILS = "fails"  # the rule matches but cannot plan the run (a template error)
    ADDED = "added"  # (all_rules) another rule matches that had no record for the event
    SKIPPED = "skipped"  # the record holds no event to replay

    @property
    def would_run(self) -> bool:
        return self in (Change.SAME, Change.CHANGED, Change.ADDED)


_MARKS = {
    Change.SAME: "=",
    Change.CHANGED: "~",
    Change.UNMATCHED: "-",
    Change.REMOVED: "-",
    Change.FAILS: "!",
    Change.ADDED: "+",
    Change.SKIPPED: "?",
}


@dataclass(frozen=True, slots=True)
class Comparison:
    """One rule's then-and-now for one recorded event."""

    change: Change
    rule: str
    event_id: str | None
    record: Record | None  # None for ADDED
    then: dict[str, Any] | None  # the recorded jobs.run (job + body), None for ADDED
    now: dict[str, Any] | None  # the jobs.run the rule would send now
    reason: str | None = None

    @property
    def mark(self) -> str:
        return _MARKS[self.change]

    def diff(self) -> list[str]:
        """A unified diff of the recorded and the planned request (run keys left out)."""
        if self.then is None or self.now is None:
            return []
        before = json.dumps(self.then, indent=2, sort_keys=True).splitlines()
        after = json.dumps(self.now, indent=2, sort_keys=True).splitlines()
        return list(difflib.unified_diff(before, after, "ran", "now", lineterm="", n=2))

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "change": self.change.value,
            "rule": self.rule,
            "event_id": self.event_id,
        }
        if self.record is not None:
            out["key"] = self.record.key
            out["status"] = _status(self.record)
        for name in ("then", "now", "reason"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def compare(
    rules: RuleSet, records: Sequence[Record], *, all_rules: bool = False
) -> list[Comparison]:
    """For each record, what its rule (or, with `all_rules`, every rule) would do now."""
    out: list[Comparison] = []
    seen_events: set[tuple[str, str]] = set()
    recorded = {(r.rule, _identity(r)) for r in records}
    for record in records:
        try:
            event = event_of(record)
        except NotReplayable as exc:
            out.append(
                Comparison(
                    Change.SKIPPED, record.rule, _event_id(record), record, None, None, str(exc)
                )
            )
            continue
        out.append(_compare_rule(rules, record, event))
        if all_rules and (event.source, event.id) not in seen_events:
            seen_events.add((event.source, event.id))
            for rule in rules.route(event):
                if (rule.name, (event.source, event.id)) in recorded:
                    continue
                try:
                    now = _request(rule.plan(event))
                except RenderError as exc:
                    out.append(
                        Comparison(Change.FAILS, rule.name, event.id, None, None, None, str(exc))
                    )
                    continue
                out.append(Comparison(Change.ADDED, rule.name, event.id, None, None, now))
    return out


def _compare_rule(rules: RuleSet, record: Record, event: Event) -> Comparison:
    then = _recorded_request(record)
    rule = rules.get(record.rule)
    if rule is None:
        return Comparison(
            Change.REMOVED,
            record.rule,
            event.id,
            record,
            then,
            None,
            "no rule of this name in the current rules",
        )
    if not rule.enabled:
        return Comparison(
            Change.UNMATCHED, rule.name, event.id, record, then, None, "rule is disabled"
        )
    reason = rule.explain(event)
    if reason is not None:
        return Comparison(Change.UNMATCHED, rule.name, event.id, record, then, None, reason)
    try:
        now = _request(rule.plan(event))
    except RenderError as exc:
        return Comparison(Change.FAILS, rule.name, event.id, record, then, None, str(exc))
    same = now == then and record.status is not Status.REJECTED
    return Comparison(
        Change.SAME if same else Change.CHANGED,
        rule.name,
        event.id,
        record,
        then,
        now,
        None if same else _why_changed(record, then, now),
    )


def _why_changed(record: Record, then: dict[str, Any], now: dict[str, Any]) -> str:
    if record.status is Status.REJECTED:
        return (
            f"was rejected ({record.reason}), would run now"
            if record.reason
            else "was rejected, would run now"
        )
    if then.get("job") != now.get("job"):
        return f"job {then.get('job')} -> {now.get('job')}"
    return "the request differs"


def _recorded_request(record: Record) -> dict[str, Any]:
    return {"job": record.job, **_without_run_key(record.request or {})}


def _request(request) -> dict[str, Any]:
    return {"job": request.job, **_without_run_key(request.request_body())}


def _without_run_key(body: dict[str, Any]) -> dict[str, Any]:
    """The body without TRIGGERS_RUN_KEY (it names the record, not what runs), and without the
    parts that are left empty by it."""
    body = json.loads(json.dumps(body))  # a deep copy that the caller may keep
    overrides = body.get("overrides") or {}
    containers = overrides.get("containerOverrides") or []
    for container in containers:
        env = [e for e in container.get("env") or () if e.get("name") != RUN_KEY_ENV]
        if env:
            container["env"] = env
        else:
            container.pop("env", None)
    containers = [c for c in containers if c]
    if containers:
        overrides["containerOverrides"] = containers
    else:
        overrides.pop("containerOverrides", None)
    if overrides:
        body["overrides"] = overrides
    else:
        body.pop("overrides", None)
    return body


# -- replay ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Replayed:
    """What replaying one record did: the outcome of each rule it was sent through, or why it
    was not sent (`skipped`)."""

    record: Record
    event_id: str | None
    outcomes: tuple[RuleOutcome, ...] = ()
    skipped: str | None = None

    @property
    def launched(self) -> int:
        return sum(o.outcome is Outcome.LAUNCHED for o in self.outcomes)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.record.key,
            "rule": self.record.rule,
            "event_id": self.event_id,
            "status": _status(self.record),
        }
        if self.skipped is not None:
            out["skipped"] = self.skipped
        else:
            out["outcomes"] = [o.as_dict() for o in self.outcomes]
        return out


def replay(
    dispatcher: Dispatcher, records: Sequence[Record], *, scope: str, all_rules: bool = False
) -> Iterator[Replayed]:
    """Dispatch each record's event again under `scope`, one result per record as it happens
    (so that a long replay shows progress and can be stopped and resumed with the same scope)."""
    if not scope:
        raise ValueError(
            "a replay needs a scope: reusing the events' own dedup keys would only"
            " find the records being replayed"
        )
    rules = dispatcher.rules
    sent: set[tuple[str, str]] = set()
    for record in records:
        try:
            event = event_of(record)
        except NotReplayable as exc:
            yield Replayed(record, _event_id(record), skipped=str(exc))
            continue
        if all_rules:
            if (event.source, event.id) in sent:
                yield Replayed(record, event.id, skipped="sent through every rule above")
                continue
            sent.add((event.source, event.id))
            decision = dispatcher.dispatch(event, scope=scope)
            if not decision.outcomes:
                yield Replayed(record, event.id, skipped="no current rule matches the event")
            else:
                yield Replayed(record, event.id, decision.outcomes)
            continue
        rule = rules.get(record.rule)
        if rule is None:
            yield Replayed(record, event.id, skipped="no rule of this name in the current rules")
            continue
        reason = "rule is disabled" if not rule.enabled else rule.explain(event)
        if reason is not None:
            yield Replayed(record, event.id, skipped=f"no longer matches: {reason}")
            continue
        yield Replayed(record, event.id, (dispatcher.dispatch_rule(rule, event, scope=scope),))


def _identity(record: Record) -> tuple[str, str]:
    reference = record.event if isinstance(record.event, dict) else {}
    document = record.event_document if isinstance(record.event_document, dict) else {}
    return (
        str(document.get("source", reference.get("source"))),
        str(document.get("id", reference.get("id"))),
    )


def _event_id(record: Record) -> str | None:
    reference = record.event if isinstance(record.event, dict) else {}
    value = reference.get("id")
    return str(value) if value is not None else None


def _status(record: Record) -> str:
    return record.status.value if isinstance(record.status, Status) else str(record.status)
