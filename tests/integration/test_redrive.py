"""Replay and re-drive against real components: the official Pub/Sub emulator (dead letters
published by the app, pulled back by `PubSubLetters`), the Cloud Run Jobs emulator (the
replayed runs really execute) and a SQLite ledger file."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import emulator_env
from tests.integration.conftest import PubSub, eventually
from triggers.cli import main
from triggers.dispatch import Dispatcher, Outcome
from triggers.emulators.probe import PROJECT, REGION, probe_records
from triggers.function.app import App
from triggers.function.settings import Settings
from triggers.ledger import Ledger, Status
from triggers.ledger.sqlite import SQLiteBackend
from triggers.ops.redrive import PubSubLetters, redrive, resolve_subscription
from triggers.ops.replay import replay, select
from triggers.rules import load_text

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).resolve().parents[2] / "config" / "events"
RULES_YAML = f"""\
project: {PROJECT}
region: {REGION}
rules:
  - name: load
    on: storage.finalized
    job: probe
    overrides:
      args: ["{{{{ event.missing_field }}}}"]
"""
FIXED_YAML = RULES_YAML.replace("event.missing_field", "data.name")


def storage_request() -> tuple[dict[str, str], bytes]:
    document = json.loads((EVENTS / "storage-finalized.cloudevent-binary.json").read_text())
    headers = dict(document["headers"])
    headers["ce-id"] = uuid.uuid4().hex  # a new event each time
    return headers, json.dumps(document["body"]).encode()


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    backend = SQLiteBackend(tmp_path / "ledger.sqlite3")
    yield Ledger(backend)
    backend.close()


def execution_ran(probe_dir: Path, execution: str) -> dict[str, Any]:
    [record] = eventually(
        lambda: probe_records(probe_dir, execution), timeout=20, what=f"{execution} to run"
    )
    return record


def wait_for_letters(pubsub: PubSub, subscription: str, count: int) -> None:
    """Until `count` letters are waiting (peeked, then released), so a pass sees them all."""

    def probe():
        response = pubsub.subscriber.pull(
            request={"subscription": subscription, "max_messages": 10}, timeout=10
        )
        ids = [m.ack_id for m in response.received_messages]
        if ids:
            pubsub.subscriber.modify_ack_deadline(
                request={"subscription": subscription, "ack_ids": ids, "ack_deadline_seconds": 0}
            )
        return len(ids) >= count

    eventually(probe, timeout=30, what=f"{count} dead letters on {subscription}")


def test_dead_letters_are_redriven_after_a_fix_and_run_once(
    pubsub, dead_letters, ledger, emu, runner, probe_dir
):
    sink, subscription = dead_letters
    # GIVEN a rule whose template fails: the event is rejected and dead-lettered by the app,
    # and so is a request that cannot be decoded
    app = App(
        Settings(ledger="memory", runner="dry-run"),
        rules=load_text(RULES_YAML, environ={}),
        ledger=ledger,
        runner=runner,
        dead_letters=sink,
    )
    headers, body = storage_request()
    answer = app.handle(headers, body)
    assert answer.body["rules"][0]["outcome"] == "rejected"
    assert app.handle({"Content-Type": "application/json"}, b"{not json").status == 200
    wait_for_letters(pubsub, subscription, 2)
    letters = PubSubLetters(subscription, client=pubsub.subscriber)

    # WHEN the rule is fixed and the dead letters re-driven
    fixed = Dispatcher(load_text(FIXED_YAML, environ={}), ledger, runner)
    results = {r.rule: r for r in redrive(letters, fixed, scope="replay-it")}

    # THEN the rejected rule ran once, under the scope, with the fixed args, and its letter is
    # acknowledged; the undecodable request is left in the subscription with the reason
    done = results["load"]
    assert done.resolved, done
    [outcome] = done.outcomes
    assert outcome.outcome is Outcome.LAUNCHED
    ran = execution_ran(probe_dir, outcome.execution)
    assert ran["argv"] == ["incoming/2026/11/21/orders.csv"]
    assert ran["env"]["TRIGGERS_RUN_KEY"] == outcome.ledger_key
    assert outcome.dedup_key.startswith("replay-it/")
    assert not results[None].resolved
    assert results[None].note.startswith("still cannot be decoded (bad_json)")

    # AND a second pass finds only the letter that was left, and runs nothing again
    again = list(redrive(letters, fixed, scope="replay-it"))
    assert [(r.rule, r.resolved) for r in again] == [(None, False)]
    assert len(emu.store.records()) == 1


def test_the_cli_reads_a_topic_through_its_only_subscription(
    pubsub, dead_letters, ledger, emu, runner, tmp_path, capsys, monkeypatch
):
    sink, subscription = dead_letters
    topic = sink.topic
    app = App(
        Settings(ledger="memory", runner="dry-run"),
        rules=load_text(RULES_YAML, environ={}),
        ledger=ledger,
        runner=runner,
        dead_letters=sink,
    )
    app.handle(*storage_request())
    wait_for_letters(pubsub, subscription, 1)
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(FIXED_YAML)
    assert resolve_subscription(topic, pubsub.publisher) == subscription

    monkeypatch.setenv("TRIGGERS_CLOUD_RUN_ENDPOINT", emu.url)
    monkeypatch.setenv("TRIGGERS_RUNNER", "cloudrun")
    monkeypatch.delenv("TRIGGERS_LEDGER", raising=False)
    sqlite_path = str(ledger.backend.path)
    with emulator_env("PUBSUB_EMULATOR_HOST", pubsub.host_port):
        dry = main(["replay", "--config", str(fixed), "--from-topic", topic, "--dry-run"])
        dry_out = capsys.readouterr().out
        real = main(
            ["replay", "--config", str(fixed), "--from-topic", topic, "--sqlite-path", sqlite_path]
        )
        real_out = capsys.readouterr().out
    assert dry == 0 and "load: would run probe" in dry_out, dry_out
    assert f"checking dead letters from {subscription}" in dry_out
    assert real == 0, real_out
    assert "load: launched" in real_out and "acknowledged" in real_out
    assert real_out.splitlines()[-1] == (
        "done: 1 dead letter, 1 re-driven and acknowledged, 0 left in the subscription"
    )


def test_a_failed_run_replays_onto_cloud_run_once_per_scope(ledger, emu, runner, probe_dir):
    # GIVEN an event whose run failed (the reconciler would have recorded it so)
    rules = load_text(FIXED_YAML, environ={})
    dispatcher = Dispatcher(rules, ledger, runner)
    headers, body = storage_request()
    from triggers.events import decode

    [first] = dispatcher.dispatch(decode(headers, body)).outcomes
    execution_ran(probe_dir, first.execution)
    record = ledger.get(first.ledger_key)
    assert ledger.backend.update(record.key, record.token, {"status": Status.FAILED})

    # WHEN the failed records are replayed, twice in one scope and once in another
    failed = select(ledger.list(status=[Status.FAILED]))
    [once] = replay(dispatcher, failed, scope="replay-a")
    [twice] = replay(dispatcher, failed, scope="replay-a")
    [other] = replay(dispatcher, failed, scope="replay-b")

    # THEN each scope started exactly one new execution, with its own run key
    assert [o.outcome for r in (once, twice, other) for o in r.outcomes] == [
        Outcome.LAUNCHED,
        Outcome.DUPLICATE,
        Outcome.LAUNCHED,
    ]
    keys = {
        execution_ran(probe_dir, r.outcomes[0].execution)["env"]["TRIGGERS_RUN_KEY"]
        for r in (once, other)
    }
    assert keys == {once.outcomes[0].ledger_key, other.outcomes[0].ledger_key}
    assert first.ledger_key not in keys
    assert len(emu.store.records()) == 3
