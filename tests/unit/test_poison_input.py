"""Poison input: content that can never be stored, hashed or sent is a permanent rejection.

Valid JSON can carry a lone surrogate (`"\\ud800"`), a number that parses to infinity (`1e400`),
values nested hundreds deep, or a CloudEvent id of 100 KB. Each used to fail in the ledger or
the planner and be answered 503 on every redelivery. Now: a specific reason, recorded in the
ledger (an `(input)` record), dead-lettered, answered 200, and the next valid event launches.
The ledger here is SQLite (a real store that refuses what UTF-8 cannot encode).
"""

from __future__ import annotations

import base64
from datetime import timedelta
from pathlib import Path

import pytest

from tests.fakes import ScriptedRunner, storage_event
from triggers.errors import DecodeError, RenderError, RulesError
from triggers.events import decode
from triggers.events.model import STORAGE_FINALIZED, Event
from triggers.function.app import App
from triggers.function.deadletter import attributes
from triggers.function.settings import Settings
from triggers.ledger import Ledger, Status
from triggers.ledger.records import INPUT_RULE, MAX_REASON_CHARS, storable_text
from triggers.ledger.sqlite import SQLiteBackend
from triggers.rules import load_text
from triggers.rules.rule import MAX_RUN_OVERRIDES_BYTES

SURROGATE = "\ud800"
ESCAPE = "\\ud800"  # how it is written in JSON text

RULES_YAML = """\
project: demo-project
region: europe-west1
rules:
  - name: every-message
    on: pubsub
    job: worker
    overrides:
      args: ["{{ data.message.text }}"]
      env: {KIND: "{{ data.message.attributes.get('kind', 'none') }}"}
  - name: by-key
    on: pubsub
    job: keyed
    dedup: {key: "{{ data.message.attributes.get('key', id) }}"}
  - name: objects
    on: storage
    job: loader
    overrides: {args: ["{{ data.name }}"]}
  - name: things
    on: com.example.thing.v1.created
    job: worker
  - name: ticks
    on: scheduler
    job: ticker
"""
RULES = load_text(RULES_YAML, environ={})

STORAGE_HEADERS = {
    "ce-specversion": "1.0",
    "ce-id": "ev-1",
    "ce-source": "//storage.googleapis.com/projects/_/buckets/raw",
    "ce-type": STORAGE_FINALIZED,
    "Content-Type": "application/json",
}


def push(message_id: str = "m-1", attributes: str = "{}", data: bytes = b"hello") -> bytes:
    """A raw Pub/Sub push body as JSON text, so that escapes go through verbatim."""
    return (
        f'{{"message": {{"messageId": "{message_id}", "attributes": {attributes},'
        f' "data": "{base64.b64encode(data).decode()}"}},'
        f' "subscription": "projects/demo-project/subscriptions/s"}}'
    ).encode()


def structured(id_: str = "c-1", data: str = '{"x": 1}', extra: str = "") -> bytes:
    return (
        f'{{"specversion": "1.0", "id": "{id_}", "source": "//things",'
        f' "type": "com.example.thing.v1.created", "data": {data}{extra}}}'
    ).encode()


JSON = {"Content-Type": "application/json"}
CE_JSON = {"Content-Type": "application/cloudevents+json"}

