"""What an instance's start imports (issue 15): building the settings imports no pydantic, and
nothing a start from compiled rules runs does but rules/rule.py's import of the schema; invalid
settings fail the start, every problem listed, as a broken rules file does. Each start is a fresh
interpreter: what a module imports only shows in a process that had not imported it yet."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from triggers.rules.compiled import compile_rules

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "config" / "events" / "storage-finalized.cloudevent-binary.json"

# functions-framework loading triggers/main.py by path (as an instance's start does), then one
# event through its Flask app; prints what was imported by the time the event was answered.
START_AND_ANSWER = f"""
import json, sys
import functions_framework
app = functions_framework.create_app(target="handle_http", source="triggers/main.py")
sample = json.load(open({str(SAMPLE)!r}))
answer = app.test_client().post("/", headers=sample["headers"], data=json.dumps(sample["body"]))
print(json.dumps({{"status": answer.status_code, "body": answer.get_json(),
                  "modules": sorted(m for m in sys.modules if m.startswith("pydantic"))}}))
"""


def function_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TRIGGERS_")}
    env.update({"TRIGGERS_LEDGER": "memory", "TRIGGERS_RUNNER": "dry-run", **settings})
    return env


def run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> dict:
    """A function started from compiled rules (as a deployment shipping the artifact) that
    answered one matching event."""
    rules = tmp_path_factory.mktemp("compiled") / "rules.yaml"
    shutil.copy(ROOT / "config" / "rules.yaml", rules)
    env = function_env(
        TRIGGERS_RULES=str(rules), TRIGGERS_TASK_TARGET_URL="http://127.0.0.1:9/_triggers/task"
    )
    compile_rules(rules, environ=env)
    done = run(START_AND_ANSWER, env)
    assert done.returncode == 0, done.stderr
    assert "validating the rules instead" not in done.stderr  # the artifact was used
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_building_the_settings_imports_no_pydantic():
    code = (
        "import sys; from triggers.function.settings import Settings; Settings();"
        " print(sorted(m for m in sys.modules if m.startswith('pydantic')))"
    )
    done = run(code, function_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_start_from_compiled_rules_answers_without_pydantic_settings(started):
    assert started["status"] == 200
    assert [r["outcome"] for r in started["body"]["rules"]] == ["launched"]
    assert not [m for m in started["modules"] if m.startswith("pydantic_settings")]


def test_a_start_from_compiled_rules_answers_without_pydantic(started):
    """Nothing a start from compiled rules runs imports pydantic: the rules package, the
    artifact reader (rules/_sources.py, rules/_flow_json.py, the fingerprint's pydantic version
    read from its file), rules/rule.py (the schema for type checking only), the app and the
    settings. pydantic was ~25% of the instructions of a start and its first event."""
    assert started["modules"] == []


def test_the_artifact_fingerprint_reads_pydantics_version_without_importing_it():
    import pydantic

    from triggers.rules.compiled import _pydantic_version

    assert _pydantic_version() == pydantic.VERSION


def test_invalid_settings_fail_the_start_with_every_problem(tmp_path):
    # GIVEN two invalid settings (and valid rules)
    env = function_env(
        TRIGGERS_RULES=str(ROOT / "config" / "rules.yaml"),
        TRIGGERS_LEASE_SECONDS="5",
        TRIGGERS_LEDGER="postgres",
    )
    # WHEN functions-framework loads the function, as it does when an instance starts
    done = run(
        "import functions_framework; "
        "functions_framework.create_app(target='handle_http', source='triggers/main.py')",
        env,
    )
    # THEN the start fails with one error that names both variables, values and expectations
    assert done.returncode != 0
    assert (
        "triggers.errors.SettingsError: 2 problems in the settings:\n"
        "  TRIGGERS_LEDGER='postgres': must be one of 'firestore', 'sqlite', 'memory'\n"
        "  TRIGGERS_LEASE_SECONDS='5': must be at least 10\n"
    ) in done.stderr
