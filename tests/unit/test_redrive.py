"""Re-driving dead letters (triggers/ops/redrive.py) with an in-memory subscription: rebuilding the
request from a dead letter, which letters are acknowledged and which are left. Against the
Pub/Sub emulator: tests/integration/test_redrive.py."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from tests.fakes import STORAGE_RULES_YAML, Clock, ScriptedRunner
from triggers.dispatch import Dispatcher, Outcome
from triggers.events import decode, parse_event_file
from triggers.function.deadletter import attributes
from triggers.ledger import Ledger, Status
from triggers.ledger.memory import MemoryBackend
from triggers.ops.redrive import Letter, NotRedrivable, redrive, request_of, resolve_subscription
from triggers.rules import load_text

EVENTS = Path(__file__).resolve().parents[2] / "config" / "events"
RULES = load_text(STORAGE_RULES_YAML, environ={})
FIXED = load_text(
    STORAGE_RULES_YAML.replace("{{ event.missing_field }}", "{{ data.name }}"), environ={}
)


class Subscription:
    """A pull subscription in memory: unacknowledged letters come back when released, and a
    held letter does not come back while it is held (the ack deadline)."""

    def __init__(self) -> None:
        self.letters: dict[str, Letter] = {}
        self.held: set[str] = set()
        self.acked: list[str] = []
        self.released: list[str] = []
        self.pulls = 0
        self._ack_ids = 0

    def add(self, message_id: str, data: bytes, attrs: dict[str, str]) -> None:
        self.letters[message_id] = Letter("", message_id, data, attrs)

    def pull(self, max_messages: int) -> list[Letter]:
        self.pulls += 1
        out = []
        for message_id, letter in self.letters.items():
            if message_id in self.held or len(out) >= max_messages:
                continue
            self._ack_ids += 1
            out.append(
                Letter(f"{message_id}@{self._ack_ids}", message_id, letter.data, letter.attributes)
            )
            self.held.add(message_id)  # out for delivery until acked or released
        return out

    def ack(self, ack_ids):
        for ack_id in ack_ids:
            message_id = ack_id.split("@")[0]
            self.letters.pop(message_id, None)
            self.acked.append(message_id)

    def hold(self, ack_ids, seconds):
        for ack_id in ack_ids:
            message_id = ack_id.split("@")[0]
            if seconds == 0:
                self.held.discard(message_id)
                self.released.append(message_id)
            else:
                self.held.add(message_id)


def sample(name: str) -> tuple[dict[str, str], bytes]:
    path = EVENTS / name
    return parse_event_file(path.read_text(), path.name)


def dead_letter_of(
    headers, body, *, reason: str, rule: str | None = None, event_id: str | None = None
) -> tuple[bytes, dict[str, str]]:
    """What triggers/function/deadletter.py publishes for a rejected request."""
    return body, attributes(
        body, headers, reason=reason, rule=rule, event_id=event_id, detail=reason
    )


def letters_of_a_removed_rule(count: int) -> Subscription:
    """`count` dead letters m0, m1, ... of a rule that no longer exists: they are always left."""
    headers, body = sample("storage-finalized.cloudevent-binary.json")
    subscription = Subscription()
    for i in range(count):
        data, attrs = dead_letter_of(headers, body, reason="r", rule="nope")
        subscription.add(f"m{i}", data, attrs)
    return subscription


@pytest.fixture
def runner():
    return ScriptedRunner()


@pytest.fixture
def ledger():
    return Ledger(MemoryBackend(), lease=timedelta(minutes=5), clock=Clock())


# -- rebuilding requests -----------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_a_dead_letter_rebuilds_a_request_that_decodes_to_the_same_event(path):
    headers, body = parse_event_file(path.read_text(), path.name)
    # Transport headers are not kept: the event must not depend on them.
    headers = {k: v for k, v in headers.items() if k.lower() not in ("user-agent", "authorization")}
    data, attrs = dead_letter_of(headers, body, reason="r")
    rebuilt_headers, rebuilt_body = request_of(Letter("a", "m", data, attrs))
    clock = Clock()
    assert decode(rebuilt_headers, rebuilt_body, now=clock) == decode(headers, body, now=clock)


def test_a_scheduler_tick_keeps_its_job_and_schedule_time():
    headers, body = sample("scheduler-nightly.http.json")
    data, attrs = dead_letter_of(headers, body, reason="r")
    assert attrs["x_cloudscheduler_jobname"] == headers["X-CloudScheduler-JobName"]
    event = decode(*request_of(Letter("a", "m", data, attrs)))
    assert event.kind == "scheduler" and event.form == "scheduler-http"


def test_a_letter_without_its_body_cannot_be_redriven():
    letter = Letter("a", "m", b"", {"reason": "r", "data_omitted": "the body of 10 bytes..."})
    with pytest.raises(NotRedrivable, match="not kept"):
        request_of(letter)


# -- re-driving ------------------------------------------------------------------------------


def test_a_fixed_rule_runs_once_under_the_scope_and_its_letter_is_acknowledged(ledger, runner):
    # GIVEN an event whose `needs-field` template failed: rejected, dead-lettered
    headers, body = sample("storage-finalized.cloudevent-binary.json")
    event = decode(headers, body)
    strict = {**event.data, "name": "strict/" + event.data["name"]}
    body = json.dumps(strict).encode()
    old = Dispatcher(RULES, ledger, runner)
    rejected = next(
        o for o in old.dispatch(decode(headers, body)).outcomes if o.rule == "needs-field"
    )
    assert rejected.outcome is Outcome.REJECTED
    subscription = Subscription()
    data, attrs = dead_letter_of(
        headers, body, reason=rejected.reason, rule="needs-field", event_id=event.id
    )
    subscription.add("m-1", data, attrs)
    runs_before = runner.run_calls

    # WHEN the letters are re-driven through the fixed rules
    results = list(redrive(subscription, Dispatcher(FIXED, ledger, runner), scope="replay-x"))

    # THEN only the rejected rule ran, once, under the scope, and the letter is gone
    [result] = results
    assert result.resolved and subscription.acked == ["m-1"] and not subscription.letters
    [outcome] = result.outcomes
    assert (outcome.rule, outcome.outcome) == ("needs-field", Outcome.LAUNCHED)
    assert outcome.dedup_key == f"replay-x/{rejected.dedup_key}"
    assert runner.run_calls == runs_before + 1
    assert ledger.get(rejected.ledger_key).status is Status.REJECTED  # history is kept


def test_letters_that_still_fail_are_left_and_released_at_the_end(ledger, runner):
    headers, body = sample("storage-finalized.cloudevent-binary.json")
    subscription = Subscription()
    # a rule rejection that is still rejected (the rules were not fixed)
    strict = {**decode(headers, body).data, "name": "strict/a.csv"}
    data, attrs = dead_letter_of(
        headers, json.dumps(strict).encode(), reason="template", rule="needs-field"
    )
    subscription.add("still-broken", data, attrs)
    # a request that still cannot be decoded
    subscription.add(
        "garbage", b"{not json", {"reason": "bad_json", "content_type": "application/json"}
    )
    # a rule that no longer exists
    data, attrs = dead_letter_of(headers, body, reason="r", rule="gone")
    subscription.add("gone", data, attrs)

    results = {
        r.message_id: r for r in redrive(subscription, Dispatcher(RULES, ledger, runner), scope="s")
    }

    assert not any(r.resolved for r in results.values()) and subscription.acked == []
    assert "needs-field: rejected" in results["still-broken"].note
    assert results["garbage"].note.startswith("still cannot be decoded (bad_json)")
    assert results["gone"].note == "no rule 'gone' in the current rules"
    # each was handled once although it was held, then all were released for the next pass
    assert sorted(subscription.released) == ["garbage", "gone", "still-broken"]
    assert subscription.held == set()


def test_an_undecodable_request_that_now_decodes_runs_under_its_own_identity(ledger, runner):
    # GIVEN a dead-lettered request without a rule (a decode rejection of an older version)
    headers, body = sample("storage-finalized.cloudevent-binary.json")
    subscription = Subscription()
    data, attrs = dead_letter_of(headers, body, reason="bad_field")
    subscription.add("m", data, attrs)
    dispatcher = Dispatcher(RULES, ledger, runner)
    # WHEN re-driven
    [result] = redrive(subscription, dispatcher, scope="replay-x")
    # THEN every matching rule ran under the event's own dedup key (no scope)
    assert result.resolved and {o.outcome for o in result.outcomes} == {Outcome.LAUNCHED}
    event = decode(headers, body)
    assert {o.dedup_key for o in result.outcomes} == {event.default_dedup_key}
    # AND the same event arriving normally afterwards is a duplicate
    again = dispatcher.dispatch(event)
    assert {o.outcome for o in again.outcomes} == {Outcome.DUPLICATE}


def test_a_dry_run_plans_acknowledges_nothing_and_releases_everything(ledger, runner):
    headers, body = sample("storage-finalized.cloudevent-binary.json")
    subscription = Subscription()
    data, attrs = dead_letter_of(headers, body, reason="r", rule="load")
    subscription.add("m", data, attrs)
    [result] = redrive(subscription, Dispatcher(RULES, None, None), scope="s", dry_run=True)
    assert not result.resolved and result.outcomes == ()
    assert [(p["rule"], p["would"]) for p in result.plans] == [("load", "run")]
    assert subscription.acked == [] and subscription.released == ["m"]
    assert runner.run_calls == 0


def test_max_messages_bounds_a_pass(ledger, runner):
    subscription = letters_of_a_removed_rule(5)
    results = list(
        redrive(subscription, Dispatcher(RULES, ledger, runner), scope="s", max_messages=3, batch=2)
    )
    assert [r.message_id for r in results] == ["m0", "m1", "m2"]


def test_stopping_early_still_releases_what_was_held(ledger, runner):
    subscription = letters_of_a_removed_rule(3)
    results = redrive(subscription, Dispatcher(RULES, ledger, runner), scope="s")
    next(results)
    results.close()
    # m0 was handled and left; m1 and m2 were pulled with it but never looked at
    assert subscription.held == set() and sorted(subscription.released) == ["m0", "m1", "m2"]
    assert subscription.acked == []


# -- naming the subscription -------------------------------------------------------------------


class Publisher:
    def __init__(self, subscriptions):
        self.subscriptions = subscriptions

    def list_topic_subscriptions(self, request):
        return iter(self.subscriptions)


def test_a_subscription_is_used_as_given_and_a_topic_resolves_to_its_only_subscription():
    sub = "projects/p/subscriptions/dl-hold"
    assert resolve_subscription(sub, Publisher([])) == sub
    assert resolve_subscription("projects/p/topics/dl", Publisher([sub])) == sub
    with pytest.raises(ValueError, match="has no subscription"):
        resolve_subscription("projects/p/topics/dl", Publisher([]))
    with pytest.raises(ValueError, match="has 2 subscriptions; name one"):
        resolve_subscription("projects/p/topics/dl", Publisher([sub, sub + "-2"]))
    with pytest.raises(ValueError, match="projects/P/topics/T"):
        resolve_subscription("dl", Publisher([]))


# -- messages Pub/Sub forwarded from a push subscription -------------------------------------


def forwarded_order() -> Letter:
    """The sample order as Pub/Sub forwards it after too many failed push deliveries."""
    return Letter(
        "a",
        "dl-77",
        b'{"order_id": "A-1", "status": "paid"}',
        {
            "kind": "order",
            "CloudPubSubDeadLetterSourceSubscription": "orders-push",
            "CloudPubSubDeadLetterSourceSubscriptionProject": "demo-project",
            "CloudPubSubDeadLetterSourceDeliveryCount": "5",
            "CloudPubSubDeadLetterSourceTopicPublishTime": "2026-11-21T10:00:00.123Z",
        },
    )


def test_a_forwarded_message_becomes_the_push_request_it_was():
    event = decode(*request_of(forwarded_order()))
    assert (event.kind, event.form, event.id) == ("pubsub", "pubsub-push", "dl-77")
    assert event.source == "//pubsub.googleapis.com/projects/demo-project/subscriptions/orders-push"
    assert event.time == "2026-11-21T10:00:00.123Z"  # the original publish time
    message = event.data["message"]
    assert message["json"] == {"order_id": "A-1", "status": "paid"}
    assert message["attributes"] == {"kind": "order"}  # Pub/Sub's own attributes left out


def test_a_forwarded_message_runs_every_matching_rule_and_says_where_it_came_from(ledger, runner):
    rules = load_text(
        """\