# (case id, headers, body, reason, where the message points)
POISON = [
    ("message-id", JSON, push(message_id=f"m{ESCAPE}"), "bad_encoding", "data.message.message_id"),
    ("attribute", JSON, push(attributes=f'{{"kind": "a{ESCAPE}"}}'), "bad_encoding", "kind"),
    ("attribute-name", JSON, push(attributes=f'{{"k{ESCAPE}": "a"}}'), "bad_encoding", "(a key)"),
    ("dedup-attribute", JSON, push(attributes=f'{{"key": "{ESCAPE}"}}'), "bad_encoding", "key"),
    ("payload", JSON, push(data=f'{{"a": "{ESCAPE}"}}'.encode()), "bad_encoding", "json.a"),
    ("payload-inf", JSON, push(data=b'{"a": 1e400}'), "bad_number", "data.message.json.a"),
    ("payload-deep", JSON, push(data=b"[" * 500 + b"]" * 500), "too_deep", "data.message.json"),
    (
        "object-name",
        STORAGE_HEADERS,
        f'{{"bucket": "raw", "name": "in/{ESCAPE}.csv", "generation": "1"}}'.encode(),
        "bad_encoding",
        "data.name",
    ),
    ("cloudevent-id", CE_JSON, structured(id_=f"c{ESCAPE}"), "bad_encoding", "id"),
    ("cloudevent-ext", CE_JSON, structured(extra=f', "tenant": "{ESCAPE}"'), "bad_encoding", ""),
    ("cloudevent-data", CE_JSON, structured(data=f'["{ESCAPE}"]'), "bad_encoding", "data[0]"),
    ("cloudevent-inf", CE_JSON, structured(data="-1e999"), "bad_number", "data is -inf"),
    ("cloudevent-huge-id", CE_JSON, structured(id_="i" * 100_000), "value_too_large", "id"),
    (
        "binary-header",
        {**STORAGE_HEADERS, "ce-id": f"e{SURROGATE}"},
        b'{"bucket": "raw", "name": "a", "generation": "1"}',
        "bad_encoding",
        "id",
    ),
    (
        "scheduler-header",
        {
            "X-CloudScheduler": "true",
            "X-CloudScheduler-JobName": f"j{SURROGATE}",
            "X-CloudScheduler-ScheduleTime": "2026-11-21T02:00:00Z",
        },
        b"",
        "bad_encoding",
        "data.job_name",
    ),
]
IDS = [case[0] for case in POISON]


@pytest.mark.parametrize("case, headers, body, reason, where", POISON, ids=IDS)
def test_decode_refuses_what_can_never_be_stored_with_a_specific_reason(
    case, headers, body, reason, where
):
    with pytest.raises(DecodeError) as info:
        decode(headers, body)
    assert info.value.reason == reason
    assert where in info.value.message
    # The message is stored and logged itself: it shows the escape, never the character.
    info.value.message.encode("utf-8")
    assert SURROGATE not in info.value.message


@pytest.fixture
def ledger(tmp_path: Path):
    backend = SQLiteBackend(tmp_path / "ledger.db")
    yield Ledger(backend, lease=timedelta(minutes=5))
    backend.close()


class RecordingDeadLetters:
    """Builds the real dead-letter attributes (which must not fail on poison) and keeps them."""

    def __init__(self) -> None:
        self.published: list[dict[str, str]] = []

    def publish(self, body, headers, *, reason, rule, event_id, detail) -> None:
        attrs = attributes(
            body, headers, reason=reason, rule=rule, event_id=event_id, detail=detail
        )
        for value in attrs.values():
            value.encode("utf-8")
        self.published.append(attrs)


@pytest.fixture
def runner() -> ScriptedRunner:
    return ScriptedRunner()


@pytest.fixture
def dead_letters() -> RecordingDeadLetters:
    return RecordingDeadLetters()


@pytest.fixture
def app(ledger, runner, dead_letters) -> App:
    settings = Settings(ledger="memory", runner="dry-run", retry_after_seconds=7)
    return App(settings, rules=RULES, ledger=ledger, runner=runner, dead_letters=dead_letters)


@pytest.mark.parametrize("case, headers, body, reason, where", POISON, ids=IDS)
def test_poison_is_answered_200_recorded_dead_lettered_and_never_run(
    app, ledger, runner, dead_letters, case, headers, body, reason, where
):
    response = app.handle(headers, body)
    assert response.status == 200, response.body
    assert response.body["decision"] == "rejected" and response.body["reason"] == reason
    [record] = ledger.list(rule=INPUT_RULE)
    assert record.status is Status.REJECTED and record.reason.startswith(f"{reason}: ")
    assert [letter["reason"] for letter in dead_letters.published] == [reason]
    assert runner.run_calls == 0

    # The sender's retry is the same rejection, counted once more: not a 503, not a new record.
    again = app.handle(headers, body)
    assert again.status == 200 and again.body["reason"] == reason
    [record] = ledger.list(rule=INPUT_RULE)
    assert record.duplicates == 1


