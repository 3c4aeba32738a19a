"""Batching's algorithm on the memory stores (pure logic): membership exactly once, sealing by
window and by size, late members, the batch task, manifests, and crashes between every write.

The same stores' primitives run on SQLite and the Firestore emulator in
tests/integration/test_flow_batch_stores.py.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from types import SimpleNamespace

import pytest

from tests.batching import Fuse, FusedBackend, FusedStore, RecordingRunner, batch_rules, env_of
from tests.fakes import Clock, storage_event
from triggers.dispatch import Dispatcher, Outcome
from triggers.errors import PermanentRunError, RetryableRunError
from triggers.flow.batches import Batches, handle_batch_task
from triggers.flow.batching import BatchStatus, task_count
from triggers.flow.manifest import (
    MANIFEST_ENV,
    MANIFEST_URI_ENV,
    ManifestWriter,
    read_manifest,
    read_slice,
)
from triggers.flow.queue import MemoryTaskQueue, QueueUnavailable
from triggers.ledger import Ledger, Status
from triggers.ledger.batchstore import MemoryBatchStore
from triggers.ledger.memory import MemoryBackend

LEASE = timedelta(minutes=5)


class World:
    """One deployment: stores, queue, clock, runner; `dispatcher()` is one function instance."""

    def __init__(self, tmp_path, **batching) -> None:
        self.clock = Clock()
        self.backend = MemoryBackend()
        self.store = MemoryBatchStore(self.backend)
        self.queue = MemoryTaskQueue()
        self.runner = RecordingRunner(self.clock)
        self.rules = batch_rules(**batching)
        self.manifests = ManifestWriter(directory=tmp_path / "manifests")
        self.ledger = Ledger(self.backend, lease=LEASE, clock=self.clock)

    def dispatcher(self, store=None, backend=None, queue=None) -> Dispatcher:
        ledger = Ledger(backend or self.backend, lease=LEASE, clock=self.clock)
        batches = Batches(
            store or self.store, queue or self.queue, ledger, self.manifests, self.clock
        )
        return Dispatcher(self.rules, ledger, self.runner, batcher=batches)

    def send(self, n: int, start: int = 0, dispatcher=None):
        dispatcher = dispatcher or self.dispatcher()
        return [
            dispatcher.dispatch(storage_event(f"in/{i}.csv", f"e-{i}")).outcomes[0]
            for i in range(start, start + n)
        ]

    def batches(self):
        return sorted(self.store.list_batches(limit=1000), key=lambda b: b.id)

    def run_task(self, batch_id: str, dispatcher=None):
        dispatcher = dispatcher or self.dispatcher()
        body = {"kind": "batch", "rule": "ingest", "batch": batch_id}
        return handle_batch_task(SimpleNamespace(dispatcher=dispatcher), body)

    def members_once(self, n: int) -> None:
        """Every one of the n events is a member of exactly one batch, and its record says so."""
        seen: dict[str, str] = {}
        for batch in self.batches():
            assert len(batch.members) <= batch.max_events
            for member in batch.members:
                assert member not in seen, f"{member} in {seen[member]} and {batch.id}"
                seen[member] = batch.id
        assert len(seen) == n
        for key, batch_id in seen.items():
            record = self.ledger.get(key)
            assert record.status is Status.BATCHED and record.batch == batch_id


@pytest.fixture
def world(tmp_path):
    return World(tmp_path)


def test_the_first_member_opens_a_batch_and_its_window_timer(world):
    (outcome,) = world.send(1)
    assert outcome.outcome is Outcome.BATCHED
    (batch,) = world.batches()
    assert batch.status is BatchStatus.OPEN and batch.timer
    assert batch.closes_at == world.clock.now + timedelta(seconds=60)
    (task,) = world.queue.tasks
    assert task.name == f"b-{batch.id}" and task.queue == "triggers-ingest"
    assert task.schedule_time == batch.closes_at
    assert task.body == {"kind": "batch", "rule": "ingest", "batch": batch.id}
    record = world.ledger.get(outcome.ledger_key)
    assert record.status is Status.BATCHED and record.batch == batch.id
    assert record.expire_at >= batch.expire_at  # kept (past a short dedup window) for its batch
    assert world.runner.run_calls == 0


def test_a_redelivered_member_is_a_duplicate_and_joins_nothing(world):
    world.send(2)
    again = world.send(2)
    assert [o.outcome for o in again] == [Outcome.DUPLICATE] * 2
    (batch,) = world.batches()
    assert len(batch.members) == 2
    world.members_once(2)


def test_the_member_that_fills_max_events_asks_for_the_seal_now(world):
    world.send(5)
    (batch,) = world.batches()
    assert batch.full and batch.status is BatchStatus.OPEN
    names = [t.name for t in world.queue.tasks]
    assert names == [f"b-{batch.id}", f"s-{batch.id}"]
    assert world.queue.tasks[1].schedule_time is None


def test_members_after_a_full_batch_open_the_next_one_with_its_own_timer(world):
    world.send(12)
    batches = world.batches()
    assert sorted(len(b.members) for b in batches) == [2, 5, 5]
    ids = {b.id.rsplit("-", 1)[1]: b for b in batches}
    assert set(ids) == {"0", "1", "2"}  # the next batch's id follows from the previous one
    assert sum(t.name.startswith("b-") for t in world.queue.tasks) == 3
    world.members_once(12)


def test_the_timer_before_the_window_ends_is_retried_then_seals_and_launches_once(world):
    world.send(3)
    (batch,) = world.batches()
    status, answer = world.run_task(batch.id)
    assert status == 503 and answer["outcome"] == "retry" and answer["retry_after"] == 60
    assert world.runner.run_calls == 0
    world.clock.advance(seconds=60)
    status, answer = world.run_task(batch.id)
    assert status == 200 and answer["outcome"] == "launched"
    assert answer["members"] == 3 and answer["task_count"] == 2 and answer["manifest"] == "inline"
    (request,) = world.runner.requests
    assert request.dedup_key == f"batch/{batch.id}"
    assert request.overrides.task_count == 2
    env = env_of(request)
    assert env["TRIGGERS_BATCH_ID"] == batch.id and env["TRIGGERS_BATCH_SIZE"] == "3"
    # the rule's overrides are rendered against the first member's event
    assert request.overrides.args == ("--first=in/0.csv",) and env["BUCKET"] == "raw"
    manifest = json.loads(env[MANIFEST_ENV])
    assert [m["event"]["data"]["name"] for m in manifest["members"]] == [
        "in/0.csv",
        "in/1.csv",
        "in/2.csv",
    ]
    stored = world.store.get_batch(batch.id)
    assert stored.status is BatchStatus.LAUNCHED and stored.execution == answer["execution"]
    for member in stored.members:  # every member's record points at the execution
        assert world.ledger.get(member).execution == answer["execution"]
    assert world.ledger.get(stored.run).status is Status.LAUNCHED
    # the seal task, a retried timer: the same launch, nothing more
    assert world.run_task(batch.id) == (
        200,
        {
            "batch": batch.id,
            "rule": "ingest",
            "members": 3,
            "outcome": "duplicate",
            "execution": answer["execution"],
        },
    )
    assert world.runner.run_calls == 1


def test_a_full_batch_is_sealed_before_its_window_ends(world):
    world.send(5)
    (batch,) = world.batches()
    status, answer = world.run_task(batch.id)
    assert status == 200 and answer["outcome"] == "launched" and answer["task_count"] == 3


def test_a_member_after_the_seal_opens_the_next_batch(world):
    world.send(2)
    (first,) = world.batches()
    world.clock.advance(seconds=61)
    assert world.run_task(first.id)[0] == 200
    (late,) = world.send(1, start=2)
    assert late.outcome is Outcome.BATCHED
    second = [b for b in world.batches() if b.id != first.id]
    assert len(second) == 1 and second[0].status is BatchStatus.OPEN
    assert len(world.store.get_batch(first.id).members) == 2
    world.members_once(3)


def test_closing_a_batch_early_seals_it_and_its_timer_then_launches_it_once(world):
    world.send(2)
    (batch,) = world.batches()
    dispatcher = world.dispatcher()
    closed = dispatcher.batcher.close(batch.id)  # an operator's "close it now", window open
    assert closed.status is BatchStatus.SEALED and closed.members == batch.members
    assert dispatcher.batcher.close(batch.id).status is BatchStatus.SEALED  # idempotent
    assert dispatcher.batcher.close("no-such-batch") is None
    (late,) = world.send(1, start=2)  # membership ended: a later event opens the next batch
    assert late.outcome is Outcome.BATCHED and "member 1 of" in late.reason
    status, answer = world.run_task(batch.id)  # its timer, run now (RunTask)
    assert status == 200 and answer["outcome"] == "launched" and answer["members"] == 2
    assert world.run_task(batch.id)[1]["outcome"] == "duplicate"
    assert world.runner.run_calls == 1
    world.members_once(3)


def test_close_now_seals_and_queues_the_launch_at_once_exactly_once(world):
    # GIVEN an open batch of two members, its window timer a minute away
    world.send(2)
    (batch,) = world.batches()
    batcher = world.dispatcher().batcher
    queue = world.rules.get("ingest").flow.limits.queue
    # WHEN an operator closes it now
    closed, enqueued = batcher.close_now(batch.id, queue)
    # THEN it is sealed and its seal task is queued to run at once, beside the timer
    assert closed.status is BatchStatus.SEALED and enqueued
    timer, seal = world.queue.tasks
    assert seal.schedule_time is None and seal.name != timer.name and seal.queue == queue
    assert seal.body == {"kind": "batch", "rule": "ingest", "batch": batch.id}
    # and closing again queues nothing more; a batch that is not there is None
    assert batcher.close_now(batch.id, queue) == (closed, False)
    assert batcher.close_now("no-such-batch", queue) is None
    # WHEN the seal task runs THEN the batch launches once; the timer later finds it done
    assert world.run_task(batch.id)[1]["outcome"] == "launched"
    assert world.run_task(batch.id)[1]["outcome"] == "duplicate"
    assert world.runner.run_calls == 1
    # and a launched batch is not queued again
    launched, enqueued = batcher.close_now(batch.id, queue)
    assert launched.status is BatchStatus.LAUNCHED and not enqueued


def test_close_now_of_a_full_batch_reuses_its_seal_task(world):
    # GIVEN a batch that filled up: its seal task is queued already
    rule = world.rules.get("ingest")
    world.send(rule.flow.batch.max_events)
    batch = world.batches()[0]
    queued = len(world.queue.tasks)
    # WHEN it is closed now THEN no second seal task is made; the first one launches it
    closed, enqueued = world.dispatcher().batcher.close_now(batch.id, rule.flow.limits.queue)
    assert closed.status is BatchStatus.SEALED and not enqueued
    assert len(world.queue.tasks) == queued
    assert world.run_task(batch.id)[1]["outcome"] == "launched"


def test_a_batch_past_its_window_but_not_sealed_still_takes_members(world):
    world.send(1)
    world.clock.advance(seconds=600)  # the timer is late (a queue backlog)
    world.send(1, start=1)
    (batch,) = world.batches()
    assert len(batch.members) == 2  # joining is decided by the stored batch, not a clock


def test_batch_keys_keep_one_open_batch_per_key(tmp_path):
    world = World(tmp_path)
    world.rules = batch_rules(key="{{ data.name.split('/')[1][0] }}")
    world.send(6)
    assert sorted(b.key for b in world.batches()) == ["0", "1", "2", "3", "4", "5"]
    world.members_once(6)


def test_a_rule_whose_batch_key_cannot_render_is_rejected_for_good(tmp_path):
    world = World(tmp_path)
    world.rules = batch_rules(key="{{ data.missing.field }}")
    (outcome,) = world.send(1)
    assert outcome.outcome is Outcome.REJECTED and "batch.key" in outcome.reason
    assert world.ledger.get(outcome.ledger_key).status is Status.REJECTED


def test_without_a_batcher_a_batched_rule_is_retried_not_launched(world):
    dispatcher = Dispatcher(world.rules, world.ledger, world.runner)
    outcome = dispatcher.dispatch(storage_event()).outcomes[0]
    assert outcome.outcome is Outcome.RETRY and "not configured" in outcome.reason
    assert world.ledger.get(outcome.ledger_key).status is Status.RELEASED
    assert world.runner.run_calls == 0


def test_a_queue_outage_releases_the_member_and_the_redelivery_enqueues_the_timer(world):
    class Down(MemoryTaskQueue):
        def enqueue(self, task):
            raise QueueUnavailable("503 from Cloud Tasks")

    (outcome,) = world.send(1, dispatcher=world.dispatcher(queue=Down()))
    assert outcome.outcome is Outcome.RETRY
    record = world.ledger.get(outcome.ledger_key)
    assert record.status is Status.RELEASED and record.batch is not None
    (again,) = world.send(1)
    assert again.outcome is Outcome.BATCHED
    (batch,) = world.batches()
    assert batch.members == (outcome.ledger_key,) and batch.timer
    assert [t.name for t in world.queue.tasks] == [f"b-{batch.id}"]


def test_a_retryable_launch_failure_is_a_503_and_the_retry_launches_once(world):
    world.send(5)
    (batch,) = world.batches()
    world.runner.fail("loader", RetryableRunError("quota", status=429))
    status, answer = world.run_task(batch.id)
    assert status == 503 and answer["outcome"] == "retry"
    assert world.store.get_batch(batch.id).status is BatchStatus.SEALED
    status, answer = world.run_task(batch.id)
    assert status == 200 and answer["outcome"] == "launched"
    assert len(world.runner.executions[answer["run"]]) == 1


def test_a_permanent_launch_failure_rejects_the_batch_once(world):
    world.send(5)
    (batch,) = world.batches()
    world.runner.fail("loader", PermanentRunError("job not found", status=404))
    assert world.run_task(batch.id)[1]["outcome"] == "rejected"
    assert world.store.get_batch(batch.id).status is BatchStatus.REJECTED
    assert world.run_task(batch.id)[1]["outcome"] == "rejected"
    assert world.runner.run_calls == 1


@pytest.mark.parametrize(
    "body",
    [None, {}, {"rule": "ingest"}, {"rule": "ingest", "batch": "nope"}, {"rule": 1, "batch": "x"}],
)
def test_bad_or_unknown_batch_tasks_are_answered_200_rejected(world, body):
    status, answer = handle_batch_task(SimpleNamespace(dispatcher=world.dispatcher()), body)
    assert status == 200 and answer["outcome"] == "rejected"


def test_many_threads_join_exactly_once(tmp_path):
    world = World(tmp_path, max_events=7)
    dispatchers = [world.dispatcher() for _ in range(8)]

    def send(i: int):
        return dispatchers[i % 8].dispatch(storage_event(f"in/{i}.csv", f"e-{i}")).outcomes[0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(send, range(300)))
    assert {o.outcome for o in outcomes} == {Outcome.BATCHED}
    world.members_once(300)
    sizes = sorted(len(b.members) for b in world.batches())
    assert sizes == [6] + [7] * 42  # only the newest batch is not full


def test_seal_racing_joiners_loses_nobody(tmp_path):
    """The timer seals while members stream in: each member is in the sealed batch (and its
    manifest) or in a later one, never in both, never in neither."""
    world = World(tmp_path, max_events=1000)
    world.send(1)
    (first,) = world.batches()
    world.clock.advance(seconds=61)
    results: list = []
    go = threading.Barrier(5)

    def joiner(k: int) -> None:
        go.wait()
        results.extend(world.send(40, start=1 + k * 40))

    def sealer() -> None:
        go.wait()
        results.append(world.run_task(first.id))

    threads = [threading.Thread(target=joiner, args=(k,)) for k in range(4)]
    threads.append(threading.Thread(target=sealer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    world.members_once(161)
    sealed = world.store.get_batch(first.id)
    manifest = json.loads(env_of(world.runner.requests[0])[MANIFEST_ENV])
    assert [m["ledger_key"] for m in manifest["members"]] == list(sealed.members)


# -- crashes between every two writes ----------------------------------------------------------


def test_a_crash_between_any_two_writes_of_a_member_loses_and_doubles_nobody(tmp_path):
    crash_points = 0
    for at in range(1, 60):
        world = World(tmp_path / str(at), max_events=3)
        world.send(2)  # an open batch to join
        fuse = Fuse(at)
        crashing = world.dispatcher(
            store=FusedStore(world.store, fuse), backend=FusedBackend(world.backend, fuse)
        )
        outcomes = world.send(4, start=2, dispatcher=crashing)
        if fuse.count < at:
            break  # the whole run needed fewer writes: every crash point was covered
        crash_points += 1
        assert Outcome.RETRY in [o.outcome for o in outcomes]  # the dead process decided less
        # restart: redeliver everything until every event is decided
        for _ in range(3):
            world.clock.advance(LEASE + timedelta(seconds=1))
            world.send(6)
        world.members_once(6)
        for batch in world.batches():  # every batch has (had) its timer
            assert f"b-{batch.id}" in {t.name for t in world.queue.tasks}
            if batch.full:
                assert f"s-{batch.id}" in {t.name for t in world.queue.tasks}
    assert crash_points >= 15  # a member costs 4 writes: 4 members, and the batch's own


def test_a_crash_between_any_two_writes_of_the_batch_task_launches_once(tmp_path):
    crash_points = 0
    for at in range(1, 40):
        world = World(tmp_path / str(at), max_events=4)
        world.send(4)
        (batch,) = world.batches()
        fuse = Fuse(at)
        crashing = world.dispatcher(
            store=FusedStore(world.store, fuse), backend=FusedBackend(world.backend, fuse)
        )
        status, answer = world.run_task(batch.id, dispatcher=crashing)
        if fuse.count < at:
            break
        crash_points += 1
        # 200 only when the crash came after the launch was recorded (pointing members at the
        # execution is best effort); else Cloud Tasks retries, past a held claim's lease
        launched = world.store.get_batch(batch.id).status is BatchStatus.LAUNCHED
        assert status == (200 if launched else 503), answer
        for _ in range(0 if launched else 3):
            world.clock.advance(LEASE + timedelta(seconds=1))
            status, answer = world.run_task(batch.id)
            if status == 200:
                break
        assert status == 200 and answer["outcome"] in ("launched", "duplicate")
        stored = world.store.get_batch(batch.id)
        assert stored.status is BatchStatus.LAUNCHED
        assert len(world.runner.executions[stored.run]) == 1  # launched exactly once
    assert crash_points >= 5


# -- task counts and manifests -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "per_task", "expected"),
    [(1, 1, 1), (0, 5, 1), (100, 100, 1), (101, 100, 2), (250, 100, 3), (10**6, 1, 10_000)],
)
def test_task_count_is_ceil_members_over_per_task_capped_at_ten_thousand(
    members, per_task, expected
):
    assert task_count(members, per_task) == expected


def test_task_count_needs_a_positive_per_task():
    with pytest.raises(ValueError):
        task_count(3, 0)


def manifest_of(n: int) -> dict:
    from triggers.flow.manifest import build_manifest

    members = [
        {"ledger_key": f"k{i}", "event": {"data": {"i": i, "pad": "x" * 200}}} for i in range(n)
    ]
    return build_manifest("b1", "ingest", "", members, task_count(n, 7))


def test_a_small_manifest_goes_inline_and_a_large_one_to_a_local_file(tmp_path):
    writer = ManifestWriter(directory=tmp_path / "m")
    ((name, value),) = writer.write(manifest_of(3))
    assert name == MANIFEST_ENV and json.loads(value)["size"] == 3
    ((name, value),) = writer.write(manifest_of(500))  # ~120 KB: over 32 KiB
    assert name == MANIFEST_URI_ENV and value == (tmp_path / "m" / "b1.json").as_uri()
    assert read_manifest({MANIFEST_URI_ENV: value})["size"] == 500


@pytest.mark.parametrize("n", [1, 6, 7, 8, 50, 500])
def test_the_tasks_slices_cover_every_member_once_in_order(tmp_path, n):
    writer = ManifestWriter(directory=tmp_path)
    env = dict(writer.write(manifest_of(n)))
    count = task_count(n, 7)
    seen = []
    for index in range(count):
        slice_ = read_slice(
            {**env, "CLOUD_RUN_TASK_INDEX": str(index), "CLOUD_RUN_TASK_COUNT": str(count)}
        )
        assert 0 < len(slice_) <= 7
        seen += [m["event"]["data"]["i"] for m in slice_]
    assert seen == list(range(n))


def test_read_slice_without_a_manifest_says_what_is_missing():
    with pytest.raises(LookupError, match=MANIFEST_ENV):
        read_slice({})


# -- replay ---------------------------------------------------------------------------------------


def test_a_replayed_member_joins_a_new_batch_and_a_batch_run_is_not_replayable(world):
    from triggers.ops.replay import replay

    world.send(5)
    (batch,) = world.batches()
    assert world.run_task(batch.id)[0] == 200
    member = world.ledger.get(batch.members[0])
    run = world.ledger.get(world.store.get_batch(batch.id).run)
    replayed = list(replay(world.dispatcher(), [member, run], scope="replay-1"))
    (outcome,) = replayed[0].outcomes
    assert outcome.outcome is Outcome.BATCHED and outcome.dedup_key.startswith("replay-1/")
    (again,) = [b for b in world.batches() if b.id != batch.id]
    assert again.members == (outcome.ledger_key,)
    assert "a batch's own run" in replayed[1].skipped


def test_the_documented_reader_without_triggers_returns_each_tasks_slice(tmp_path, monkeypatch):
    """docs/flow-control.md's standalone batch reader, run as written, inline and from a file."""
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "flow-control.md").read_text(encoding="utf-8")
    snippet = text.split("Without triggers (the whole reader):", 1)[1]
    snippet = snippet.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(snippet, "flow-control.md", "exec"), namespace)
    writer = ManifestWriter(directory=tmp_path)
    for n in (5, 500):  # inline, then a file:// manifest
        env = dict(writer.write(manifest_of(n)))
        count = task_count(n, 7)
        seen = []
        for index in range(count):
            for name in (MANIFEST_ENV, MANIFEST_URI_ENV):
                monkeypatch.delenv(name, raising=False)
            for name, value in {
                **env,
                "CLOUD_RUN_TASK_INDEX": str(index),
                "CLOUD_RUN_TASK_COUNT": str(count),
            }.items():
                monkeypatch.setenv(name, value)
            seen += [m["event"]["data"]["i"] for m in namespace["my_members"]()]
        assert seen == list(range(n))


