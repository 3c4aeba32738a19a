"""The `triggers` command line, run the way users run it."""

from __future__ import annotations

import glob
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from triggers.cli import main
from triggers.rules.schema import json_schema

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted(glob.glob(str(ROOT / "config" / "events" / "*.json")))
RULES = str(ROOT / "config" / "rules.yaml")


@pytest.fixture(autouse=True)
def _no_env_overrides(monkeypatch):
    monkeypatch.delenv("TRIGGERS_PROJECT", raising=False)
    monkeypatch.delenv("TRIGGERS_REGION", raising=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_sample_config(capsys):
    code, out, _ = run(capsys, "validate", RULES)
    assert code == 0
    assert out.splitlines() == [
        f"{RULES}: 6 rules OK (pubsub 1, scheduler 2, storage 3)",
        "flow control (2 of the rules launch through Cloud Tasks):",
        "  landing-batch:",
        "    limits: queue triggers-landing-batch, no rate limit",
        "    batch: window 2m, up to 1000 events, 2 per task, key '{{ data.bucket }}',"
        " fields data.bucket, data.name, data.size",
        "  hourly-compaction:",
        "    limits: queue triggers-hourly-compaction, no rate limit,"
        " max_running 1 (when busy: skip)",
    ]


def test_validate_reports_every_problem_and_fails(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: A\n    on: pubsub\n    job: x\n  - name: b\n    on: nope\n")
    code, _, err = run(capsys, "validate", str(bad))
    assert code == 1
    assert err.splitlines()[0] == "4 problems in the rules:"
    assert f"{bad}:4: rule 'A': job 'x' is a short name but no project or region is set" in err
    assert f"{bad}:2: rule 'A': name: rule name 'A' must start with a lowercase letter" in err
    assert f"{bad}:6: rule 'b': on: unknown event source 'nope'" in err
    assert f"{bad}:5: rule 'b': job: required field is missing" in err
    code, out, _ = run(capsys, "validate", "--json", str(bad))
    assert code == 1 and len(json.loads(out)["problems"]) == 4


def test_plan_shows_verdicts_and_exact_request_for_every_sample(capsys):
    assert len(SAMPLES) >= 10
    code, out, _ = run(capsys, "plan", "--config", RULES, *SAMPLES)
    assert code == 0
    assert "rejected" not in out
    assert "+ csv-ingest: run projects/demo-project/locations/europe-west1/jobs/csv-loader" in out
    assert "dedup key: raw-data/incoming/2026/11/21/orders.csv#1763683200000000" in out
    assert (
        "+ paid-orders: run projects/demo-project/locations/europe-west1/jobs/orders-processor"
        in out
    )
    assert '"--order=A-1001"' in out
    assert "+ nightly-report: run" in out and '"--date=2026-11-21"' in out


def test_plan_json_is_machine_readable_and_agrees_across_input_forms(capsys):
    storage = [s for s in SAMPLES if "storage-finalized" in s]
    assert len(storage) == 3
    code, out, _ = run(capsys, "plan", "--json", "--config", RULES, *storage)
    assert code == 0
    documents = [json.loads(chunk) for chunk in _json_chunks(out)]
    requests = [
        next(v for v in d["verdicts"] if v["rule"] == "csv-ingest")["request"] for d in documents
    ]
    # Eventarc binary, structured and the GCS notification plan the same run.
    assert all(r["overrides"] == requests[0]["overrides"] for r in requests[1:])
    assert requests[0]["overrides"]["containerOverrides"][0]["args"] == [
        "--input=gs://raw-data/incoming/2026/11/21/orders.csv",
        "--table=orders",
    ]


def test_plan_json_names_the_job_and_the_dedup_identity_of_each_run(capsys):
    # Tools read these keys to find a run in the ledger (`triggers show LEDGER_KEY`) and in
    # Cloud Run (TRIGGERS_RUN_KEY): their names and values are the contract, not just present.
    sample = next(s for s in SAMPLES if s.endswith("storage-finalized.cloudevent-binary.json"))
    code, out, _ = run(capsys, "plan", "--json", "--config", RULES, sample)
    assert code == 0
    verdicts = {v["rule"]: v for v in json.loads(out)["verdicts"]}
    planned = verdicts["csv-ingest"]
    dedup_key = "raw-data/incoming/2026/11/21/orders.csv#1763683200000000"
    assert set(planned) == {
        "rule",
        "matched",
        "system",
        "job",
        "dedup_key",
        "ledger_key",
        "event",
        "request",
        "flow",  # None: launched inline (a rule with limits: or batch: says how, below)
    }
    assert planned["matched"] is True
    assert planned["job"] == "projects/demo-project/locations/europe-west1/jobs/csv-loader"
    assert planned["dedup_key"] == dedup_key
    assert (
        planned["ledger_key"] == hashlib.sha256(f"csv-ingest\x00{dedup_key}".encode()).hexdigest()
    )
    assert planned["event"]["id"] == "9876543210123456"
    assert planned["request"]["name"] == planned["job"]
    env = planned["request"]["overrides"]["containerOverrides"][0]["env"]
    assert {"name": "TRIGGERS_RUN_KEY", "value": planned["ledger_key"]} in env
    # A rule that did not match plans nothing: no job and no keys, only why.
    missed = verdicts["paid-orders"]
    assert missed["matched"] is False and "is not google.cloud.pubsub" in missed["reason"]
    assert not {"job", "dedup_key", "ledger_key", "request"} & set(missed)


def _json_chunks(text: str):
    decoder = json.JSONDecoder()
    index = 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        value, index = decoder.raw_decode(text, index)
        yield json.dumps(value)


def test_plan_reports_undecodable_events_as_rejected(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"headers": {"ce-specversion": "1.0"}, "body": "x"}')
    code, out, _ = run(capsys, "plan", "--config", RULES, str(bad))
    assert code == 0
    assert "rejected (" in out
    code, _, err = run(capsys, "plan", "--config", RULES, str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in err


def test_test_pattern_match_no_match_and_invalid(tmp_path, capsys):
    pattern = tmp_path / "p.json"
    event = tmp_path / "e.json"
    pattern.write_text('{"data": {"size": [{"numeric": [">", 10]}]}}')
    event.write_text('{"data": {"size": 11}}')
    assert run(capsys, "test-pattern", str(pattern), str(event))[:2] == (0, "match\n")
    event.write_text('{"data": {"size": 9}}')
    code, out, _ = run(capsys, "test-pattern", str(pattern), str(event))
    assert code == 1 and out.startswith("no match: data.size")
    pattern.write_text('{"data": {"size": 10}}')
    code, _, err = run(capsys, "test-pattern", str(pattern), str(event))
    assert code == 2 and "invalid pattern" in err


def test_test_pattern_with_yaml_pattern_and_decoded_request(tmp_path, capsys):
    pattern = tmp_path / "p.yaml"
    pattern.write_text("data:\n  bucket: [raw-data]\n")
    sample = next(s for s in SAMPLES if "storage-finalized.notification" in s)
    assert run(capsys, "test-pattern", "--decode", str(pattern), sample)[:2] == (0, "match\n")


def test_schema_is_published_in_docs(capsys):
    code, out, _ = run(capsys, "schema")
    assert code == 0
    assert json.loads(out) == json_schema()
    published = json.loads((ROOT / "docs" / "rules.schema.json").read_text())
    assert published == json_schema(), "run: triggers schema > docs/rules.schema.json"
    assert {"project", "region", "rules"} <= set(published["properties"])


def test_console_entry_point_runs_as_a_process():
    result = subprocess.run(
        [sys.executable, "-m", "triggers.cli", "validate", RULES],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "6 rules OK" in result.stdout


def test_emulator_subcommand_hands_its_options_to_the_emulator(capsys):
    with pytest.raises(SystemExit) as info:
        main(["emulator", "--help"])
    assert info.value.code == 0
    assert "--jobs" in capsys.readouterr().out
