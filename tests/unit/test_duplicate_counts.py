"""`PendingDuplicates`: duplicate counts kept in memory, written by a flusher (pure logic).

The store is a dict behind `Store.write` here; the Firestore side (the write itself, NotFound,
a real failed write, the count arriving on the record) is in
tests/integration/test_ledger_duplicate_counts.py.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from triggers.ledger import duplicate_counts
from triggers.ledger.duplicate_counts import PendingDuplicates

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Store:
    """Counts per key, with the latest time written; `failing` keys raise, `gone` are absent."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.latest: dict[str, datetime] = {}
        self.failing: set[str] = set()
        self.gone: set[str] = set()
        self.writes: list[str] = []
        self.lock = threading.Lock()

    def write(self, key: str, count: int, latest: datetime) -> bool:
        with self.lock:
            self.writes.append(key)
            if key in self.failing:
                raise ConnectionError(f"{key}: unavailable")
            if key in self.gone:
                return False
            self.counts[key] += count
            self.latest[key] = latest
            return True


def wait_for(condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_counts_are_added_up_per_key_and_written_once_each_with_the_latest_time():
    store = Store()
    pending = PendingDuplicates(store.write, interval=3600)
    for minute in (2, 1, 3):
        pending.add("a", T0 + timedelta(minutes=minute))
    pending.add("b", T0)
    assert pending.pending() == {"a": 3, "b": 1} and store.writes == []
    assert pending.flush() == 0
    assert store.counts == {"a": 3, "b": 1} and sorted(store.writes) == ["a", "b"]
    assert store.latest["a"] == T0 + timedelta(minutes=3)
    assert pending.stats == {"writes": 2, "counted": 4}
    assert pending.flush() == 0 and len(store.writes) == 2  # nothing written twice
    pending.close()


def test_a_record_that_is_gone_is_not_retried():
    store = Store()
    store.gone.add("a")
    pending = PendingDuplicates(store.write, interval=3600)
    pending.add("a", T0)
    assert pending.flush() == 0 and pending.pending() == {}
    assert pending.stats["gone"] == 1 and pending.stats["counted"] == 0
    pending.close()


def test_a_failed_write_keeps_its_counts_and_the_rest_untried_and_puts_itself_last(caplog):
    store = Store()
    store.failing.add("a")
    pending = PendingDuplicates(store.write, interval=3600)
    for key in ("a", "a", "b", "c"):
        pending.add(key, T0)
    with caplog.at_level(logging.WARNING, logger="triggers.ledger"):
        assert pending.flush() == 3
    # the store is probably down: one failed write, not one per key
    assert store.writes == ["a"] and pending.stats["failed"] == 1
    assert list(pending.pending().items()) == [("b", 1), ("c", 1), ("a", 2)]
    assert "could not write 2 duplicate count(s) of a (attempt 1 of 10)" in caplog.text
    # WHEN the store is back, and a is counted again meanwhile
    store.failing.clear()
    pending.add("a", T0 + timedelta(seconds=1))
    assert pending.flush() == 0
    assert store.counts == {"a": 3, "b": 1, "c": 1}
    pending.close()


def test_counts_noted_during_a_failing_write_are_merged_not_lost():
    store = Store()
    pending = PendingDuplicates(store.write, interval=3600)

    def write(key: str, count: int, latest: datetime) -> bool:
        pending.add(key, T0 + timedelta(minutes=5))  # a request thread, while we write
        raise ConnectionError("unavailable")

    pending.write = write
    pending.add("a", T0)
    assert pending.flush() == 1
    assert pending.pending() == {"a": 2}
    pending.write = store.write
    assert pending.flush() == 0
    assert store.counts == {"a": 2} and store.latest["a"] == T0 + timedelta(minutes=5)
    pending.close()


def test_a_key_that_keeps_failing_is_given_up_after_max_failures(caplog):
    store = Store()
    store.failing.add("bad")
    pending = PendingDuplicates(store.write, interval=3600, max_failures=3)
    pending.add("bad", T0)
    pending.add("bad", T0)
    with caplog.at_level(logging.WARNING, logger="triggers.ledger"):
        assert [pending.flush() for _ in range(3)] == [1, 1, 0]
    assert pending.pending() == {} and pending.stats["dropped"] == 2
    assert "gave up writing 2 duplicate count(s) of bad after 3 failed attempts" in caplog.text
    pending.close()


def test_the_map_is_bounded_and_says_what_it_dropped(caplog):
    store = Store()
    pending = PendingDuplicates(store.write, interval=3600, max_keys=2)
    with caplog.at_level(logging.WARNING, logger="triggers.ledger"):
        for key in ("a", "b", "c", "a"):
            pending.add(key, T0)
    # a key already waiting still counts; a new one beyond the limit is dropped and logged
    assert pending.pending() == {"a": 2, "b": 1} and pending.stats["dropped"] == 1
    assert "dropped a duplicate count of c" in caplog.text and "(the limit)" in caplog.text
    pending.close()


def test_the_flusher_writes_by_itself_ends_when_idle_and_starts_again():
    store = Store()
    pending = PendingDuplicates(store.write, interval=0.02)
    pending.add("a", T0)
    wait_for(lambda: store.counts["a"] == 1, "the flusher to write a's count")
    wait_for(lambda: pending._thread is None, "the idle flusher to end")
    pending.add("a", T0)
    wait_for(lambda: store.counts["a"] == 2, "a new flusher to write the next count")
    pending.close()


def test_counts_from_many_threads_arrive_exactly():
    store = Store()
    pending = PendingDuplicates(store.write, interval=0.005)
    keys = ("a", "b", "c")

    def deliver(thread: int) -> None:
        for i in range(300):
            pending.add(keys[(thread + i) % 3], T0)

    threads = [threading.Thread(target=deliver, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pending.flush() == 0
    assert store.counts == {"a": 800, "b": 800, "c": 800}
    assert pending.stats["counted"] == 2400
    pending.close()


def test_the_exit_hook_closes_every_live_instance_and_keeps_none_alive():
    store = Store()
    pending = PendingDuplicates(store.write, interval=3600)
    pending.add("a", T0)  # starts the flusher, which makes it known to the exit hook
    assert pending in duplicate_counts._LIVE and duplicate_counts._exit_hook == [True]
    duplicate_counts._close_all()
    assert store.counts == {"a": 1} and pending.pending() == {}
    wait_for(lambda: pending._thread is None, "the closed flusher to end")
    # closed: a count noted after the hook ran stays for flush(), no thread starts again
    pending.add("a", T0)
    assert pending._thread is None and pending.flush() == 0 and store.counts == {"a": 2}
    # held weakly: an instance nobody uses any more is not kept for the hook
    reference = weakref.ref(pending)
    pending = None
    gc.collect()
    wait_for(lambda: reference() is None, "the instance to be collected")


def test_flush_all_writes_what_every_instance_holds():
    stores = [Store(), Store()]
    instances = [PendingDuplicates(s.write, interval=3600) for s in stores]
    for instance in instances:
        instance.add("a", T0)
    assert duplicate_counts.flush_all() == 0
    assert [s.counts for s in stores] == [{"a": 1}, {"a": 1}]
    for instance in instances:
        instance.close()


@pytest.mark.parametrize(
    "options", [{"interval": 0}, {"interval": 1, "max_keys": 0}, {"interval": 1, "max_failures": 0}]
)
def test_bad_options_are_refused(options):
    with pytest.raises(ValueError):
        PendingDuplicates(Store().write, **options)
