"""CLI conventions: --version, one rules option everywhere, usage errors exit 2, plan's exit
code and --matched, send --print/-o event files, colour only on a terminal without NO_COLOR."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from triggers import __version__
from triggers.cli import main
from triggers.cli._common import use_colour
from triggers.events import decode, parse_event_file
from triggers.ledger.base import Record, Status
from triggers.ops.history import STATUS_COLOURS, table

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch):
    monkeypatch.delenv("TRIGGERS_PROJECT", raising=False)
    monkeypatch.delenv("TRIGGERS_REGION", raising=False)
    monkeypatch.delenv("TRIGGERS_RULES", raising=False)


RULES = str(ROOT / "config" / "rules.yaml")
SAMPLE = str(ROOT / "config" / "events" / "storage-finalized.cloudevent-binary.json")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own exits (--version, usage errors)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out.strip()) == (0, f"triggers {__version__}")


@pytest.mark.parametrize("command", ["validate", "compile --check", "check"])
def test_every_rules_command_takes_config_as_well_as_its_positional(command, capsys, tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(Path(RULES).read_text())
    by_option = run(capsys, *command.split(), "--config", str(rules))
    by_position = run(capsys, *command.split(), str(rules))
    assert by_option == by_position
    assert str(rules) in by_option[1] + by_option[2]


def test_the_rules_given_twice_is_a_usage_error(capsys) -> None:
    code, _, err = run(capsys, "validate", RULES, "--config", "other.yaml")
    assert code == 2
    assert f"the rules are given twice ({RULES} and --config other.yaml)" in err


def test_plan_reads_the_rules_from_c_too(capsys) -> None:
    code, out, _ = run(capsys, "plan", "-c", RULES, SAMPLE)
    assert code == 0 and "+ csv-ingest: run" in out


def test_plan_matched_hides_the_rules_that_do_not_match(capsys) -> None:
    _, everything, _ = run(capsys, "plan", "--config", RULES, SAMPLE)
    code, matched, _ = run(capsys, "plan", "--config", RULES, "--matched", SAMPLE)
    assert code == 0
    assert "- paid-orders:" in everything and "- paid-orders:" not in matched
    assert "+ csv-ingest:" in matched
    _, as_json, _ = run(capsys, "plan", "--config", RULES, "--matched", "--json", SAMPLE)
    assert [v["rule"] for v in json.loads(as_json)["verdicts"]] == ["csv-ingest"]


def test_plan_fails_when_a_matched_rule_cannot_plan_its_run(capsys, tmp_path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "project: demo-project\nregion: europe-west1\nrules:\n"
        "  - name: needs-a-field\n    on: storage.finalized\n    job: j\n"
        "    overrides: {args: ['{{ data.metadata.not_there }}']}\n"
    )
    code, out, _ = run(capsys, "plan", "--config", str(rules), "--matched", SAMPLE)
    assert code == 1
    assert "! needs-a-field: matched, but cannot plan the run" in out


def test_plan_says_when_nothing_matches_with_matched(capsys, tmp_path) -> None:
    other = str(ROOT / "config" / "events" / "generic-custom.cloudevent-structured.json")
    code, out, _ = run(capsys, "plan", "--config", RULES, "--matched", other)
    assert code == 0 and "(no rule matches)" in out


def test_send_print_writes_an_event_file_that_plans_to_the_same_request(capsys) -> None:
    code, out, err = run(
        capsys, "send", "storage", "--name", "incoming/a.csv", "--generation", "7", "--print"
    )
    assert code == 0 and err == ""
    headers, body = parse_event_file(out, "printed")
    event = decode(headers, body)
    assert event.data["name"] == "incoming/a.csv" and event.data["generation"] == 7
    assert json.loads(out)["description"].startswith("storage finalized cloudevent")


def test_send_output_writes_the_file_and_posts_nothing(capsys, tmp_path) -> None:
    target = tmp_path / "tick.json"
    # --url points at nothing: a post would fail with exit 2
    code, out, err = run(
        capsys, "send", "--url", "http://127.0.0.1:9/", "scheduler", "-o", str(target)
    )
    assert code == 0 and out == ""
    assert f"wrote {target}" in err
    event = decode(*parse_event_file(target.read_text(), str(target)))
    assert event.kind == "scheduler" and event.data["job_name"] == "nightly-report"


def _record(status: Status) -> Record:
    now = datetime(2026, 11, 21, 2, tzinfo=UTC)
    return Record(
        key="k" * 64,
        rule="nightly",
        dedup_key="d",
        job="projects/p/locations/r/jobs/j",
        status=status,
        token="t",
        event={"id": "e-1"},
        request={},
        created_at=now,
        updated_at=now,
        lease_until=now,
        expire_at=now,
    )


def test_the_runs_table_paints_statuses_only_when_asked() -> None:
    records = [_record(Status.SUCCEEDED), _record(Status.FAILED)]
    plain = table(records, width=120)
    painted = table(records, width=120, colour=True)
    assert all("\x1b[" not in line for line in plain)
    assert f"\x1b[{STATUS_COLOURS['succeeded']}msucceeded\x1b[0m" in painted[1]
    assert f"\x1b[{STATUS_COLOURS['failed']}mfailed\x1b[0m" in painted[2]
    # without its escape codes, a painted line is the plain line: the columns stay aligned
    escapes = re.compile(r"\x1b\[[0-9;]*m")
    assert [escapes.sub("", line) for line in painted] == plain


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_needs_a_terminal_and_no_no_color(monkeypatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert use_colour(Terminal()) is True
    assert use_colour(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_colour(Terminal()) is False
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("TERM", "dumb")
    assert use_colour(Terminal()) is False


def test_progress_draws_one_line_on_a_terminal_and_nothing_elsewhere() -> None:
    from triggers.cli._common import Progress

    terminal = Terminal()
    progress = Progress("reconcile", stream=terminal)
    for done in range(3):
        progress.step(done, 3)
    progress.close()
    assert terminal.getvalue() == ("\rreconcile: 0/3\rreconcile: 1/3\rreconcile: 2/3" + "\r\x1b[K")
    pipe = io.StringIO()
    quiet = Progress("replay", 5, stream=pipe)
    quiet.step()
    quiet.close()
    assert pipe.getvalue() == "" and quiet.done == 1


def test_reconcile_reports_progress_before_each_record() -> None:
    from triggers.ledger import Ledger
    from triggers.ledger.memory import MemoryBackend
    from triggers.ops.reconcile import reconcile

    ledger = Ledger(MemoryBackend())
    for status in (Status.LAUNCHED, Status.LAUNCHED, Status.SUCCEEDED):
        record = _record(status)
        ledger.backend.create(
            Record(**{**record.as_dict(), "key": f"{status.value}-{len(ledger.list())}"})
        )

    class Finished:
        def execution_status(self, name):
            return {"done": True, "outcome": "succeeded"}

    seen: list[tuple[int, int]] = []
    report = reconcile(ledger, Finished(), progress=lambda done, total: seen.append((done, total)))
    assert report.checked == 2
    assert seen == [(0, 2), (1, 2)]


@pytest.mark.parametrize(
    "rules_file", ["config/rules.yaml", "config/systems/sae.yaml", "config/systems/peloton.yaml"]
)
def test_serve_examples_are_drawn_from_the_served_rules_and_reach_them(capsys, rules_file):
    import shlex

    from triggers.local.serve import send_examples
    from triggers.rules import load

    rules = load(ROOT / rules_file, environ={})
    examples = send_examples(rules)
    assert examples
    for example in examples:
        command, rule = example.split("   # ")
        code, out, _ = run(capsys, "send", *shlex.split(command), "--print")
        assert code == 0, example
        event = decode(*parse_event_file(out, example))
        assert rule in [r.name for r in rules.route(event)], (
            example,
            rules.get(rule).explain(event),
        )


def test_send_takes_the_project_of_the_served_rules(capsys, tmp_path, monkeypatch):
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "project: acme-prod-1234\nregion: europe-west1\n"
        "rules:\n  - {name: r, on: pubsub, topic: orders, job: j}\n"
    )
    monkeypatch.setenv("TRIGGERS_RULES", str(rules))
    code, out, _ = run(capsys, "send", "pubsub", "--topic", "orders", "--print")
    assert code == 0
    event = decode(*parse_event_file(out, "printed"))
    assert event.source.endswith("projects/acme-prod-1234/topics/orders")
    # an explicit --project still wins, and without rules the old default applies
    code, out, _ = run(capsys, "send", "pubsub", "--project", "other-9999", "--print")
    assert "projects/other-9999/topics/orders" in decode(*parse_event_file(out, "x")).source
    monkeypatch.setenv("TRIGGERS_RULES", str(tmp_path / "none.yaml"))
    code, out, _ = run(capsys, "send", "pubsub", "--print")
    assert "projects/demo-project/topics/orders" in decode(*parse_event_file(out, "x")).source
