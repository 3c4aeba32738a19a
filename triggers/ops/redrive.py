"""Re-drive dead letters: pull them from a subscription and send them through the current rules.

    letters = PubSubLetters(resolve_subscription("projects/p/topics/triggers-dead-letter"))
    for result in redrive(letters, dispatcher, scope=new_scope(now)):
        print(result.message_id, result.resolved, result.note)

A dead letter (triggers/function/deadletter.py) carries the original request body as data and
enough of its headers as attributes (`content_type`, `ce_*`, `x_cloudscheduler_*`, and the push
endpoint's `push_topic`) to rebuild the request and decode it again. Then:

  a rule's rejection (attribute `rule`)  that rule only, if it still exists and matches, under
                                         the replay scope: the rejected record holds the event's
                                         own dedup identity (see triggers/ops/replay.py)
  a request that could not be decoded    every rule that matches, under the event's own
                                         identity: no rule has run for it, and one that ran
                                         through another delivery is then a duplicate

A message that Pub/Sub forwarded from a push subscription (it failed too many deliveries) is
rebuilt as the push request it was and handled like an undecodable request: every matching rule,
under the event's own identity. Pub/Sub gives the forwarded copy a new message id, so a rule
keyed on the message id (the default for Pub/Sub events) sees a new event; keys built from the
content (`dedup.key`) still recognise runs that happened.

A letter is acknowledged (removed from the subscription) only when every rule it went to
launched or was a duplicate. Any other letter (still undecodable, matching nothing, rejected
again, a retry) is left in the subscription, released at the end of the pass for the next one;
the result says why. `dry_run` decides nothing and acknowledges nothing: it reports what each
rule would do now and releases every letter.

The pull loop and acknowledgements go through `LetterSource`; `PubSubLetters` implements it with
google-cloud-pubsub (imported when first used).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from ..dispatch import Dispatcher, Outcome, RuleOutcome
from ..errors import DecodeError, RenderError
from ..events import decode

TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")
SUBSCRIPTION = re.compile(r"^projects/[^/]+/subscriptions/[^/]+$")
# Header attributes a dead letter carries (see deadletter.attributes), and the headers they were.
_HEADER_PREFIXES = (("ce_", "ce-"), ("x_cloudscheduler", "x-cloudscheduler"))
# Set by Pub/Sub on a message it forwards to a dead-letter topic: the subscription it came from.
FORWARDED_FROM = "CloudPubSubDeadLetterSourceSubscription"
# How long a letter we are not done with stays invisible to other pulls during a pass.
_HOLD_SECONDS = 600


@dataclass(frozen=True, slots=True)
class Letter:
    ack_id: str
    message_id: str
    data: bytes
    attributes: Mapping[str, str]


class LetterSource(Protocol):
    def pull(self, max_messages: int) -> list[Letter]:
        """Up to `max_messages` letters; an empty list when none are waiting."""

    def ack(self, ack_ids: Sequence[str]) -> None: ...

    def hold(self, ack_ids: Sequence[str], seconds: int) -> None:
        """Keep these letters from being delivered again for `seconds`."""


class NotRedrivable(ValueError):
    pass


def request_of(letter: Letter) -> tuple[dict[str, str], bytes]:
    """The HTTP request a dead letter was made from: headers rebuilt from its attributes.

    Two kinds of letter share the topic: requests the function rejected (published by
    triggers/function/deadletter.py, with a `reason`) and messages Pub/Sub itself forwarded from a
    push subscription after too many failed deliveries (with `CloudPubSubDeadLetterSource*`
    attributes); those become the push request they were meant to be.
    """
    attributes = letter.attributes
    if FORWARDED_FROM in attributes and "reason" not in attributes:
        return _push_request(letter)
    if "data_omitted" in attributes:
        raise NotRedrivable(f"the original body was not kept: {attributes['data_omitted']}")
    headers: dict[str, str] = {}
    if attributes.get("content_type"):
        headers["content-type"] = attributes["content_type"]
    for name, value in attributes.items():
        for prefix, header in _HEADER_PREFIXES:
            if name.startswith(prefix):
                headers[header + name[len(prefix) :].replace("_", "-")] = value
    return headers, letter.data


def _push_request(letter: Letter) -> tuple[dict[str, str], bytes]:
    """The push request of a message Pub/Sub forwarded from a subscription. Its message id is
    the dead-letter topic's, not the original one (which Pub/Sub does not keep)."""
    import base64
    import json

    attributes = letter.attributes
    project = attributes.get(FORWARDED_FROM + "Project", "")
    subscription = attributes[FORWARDED_FROM]
    if project and not subscription.startswith("projects/"):
        subscription = f"projects/{project}/subscriptions/{subscription}"
    message: dict[str, Any] = {
        "data": base64.b64encode(letter.data).decode("ascii"),
        "messageId": letter.message_id,
        "attributes": {
            k: v for k, v in attributes.items() if not k.startswith("CloudPubSubDeadLetterSource")
        },
    }
    published = attributes.get("CloudPubSubDeadLetterSourceTopicPublishTime")
    if published:
        message["publishTime"] = published
    body = json.dumps({"message": message, "subscription": subscription}).encode()
    return {"content-type": "application/json"}, body


