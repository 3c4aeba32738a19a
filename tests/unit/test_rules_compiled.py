"""Pre-validated rules (`triggers compile`): the artifact builds the very rules validation builds,
is used only while it is up to date, and never hides a broken rules file."""

from __future__ import annotations

import glob
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from triggers.cli import main
from triggers.errors import RulesError
from triggers.events import decode, parse_event_file
from triggers.function.app import App
from triggers.function.settings import Settings
from triggers.rules import load, loader
from triggers.rules.compiled import artifact_path, compile_rules
from triggers.rules.condition import compile_condition, deferred_condition
from triggers.rules.templates import compile_template, deferred_template

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_RULES = ROOT / "config" / "rules.yaml"
SAMPLE_EVENTS = sorted(glob.glob(str(ROOT / "config" / "events" / "*.json")))
ENV = {"TRIGGERS_REGION": "us-central1"}  # one reference set, one left to its default

ONE_RULE = """\
project: demo-project
region: europe-west1
rules:
  - name: a
    on: pubsub
    job: worker
    overrides:
      args: ["{{ data.message.json.id }}"]
"""


@pytest.fixture
def rules(tmp_path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_bytes(SAMPLE_RULES.read_bytes())
    return path


@pytest.fixture
def no_validation(monkeypatch):
    """Call it once the artifact is written: validating the sources then fails loudly, so
    whatever loads after came from the artifact. (compile_rules imports the loader when called,
    so it must run before.)"""

    def refuse(*args, **kwargs):
        raise AssertionError("the rules were validated instead of read from the artifact")

    return lambda: monkeypatch.setattr(loader, "load_source", refuse)


def _events():
    for name in SAMPLE_EVENTS:
        headers, body = parse_event_file(Path(name).read_text(encoding="utf-8"), name)
        yield decode(headers, body)


def _summary(ruleset) -> list[dict]:
    out = []
    for rule in ruleset:
        out.append(
            {
                "name": rule.name,
                "types": rule.types,
                "job": rule.job,
                "location": str(rule.location),
                "spec": rule.spec.model_dump(),
                "fields_set": rule.spec.model_fields_set,
                "scope": rule.scope.source if rule.scope else None,
                "pattern": rule.pattern.source if rule.pattern else None,
                "when": rule.condition.source if rule.condition else None,
                "args": None if rule.args is None else [t.source for t in rule.args],
                "env": [(k, t.source) for k, t in rule.env],
                "dedup_key": rule.dedup_key.source if rule.dedup_key else None,
                "schedule": None
                if rule.schedule is None
                else (rule.schedule.cron, rule.schedule.time_zone),
                "template_lines": dict(rule.template_lines),
                "flow": rule.flow,
                "batch_key": rule.batch_key.source if rule.batch_key else None,
                "limits_set": rule.spec.limits and rule.spec.limits.model_fields_set,
                "batch_set": rule.spec.batch and rule.spec.batch.model_fields_set,
            }
        )
    return out


def _verdicts(ruleset) -> list:
    out = []
    for event in _events():
        for v in ruleset.verdicts(event):
            out.append(
                (
                    v.rule.name,
                    v.matched,
                    v.reason,
                    v.request and v.request.as_dict(),
                    v.error and str(v.error),
                )
            )
    return out


# -- the same rules ----------------------------------------------------------------------------


def test_compiled_rules_are_the_validated_rules(rules, no_validation):
    written, validated = compile_rules(rules, environ=ENV)
    assert written == artifact_path(rules) == Path(f"{rules}.compiled.json")
    no_validation()

    compiled = load(rules, environ=ENV, compiled=True)

    assert compiled.files == validated.files == (str(rules),)
    assert _summary(compiled) == _summary(validated)
    assert _verdicts(compiled) == _verdicts(validated)  # every sample event, every rule
    assert [r.name for r in compiled.route(next(_events()))] == [
        r.name for r in validated.route(next(_events()))
    ]


def test_a_directory_compiles_and_its_locations_follow_it_when_moved(tmp_path, no_validation):
    source = tmp_path / "rules"
    (source / "team").mkdir(parents=True)
    (source / "a.yaml").write_text(ONE_RULE)
    (source / "team" / "b.yml").write_text(ONE_RULE.replace("name: a", "name: b"))
    compile_rules(source, environ={})
    no_validation()
    moved = tmp_path / "deployed"
    source.rename(moved)
    Path(f"{source}.compiled.json").rename(f"{moved}.compiled.json")

    ruleset = load(moved, environ={}, compiled=True)

    assert ruleset.files == (str(moved / "a.yaml"), str(moved / "team" / "b.yml"))
    assert [str(r.location) for r in ruleset] == [
        f"{moved / 'a.yaml'}:4",
        f"{moved / 'team' / 'b.yml'}:4",
    ]


def test_only_the_function_reads_the_artifact(rules):
    compile_rules(rules, environ={})
    artifact_path(rules).write_text("not json")  # anything but load(compiled=True) ignores it
    assert len(load(rules, environ={})) == 6


def test_the_app_starts_from_the_artifact(rules, monkeypatch, no_validation):
    compile_rules(rules, environ=dict(os.environ))
    no_validation()
    app = App(Settings(rules=str(rules), ledger="memory", runner="dry-run"))
    assert [r.name for r in app.rules] == [
        "csv-ingest",
        "paid-orders",
        "nightly-report",
        "csv-deleted",
        "landing-batch",
        "hourly-compaction",
    ]


# -- out of date: validate instead -------------------------------------------------------------


def _stale_reason(caplog, rules, environ) -> str:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="triggers.rules"):
        ruleset = load(rules, environ=environ, compiled=True)
    assert len(ruleset) == len(load(rules, environ=environ))  # validated, and fine
    (record,) = [r for r in caplog.records if r.name == "triggers.rules"]
    return record.getMessage()