def test_after_poison_the_next_valid_event_still_launches(app, ledger, runner):
    for _, headers, body, _, _ in POISON:
        assert app.handle(headers, body).status == 200
    response = app.handle(JSON, push(message_id="good-1", attributes='{"kind": "order"}'))
    assert response.status == 200 and response.body["decision"] == "ack"
    assert {r["outcome"] for r in response.body["rules"]} == {"launched"}
    assert runner.run_calls == 2  # every-message and by-key


# -- what templates make of a valid event: checked when the run is planned ------------------


def event_with(name: str) -> Event:
    """An event as no decoder would build it now: the planner must not rely on the decoder."""
    return storage_event(name=name)


def test_a_rendered_value_utf8_cannot_encode_is_a_render_error_not_a_crash():
    rule = RULES.get("objects")
    with pytest.raises(RenderError) as info:
        rule.plan(event_with(f"in/{SURROGATE}.csv"))
    assert info.value.field == "args[0]"
    assert "bad_encoding" in info.value.message and "U+D800" in info.value.message


@pytest.mark.parametrize(
    "field, value",
    [
        ("dedup", "{key: \"{{ id ~ '\\\\ud800' }}\"}"),  # a Jinja string escape
        # YAML refuses a surrogate escape itself, but `${NAME}` brings in the environment's
        # text, where Python shows a variable's non-UTF-8 bytes as lone surrogates.
        ("overrides", '{args: ["${NOT_UTF8}"]}'),
        ("overrides", '{env: {A: "x${NOT_UTF8}{{ id }}"}}'),
    ],
)
def test_a_rule_whose_text_utf8_cannot_encode_is_refused_at_load(field, value):
    text = (
        "project: demo-project\nregion: europe-west1\nrules:\n"
        f"  - name: r\n    on: pubsub\n    job: worker\n    {field}: {value}\n"
    )
    with pytest.raises(RulesError) as info:
        load_text(text, name="rules.yaml", environ={"NOT_UTF8": "\udcff"})
    [problem] = info.value.problems
    assert problem.line == 7 and "a lone surrogate UTF-8 cannot encode" in problem.message
    problem.message.encode("utf-8")


def test_args_and_env_larger_than_a_ledger_record_can_hold_are_rejected_when_planned():
    text = "x" * (MAX_RUN_OVERRIDES_BYTES + 1)
    event = decode(JSON, push(data=text.encode()))
    with pytest.raises(RenderError) as info:
        RULES.get("every-message").plan(event)
    assert info.value.field == "overrides" and "value_too_large" in info.value.message


def test_a_render_rejection_is_recorded_under_the_event_and_acknowledged(app, ledger, runner):
    text = "x" * (MAX_RUN_OVERRIDES_BYTES + 1)
    response = app.handle(JSON, push(message_id="big-1", data=text.encode()))
    assert response.status == 200 and response.body["decision"] == "ack"
    outcomes = {r["rule"]: r for r in response.body["rules"]}
    assert outcomes["every-message"]["outcome"] == "rejected"
    assert "value_too_large" in outcomes["every-message"]["reason"]
    assert outcomes["by-key"]["outcome"] == "launched"
    [record] = ledger.list(rule="every-message")
    assert record.status is Status.REJECTED


# -- the ledger stores reasons whatever they quote -------------------------------------------


def test_storable_text_escapes_surrogates_and_bounds_the_length():
    assert storable_text(f"a{SURROGATE}b") == "a\\ud800b"
    assert len(storable_text("y" * 10 * MAX_REASON_CHARS)) == MAX_REASON_CHARS
    assert storable_text("plain") == "plain"


def test_a_rejection_reason_quoting_a_surrogate_is_stored(ledger):
    rules = RULES
    request = rules.get("objects").plan(storage_event(name="ok.csv"))
    claim = ledger.claim(request)
    assert ledger.rejected(claim, f"job refused {SURROGATE}" + "z" * 5000)
    record = ledger.get(request.ledger_key)
    assert record.status is Status.REJECTED
    assert (
        record.reason.startswith("job refused \\ud800") and len(record.reason) == MAX_REASON_CHARS
    )