@dataclass(frozen=True, slots=True)
class Redriven:
    """One dead letter: what was done with it (or, in a dry run, what would be)."""

    message_id: str
    reason: str | None  # why it was dead-lettered
    rule: str | None  # the rule that rejected it; None for undecodable input
    event_id: str | None = None
    outcomes: tuple[RuleOutcome, ...] = ()
    plans: tuple[dict[str, Any], ...] = ()  # dry run: each rule's verdict now
    resolved: bool = False  # acknowledged: every rule launched or was a duplicate
    note: str | None = None  # why it was left in the subscription

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "dead_letter_reason": self.reason,
            "rule": self.rule,
            "event_id": self.event_id,
            "resolved": self.resolved,
        }
        if self.outcomes:
            out["outcomes"] = [o.as_dict() for o in self.outcomes]
        if self.plans:
            out["plans"] = list(self.plans)
        if self.note:
            out["note"] = self.note
        return out


def redrive(
    source: LetterSource,
    dispatcher: Dispatcher,
    *,
    scope: str,
    max_messages: int = 100,
    dry_run: bool = False,
    batch: int = 50,
) -> Iterator[Redriven]:
    """Pull up to `max_messages` letters and re-drive each, yielding results as they happen.

    Letters left in the subscription are held while the pass runs (so a pull does not bring them
    back) and released when it ends, also when the caller stops early.
    """
    seen: set[str] = set()
    left: list[str] = []  # ack ids of letters that stay in the subscription
    try:
        while len(seen) < max_messages:
            letters = source.pull(min(batch, max_messages - len(seen)))
            fresh = [letter for letter in letters if letter.message_id not in seen]
            # A letter seen already (redelivered: at least once) is only released with the rest.
            left.extend(letter.ack_id for letter in letters if letter.message_id in seen)
            if not fresh:
                break
            # Until handled, the batch counts as left: a caller that stops early releases it.
            # Held for the pass, so that a slow dispatch does not see it delivered again.
            left.extend(letter.ack_id for letter in fresh)
            source.hold([letter.ack_id for letter in fresh], _HOLD_SECONDS)
            for letter in fresh:
                seen.add(letter.message_id)
                result = _redrive_one(letter, dispatcher, scope, dry_run)
                if result.resolved:
                    source.ack([letter.ack_id])
                    left.remove(letter.ack_id)
                yield result
    finally:
        if left:
            source.hold(left, 0)  # visible again at once, for the next pass


