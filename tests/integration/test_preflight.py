"""`triggers check --live` against the project's Cloud Run Jobs emulator, through the real
google-cloud-run client (the runner's): every rule's jobs.run is sent with validateOnly, and a
missing job, a refused override, a caller without permission and an unreachable API are each
reported on the rule they concern, with the request sent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PROJECT, free_port, write_probe_jobs_file
from triggers.cli import main
from triggers.ops.preflight import preflight
from triggers.plan import RUN_KEY_ENV
from triggers.rules import load_text
from triggers.runners.cloudrun import CloudRunRunner

pytestmark = pytest.mark.integration

REGION = "europe-west1"
JOBS = ["csv-loader", "orders-processor", "nightly-report"]

# One rule per source, two with an example, the others synthesized; every job exists.
GOOD_RULES = f"""\
project: {PROJECT}
region: {REGION}
rules:
  - name: csv-ingest
    on: storage.finalized
    bucket: raw-data
    match:
      data:
        name: [{{wildcard: "incoming/*.csv"}}]
        size: [{{numeric: [">", 0]}}]
    job: csv-loader
    overrides:
      args: ["--input=gs://{{{{ data.bucket }}}}/{{{{ data.name }}}}"]
      env: {{GENERATION: "{{{{ data.generation }}}}"}}
      task_count: 2
      timeout: 10m
  - name: paid-orders
    on: pubsub
    topic: orders
    match:
      data:
        message:
          attributes: {{kind: [order]}}
          json: {{status: [paid]}}
    job: orders-processor
    overrides:
      args: ["--order={{{{ data.message.json.order_id }}}}"]
    dedup:
      key: "{{{{ data.message.json.order_id }}}}"
  - name: pushed-orders
    on: pubsub
    subscription: orders-push
    job: orders-processor
    example:
      message: {{data: "eyJpZCI6IDd9", messageId: "42", attributes: {{kind: order}}}}
      subscription: projects/{PROJECT}/subscriptions/orders-push
    overrides:
      env: {{ORDER_ID: "{{{{ data.message.json.id }}}}"}}
  - name: nightly
    on: scheduler
    schedule: "0 2 * * *"
    job: nightly-report
    example:
      headers:
        X-CloudScheduler: "true"
        X-CloudScheduler-JobName: projects/{PROJECT}/locations/{REGION}/jobs/nightly
        X-CloudScheduler-ScheduleTime: "2026-11-21T02:00:00Z"
      body: '{{"report": "daily"}}'
    overrides:
      env: {{REPORT: "{{{{ data.json.report }}}}"}}
  - name: paused
    enabled: false
    on: pubsub
    topic: nowhere
    job: no-such-job
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from triggers.emulators.server import EmulatorServer

    directory = tmp_path_factory.mktemp("preflight")
    jobs_file = write_probe_jobs_file(directory, JOBS)
    with EmulatorServer(jobs_file, log_dir=directory / "logs", kill_grace=0.5) as server:
        yield server


@pytest.fixture
def emu(emulator: Any) -> Iterator[Any]:
    emulator.reset()
    yield emulator
    emulator.reset()


def rules_file(tmp_path: Path, text: str) -> str:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def check(capsys, *argv: str) -> tuple[int, dict[str, Any]]:
    status = main(["check", *argv, "--json"])
    return status, json.loads(capsys.readouterr().out)


def by_rule(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["rule"]: entry for entry in report["rules"]}


def test_every_rule_is_validated_and_nothing_is_launched(emu, tmp_path, capsys):
    status, report = check(
        capsys, rules_file(tmp_path, GOOD_RULES), "--live", "--endpoint", emu.url
    )
    assert status == 0, report
    assert report["ok"] is True and report["live"] is True
    rules = by_rule(report)
    assert {name: r["status"] for name, r in rules.items()} == {
        "csv-ingest": "ok",
        "paid-orders": "ok",
        "pushed-orders": "ok",
        "nightly": "ok",
        "paused": "skipped",
    }
    assert rules["pushed-orders"]["sample"] == rules["nightly"]["sample"] == "example"
    assert rules["csv-ingest"]["sample"] == rules["paid-orders"]["sample"] == "synthesized"
    assert all("sample_mismatch" not in r for r in rules.values())
    # validateOnly: the emulator saw the calls and started nothing
    assert emu.store.records() == []