def test_reconcile_moves_the_batch_run_and_copies_its_outcome_to_the_members(world):
    from triggers.ops.reconcile import reconcile

    world.send(5)
    (batch,) = world.batches()
    assert world.run_task(batch.id)[0] == 200
    batch = world.store.get_batch(batch.id)

    class Done:
        def execution_status(self, name):
            assert name == batch.execution
            return {"done": True, "outcome": "succeeded", "task_count": 3, "succeeded_count": 3}

    report = reconcile(world.ledger, Done())
    assert report.checked == 1 and report.succeeded == 1  # members are not launched records
    assert world.ledger.get(batch.run).status is Status.SUCCEEDED
    for key in batch.members:
        member = world.ledger.get(key)
        assert member.status is Status.BATCHED and member.outcome["outcome"] == "succeeded"


def test_the_timer_and_the_seal_task_delivered_together_launch_once(tmp_path):
    for attempt in range(20):
        world = World(tmp_path / str(attempt), max_events=4)
        world.send(4)
        (batch,) = world.batches()
        world.clock.advance(seconds=61)
        go = threading.Barrier(3)
        answers: list = []

        def deliver(world=world, batch=batch, go=go, answers=answers) -> None:
            go.wait()
            answers.append(world.run_task(batch.id))

        threads = [threading.Thread(target=deliver) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # one launched; the others duplicates, or told to retry while the first held the claim
        outcomes = sorted(a[1]["outcome"] for a in answers)
        assert outcomes.count("launched") == 1, outcomes
        assert set(outcomes) <= {"launched", "duplicate", "retry"}
        assert world.run_task(batch.id)[1]["outcome"] == "duplicate"
        assert world.runner.run_calls == 1


def test_batches_over_a_ledger_keep_their_batches_beside_its_records(world):
    batches = Batches.over(world.ledger, world.queue, manifest_bucket="b")
    dispatcher = Dispatcher(world.rules, world.ledger, world.runner, batcher=batches)
    world.send(1, dispatcher=dispatcher)
    (batch,) = world.batches()  # the store the world reads: the same backend's
    assert batches.manifests.bucket == "b" and batches.clock is world.clock
    assert batch.members == (world.ledger.list()[0].key,)


def test_batch_fields_keep_only_those_parts_of_each_members_event(tmp_path):
    # GIVEN a rule batching with `fields: [id, data.name, data.missing]`
    world = World(tmp_path, fields=("id", "data.name", "data.missing"))
    world.send(3)
    (batch,) = world.batches()
    # WHEN its batch runs
    world.clock.advance(timedelta(seconds=61))
    assert world.run_task(batch.id)[1]["outcome"] == "launched"
    # THEN each member's event in the manifest holds those paths, nested as in the event, and
    # nothing else (a path an event lacks is left out); the overrides still render against the
    # first member's whole event
    manifest = json.loads(env_of(world.runner.requests[0])[MANIFEST_ENV])
    assert [m["event"] for m in manifest["members"]] == [
        {"id": f"e-{i}", "data": {"name": f"in/{i}.csv"}} for i in range(3)
    ]
    assert world.runner.requests[0].overrides.args == ("--first=in/0.csv",)


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (("a",), {"a": {"b": 1, "c": [2]}}),
        (("a.b", "d"), {"a": {"b": 1}, "d": None}),
        (("a.c.0", "a.b.x", "z"), {}),  # into a list, into a number, absent: all left out
        (("a.b", "a.c"), {"a": {"b": 1, "c": [2]}}),
    ],
)
def test_projection_keeps_the_nesting_and_skips_what_is_not_there(paths, expected):
    from triggers.flow.members import projected

    document = {"a": {"b": 1, "c": [2]}, "d": None}
    assert projected(document, paths) == expected
    assert document == {"a": {"b": 1, "c": [2]}, "d": None}  # untouched
