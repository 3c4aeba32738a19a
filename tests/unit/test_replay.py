"""Replay (triggers/ops/replay.py): rebuilding recorded events, the dry-run comparison, and replays
under a dedup scope, with the memory ledger and a scripted runner. The same against SQLite and
the Cloud Run emulator: tests/integration/test_replay.py."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.fakes import STORAGE_RULES_YAML, storage_event
from triggers.dispatch import Dispatcher, Outcome
from triggers.errors import PermanentRunError
from triggers.events import decode, parse_event_file
from triggers.ledger import Ledger, Status
from triggers.ledger.base import INPUT_RULE
from triggers.ledger.memory import MemoryBackend
from triggers.ops.replay import (
    Change,
    NotReplayable,
    compare,
    event_of,
    new_scope,
    replay,
    select,
)
from triggers.plan import RUN_KEY_ENV, Overrides, RunRequest
from triggers.rules import load_text

EVENTS = Path(__file__).resolve().parents[2] / "config" / "events"
SAMPLE_RULES = Path(__file__).resolve().parents[2] / "config" / "rules.yaml"
RULES = load_text(STORAGE_RULES_YAML, environ={})


def mark(ledger: Ledger, key: str, status: Status) -> None:
    """What the reconciler does when an execution ends."""
    record = ledger.get(key)
    assert ledger.backend.update(key, record.token, {"status": status})


def outcome_of(dispatcher, event, rule):
    return next(o for o in dispatcher.dispatch(event).outcomes if o.rule == rule)


def records(ledger, **filters):
    return select(ledger.list(limit=1000, **filters))


# -- rebuilding events -------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_every_sample_event_is_rebuilt_exactly_from_its_record(path, clock):
    # GIVEN every sample request, decoded, and a ledger record of it
    rules = load_text(SAMPLE_RULES.read_text(), name=str(SAMPLE_RULES), environ={})
    ledger = Ledger(MemoryBackend(), clock=clock)
    headers, body = parse_event_file(path.read_text(), path.name)
    event = decode(headers, body, now=clock)
    request = RunRequest(
        rule="any",
        job="projects/p/locations/r/jobs/j",
        overrides=Overrides(),
        dedup_key=event.default_dedup_key,
        dedup_window_seconds=60,
        event=event.ref,
    )
    claim = ledger.claim(request, dict(event.document))

    # WHEN the event is rebuilt from what the ledger recorded
    rebuilt = event_of(ledger.get(claim.record.key))

    # THEN it is the decoded event: same identity, form, document and default key
    assert (rebuilt.id, rebuilt.source, rebuilt.type, rebuilt.kind, rebuilt.form) == (
        event.id,
        event.source,
        event.type,
        event.kind,
        event.form,
    )
    assert rebuilt.document == event.document
    assert rebuilt.default_dedup_key == event.default_dedup_key
    # AND the sample rules route and plan it exactly as they did the original
    routed = rules.route(event)
    assert [r.name for r in rules.route(rebuilt)] == [r.name for r in routed]
    for rule in routed:
        assert rule.plan(rebuilt) == rule.plan(event)


def test_a_record_without_kind_and_form_is_rebuilt_from_its_type(dispatcher, ledger):
    # GIVEN a record written before records kept the event's kind and form
    outcome = outcome_of(dispatcher, storage_event(), "load")
    record = ledger.get(outcome.ledger_key)
    older = {k: v for k, v in record.event.items() if k not in ("kind", "form")}
    assert ledger.backend.update(record.key, record.token, {"event": older})
    # WHEN it is rebuilt THEN the kind comes from the type, the form is a structured CloudEvent
    rebuilt = event_of(ledger.get(record.key))
    assert (rebuilt.kind, rebuilt.form) == ("storage", "cloudevent-structured")
    assert RULES.get("load").plan(rebuilt).dedup_key == outcome.dedup_key


def test_decode_rejections_and_records_without_a_document_cannot_be_replayed(ledger, dispatcher):
    rejected = ledger.reject_input(b"{not json", "bad_json", "not JSON", {"form": "?"})
    with pytest.raises(NotReplayable, match="--from-topic"):
        event_of(rejected)
    outcome = outcome_of(dispatcher, storage_event(), "load")
    record = ledger.get(outcome.ledger_key)
    stripped = dataclasses.replace(record, event_document=None)
    with pytest.raises(NotReplayable, match="size limit"):
        event_of(stripped)
    assert rejected.rule == INPUT_RULE


# -- selecting ---------------------------------------------------------------------------------


def test_select_keeps_the_newest_record_per_rule_and_event(dispatcher, ledger, clock):
    # GIVEN an event replayed once: two records of (load, e-1) and one of (audit, e-1)
    event = storage_event()
    dispatcher.dispatch(event)
    clock.advance(minutes=1)
    first = records(ledger, rule="load")
    list(replay(dispatcher, first, scope="replay-1"))
    # WHEN the ledger's records are selected
    chosen = records(ledger)
    # THEN each (rule, event) appears once, as its newest record, oldest first
    assert sorted(r.rule for r in chosen) == ["audit", "load"]
    load = next(r for r in chosen if r.rule == "load")
    assert load.dedup_key.startswith("replay-1/")
    assert chosen == sorted(chosen, key=lambda r: r.created_at)


def test_new_scope_is_named_after_the_time_in_utc():
    moment = datetime(2026, 11, 21, 18, 5, 9, tzinfo=timezone(timedelta(hours=1)))
    assert new_scope(moment) == "replay-20261121T170509Z"


# -- replaying -------------------------------------------------------------------------------


def test_a_failed_run_replays_once_per_scope(dispatcher, ledger, runner):
    # GIVEN an event whose `load` run failed and whose `audit` run succeeded
    event = storage_event()
    original = outcome_of(dispatcher, event, "load")
    mark(ledger, original.ledger_key, Status.FAILED)
    runs_before = runner.run_calls
    failed = records(ledger, status=[Status.FAILED])
    assert [r.rule for r in failed] == ["load"]

    # WHEN the failed records are replayed
    results = list(replay(dispatcher, failed, scope="replay-a"))

    # THEN only `load` ran again, once, as a new record under the scope
    assert runner.run_calls == runs_before + 1
    [result] = results
    [outcome] = result.outcomes
    assert outcome.outcome is Outcome.LAUNCHED and outcome.rule == "load"
    assert outcome.dedup_key == f"replay-a/{original.dedup_key}"
    assert outcome.ledger_key != original.ledger_key
    new = ledger.get(outcome.ledger_key)
    env = new.request["overrides"]["containerOverrides"][0]["env"]
    assert {"name": RUN_KEY_ENV, "value": outcome.ledger_key} in env
    assert ledger.get(original.ledger_key).status is Status.FAILED  # history is kept

    # AND repeating the replay in the same scope runs nothing
    again = list(replay(dispatcher, failed, scope="replay-a"))
    assert again[0].outcomes[0].outcome is Outcome.DUPLICATE
    assert runner.run_calls == runs_before + 1

    # AND a new scope runs it once more
    list(replay(dispatcher, failed, scope="replay-b"))
    assert runner.run_calls == runs_before + 2


def test_replaying_a_replayed_record_does_not_nest_scopes(dispatcher, ledger):
    event = storage_event()
    original = outcome_of(dispatcher, event, "load")
    first = list(replay(dispatcher, records(ledger, rule="load"), scope="replay-a"))
    replayed_key = first[0].outcomes[0].ledger_key
    # WHEN the replay's own record is replayed under another scope
    second = list(replay(dispatcher, [ledger.get(replayed_key)], scope="replay-b"))
    # THEN the key is the event's own key under the new scope
    assert second[0].outcomes[0].dedup_key == f"replay-b/{original.dedup_key}"


def test_all_rules_sends_each_event_once_through_every_matching_rule(dispatcher, ledger, runner):
    event = storage_event()
    dispatcher.dispatch(event)
    runs_before = runner.run_calls
    results = list(replay(dispatcher, records(ledger), scope="s", all_rules=True))
    # two records (load, audit) of one event: the event is sent once, through both rules
    sent = [r for r in results if r.skipped is None]
    assert len(sent) == 1 and {o.rule for o in sent[0].outcomes} == {"load", "audit"}
    assert [r.skipped for r in results if r.skipped] == ["sent through every rule above"]
    assert runner.run_calls == runs_before + 2


def test_a_rule_that_no_longer_matches_or_exists_is_skipped_with_its_reason(ledger, runner):
    old = Dispatcher(RULES, ledger, runner)
    old.dispatch(storage_event(name="incoming/a.csv"))
    changed = load_text(
        STORAGE_RULES_YAML.replace(
            "  - name: audit\n    on: storage.finalized\n",
            "  - name: audit\n    on: storage.finalized\n    match: {data: {name: [{prefix: 'x/'}]}}\n",
        ).replace("name: load", "name: load-v2"),
        environ={},
    )
    results = list(replay(Dispatcher(changed, ledger, runner), records(ledger), scope="s"))
    skipped = {r.record.rule: r.skipped for r in results}
    assert skipped["load"] == "no rule of this name in the current rules"
    assert skipped["audit"].startswith("no longer matches: data.name")


def test_a_replay_needs_a_scope(dispatcher, ledger):
    dispatcher.dispatch(storage_event())
    with pytest.raises(ValueError, match="scope"):
        list(replay(dispatcher, records(ledger), scope=""))


def test_a_permanent_error_on_replay_is_rejected_and_recorded(dispatcher, ledger, runner):
    event = storage_event()
    original = outcome_of(dispatcher, event, "load")
    mark(ledger, original.ledger_key, Status.FAILED)
    runner.fail("loader", PermanentRunError("job loader not found", status=404))
    [result] = replay(dispatcher, records(ledger, status=[Status.FAILED]), scope="s")
    assert result.outcomes[0].outcome is Outcome.REJECTED
    assert ledger.get(result.outcomes[0].ledger_key).status is Status.REJECTED


# -- the dry-run comparison ------------------------------------------------------------------


def test_compare_says_same_for_unchanged_rules_and_diffs_changed_requests(dispatcher, ledger):
    dispatcher.dispatch(storage_event())
    # unchanged rules: the same request (the run key is left out of the comparison)
    same = compare(RULES, records(ledger))
    assert {c.rule: c.change for c in same} == {"load": Change.SAME, "audit": Change.SAME}
    # a changed template: CHANGED, with a diff of the request
    changed = load_text(
        STORAGE_RULES_YAML.replace('args: ["{{ data.name }}"]', 'args: ["--in={{ data.name }}"]'),
        environ={},
    )
    [load] = [c for c in compare(changed, records(ledger)) if c.rule == "load"]
    assert load.change is Change.CHANGED and load.reason == "the request differs"
    diff = load.diff()
    assert '-          "incoming/a.csv"' in diff and '+          "--in=incoming/a.csv"' in diff
    assert all(RUN_KEY_ENV not in line for line in diff)


def test_compare_reports_unmatched_removed_failing_and_added_rules(dispatcher, ledger):
    dispatcher.dispatch(storage_event(name="incoming/a.csv"))
    rules = load_text(
        """\
