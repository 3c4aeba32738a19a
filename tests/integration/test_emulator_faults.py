"""Fault injection in the emulator, seen through the real google-cloud-run client."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest
import requests
from google.api_core import exceptions
from google.cloud import run_v2

from triggers.emulators.probe import (
    PROBE_JOB,
    wait,
)

pytestmark = pytest.mark.integration


def run_with_key(jobs, key: str, **kwargs):
    overrides = run_v2.RunJobRequest.Overrides(
        container_overrides=[
            run_v2.RunJobRequest.Overrides.ContainerOverride(
                env=[run_v2.EnvVar(name="TRIGGERS_RUN_KEY", value=key)]
            )
        ]
    )
    return jobs.run_job(request=run_v2.RunJobRequest(name=PROBE_JOB, overrides=overrides), **kwargs)


def executions_with_key(executions, key: str) -> list[run_v2.Execution]:
    return [
        e
        for e in executions.list_executions(parent=PROBE_JOB)
        if any(
            v.name == "TRIGGERS_RUN_KEY" and v.value == key for v in e.template.containers[0].env
        )
    ]


def post_json(url: str, body) -> dict:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read() or b"{}")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, exceptions.TooManyRequests),
        (503, exceptions.ServiceUnavailable),
        (500, exceptions.InternalServerError),
        (403, exceptions.Forbidden),
    ],
)
def test_injected_error_fails_before_anything_runs(emu, jobs, status, error):
    emu.faults.fail("RunJob", status)
    with pytest.raises(error) as info:
        run_with_key(jobs, "k")
    assert info.value.code == status
    assert emu.store.records() == []
    # only the next call was affected
    assert wait(run_with_key(jobs, "k")).succeeded_count == 1


def test_quota_error_carries_error_info(emu, jobs):
    emu.faults.fail("RunJob", 429)
    with pytest.raises(exceptions.TooManyRequests) as info:
        run_with_key(jobs, "k")
    assert info.value.reason == "RATE_LIMIT_EXCEEDED"


def test_fail_n_times_then_succeed(emu, jobs):
    emu.faults.fail("RunJob", 503, times=2)
    for _ in range(2):
        with pytest.raises(exceptions.ServiceUnavailable):
            run_with_key(jobs, "k")
    assert wait(run_with_key(jobs, "k")).succeeded_count == 1
    assert len(emu.store.records()) == 1


def test_faults_only_hit_their_method(emu, jobs):
    emu.faults.fail("GetJob", 503)
    wait(run_with_key(jobs, "k"))  # RunJob and GetOperation unaffected
    with pytest.raises(exceptions.ServiceUnavailable):
        jobs.get_job(name=PROBE_JOB)
    jobs.get_job(name=PROBE_JOB)


def test_dropped_response_after_the_run_is_ambiguous_but_findable(emu, jobs, executions):
    emu.faults.drop_response("RunJob", mode="close")
    with pytest.raises(requests.exceptions.ConnectionError):
        run_with_key(jobs, "dropped-key")
    # the run happened: exactly one execution carries the key, and it completes
    [found] = executions_with_key(executions, "dropped-key")
    assert emu.store.wait_execution(found.name).state == "succeeded"
    assert len(emu.store.records()) == 1
    # the connection pool recovers: the next call works
    assert wait(run_with_key(jobs, "other")).succeeded_count == 1


def test_dropped_response_as_a_503(emu, jobs, executions):
    emu.faults.drop_response("RunJob", mode="status", status=503)
    with pytest.raises(exceptions.ServiceUnavailable):
        run_with_key(jobs, "k503")
    assert len(executions_with_key(executions, "k503")) == 1


def test_dropped_response_as_a_client_timeout(emu, jobs, executions):
    emu.faults.drop_response("RunJob", mode="timeout", seconds=3)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):
        run_with_key(jobs, "slow", timeout=0.5)
    assert time.monotonic() - started < 2.5
    assert len(executions_with_key(executions, "slow")) == 1


def test_latency_is_added(emu, jobs):
    emu.faults.add_latency("GetJob", 0.4, times=1)
    started = time.monotonic()
    jobs.get_job(name=PROBE_JOB)
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    jobs.get_job(name=PROBE_JOB)
    assert time.monotonic() - started < 0.4


def test_faults_over_http(emu, jobs):
    fault = post_json(
        f"{emu.url}/_emulator/faults",
        {"kind": "error", "method": "RunJob", "status": 429, "times": 1},
    )
    assert fault["id"] and fault["status"] == 429
    listed = json.loads(urllib.request.urlopen(f"{emu.url}/_emulator/faults", timeout=5).read())
    assert [f["id"] for f in listed["faults"]] == [fault["id"]]
    with pytest.raises(exceptions.TooManyRequests):
        run_with_key(jobs, "k")

    post_json(f"{emu.url}/_emulator/faults", {"kind": "drop", "method": "RunJob", "mode": "close"})
    with pytest.raises(requests.exceptions.ConnectionError):
        run_with_key(jobs, "k")

    with pytest.raises(urllib.error.HTTPError) as info:
        post_json(f"{emu.url}/_emulator/faults", {"kind": "explode"})
    assert info.value.code == 400

    post_json(
        f"{emu.url}/_emulator/faults",
        {"kind": "error", "method": "*", "status": 500, "times": None},
    )
    req = urllib.request.Request(f"{emu.url}/_emulator/faults", method="DELETE")
    urllib.request.urlopen(req, timeout=5)
    jobs.get_job(name=PROBE_JOB)  # cleared


def test_control_endpoints_show_and_reset_everything(emu, jobs):
    execution = wait(run_with_key(jobs, "seen"))
    dump = json.loads(urllib.request.urlopen(f"{emu.url}/_emulator/executions", timeout=5).read())
    [item] = dump["executions"]
    assert item["name"] == execution.name
    assert item["emulator"]["state"] == "succeeded"
    [attempt] = item["emulator"]["attempts"]
    assert (
        attempt["exitCode"] == 0
        and attempt["pid"]
        and attempt["logPath"].endswith("task0-attempt0.log")
    )

    post_json(f"{emu.url}/_emulator/reset", {})
    dump = json.loads(urllib.request.urlopen(f"{emu.url}/_emulator/executions", timeout=5).read())
    assert dump["executions"] == []
    health = json.loads(urllib.request.urlopen(f"{emu.url}/_emulator/health", timeout=5).read())
    assert health["status"] == "ok"