def test_the_request_reported_is_the_one_the_function_would_send(emu, tmp_path, capsys):
    _, report = check(capsys, rules_file(tmp_path, GOOD_RULES), "--live", "--endpoint", emu.url)
    rules = by_rule(report)
    ingest = rules["csv-ingest"]["request"]
    assert ingest["name"] == f"projects/{PROJECT}/locations/{REGION}/jobs/csv-loader"
    assert ingest["validateOnly"] is True
    overrides = ingest["overrides"]
    assert overrides["taskCount"] == 2 and overrides["timeout"] == "600s"
    (container,) = overrides["containerOverrides"]
    # the synthesized object satisfies the wildcard and feeds the templates
    assert container["args"] == ["--input=gs://raw-data/incoming/sample.csv"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert set(env) == {"GENERATION", RUN_KEY_ENV}
    # the example's values reach the overrides
    pushed = rules["pushed-orders"]["request"]["overrides"]["containerOverrides"][0]
    assert {e["name"]: e["value"] for e in pushed["env"]}["ORDER_ID"] == "7"
    nightly = rules["nightly"]["request"]["overrides"]["containerOverrides"][0]
    assert {e["name"]: e["value"] for e in nightly["env"]}["REPORT"] == "daily"


MISSING_AND_REFUSED = f"""\
project: {PROJECT}
region: {REGION}
rules:
  - name: fine
    on: pubsub
    topic: orders
    job: orders-processor
  - name: typo-in-job
    on: pubsub
    topic: orders
    job: orders-procesor
  - name: other-region
    on: pubsub
    topic: orders
    job: orders-processor
    region: us-central1
  - name: wrong-container
    on: scheduler
    schedule: "*/5 * * * *"
    job: nightly-report
    overrides:
      container: worker
      args: [--fast]
"""


def test_a_missing_job_and_refused_overrides_fail_their_rules_only(emu, tmp_path, capsys):
    path = rules_file(tmp_path, MISSING_AND_REFUSED)
    status, report = check(capsys, path, "--live", "--endpoint", emu.url)
    assert status == 1
    assert report["ok"] is False
    assert report["counts"] == {"ok": 1, "planned": 0, "failed": 3, "skipped": 0}
    rules = by_rule(report)
    assert rules["fine"]["status"] == "ok"

    for name, job in (("typo-in-job", "orders-procesor"), ("other-region", "orders-processor")):
        entry = rules[name]
        assert (entry["status"], entry["problem"], entry["http_status"]) == (
            "failed",
            "job_not_found",
            404,
        ), entry
        assert entry["request"]["name"].endswith(f"/jobs/{job}")
        assert entry["message"].startswith("404 NotFound: ")
        assert "http://" not in entry["message"]  # the request line is not repeated
    assert "/locations/us-central1/" in rules["other-region"]["request"]["name"]

    # (a reserved env name such as X_GOOGLE_TOKEN no longer gets this far: the loader refuses it)
    container_refused = rules["wrong-container"]
    assert container_refused["problem"] == "override_refused"
    assert "container 'worker' does not exist" in container_refused["message"]
    assert container_refused["request"]["overrides"]["containerOverrides"][0]["name"] == "worker"
    assert emu.store.records() == []


def test_a_caller_without_permission_is_told_which_one_it_lacks(emu, tmp_path, capsys):
    # What Cloud Run answers a caller without run.jobs.runWithOverrides on the job.
    emu.faults.fail(
        "RunJob",
        403,
        times=None,
        match="/jobs/nightly-report",
        message="Permission 'run.jobs.runWithOverrides' denied on resource"
        f" 'projects/{PROJECT}/locations/{REGION}/jobs/nightly-report' (or it may not exist).",
    )
    status, report = check(
        capsys, rules_file(tmp_path, GOOD_RULES), "--live", "--endpoint", emu.url
    )
    assert status == 1
    rules = by_rule(report)
    denied = rules["nightly"]
    assert (denied["status"], denied["problem"], denied["http_status"]) == (
        "failed",
        "permission_denied",
        403,
    )
    assert "Permission 'run.jobs.runWithOverrides' denied" in denied["message"]
    assert "roles/run.jobsExecutorWithOverrides" in denied["message"]
    assert [r["status"] for n, r in rules.items() if n not in ("nightly", "paused")] == ["ok"] * 3


def test_the_text_report_names_each_failure_and_its_request(emu, tmp_path, capsys):
    path = rules_file(tmp_path, MISSING_AND_REFUSED)
    status = main(["check", path, "--live", "--endpoint", emu.url, "--rule", "typo-in-job"])
    out = capsys.readouterr().out
    assert status == 1
    lines = out.splitlines()
    assert lines[0] == f"{path}: 1 rule (validateOnly at {emu.url})"
    assert lines[1].split() == [
        "FAILED",
        "typo-in-job",
        f"projects/{PROJECT}/locations/{REGION}/jobs/orders-procesor",
        "[synthesized",
        "event]",
    ]
    assert lines[2].strip().startswith("job_not_found: 404 NotFound:")
    assert lines[3].strip().startswith('request: {"name":"projects/')
    assert '"validateOnly":true' in lines[3]
    assert lines[-1] == "FAILED: 1 failed"


def test_the_endpoint_comes_from_the_environment_like_the_function(
    emu, tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv("TRIGGERS_CLOUD_RUN_ENDPOINT", emu.url)
    status, report = check(capsys, rules_file(tmp_path, GOOD_RULES), "--live")
    assert status == 0 and report["endpoint"] == emu.url


def test_an_unreachable_api_fails_every_rule(tmp_path):
    rules = load_text(GOOD_RULES, environ={})
    nobody = f"http://127.0.0.1:{free_port()}"
    report = preflight(rules, CloudRunRunner(endpoint=nobody, timeout=5.0), live=True)
    assert not report.ok
    failed = [c for c in report.checks if c.status == "failed"]
    assert len(failed) == 4 and {c.problem for c in failed} == {"unreachable"}
