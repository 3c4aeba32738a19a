"""benchmarks/flow_burst.py at a tiny size, so that the benchmark cannot rot: it starts the
`triggers serve` stack (function, SQLite ledger, the Cloud Run and Cloud Tasks emulators) on
loopback for each configuration, as a user runs it.

A quota far below the burst (20/min for 60 events) makes every configuration meet 429s, so the
paths the benchmark measures are all taken: Pub/Sub-style redelivery (inline), task retries
(rate), one batch execution (batch). Its figures are not asserted, only its counts.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

EVENTS = 60


def test_the_burst_benchmark_runs_every_configuration_and_checks_exactly_once(tmp_path):
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "flow_burst.py"),
        "--events",
        str(EVENTS),
        "--scale",
        "60",
        "--quota",
        "20/min",
        "--timeout",
        "120",
        "--json",
    ]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| executions started" in done.stdout  # the table
    assert "[inline] t=" in done.stderr or "inline: done" in done.stderr  # progress
    results = {r["config"]: r for r in json.loads(done.stdout[done.stdout.index("[") :])}
    assert set(results) == {"inline", "rate", "batch"}
    for result in results.values():
        assert result["drained"] and result["exactly_once"], result
        assert result["launched_once"] == EVENTS and result["launched_twice"] == 0
        assert result["jobs_run_calls"] == result["runs_accepted"] + result["http_429"]

    inline, rate, batch = results["inline"], results["rate"], results["batch"]
    # Inline: one execution per event; the 429s went back to the sender, which redelivered.
    assert inline["executions"] == EVENTS
    assert inline["http_429"] > 0
    assert inline["deliveries"] == EVENTS + inline["deliveries_refused"]
    # Rate: every event acked once (queued); the 429s were retries of tasks, not of events.
    assert rate["executions"] == EVENTS
    assert rate["deliveries"] == EVENTS and rate["deliveries_refused"] == 0
    assert rate["task_attempts"] >= EVENTS + rate["http_429"]
    # Batch: 60 members fit one batch of at most 500: one execution, one task (per_task 100).
    assert batch["executions"] == 1 and batch["tasks_run"] == 1
    assert batch["http_429"] == 0 and batch["deliveries_refused"] == 0