def _redrive_one(letter: Letter, dispatcher: Dispatcher, scope: str, dry_run: bool) -> Redriven:
    attributes = letter.attributes
    reason = attributes.get("reason")
    if reason is None and FORWARDED_FROM in attributes:
        attempts = attributes.get("CloudPubSubDeadLetterSourceDeliveryCount", "?")
        reason = f"not delivered from {attributes[FORWARDED_FROM]} in {attempts} attempts"
    rule_name = attributes.get("rule")
    redriven = partial(Redriven, message_id=letter.message_id, reason=reason, rule=rule_name)
    try:
        headers, body = request_of(letter)
        # A push endpoint's ?topic= is not in the body: the dead letter kept it (push_topic).
        topic = attributes.get("push_topic")
        event = decode(headers, body, query={"topic": topic} if topic else None)
    except NotRedrivable as exc:
        return redriven(note=str(exc))
    except DecodeError as exc:
        return redriven(
            event_id=attributes.get("event_id"),
            note=f"still cannot be decoded ({exc.reason}): {exc.message}",
        )
    rules = dispatcher.rules
    if rule_name is not None:
        rule = rules.get(rule_name)
        if rule is None:
            return redriven(event_id=event.id, note=f"no rule {rule_name!r} in the current rules")
        reason = "rule is disabled" if not rule.enabled else rule.explain(event)
        if reason is not None:
            return redriven(event_id=event.id, note=f"no longer matches: {reason}")
        targets = [rule]
    else:
        targets = rules.route(event)
        if not targets:
            return redriven(event_id=event.id, note="no current rule matches the event")
    if dry_run:
        return redriven(
            event_id=event.id, plans=tuple(_plan(r, event) for r in targets), note="dry run"
        )
    # A rule's rejection holds the event's own identity: run it under the replay scope.
    run_scope = scope if rule_name is not None else None
    outcomes = tuple(dispatcher.dispatch_rule(r, event, scope=run_scope) for r in targets)
    done = all(o.outcome in (Outcome.LAUNCHED, Outcome.DUPLICATE) for o in outcomes)
    note = (
        None
        if done
        else "; ".join(
            f"{o.rule}: {o.outcome.value}" + (f" ({o.reason})" if o.reason else "")
            for o in outcomes
            if o.outcome not in (Outcome.LAUNCHED, Outcome.DUPLICATE)
        )
    )
    return redriven(event_id=event.id, outcomes=outcomes, resolved=done, note=note)


def _plan(rule, event) -> dict[str, Any]:
    try:
        request = rule.plan(event)
    except RenderError as exc:
        return {"rule": rule.name, "would": "fail", "error": str(exc)}
    return {"rule": rule.name, "would": "run", "job": request.job, **request.request_body()}


# -- Pub/Sub ----------------------------------------------------------------------------------


@dataclass
class PubSubLetters:
    """A pull subscription through google-cloud-pubsub's SubscriberClient (synchronous pull)."""

    subscription: str
    timeout: float = 10.0
    client: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not SUBSCRIPTION.match(self.subscription):
            raise ValueError(
                f"not a subscription name: {self.subscription!r}"
                " (projects/PROJECT/subscriptions/NAME)"
            )
        if self.client is None:
            from google.cloud.pubsub_v1 import SubscriberClient

            self.client = SubscriberClient()

    def pull(self, max_messages: int) -> list[Letter]:
        from google.api_core import exceptions

        try:
            response = self.client.pull(
                request={"subscription": self.subscription, "max_messages": max_messages},
                timeout=self.timeout,
            )
        except exceptions.DeadlineExceeded:  # nothing arrived in time: none waiting
            return []
        return [
            Letter(
                ack_id=received.ack_id,
                message_id=received.message.message_id,
                data=bytes(received.message.data),
                attributes=dict(received.message.attributes),
            )
            for received in response.received_messages
        ]

    def ack(self, ack_ids: Sequence[str]) -> None:
        self.client.acknowledge(
            request={"subscription": self.subscription, "ack_ids": list(ack_ids)}
        )

    def hold(self, ack_ids: Sequence[str], seconds: int) -> None:
        self.client.modify_ack_deadline(
            request={
                "subscription": self.subscription,
                "ack_ids": list(ack_ids),
                "ack_deadline_seconds": seconds,
            }
        )

    def close(self) -> None:
        self.client.close()


def resolve_subscription(name: str, publisher: Any = None) -> str:
    """A subscription to pull dead letters from: `name` itself, or the one subscription of the
    topic `name` (a topic cannot be read; several subscriptions are ambiguous)."""
    if SUBSCRIPTION.match(name):
        return name
    if not TOPIC.match(name):
        raise ValueError(
            f"--from-topic {name!r}: give the dead-letter topic"
            " (projects/P/topics/T) or its subscription (projects/P/subscriptions/S)"
        )
    if publisher is None:
        from google.cloud.pubsub_v1 import PublisherClient

        publisher = PublisherClient()
    subscriptions = sorted(publisher.list_topic_subscriptions(request={"topic": name}))
    if len(subscriptions) == 1:
        return subscriptions[0]
    if not subscriptions:
        raise ValueError(
            f"topic {name} has no subscription, so its dead letters were not kept"
            " (create one before the next rejection: docs/deadletters.md)"
        )
    raise ValueError(
        f"topic {name} has {len(subscriptions)} subscriptions; name one: "
        + ", ".join(subscriptions)
    )
