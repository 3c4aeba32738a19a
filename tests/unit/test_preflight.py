"""`triggers check` without --live (each rule's request planned, nothing sent) and how a
refused validateOnly call is classified. The live check is tests/integration/test_preflight.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triggers.cli import main
from triggers.errors import PermanentRunError, RetryableRunError
from triggers.ops.preflight import classify, preflight
from triggers.rules import load_text

ROOT = Path(__file__).resolve().parents[2]
RULES = str(ROOT / "config" / "rules.yaml")


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch):
    for name in ("TRIGGERS_PROJECT", "TRIGGERS_REGION", "TRIGGERS_CLOUD_RUN_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def test_offline_check_plans_every_sample_rule(capsys):
    status = main(["check", RULES, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0
    assert report["live"] is False and report["ok"] is True
    assert [r["status"] for r in report["rules"]] == ["planned"] * 6
    for entry in report["rules"]:
        assert entry["request"]["validateOnly"] is True
        assert entry["request"]["name"] == entry["job"]
        assert "sample_mismatch" not in entry, entry


def test_offline_check_text_shows_each_request(capsys):
    status = main(["check", RULES])
    out = capsys.readouterr().out
    assert status == 0
    assert out.splitlines()[0] == f"{RULES}: 6 rules (planned only, not sent)"
    assert out.count("request: ") == 6
    assert out.splitlines()[-1] == "OK: 6 planned"


def test_a_rule_whose_sample_cannot_be_planned_fails_with_a_hint():
    rules = load_text(
        """\
project: p-123456
region: europe-west1
rules:
  - name: needs-a-number
    on: pubsub
    job: j
    overrides: {args: ["{{ data.message.json.count + 1 }}"]}
""",
        environ={},
    )
    (check,) = preflight(rules, None, live=False).checks
    assert (check.status, check.problem) == ("failed", "sample")
    assert "give the rule an `example:`" in check.message
    assert check.request is None


def test_unknown_rule_names_are_a_usage_error(capsys):
    assert main(["check", RULES, "--rule", "nope"]) == 2
    assert "no rule named 'nope'" in capsys.readouterr().err


def test_invalid_rules_fail_before_anything_is_sent(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    on: pubsub\n    job: j\n", encoding="utf-8")
    assert main(["check", str(bad), "--live", "--endpoint", "http://127.0.0.1:9"]) == 1
    assert "short name but no project or region" in capsys.readouterr().err


JOB = "projects/p/locations/r/jobs/j"


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        (PermanentRunError("x", status=404), "job_not_found"),
        (PermanentRunError("x", status=403), "permission_denied"),
        (PermanentRunError("x", status=400), "override_refused"),
        (RetryableRunError("x", status=401), "not_authenticated"),
        (RetryableRunError("x", status=429), "api_error"),
        (RetryableRunError("connection refused"), "unreachable"),
    ],
)
def test_classify(error, problem):
    assert classify(error, JOB)[0] == problem


def test_permission_denied_names_the_permission_and_a_role_that_holds_it():
    message = classify(PermanentRunError("denied", status=403), JOB)[1]
    assert "run.jobs.runWithOverrides" in message and JOB in message
    assert "roles/run.jobsExecutorWithOverrides" in message


def test_missing_credentials_are_an_authentication_problem_not_an_unreachable_api():
    from google.auth.exceptions import DefaultCredentialsError

    error = RetryableRunError("jobs.run j: DefaultCredentialsError: not found")
    error.__cause__ = DefaultCredentialsError("Your default credentials were not found.")
    problem, message = classify(error, JOB)
    assert problem == "not_authenticated"
    assert "gcloud auth application-default login" in message