def test_an_identity_over_a_dedup_keys_limit_is_refused_even_with_each_part_within_its_own():
    with pytest.raises(DecodeError) as info:
        decode(
            CE_JSON, structured(id_="i" * 2048).replace(b'"//things"', b'"' + b"s" * 2048 + b'"')
        )
    assert info.value.reason == "value_too_large"
    assert "the event's identity (source#id" in info.value.message
    assert "is 4097 bytes, the limit is 4096 bytes" in info.value.message


def test_event_id_is_kept_whole_when_within_the_limit():
    event = decode(CE_JSON, structured(id_="i" * 2048))
    assert len(event.id) == 2048


def test_a_document_holding_a_non_json_value_is_still_walked():
    # The fast path (json.dumps) gives up on a value that is not JSON; the walk decides.
    from triggers.events._storable import check_storable

    event = Event(
        id="1",
        source="//s",
        type="com.example.thing.v1.created",
        kind="generic",
        form="cloudevent-binary",
        data={"when": object(), "deep": {"x": float("nan")}},
    )
    with pytest.raises(DecodeError) as info:
        check_storable(event, "test")
    assert info.value.reason == "bad_number" and "data.deep.x" in info.value.message


# -- the Eventarc target: functions-framework parses the CloudEvent before we see it ---------


@pytest.fixture(scope="module")
def cloudevent_target():
    """`handle_cloudevent` loaded by path, as functions-framework does in a deployment."""
    import sys

    import functions_framework

    import triggers.main

    path_before, main_before = list(sys.path), sys.modules.get("main")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRIGGERS_LEDGER", "memory")
        patch.setenv("TRIGGERS_RUNNER", "dry-run")
        try:
            yield functions_framework.create_app(
                target="handle_cloudevent",
                source=str(Path(triggers.main.__file__).resolve()),
                signature_type="cloudevent",
            ).test_client()
        finally:
            sys.path[:] = path_before
            if main_before is None:
                sys.modules.pop("main", None)
            else:
                sys.modules["main"] = main_before
            triggers.main.set_app(None)


# Not `cloudevent-inf`: the SDK reads `"data": -1e999` as -inf and writes it back as the text
# `-Infinity` before the function sees the event, which is then a text payload, not poison.
CLOUDEVENT_POISON = [
    case for case in POISON if case[1] in (STORAGE_HEADERS, CE_JSON) and case[0] != "cloudevent-inf"
]


@pytest.mark.parametrize(
    "case, headers, body, reason, where",
    CLOUDEVENT_POISON,
    ids=[case[0] for case in CLOUDEVENT_POISON],
)
def test_the_eventarc_target_acknowledges_poison_and_records_it(
    cloudevent_target, app, ledger, runner, case, headers, body, reason, where
):
    import triggers.main

    triggers.main.set_app(app)
    try:
        response = cloudevent_target.post("/", headers=headers, data=body)
    finally:
        triggers.main.set_app(None)
    assert response.status_code == 200  # a 500 here is redelivered by Eventarc until expiry
    [record] = ledger.list(rule=INPUT_RULE)
    assert record.reason.startswith(f"{reason}: ")
    assert runner.run_calls == 0


@pytest.mark.parametrize("text_brackets", [0, 200])
@pytest.mark.parametrize("levels", [1, 62, 63, 64, 65, 100])
def test_the_depth_limit_is_exact_whatever_brackets_the_text_holds(levels, text_brackets):
    # GIVEN data nested `levels` deep under the document's own two (the document, `data`),
    # and maybe strings full of brackets, which the fast count of brackets also sees
    from triggers.events._storable import MAX_DEPTH, check_storable

    data: object = {"note": "[{" * text_brackets}
    for _ in range(levels - 1):
        data = [data]
    event = Event(
        id="1", source="//s", type="t.v1", kind="generic", form="cloudevent-binary", data=data
    )
    # WHEN it is checked THEN it is refused exactly when a container sits MAX_DEPTH levels down
    deepest = levels  # `data` itself is at depth 1 of the document
    if deepest < MAX_DEPTH:
        assert check_storable(event, "test") is event
    else:
        with pytest.raises(DecodeError) as info:
            check_storable(event, "test")
        assert info.value.reason == "too_deep"
