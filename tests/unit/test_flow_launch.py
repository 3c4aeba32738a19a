"""The launch task: a `queued` record launched once by its queue task, with `max_running` and
`when_busy` (pure logic: memory ledger, a scripted runner that also counts and cancels)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.fakes import Ambiguous, ScriptedRunner, storage_event
from tests.unit.test_flow_dispatch import flow_rules
from triggers.dispatch import Dispatcher
from triggers.errors import AmbiguousRunError, PermanentRunError, RetryableRunError
from triggers.flow.launch import RunningCounts, TaskLauncher
from triggers.flow.queue import MemoryTaskQueue
from triggers.flow.spec import Limits, WhenBusy
from triggers.ledger import Status


class CountingRunner(ScriptedRunner):
    """Executions listed as running per job until a test finishes or cancels them."""

    def __init__(self, clock=None) -> None:
        super().__init__(clock)
        self.held: dict[str, list[str]] = {}  # job -> executions still running
        self.cancelled: list[str] = []
        self.running_calls = 0
        self.running_failures: list[Exception] = []

    def run(self, request, *, validate_only=False):
        launch = super().run(request, validate_only=validate_only)
        self.held.setdefault(request.job, []).append(launch.execution)
        return launch

    def running(self, job):
        self.running_calls += 1
        if self.running_failures:
            raise self.running_failures.pop(0)
        return list(self.held.get(job, []))

    def cancel(self, execution):
        self.cancelled.append(execution)
        for names in self.held.values():
            if execution in names:
                names.remove(execution)


@pytest.fixture
def runner(clock):
    return CountingRunner(clock=clock)


def setup(ledger, runner, limits: Limits, ttl: float = 0.0):
    queue = MemoryTaskQueue()
    dispatcher = Dispatcher(flow_rules(limits), ledger, runner, queue=queue)
    launcher = TaskLauncher(dispatcher, RunningCounts(ttl))
    return dispatcher, queue, launcher


def queue_one(dispatcher, queue, name="incoming/a.csv", event_id="e-1"):
    dispatcher.dispatch(storage_event(name, event_id))
    return queue.tasks[-1].body


LIMITS = Limits(queue="q-load", rate_per_second=1.0)


def test_the_task_launches_the_queued_record_once(ledger, runner):
    dispatcher, queue, launcher = setup(ledger, runner, LIMITS)
    body = queue_one(dispatcher, queue)
    answer = launcher.launch(body)
    assert answer.status == 200 and answer.body["outcome"] == "launched"
    record = ledger.get(body["ledger_key"])
    assert (record.status, record.reason, record.task, record.attempts, record.ambiguous) == (
        Status.LAUNCHED,
        None,
        queue.tasks[0].name,
        1,
        False,
    )
    assert record.execution == answer.body["execution"]
    assert runner.run_calls == 2  # audit inline, load from the task
    # the queue delivers the task again (at least once): a duplicate, nothing runs
    again = launcher.launch(body)
    assert (again.status, again.body["outcome"]) == (200, "duplicate")
    assert runner.run_calls == 2


def test_the_launch_is_planned_again_from_the_stored_event(ledger, runner):
    dispatcher, queue, launcher = setup(ledger, runner, LIMITS)
    body = queue_one(dispatcher, queue, name="incoming/b.csv")
    launcher.launch(body)
    [execution] = runner.executions[body["ledger_key"]]
    assert ledger.get(body["ledger_key"]).request["overrides"]["containerOverrides"][0]["args"] == [
        "incoming/b.csv"
    ]
    assert execution.startswith(ledger.get(body["ledger_key"]).job)


def test_a_429_puts_the_record_back_to_queued_and_only_this_task_is_retried(ledger, runner):
    dispatcher, queue, launcher = setup(ledger, runner, LIMITS)
    body = queue_one(dispatcher, queue)
    runner.fail("loader", RetryableRunError("429 RESOURCE_EXHAUSTED", status=429))
    answer = launcher.launch(body)
    assert answer.status == 503 and answer.retry
    record = ledger.get(body["ledger_key"])
    assert (record.status, record.reason, record.task, record.attempts) == (
        Status.QUEUED,
        "429 RESOURCE_EXHAUSTED",
        queue.tasks[0].name,
        1,
    )
    assert launcher.launch(body).status == 200
    assert ledger.get(body["ledger_key"]).status is Status.LAUNCHED
    assert len(runner.executions[body["ledger_key"]]) == 1


def test_a_permanent_api_error_is_rejected_for_good_and_dead_lettered(ledger, runner):
    dispatcher, queue, launcher = setup(ledger, runner, LIMITS)
    body = queue_one(dispatcher, queue)
    runner.fail("loader", PermanentRunError("job not found", status=404))
    answer = launcher.launch(body)
    assert (answer.status, answer.rejected) == (200, "job not found")
    record = ledger.get(body["ledger_key"])
    assert (record.status, record.reason) == (Status.REJECTED, "job not found")


@pytest.mark.parametrize(
    "body",
    [{"kind": "launch"}, {"kind": "launch", "rule": "load", "ledger_key": 7}, {"ledger_key": ""}],
)
def test_a_body_that_is_not_a_launch_is_rejected_with_200_so_it_is_not_retried(
    ledger, runner, body
):
    _, _, launcher = setup(ledger, runner, LIMITS)
    answer = launcher.launch(body)
    assert answer.status == 200 and answer.rejected.startswith("task_rejected: a launch task")


def test_a_task_for_no_record_is_rejected_with_200(ledger, runner):
    _, _, launcher = setup(ledger, runner, LIMITS)
    answer = launcher.launch({"kind": "launch", "rule": "load", "ledger_key": "ab" * 32})
    assert (
        answer.status == 200 and answer.rejected == f"task_rejected: no ledger record {'ab' * 32}"
    )


def test_a_task_whose_rule_is_gone_is_rejected_on_the_record(ledger, runner):
    dispatcher, queue, launcher = setup(ledger, runner, LIMITS)
    body = queue_one(dispatcher, queue)
    launcher.dispatcher.rules = flow_rules(LIMITS).__class__([])  # the rule was removed
    answer = launcher.launch(body)
    assert answer.status == 200
    record = ledger.get(body["ledger_key"])
    reason = "task_rejected: rule 'load' is no longer in the rules"
    assert (record.status, record.reason, answer.rejected) == (Status.REJECTED, reason, reason)
    assert runner.run_calls == 1


def test_a_claim_held_by_another_task_is_busy_503(ledger, runner):
    dispatcher, queue, launcher = setup(ledger, runner, LIMITS)
    body = queue_one(dispatcher, queue)
    held = ledger.claim_queued(body["ledger_key"])
    assert held.kind.value == "new"
    answer = launcher.launch(body)
    assert answer.status == 503 and "held until" in answer.body["reason"]
    assert runner.run_calls == 1


def test_a_task_that_died_after_launching_is_adopted_not_launched_again(ledger, runner, clock):
    dispatcher, queue, launcher = setup(ledger, runner, LIMITS)
    body = queue_one(dispatcher, queue)
    # The first delivery claimed, launched and died before recording.
    claim = ledger.claim_queued(body["ledger_key"])
    request = launcher._plan(dispatcher.rules.get("load"), claim.record)
    started = runner.run(request).execution
    clock.advance(ledger.lease + timedelta(seconds=1))
    answer = launcher.launch(body)
    assert answer.status == 200 and answer.body["adopted"] is True
    record = ledger.get(body["ledger_key"])
    assert (record.status, record.execution, record.attempts) == (Status.LAUNCHED, started, 2)
    assert len(runner.executions[body["ledger_key"]]) == 1


def test_a_task_that_died_after_claiming_launches_once_after_the_lease(ledger, runner, clock):
    dispatcher, queue, launcher = setup(ledger, runner, LIMITS)
    body = queue_one(dispatcher, queue)
    ledger.claim_queued(body["ledger_key"])  # claimed, then the instance died before jobs.run
    assert launcher.launch(body).status == 503  # its lease is live: busy
    clock.advance(ledger.lease + timedelta(seconds=1))
    assert launcher.launch(body).status == 200
    assert runner.find_calls == 1  # the takeover looked first, found nothing, launched
    assert len(runner.executions[body["ledger_key"]]) == 1


def test_an_ambiguous_launch_holds_the_claim_then_adopts(ledger, runner, clock):
    dispatcher, queue, launcher = setup(ledger, runner, LIMITS)
    body = queue_one(dispatcher, queue)
    runner.fail(
        "loader", Ambiguous(AmbiguousRunError("deadline"), appears_after=timedelta(seconds=5))
    )
    assert launcher.launch(body).status == 503
    record = ledger.get(body["ledger_key"])
    assert (record.status, record.ambiguous, record.reason) == (Status.CLAIMED, True, "deadline")
    assert launcher.launch(body).status == 503  # held
    clock.advance(timedelta(minutes=5))
    answer = launcher.launch(body)
    assert answer.status == 200 and answer.body["adopted"] is True
    assert len(runner.executions[body["ledger_key"]]) == 1


# ---------------------------------------------------------------- max_running, when_busy


def test_skip_records_skipped_with_the_reason_and_acks(ledger, runner):
    limits = Limits(queue="q-load", max_running=1, when_busy=WhenBusy.SKIP)
    dispatcher, queue, launcher = setup(ledger, runner, limits)
    first = queue_one(dispatcher, queue, "incoming/a.csv", "e-1")
    second = queue_one(dispatcher, queue, "incoming/b.csv", "e-2")
    assert launcher.launch(first).body["outcome"] == "launched"
    answer = launcher.launch(second)
    assert (answer.status, answer.body["outcome"], answer.rejected) == (200, "skipped", None)
    record = ledger.get(second["ledger_key"])
    job = record.job.rsplit("/", 1)[-1]
    assert (record.status, record.reason, record.execution, record.attempts) == (
        Status.SKIPPED,
        f"skipped: 1 execution(s) of {job} running (max_running 1)",
        None,
        1,
    )
    assert runner.started(launcher._plan(dispatcher.rules.get("load"), record)) == 0
    assert launcher.launch(second).body["outcome"] == "duplicate"


def test_queue_waits_with_503_until_a_slot_frees_then_launches(ledger, runner, clock):
    limits = Limits(queue="q-load", max_running=1, when_busy=WhenBusy.QUEUE, max_wait_seconds=60)
    dispatcher, queue, launcher = setup(ledger, runner, limits)
    first = queue_one(dispatcher, queue, "incoming/a.csv", "e-1")
    second = queue_one(dispatcher, queue, "incoming/b.csv", "e-2")
    launcher.launch(first)
    answer = launcher.launch(second)
    assert answer.status == 503
    record = ledger.get(second["ledger_key"])
    assert record.status is Status.QUEUED
    assert record.reason.startswith("waiting for a free slot: 1 execution(s)")
    runner.held.clear()  # the first execution finished
    clock.advance(seconds=30)
    assert launcher.launch(second).body["outcome"] == "launched"


def test_queue_gives_up_after_max_wait_rejects_and_dead_letters(ledger, runner, clock):
    limits = Limits(queue="q-load", max_running=1, when_busy=WhenBusy.QUEUE, max_wait_seconds=60)
    dispatcher, queue, launcher = setup(ledger, runner, limits)
    first = queue_one(dispatcher, queue, "incoming/a.csv", "e-1")
    second = queue_one(dispatcher, queue, "incoming/b.csv", "e-2")
    launcher.launch(first)
    clock.advance(seconds=61)
    answer = launcher.launch(second)
    assert answer.status == 200 and answer.rejected.startswith("waited more than 60s")
    record = ledger.get(second["ledger_key"])
    assert (record.status, record.reason) == (Status.REJECTED, answer.rejected)


def test_replace_cancels_the_running_executions_then_launches(ledger, runner):
    limits = Limits(queue="q-load", max_running=1, when_busy=WhenBusy.REPLACE)
    dispatcher, queue, launcher = setup(ledger, runner, limits)
    first = queue_one(dispatcher, queue, "incoming/a.csv", "e-1")
    second = queue_one(dispatcher, queue, "incoming/b.csv", "e-2")
    running = launcher.launch(first).body["execution"]
    answer = launcher.launch(second)
    assert answer.body["outcome"] == "launched"
    assert runner.cancelled == [running]
    assert ledger.get(second["ledger_key"]).status is Status.LAUNCHED


def test_a_count_that_cannot_be_read_requeues_the_launch(ledger, runner):
    limits = Limits(queue="q-load", max_running=1)
    dispatcher, queue, launcher = setup(ledger, runner, limits)
    body = queue_one(dispatcher, queue)
    runner.running_failures.append(RetryableRunError("503 listing executions"))
    assert launcher.launch(body).status == 503
    record = ledger.get(body["ledger_key"])
    assert (record.status, record.reason) == (
        Status.QUEUED,
        "cannot count running executions: 503 listing executions",
    )
    assert launcher.launch(body).body["outcome"] == "launched"


def test_the_count_is_cached_and_our_own_launches_are_added_to_it(ledger, runner):
    limits = Limits(queue="q-load", max_running=2, when_busy=WhenBusy.SKIP)
    dispatcher, queue, launcher = setup(ledger, runner, limits, ttl=60.0)
    bodies = [queue_one(dispatcher, queue, f"incoming/{i}.csv", f"e-{i}") for i in range(3)]
    outcomes = [launcher.launch(b).body["outcome"] for b in bodies]
    assert outcomes == ["launched", "launched", "skipped"]
    assert runner.running_calls == 1  # one listing, then the cache plus our launches


def test_running_counts_expire_after_their_ttl():
    now = [0.0]
    counts = RunningCounts(5.0, clock=lambda: now[0])
    listed = []

    def lister(job):
        listed.append(job)
        return ["x"] * len(listed)

    assert counts.count("j", lister) == 1
    counts.launched("j")
    assert counts.count("j", lister) == 2
    now[0] = 5.1
    assert counts.count("j", lister) == 2 and listed == ["j", "j"]


def test_show_names_the_task_of_a_queued_record(ledger, runner):
    from triggers.ops.history import detail

    dispatcher, queue, _ = setup(ledger, runner, LIMITS)
    body = queue_one(dispatcher, queue)
    lines = detail(ledger.get(body["ledger_key"]))
    assert f"task         {queue.tasks[0].name}" in lines
    assert "status       queued" in lines
