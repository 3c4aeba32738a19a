"""`CloudRunRunner.running` and `.cancel` (max_running, when_busy: replace) against the Cloud
Run emulator through the real google-cloud-run client, and through `SystemRunners`."""

from __future__ import annotations

import pytest

from tests.integration.conftest import eventually
from tests.integration.test_runner_cloudrun import request_for
from triggers.emulators.probe import PROBE_JOB
from triggers.errors import PermanentRunError, RetryableRunError
from triggers.runners.routed import SystemRunners

pytestmark = pytest.mark.integration

HOLD = (("PROBE_SLEEP", "60"),)


def test_running_lists_the_unfinished_executions_newest_first(emu, runner):
    assert runner.running(PROBE_JOB) == []
    finished = runner.run(request_for("done")).execution
    eventually(lambda: runner.running(PROBE_JOB) == [], timeout=20, what="the quick one ends")
    first = runner.run(request_for("held-1", env=HOLD)).execution
    second = runner.run(request_for("held-2", env=HOLD)).execution
    assert runner.running(PROBE_JOB) == [second, first]
    assert finished not in runner.running(PROBE_JOB)


def test_running_pages_through_every_execution(emu, runner, monkeypatch):
    import triggers.runners.cloudrun_running as module

    held = runner.run(request_for("held-old", env=HOLD)).execution
    for i in range(3):
        runner.run(request_for(f"quick-{i}"))
    monkeypatch.setattr(module, "MAX_PAGE_SIZE", 1)  # four pages: the held one is the last
    assert eventually(
        lambda: runner.running(PROBE_JOB) == [held], timeout=20, what="only the held one runs"
    )


def test_cancel_stops_a_held_execution_and_is_harmless_on_a_finished_one(emu, runner):
    held = runner.run(request_for("held", env=HOLD)).execution
    runner.cancel(held)
    eventually(lambda: runner.running(PROBE_JOB) == [], timeout=20, what="the cancelled one ends")
    assert runner.execution_status(held)["outcome"] == "cancelled"
    runner.cancel(held)  # already finished: nothing to do, no error


def test_a_listing_that_fails_is_retryable(emu, runner):
    emu.faults.add("error", "ListExecutions", status=503)
    with pytest.raises(RetryableRunError, match="listing the executions"):
        runner.running(PROBE_JOB)


def test_system_runners_route_running_to_cloud_run_and_refuse_elsewhere(emu, runner):
    routed = SystemRunners(lambda system: runner)
    held = runner.run(request_for("routed", env=HOLD)).execution
    assert routed.running(PROBE_JOB) == [held]
    routed.cancel(held)
    eventually(lambda: routed.running(PROBE_JOB) == [], timeout=20, what="cancelled via routing")
    with pytest.raises(PermanentRunError, match="no job system makes executions"):
        routed.cancel("not/an/execution")


def test_other_systems_say_max_running_needs_cloudrun():
    from triggers.runners.cloudrun_v1 import CloudRunV1Runner

    with pytest.raises(PermanentRunError, match="need system cloudrun"):
        CloudRunV1Runner(endpoint="http://127.0.0.1:9").running("namespaces/p/jobs/j")
