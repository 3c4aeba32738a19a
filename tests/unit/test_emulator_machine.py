"""The emulator's task state machine (pure)."""

from __future__ import annotations

import pytest

from triggers.emulators.machine import AttemptResult, ExecutionMachine, Launch, Outcome, TaskStatus

OK, FAIL, TIMEOUT, KILLED = (
    AttemptResult.SUCCEEDED,
    AttemptResult.FAILED,
    AttemptResult.TIMEOUT,
    AttemptResult.CANCELLED,
)


def counts(m: ExecutionMachine) -> tuple[int, int, int, int, int]:
    return m.running_count, m.succeeded_count, m.failed_count, m.cancelled_count, m.retried_count


def test_parallelism_zero_starts_every_task():
    m = ExecutionMachine(task_count=3, parallelism=0)
    assert m.start() == [Launch(0, 0), Launch(1, 0), Launch(2, 0)]
    assert m.slots == 3


def test_parallelism_limits_running_tasks_and_refills_in_index_order():
    m = ExecutionMachine(task_count=5, parallelism=2, max_retries=0)
    assert m.start() == [Launch(0, 0), Launch(1, 0)]
    assert m.finished(1, 0, OK) == [Launch(2, 0)]
    assert m.running_count == 2
    assert m.finished(0, 0, OK) == [Launch(3, 0)]
    assert m.finished(2, 0, OK) == [Launch(4, 0)]
    assert m.finished(3, 0, OK) == []
    assert not m.done and m.outcome is None
    assert m.finished(4, 0, OK) == []
    assert m.done and m.outcome is Outcome.SUCCEEDED
    assert counts(m) == (0, 5, 0, 0, 0)


def test_parallelism_larger_than_task_count_is_capped():
    m = ExecutionMachine(task_count=2, parallelism=10)
    assert m.slots == 2 and len(m.start()) == 2


def test_failed_attempt_is_retried_with_the_next_attempt_number_before_new_tasks():
    m = ExecutionMachine(task_count=3, parallelism=1, max_retries=2)
    assert m.start() == [Launch(0, 0)]
    assert m.finished(0, 0, FAIL) == [Launch(0, 1)]
    assert m.finished(0, 1, TIMEOUT) == [Launch(0, 2)]
    assert m.finished(0, 2, OK) == [Launch(1, 0)]
    assert m.retried_count == 2
    assert m.tasks[0].status is TaskStatus.SUCCEEDED


def test_exhausted_retries_fail_the_task_cancel_pending_ones_and_let_running_ones_finish():
    m = ExecutionMachine(task_count=4, parallelism=2, max_retries=1)
    m.start()
    assert m.finished(0, 0, FAIL) == [Launch(0, 1)]
    assert m.finished(0, 1, FAIL) == []  # task 0 failed: nothing new starts
    assert m.failing and m.first_failure == (0, FAIL)
    assert counts(m) == (1, 0, 1, 2, 1)  # task 1 still running, tasks 2 and 3 cancelled
    # a running attempt that then fails is not retried
    assert m.finished(1, 0, FAIL) == []
    assert m.done and m.outcome is Outcome.FAILED
    assert counts(m) == (0, 0, 2, 2, 1)


def test_running_task_may_still_succeed_after_another_failed():
    m = ExecutionMachine(task_count=2, max_retries=0)
    m.start()
    m.finished(0, 0, FAIL)
    m.finished(1, 0, OK)
    assert m.outcome is Outcome.FAILED
    assert counts(m) == (0, 1, 1, 0, 0)


def test_cancel_returns_running_attempts_and_cancels_pending_tasks():
    m = ExecutionMachine(task_count=3, parallelism=1, max_retries=3)
    m.start()
    m.finished(0, 0, OK)
    assert m.cancel() == [Launch(1, 0)]
    assert counts(m) == (1, 1, 0, 1, 0)
    assert not m.done
    assert m.finished(1, 0, KILLED) == []
    assert m.done and m.outcome is Outcome.CANCELLED
    assert counts(m) == (0, 1, 0, 2, 0)
    assert m.cancel() == []  # idempotent once done


def test_a_failure_reported_after_cancel_counts_as_cancelled_not_retried():
    m = ExecutionMachine(task_count=1, max_retries=3)
    m.start()
    m.cancel()
    assert m.finished(0, 0, FAIL) == []
    assert m.outcome is Outcome.CANCELLED and m.retried_count == 0


def test_cancel_before_start_is_done_at_once():
    m = ExecutionMachine(task_count=2)
    assert m.cancel() == []
    assert m.start() == []
    assert m.done and m.outcome is Outcome.CANCELLED and m.cancelled_count == 2


def test_reports_for_attempts_that_are_not_running_are_rejected():
    m = ExecutionMachine(task_count=1, max_retries=1)
    m.start()
    with pytest.raises(RuntimeError):
        m.finished(0, 1, OK)
    m.finished(0, 0, FAIL)
    with pytest.raises(RuntimeError):
        m.finished(0, 0, OK)  # a stale report of the first attempt
    with pytest.raises(RuntimeError):
        m.start()


@pytest.mark.parametrize(
    "kwargs",
    [{"task_count": 0}, {"task_count": 1, "parallelism": -1}, {"task_count": 1, "max_retries": -1}],
)
def test_invalid_configuration(kwargs):
    with pytest.raises(ValueError):
        ExecutionMachine(**kwargs)