def test_an_edited_rules_file_is_validated_again(rules, caplog):
    compile_rules(rules, environ=ENV)
    rules.write_text(rules.read_text().replace("task_count: 2", "task_count: 3"))
    message = _stale_reason(caplog, rules, ENV)
    assert (
        message
        == f"{rules}.compiled.json is out of date: {rules} changed; validating the rules instead"
    )
    rule = load(rules, environ=ENV, compiled=True).get("csv-ingest")
    assert rule.spec.overrides.task_count == 3


def test_a_changed_referenced_variable_is_validated_again(rules, caplog):
    compile_rules(rules, environ=ENV)
    assert "TRIGGERS_REGION changed" in _stale_reason(caplog, rules, {})
    assert "TRIGGERS_PROJECT changed" in _stale_reason(
        caplog, rules, {**ENV, "TRIGGERS_PROJECT": "p-123456"}
    )
    ruleset = load(rules, environ={**ENV, "TRIGGERS_PROJECT": "p-123456"}, compiled=True)
    assert (
        ruleset.get("csv-ingest").job == "projects/p-123456/locations/us-central1/jobs/csv-loader"
    )
    # a variable the rules do not reference changes nothing
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="triggers.rules"):
        load(rules, environ={**ENV, "UNRELATED": "x"}, compiled=True)
    assert not caplog.records


def test_added_or_removed_files_of_a_directory_are_validated_again(tmp_path, caplog):
    source = tmp_path / "rules"
    source.mkdir()
    (source / "a.yaml").write_text(ONE_RULE)
    compile_rules(source, environ={})
    (source / "b.yaml").write_text(ONE_RULE.replace("name: a", "name: b"))
    assert "the rules files differ (b.yaml)" in _stale_reason(caplog, source, {})
    (source / "a.yaml").unlink()
    assert "the rules files differ (a.yaml, b.yaml)" in _stale_reason(caplog, source, {})


def test_another_version_of_triggers_or_a_damaged_artifact_is_not_used(rules, caplog, monkeypatch):
    compile_rules(rules, environ={})
    from triggers.rules import compiled

    monkeypatch.setattr(compiled, "_compiler", "something else")
    assert "compiled by another version of triggers" in _stale_reason(caplog, rules, {})
    monkeypatch.undo()

    document = json.loads(artifact_path(rules).read_text())
    document["rules"][0]["options"] = "garbage"
    artifact_path(rules).write_text(json.dumps(document))
    assert "cannot be used" in _stale_reason(caplog, rules, {})
    artifact_path(rules).write_text("{")
    assert "cannot be used" in _stale_reason(caplog, rules, {})


