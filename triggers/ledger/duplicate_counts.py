"""Duplicate counts added up in memory and written off the request path.

A duplicate is acknowledged as soon as the ledger has decided it; counting it on its record
(`duplicates`, `updated_at`) is a diagnostic, never part of a launch decision. Writing that
count synchronously cost the Firestore ledger one commit per duplicate on the served path (a
third round trip after the failed create and the read). `PendingDuplicates` takes it off the
path instead: `add` notes (count, latest time) per ledger key under a lock and returns; a daemon
thread writes each key's total at most once per `interval` seconds, so N duplicates of one
record in an interval cost one write, not N.

What a crash can lose: the counts noted since the last flush (at most one interval's), which
is why every instance whose flusher has started is flushed once more at interpreter exit (one
`atexit` hook per process, holding the instances weakly: a gunicorn worker that exits on SIGTERM
runs it; `flush_all` does the same on demand). Bounded whatever happens to the store: at most
`max_keys` keys wait (the counts of further keys are dropped and logged), and a key whose write
fails `max_failures` times in a row is dropped and logged, so an outage never grows memory
without bound.

The store-specific part is the `write(key, n, latest) -> bool` callable: True when the record
was counted, False when it no longer exists (deleted by a TTL policy: nothing to count, not an
error); anything it raises is a failed write, and the counts are kept for the next flush.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

log = logging.getLogger("triggers.ledger")

DEFAULT_MAX_KEYS = 10_000
DEFAULT_MAX_FAILURES = 10
# How many dropped keys a log line names (the rest are counted).
_NAMED_IN_LOG = 5

# Every instance whose flusher has started, held weakly: what the exit hook flushes.
_LIVE: weakref.WeakSet[PendingDuplicates] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()
_exit_hook: list[bool] = []  # registered once per process, on the first flusher


@dataclass(frozen=True, slots=True)
class Pending:
    """The duplicates of one record not written yet."""

    count: int
    latest: datetime
    failures: int = 0  # consecutive failed writes of this key

    def plus(self, count: int, latest: datetime) -> Pending:
        return Pending(self.count + count, max(self.latest, latest), self.failures)


class PendingDuplicates:
    """Per-key duplicate counts, flushed by a lazily started daemon thread (thread-safe)."""

    def __init__(
        self,
        write: Callable[[str, int, datetime], bool],
        *,
        interval: float,
        max_keys: int = DEFAULT_MAX_KEYS,
        max_failures: int = DEFAULT_MAX_FAILURES,
        name: str = "ledger",
    ) -> None:
        if interval <= 0:
            raise ValueError("the flush interval must be positive")
        if max_keys < 1 or max_failures < 1:
            raise ValueError("max_keys and max_failures must be at least 1")
        self.write = write
        self.interval = interval
        self.max_keys = max_keys
        self.max_failures = max_failures
        self.name = name
        # What happened to the counts: `counted` duplicates written, `writes` documents written
        # (one per key per flush), `gone` keys whose record no longer existed, `failed` writes
        # that raised, `dropped` duplicates given up (map full, or too many failures).
        self.stats: Counter[str] = Counter()
        self._pending: dict[str, Pending] = {}
        self._lock = threading.Lock()  # guards _pending, _thread and stats
        self._flushing = threading.Lock()  # one flush at a time: the thread, flush(), atexit
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def add(self, key: str, now: datetime) -> None:
        """Note one duplicate of `key` at `now`; never blocks on the store."""
        with self._lock:
            current = self._pending.get(key)
            full = current is None and len(self._pending) >= self.max_keys
            if full:
                self.stats["dropped"] += 1
            else:
                self._pending[key] = Pending(1, now) if current is None else current.plus(1, now)
                self._start_locked()
        if full:
            log.warning(
                "%s: dropped a duplicate count of %s: %d records' counts are already waiting "
                "to be written (the limit)",
                self.name,
                key,
                self.max_keys,
            )

    def pending(self) -> dict[str, int]:
        """The counts not written yet, by key (a copy)."""
        with self._lock:
            return {key: p.count for key, p in self._pending.items()}

    def flush(self) -> int:
        """Write every pending count now. Returns how many keys are still pending afterwards
        (their write failed, or they were counted meanwhile): 0 when all went through."""
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, {}
            items = list(batch.items())
            unwritten: dict[str, Pending] = {}
            given_up: dict[str, Pending] = {}
            for index, (key, entry) in enumerate(items):
                try:
                    existed = self.write(key, entry.count, entry.latest)
                except Exception as exc:  # noqa: BLE001 - any failure keeps the counts
                    entry = replace(entry, failures=entry.failures + 1)
                    with self._lock:
                        self.stats["failed"] += 1
                    log.warning(
                        "%s: could not write %d duplicate count(s) of %s (attempt %d of %d): %s",
                        self.name,
                        entry.count,
                        key,
                        entry.failures,
                        self.max_failures,
                        exc,
                    )
                    # The store is probably down: keep the rest, untried, for the next flush
                    # instead of spending a deadline on each of them now. The failed key goes
                    # last, so that a record that cannot be written does not hold up the others.
                    unwritten.update(items[index + 1 :])
                    if entry.failures >= self.max_failures:
                        given_up[key] = entry
                    else:
                        unwritten[key] = entry
                    break
                with self._lock:
                    self.stats["writes"] += 1
                    if existed:
                        self.stats["counted"] += entry.count
                    else:
                        self.stats["gone"] += 1
            self._give_up(given_up)
            return self._keep(unwritten)

    def close(self) -> None:
        """Flush, and stop the thread (it would stop by itself once nothing is pending)."""
        self._stop.set()
        self.flush()

    # -- the flusher thread -------------------------------------------------------------------

    def _start_locked(self) -> None:
        """Start the flusher if it is not running (the caller holds `_lock`)."""
        if self._thread is not None or self._stop.is_set():
            return
        _track(self)
        self._thread = threading.Thread(
            target=self._run, name=f"{self.name}-duplicate-flusher", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must outlive any surprise
                log.exception("%s: flushing duplicate counts failed", self.name)
            with self._lock:
                if not self._pending:
                    # Idle: end the thread; the next `add` starts another one.
                    self._thread = None
                    return
        with self._lock:
            self._thread = None

    # -- bookkeeping --------------------------------------------------------------------------

    def _keep(self, failed: dict[str, Pending]) -> int:
        """Put the counts that were not written back, merged with those noted meanwhile."""
        dropped: dict[str, int] = {}
        with self._lock:
            for key, entry in failed.items():
                newer = self._pending.get(key)
                if newer is not None:
                    self._pending[key] = Pending(
                        entry.count + newer.count, max(entry.latest, newer.latest), entry.failures
                    )
                elif len(self._pending) < self.max_keys:
                    self._pending[key] = entry
                else:
                    dropped[key] = entry.count
            if dropped:
                self.stats["dropped"] += sum(dropped.values())
            left = len(self._pending)
        if dropped:
            log.warning(
                "%s: dropped %d duplicate count(s) of %d record(s) (%s): %d records' counts are "
                "already waiting to be written (the limit)",
                self.name,
                sum(dropped.values()),
                len(dropped),
                ", ".join(list(dropped)[:_NAMED_IN_LOG]),
                self.max_keys,
            )
        return left

    def _give_up(self, given_up: dict[str, Pending]) -> None:
        if not given_up:
            return
        with self._lock:
            self.stats["dropped"] += sum(e.count for e in given_up.values())
        for key, entry in given_up.items():
            log.error(
                "%s: gave up writing %d duplicate count(s) of %s after %d failed attempts",
                self.name,
                entry.count,
                key,
                entry.failures,
            )


def _track(pending: PendingDuplicates) -> None:
    """Remember `pending` (weakly: never keeping a backend alive) for the exit hook, which is
    registered with the first flusher of the process."""
    with _LIVE_LOCK:
        _LIVE.add(pending)
        if not _exit_hook:
            atexit.register(_close_all)
            _exit_hook.append(True)


def flush_all() -> int:
    """Write the pending counts of every instance in this process now (a test session does
    this before its emulator stops). Returns how many keys are still pending in all."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    return sum(pending.flush() for pending in live)


def _close_all() -> None:
    """At exit (a gunicorn worker leaving on SIGTERM): the last interval's counts."""
    with _LIVE_LOCK:
        live = list(_LIVE)
    for pending in live:
        try:
            pending.close()
        except Exception:  # noqa: BLE001 - at exit, a log line is all that is left to do
            log.exception("%s: flushing duplicate counts at exit failed", pending.name)