project: demo-project
region: europe-west1
rules:
  - name: load
    on: storage.finalized
    job: loader
    overrides:
      args: ["{{ event.nope }}"]
  - name: audit
    on: storage.finalized
    match: {data: {name: [{prefix: "other/"}]}}
    job: auditor
  - name: newcomer
    on: storage.finalized
    job: newjob
""",
        environ={},
    )
    changes = {c.rule: c for c in compare(rules, records(ledger), all_rules=True)}
    assert changes["load"].change is Change.FAILS and "nope" in changes["load"].reason
    assert changes["audit"].change is Change.UNMATCHED
    assert changes["audit"].reason.startswith("data.name")
    assert changes["newcomer"].change is Change.ADDED
    assert changes["newcomer"].now["job"].endswith("/jobs/newjob")
    # without all_rules, only the recorded rules are compared
    assert "newcomer" not in {c.rule for c in compare(rules, records(ledger))}
    dropped = load_text(STORAGE_RULES_YAML.replace("name: audit", "name: audit-2"), environ={})
    gone = {c.rule: c.change for c in compare(dropped, records(ledger))}
    assert gone["audit"] is Change.REMOVED


def test_a_rejected_record_that_would_now_run_is_changed(ledger, runner):
    # GIVEN a rule whose template failed for an event (rejected)
    Dispatcher(RULES, ledger, runner).dispatch(storage_event(name="strict/a.csv"))
    [rejected] = records(ledger, status=[Status.REJECTED])
    # WHEN the template is fixed
    fixed = load_text(
        STORAGE_RULES_YAML.replace("{{ event.missing_field }}", "{{ data.name }}"), environ={}
    )
    [c] = [c for c in compare(fixed, [rejected])]
    # THEN the comparison says it would run now, and why it did not before
    assert c.change is Change.CHANGED and c.change.would_run
    assert c.reason.startswith("was rejected (") and "missing_field" in c.reason
    assert c.now["overrides"]["containerOverrides"][0]["args"] == ["strict/a.csv"]


def test_comparisons_serialise_to_json(dispatcher, ledger):
    dispatcher.dispatch(storage_event())
    ledger.reject_input(b"{", "bad_json", "not JSON", {})
    out = json.loads(json.dumps([c.as_dict() for c in compare(RULES, records(ledger))]))
    assert {c["change"] for c in out} == {"same", "skipped"}
    assert all("key" in c and "status" in c for c in out)
