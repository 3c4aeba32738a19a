"""Starting and stopping the emulator: in-process, as a process (CLI), with the shipped jobs file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.cloud import run_v2

from triggers.emulators.probe import PROBE_JOB, jobs_client, probe_records, wait, write_probe_jobs
from triggers.emulators.server import EmulatorServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "config" / "jobs.yaml"
SHIPPED_PARENT = "projects/demo-project/locations/europe-west1"


def test_the_shipped_jobs_run_and_print_what_they_received(tmp_path):
    with EmulatorServer(SHIPPED, log_dir=tmp_path) as emu:
        jobs = jobs_client(emu.url)
        assert sorted(j.name.rsplit("/", 1)[-1] for j in jobs.list_jobs(parent=SHIPPED_PARENT)) == [
            "compaction",  # config/rules.yaml hourly-compaction (max_running)
            "csv-loader",
            "landing-loader",  # config/rules.yaml landing-batch (batch:)
            "nightly-report",
            "order-export",  # config/systems/cloudrun-v1.yaml
            "orders-processor",
        ]
        overrides = run_v2.RunJobRequest.Overrides(
            container_overrides=[
                run_v2.RunJobRequest.Overrides.ContainerOverride(
                    args=["--input=gs://raw-data/incoming/a.csv"],
                    env=[run_v2.EnvVar(name="TRIGGERS_RUN_KEY", value="csv-ingest/abc")],
                )
            ]
        )
        loader = wait(
            jobs.run_job(
                request={"name": f"{SHIPPED_PARENT}/jobs/csv-loader", "overrides": overrides}
            )
        )
        report = wait(jobs.run_job(name=f"{SHIPPED_PARENT}/jobs/nightly-report"))
        orders = wait(jobs.run_job(name=f"{SHIPPED_PARENT}/jobs/orders-processor"))

    assert (
        loader.succeeded_count == 1 and orders.succeeded_count == 1 and report.succeeded_count == 2
    )
    text = (tmp_path / loader.name.rsplit("/", 1)[-1] / "task0-attempt0.log").read_text()
    assert 'args: ["--input=gs://raw-data/incoming/a.csv"]' in text
    assert "env: TRIGGERS_RUN_KEY=csv-ingest/abc" in text
    assert "env: CLOUD_RUN_JOB=csv-loader" in text
    assert "env: TRIGGERS_JOB_KIND=loader" in text
    report_dir = tmp_path / report.name.rsplit("/", 1)[-1]
    assert "task 1/2" in (report_dir / "task1-attempt0.log").read_text()


def test_stop_kills_running_tasks(tmp_path):
    emu = EmulatorServer(
        write_probe_jobs(tmp_path), log_dir=tmp_path / "logs", kill_grace=0.5
    ).start()
    try:
        jobs = jobs_client(emu.url)
        overrides = run_v2.RunJobRequest.Overrides(
            container_overrides=[
                run_v2.RunJobRequest.Overrides.ContainerOverride(
                    env=[run_v2.EnvVar(name="PROBE_SLEEP", value="30")]
                )
            ]
        )
        op = jobs.run_job(request={"name": PROBE_JOB, "overrides": overrides})
        deadline = time.monotonic() + 10
        while (
            not probe_records(tmp_path, op.metadata.name, ".started")
            and time.monotonic() < deadline
        ):
            time.sleep(0.05)
        [started] = probe_records(tmp_path, op.metadata.name, ".started")
    finally:
        t0 = time.monotonic()
        emu.stop()
    assert time.monotonic() - t0 < 5
    with pytest.raises(ProcessLookupError):
        os.kill(started["pid"], 0)
    assert emu.store.execution_record(op.metadata.name).state == "cancelled"


def test_cli_serves_until_sigterm(tmp_path):
    jobs_file = write_probe_jobs(tmp_path)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "triggers.emulators",
            "--jobs",
            str(jobs_file),
            "--api",
            "cloudrun",
            "--port",
            "0",
            "--log-dir",
            str(tmp_path / "logs"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("Cloud Run Jobs emulator: http://127.0.0.1:"), line
        url = line.split(": ", 1)[1].strip()
        execution = wait(jobs_client(url).run_job(name=PROBE_JOB))
        assert execution.succeeded_count == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read()
    assert "RunJob -> 200" in err  # one line per request
    assert f"{execution.name}: succeeded" in err  # one line per execution state change


def test_cli_rejects_an_invalid_jobs_file(tmp_path):
    bad = tmp_path / "jobs.yaml"
    bad.write_text(
        "project: demo-project\nregion: europe-west1\njobs:\n  - name: Bad_Name\n    command: [x]\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "triggers.emulators", "--jobs", str(bad), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert f"{bad}:4: job 'Bad_Name': name:" in result.stderr


def test_an_unknown_api_is_refused_by_the_server_and_the_cli(tmp_path):
    jobs_file = write_probe_jobs(tmp_path)
    with pytest.raises(ValueError, match=r"unknown emulated API\(s\) \['tasks'\]; choose from"):
        EmulatorServer(jobs_file, apis=("tasks",))
    result = subprocess.run(
        [sys.executable, "-m", "triggers.emulators", "--jobs", str(jobs_file), "--api", "tasks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "invalid choice: 'tasks'" in result.stderr


def test_the_shell_answers_control_routes_for_every_service(tmp_path):
    import json
    import urllib.request

    with EmulatorServer(write_probe_jobs(tmp_path), log_dir=tmp_path / "logs") as emu:
        with urllib.request.urlopen(f"{emu.url}/_emulator/health", timeout=5) as answer:
            health = json.load(answer)
        assert health["status"] == "ok" and health["jobs"] >= 1  # the Cloud Run service's fact
        with urllib.request.urlopen(f"{emu.url}/_emulator/jobs", timeout=5) as answer:
            names = [job["name"] for job in json.load(answer)["jobs"]]
        assert PROBE_JOB in names
        try:
            urllib.request.urlopen(f"{emu.url}/v9/nothing", timeout=5)
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
            assert json.load(exc)["error"]["status"] == "NOT_FOUND"
        else:
            raise AssertionError("an unrouted path must be 404")
