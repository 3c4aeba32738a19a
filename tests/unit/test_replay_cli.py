"""`triggers replay` from the command line, on a SQLite ledger written by the real dispatcher.

A real replay needs a runner: these use TRIGGERS_RUNNER=dry-run (the function's own setting);
tests/integration/test_replay.py replays onto the Cloud Run emulator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fakes import ScriptedRunner
from triggers.cli import main
from triggers.dispatch import Dispatcher
from triggers.events import decode, parse_event_file
from triggers.ledger import Ledger, Status
from triggers.ledger.sqlite import SQLiteBackend
from triggers.rules import load

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "rules.yaml"
EVENT = ROOT / "config" / "events" / "storage-finalized.cloudevent-binary.json"


@pytest.fixture
def ledger_path(tmp_path, monkeypatch) -> Path:
    """A ledger in which the sample storage event launched `csv-ingest`, which then failed."""
    monkeypatch.delenv("TRIGGERS_LEDGER", raising=False)
    monkeypatch.setenv("TRIGGERS_RUNNER", "dry-run")
    path = tmp_path / "ledger.sqlite3"
    backend = SQLiteBackend(path)
    ledger = Ledger(backend)
    headers, body = parse_event_file(EVENT.read_text(), EVENT.name)
    decision = Dispatcher(load(str(RULES)), ledger, ScriptedRunner()).dispatch(
        decode(headers, body)
    )
    [outcome] = decision.outcomes
    record = ledger.get(outcome.ledger_key)
    assert backend.update(record.key, record.token, {"status": Status.FAILED})
    backend.close()
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["replay", "--config", str(RULES), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_dry_run_shows_the_same_request_and_runs_nothing(ledger_path, capsys):
    code, out, _ = run(capsys, "--sqlite-path", str(ledger_path), "--dry-run")
    assert code == 0
    assert out.splitlines()[0].startswith("= csv-ingest  ")
    assert "(failed)  would run csv-loader with the same request" in out
    assert out.splitlines()[-1] == "dry run: 1 would run (1 same)"
    assert len(SQLiteBackend(ledger_path).list(limit=10)) == 1


def test_dry_run_diffs_a_changed_rule(ledger_path, tmp_path, capsys):
    changed = tmp_path / "rules.yaml"
    changed.write_text(RULES.read_text().replace("--input=", "--in="))
    code = main(
        ["replay", "--config", str(changed), "--sqlite-path", str(ledger_path), "--dry-run"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "~ csv-ingest" in out and "the request differs" in out
    assert '-          "--input=gs://' in out and '+          "--in=gs://' in out


def test_a_replay_runs_once_per_scope_and_resumes_without_running_twice(ledger_path, capsys):
    args = ("--sqlite-path", str(ledger_path), "--status", "failed", "--scope", "replay-t1")
    code, out, _ = run(capsys, *args)
    assert code == 0, out
    assert "replaying 1 record under scope replay-t1" in out
    assert "csv-ingest" in out and "launched" in out
    assert out.splitlines()[-1] == "done: 1 launched, 0 duplicate, 0 rejected, 0 retry, 0 skipped"

    code, out, _ = run(capsys, *args)
    assert code == 0
    assert out.splitlines()[-1] == "done: 0 launched, 1 duplicate, 0 rejected, 0 retry, 0 skipped"

    records = SQLiteBackend(ledger_path).list(limit=10)
    assert sorted(r.status.value for r in records) == ["failed", "launched"]
    replayed = next(r for r in records if r.status is Status.LAUNCHED)
    assert replayed.dedup_key.startswith("replay-t1/")


def test_json_output_names_the_scope_and_totals(ledger_path, capsys):
    code, out, _ = run(capsys, "--sqlite-path", str(ledger_path), "--rule", "csv-ingest", "--json")
    result = json.loads(out)
    assert code == 0
    assert result["scope"].startswith("replay-") and result["totals"] == {"launched": 1}
    assert result["results"][0]["outcomes"][0]["outcome"] == "launched"


@pytest.mark.parametrize(
    "argv, message",
    [
        ((), "say what to replay"),
        (("--since", "1h", "--until", "yesterday"), "--until 'yesterday'"),
        (("--since", "soon"), "--since 'soon'"),
        (("--status", "exploded"), "--status 'exploded'"),
        (("--rule", "x", "--scope", "a/b"), "--scope"),
        (("--from-topic", "projects/p/topics/t", "--rule", "x"), "do not apply"),
        (("--from-topic", "dead-letters"), "projects/P/topics/T"),
    ],
)
def test_usage_errors_exit_2_with_a_reason(ledger_path, capsys, argv, message):
    code, _, err = run(capsys, "--sqlite-path", str(ledger_path), *argv)
    assert code == 2
    assert message in err


def test_a_broken_rules_file_exits_1_with_its_problems(ledger_path, tmp_path, capsys):
    broken = tmp_path / "rules.yaml"
    broken.write_text("rules:\n  - name: x\n")
    code = main(["replay", "--config", str(broken), "--sqlite-path", str(ledger_path), "--dry-run"])
    assert code == 1
    assert f"{broken}:" in capsys.readouterr().err


def test_one_event_can_be_replayed_by_its_id(ledger_path, capsys):
    event_id = json.loads(EVENT.read_text())["headers"]["ce-id"]
    code, out, _ = run(
        capsys, "--sqlite-path", str(ledger_path), "--event", "no-such-id", "--dry-run"
    )
    assert (code, out.strip()) == (0, "no recorded events to replay")
    code, out, _ = run(capsys, "--sqlite-path", str(ledger_path), "--event", event_id)
    assert code == 0
    assert f"csv-ingest  {event_id}  launched" in out