def test_a_broken_rules_file_fails_even_with_an_old_artifact(rules):
    compile_rules(rules, environ={})
    text = rules.read_text().replace("task_count: 2", "task_count: 0")
    rules.write_text(text)
    line = next(
        i for i, text_line in enumerate(text.splitlines(), 1) if "task_count: 0" in text_line
    )
    with pytest.raises(RulesError) as info:
        load(rules, environ={}, compiled=True)
    assert [str(p) for p in info.value.problems] == [
        f"{rules}:{line}: rule 'csv-ingest': overrides.task_count: Input should be greater than or equal to 1"
    ]


def test_the_function_start_fails_on_a_broken_file_despite_an_old_artifact(rules):
    compile_rules(rules, environ={})
    text = rules.read_text().replace("job: csv-loader", "job: Not_A_Job", 1)
    rules.write_text(text)
    line = next(i for i, text_line in enumerate(text.splitlines(), 1) if "Not_A_Job" in text_line)
    env = {
        **os.environ,
        "TRIGGERS_RULES": str(rules),
        "TRIGGERS_LEDGER": "memory",
        "TRIGGERS_RUNNER": "dry-run",
    }
    env.pop("TRIGGERS_PROJECT", None)
    env.pop("TRIGGERS_REGION", None)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import functions_framework; "
            "functions_framework.create_app(target='handle_http', source='triggers/main.py')",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert (
        f"{rules}:{line}: rule 'csv-ingest': job id 'Not_A_Job' is not a valid Cloud Run job name"
        in result.stderr
    )
    assert "compiled.json is out of date" in result.stdout  # the start log says why it validated


# -- deferred templates and conditions ---------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "plain --flag",
        "{{ data.name | stem }}",
        "{{ data.name }}#{{ event.bucket }}",
        "{% if data.size > 10 %}big{% else %}small{% endif %}",
        "{# note #}x",
        "{{ data.missing }}",
    ],
)
def test_a_deferred_template_renders_as_the_compiled_one(source):
    document = {"data": {"name": "in/a.csv", "size": 20}, "bucket": "b"}
    compiled, deferred = compile_template(source), deferred_template(source)
    assert deferred.is_literal == compiled.is_literal == (source == "plain --flag")

    def outcome(template):
        try:
            return template.render(document)
        except Exception as exc:
            return type(exc).__name__

    assert outcome(deferred) == outcome(compiled)
    assert outcome(deferred) == outcome(deferred)  # and again, once compiled


@pytest.mark.parametrize(
    "source", ['data.name.startsWith("in/")', "data.size > 100", "data.nope > 1"]
)
def test_a_deferred_condition_evaluates_as_the_compiled_one(source):
    document = {"data": {"name": "in/a.csv", "size": 20}}
    assert deferred_condition(source).evaluate(document) == compile_condition(source).evaluate(
        document
    )


def test_unknown_filters_are_problems_of_the_rules_file():
    from triggers.rules import load_text

    with pytest.raises(RulesError) as info:
        load_text(ONE_RULE.replace("{{ data.message.json.id }}", "{{ data | nosuch }}"), environ={})
    assert [str(p) for p in info.value.problems] == [
        "<rules>:8: rule 'a': args[0]: template syntax error: No filter named 'nosuch'."
    ]


# -- the command ---------------------------------------------------------------------------------


def test_compile_command_writes_and_checks(rules, capsys, monkeypatch):
    for name in ("TRIGGERS_PROJECT", "TRIGGERS_REGION"):
        monkeypatch.delenv(name, raising=False)
    assert main(["compile", "--check", str(rules)]) == 1
    assert "missing" in capsys.readouterr().err
    assert main(["compile", str(rules)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{rules}: 6 rules OK, compiled to {rules}.compiled.json"
    )
    assert main(["compile", "--check", str(rules)]) == 0
    monkeypatch.setenv("TRIGGERS_REGION", "us-central1")
    assert main(["compile", "--check", str(rules)]) == 1
    assert "TRIGGERS_REGION changed" in capsys.readouterr().err


def test_compile_command_lists_every_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: A\n    on: pubsub\n    job: x\n")
    assert main(["compile", str(bad)]) == 1
    assert f"{bad}:2: rule 'A': name: rule name 'A'" in capsys.readouterr().err
    assert not artifact_path(bad).exists()