project: demo-project
region: europe-west1
rules:
  - name: paid
    on: pubsub
    subscription: orders-push
    match: {data: {message: {json: {status: [paid]}}}}
    job: orders
""",
        environ={},
    )
    subscription = Subscription()
    letter = forwarded_order()
    subscription.add(letter.message_id, letter.data, dict(letter.attributes))
    [result] = redrive(subscription, Dispatcher(rules, ledger, runner), scope="s")
    assert result.reason == ("not delivered from orders-push in 5 attempts")
    assert result.rule is None and result.resolved
    assert [(o.rule, o.outcome) for o in result.outcomes] == [("paid", Outcome.LAUNCHED)]


def test_a_pushed_message_is_redriven_with_the_topic_its_endpoint_named(ledger, runner):
    """A push body does not name its topic; the dead letter's push_topic gives it back, so the
    topic-scoped rule that rejected it is the one that runs again."""
    rules = load_text(
        "project: demo-project\nregion: europe-west1\nrules:\n  - name: orders\n    on: pubsub\n"
        "    topic: orders\n    job: orders\n",
        environ={},
    )
    body = json.dumps(
        {
            "message": {"data": "e30=", "messageId": "7"},
            "subscription": "projects/demo-project/subscriptions/triggers-orders-0a1b2c3d",
        }
    ).encode()
    subscription = Subscription()
    data, attrs = (
        body,
        attributes(
            body,
            {"Content-Type": "application/json"},
            reason="template",
            rule="orders",
            event_id="7",
            detail="template",
            push_topic="projects/demo-project/topics/orders",
        ),
    )
    subscription.add("m-1", data, attrs)
    [result] = redrive(subscription, Dispatcher(rules, ledger, runner), scope="replay-t")
    [outcome] = result.outcomes
    assert (outcome.rule, outcome.outcome) == ("orders", Outcome.LAUNCHED)
    assert result.resolved
