"""Dispatch throughput end to end: `Dispatcher.dispatch`, a real ledger, the Cloud Run emulator.

    python benchmarks/dispatch.py [--events 200] [--storm 3] [--backends sqlite,firestore,memory]
                                  [--concurrency 1] [--grouped] [--json]

For each ledger backend, the same rules (one storage rule matching every event) and the same
runner (`CloudRunRunner` over REST, the real google-cloud-run client, to the in-process Cloud Run
emulator on a free loopback port):

* sqlite     — `SQLiteBackend`, a file in a temporary directory
* firestore  — `FirestoreBackend` against the official Firestore emulator, started here with
               `gcloud emulators firestore start` (its process group is killed at the end, also
               on Ctrl-C or an error); skipped with a note if gcloud or Java is missing
* memory     — `MemoryBackend`: the same path without a store, which shows the ledger's share

and two phases:

* new        — N storage-finalized events with distinct ids and names: each launches one
               execution (claim → jobs.run → record `launched`)
* duplicates — the same N events delivered --storm more times: each is acked as a duplicate
               and never reaches the emulator (all N, then all N again, ...; with --grouped
               each event's copies back to back, a redelivery storm)

Reported per phase: events/s, p50/p99 latency of one `dispatch`, the time spent in the ledger
backend and in the runner per event, and the ledger round trips per event from the backends'
own counters (`calls`; for Firestore also `rpcs`, its real round trips on the request path,
and the commits its duplicate flusher made off the path, flushed at the end of each phase,
untimed). Every launched execution is checked against the emulator (exactly one per new
event, none per duplicate).

The emulator spawns one local process per execution (the job is `python -c pass`, one task), so
new-event throughput is bounded by process creation on the machine, not by the ledger. Dispatch
is sequential on one thread unless --concurrency K (a pool of K threads). Between phases the
emulator is drained (every execution finished) so that the duplicate phase does not share the
CPU with task processes; the drain is not timed. One untimed warm-up event per backend pays the
imports and opens the connections first.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serving import (  # noqa: E402
    FirestoreEmulator,
    nearest_rank,
    quiet_cloud_run_emulator,
    run_main,
    say,
)

from triggers.dispatch import Dispatcher, Outcome
from triggers.emulators.server import EmulatorServer
from triggers.events.model import STORAGE_FINALIZED, Event
from triggers.ledger import Ledger
from triggers.ledger.memory import MemoryBackend
from triggers.ledger.sqlite import SQLiteBackend
from triggers.rules import load_text
from triggers.runners.cloudrun import CloudRunRunner

PROJECT = "demo-project"
REGION = "europe-west1"
JOB = "bench"
BACKENDS = ("sqlite", "firestore", "memory")

JOBS_YAML = f"""\
project: {PROJECT}
region: {REGION}
jobs:
  - name: {JOB}
    command: ["{{python}}", "-c", "pass"]
    task_count: 1
    max_retries: 0
    timeout: 60s
"""

RULES_YAML = f"""\
project: {PROJECT}
region: {REGION}
rules:
  - name: bench
    on: storage.finalized
    job: {JOB}
"""


# ---------------------------------------------------------------------------- events


def make_events(count: int, run_id: str, prefix: str) -> list[Event]:
    return [
        Event(
            id=f"{prefix}-{run_id}-{i}",
            source="//storage.googleapis.com/projects/_/buckets/raw",
            type=STORAGE_FINALIZED,
            kind="storage",
            form="cloudevent-binary",
            data={
                "bucket": "raw",
                "name": f"incoming/{prefix}/part-{i:06d}.csv",
                "generation": 1763683200000000 + i,
                "size": 1024 + i,
                "contentType": "text/csv",
            },
        )
        for i in range(count)
    ]


# ---------------------------------------------------------------------------- timing proxies


class Timed:
    """Delegates to `inner`, adding up the wall time spent in its methods (all threads)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._lock = threading.Lock()
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return attr(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                with self._lock:
                    self.seconds += elapsed

        return timed


# ---------------------------------------------------------------------------- measuring


def run_phase(
    dispatcher: Dispatcher,
    events: list[Event],
    concurrency: int,
) -> tuple[float, list[float], Counter[str]]:
    """Dispatch every event; (wall seconds, latencies, outcomes counted)."""

    def one(event: Event) -> tuple[float, list[Outcome]]:
        start = time.perf_counter()
        decision = dispatcher.dispatch(event)
        return time.perf_counter() - start, [o.outcome for o in decision.outcomes]

    start = time.perf_counter()
    if concurrency <= 1:
        results = [one(e) for e in events]
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            results = list(pool.map(one, events))
    wall = time.perf_counter() - start
    outcomes: Counter[str] = Counter()
    for _, kinds in results:
        outcomes.update(k.value for k in kinds)
    return wall, [r[0] for r in results], outcomes


def per_event(before: Counter[str], after: Counter[str], n: int) -> dict[str, float]:
    diff = {k: after[k] - before[k] for k in after if after[k] - before[k]}
    return {k: round(v / n, 3) for k, v in sorted(diff.items())}


def measure_backend(
    name: str,
    backend: Any,
    runner: CloudRunRunner,
    emu: EmulatorServer,
    args: argparse.Namespace,
    run_id: str,
) -> list[dict[str, Any]]:
    rules = load_text(RULES_YAML, environ={})
    timed_backend = Timed(backend)
    timed_runner = Timed(runner)
    dispatcher = Dispatcher(rules, Ledger(timed_backend), timed_runner)

    # Warm-up: imports, connections, the SQLite schema, the Firestore channel. Not measured.
    warm = dispatcher.dispatch(make_events(1, run_id, f"{name}-warmup")[0])
    if [o.outcome for o in warm.outcomes] != [Outcome.LAUNCHED]:
        raise RuntimeError(f"{name}: the warm-up event was not launched: {warm.as_dict()}")
    emu.wait_idle(60)

    events = make_events(args.events, run_id, name)
    # Interleaved (the default): all events, then all again, ...; grouped: each event's copies
    # back to back, a redelivery storm of one message (what coalesced duplicate counts save on).
    storm = [e for e in events for _ in range(args.storm)] if args.grouped else events * args.storm
    rows = []
    for phase, stream, expected in (
        ("new", events, Outcome.LAUNCHED),
        ("duplicates", storm, Outcome.DUPLICATE),
    ):
        say(
            f"[{name}] {phase}: dispatching {len(stream)} events "
            f"(concurrency {args.concurrency})..."
        )
        calls_before = Counter(backend.calls)
        rpcs_before = Counter(getattr(backend, "rpcs", Counter()))
        off_path_before = off_path_writes(backend)
        executions_before = len(emu.store.records())
        timed_backend.seconds = timed_runner.seconds = 0.0

        wall, latencies, outcomes = run_phase(dispatcher, stream, args.concurrency)

        drain_start = time.perf_counter()
        # Duplicate counts the backend writes off the request path: the rest of them now, so
        # that every phase's writes are counted (untimed, like the drain).
        left = backend.flush() if hasattr(backend, "flush") else 0
        off_path = off_path_writes(backend) - off_path_before
        idle = emu.wait_idle(120)
        drain = time.perf_counter() - drain_start
        executions = len(emu.store.records()) - executions_before
        n = len(stream)
        latencies.sort()
        row: dict[str, Any] = {
            "backend": name,
            "phase": phase,
            "events": n,
            "concurrency": args.concurrency,
            "seconds": round(wall, 3),
            "events_per_s": round(n / wall, 1),
            "p50_ms": round(nearest_rank(latencies, 0.50) * 1000, 2),
            "p99_ms": round(nearest_rank(latencies, 0.99) * 1000, 2),
            "ledger_ms_per_event": round(timed_backend.seconds / n * 1000, 2),
            "runner_ms_per_event": round(timed_runner.seconds / n * 1000, 2),
            "ledger_calls_per_event": per_event(calls_before, backend.calls, n),
            "outcomes": dict(outcomes),
            "executions_started": executions,
            "drain_s": round(drain, 2),
        }
        if hasattr(backend, "rpcs"):
            # On the request path: every RPC but the off-path flusher's commits.
            path_rpcs = Counter(backend.rpcs)
            path_rpcs["commit"] -= off_path
            row["firestore_rpcs_per_event"] = per_event(rpcs_before, path_rpcs, n)
            row["off_path_commits_per_event"] = round(off_path / n, 3)
        problems = []
        if left:
            problems.append(f"{left} records' duplicate counts could not be written")
        if outcomes != Counter({expected.value: n}):
            problems.append(f"expected {n} x {expected.value}, got {dict(outcomes)}")
        wanted = n if expected is Outcome.LAUNCHED else 0
        if executions != wanted:
            problems.append(f"expected {wanted} executions in the emulator, found {executions}")
        if not idle:
            problems.append("the emulator was still running executions 120 s after the phase")
        row["problems"] = problems
        for problem in problems:
            say(f"[{name}] {phase}: PROBLEM: {problem}")
        say(
            f"[{name}] {phase}: {row['events_per_s']:,.1f} events/s, p50 {row['p50_ms']} ms, "
            f"p99 {row['p99_ms']} ms, ledger calls/event {row['ledger_calls_per_event']}"
            + (
                f", rpcs/event {row['firestore_rpcs_per_event']}"
                if "firestore_rpcs_per_event" in row
                else ""
            )
        )
        rows.append(row)
    return rows


def off_path_writes(backend: Any) -> int:
    """Commits the backend made off the request path: its duplicate flusher's writes."""
    pending = getattr(backend, "duplicates", None)
    return 0 if pending is None else int(pending.stats["writes"] + pending.stats["failed"])


# ---------------------------------------------------------------------------- output


def _counts(counts: dict[str, float]) -> str:
    if not counts:
        return "0"
    total = sum(counts.values())
    parts = " + ".join(f"{v:g} {k}" for k, v in counts.items())
    return parts if len(counts) == 1 else f"{parts} = {total:g}"


def print_table(
    rows: list[dict[str, Any]], skipped: dict[str, str], args: argparse.Namespace
) -> None:
    mode = "sequential, one thread" if args.concurrency <= 1 else f"{args.concurrency} threads"
    order = " (each event's copies back to back)" if args.grouped else ""
    print(
        f"\nPython {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
        f"Cloud Run emulator (in-process, REST) and Firestore emulator on loopback; dispatch "
        f"{mode}; {args.events} new events, then each delivered {args.storm} more times"
        f"{order}.\n"
    )
    print(
        "| ledger | phase | events | events/s | p50 (ms) | p99 (ms) | in ledger (ms/ev) | "
        "in runner (ms/ev) | ledger calls / event | Firestore RPCs / event | "
        "off-path commits / event |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|")
    for r in rows:
        rpcs = _counts(r["firestore_rpcs_per_event"]) if "firestore_rpcs_per_event" in r else "-"
        off_path = (
            f"{r['off_path_commits_per_event']:g}" if "firestore_rpcs_per_event" in r else "-"
        )
        print(
            f"| {r['backend']} | {r['phase']} | {r['events']:,} | {r['events_per_s']:,.1f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['ledger_ms_per_event']:.2f} | "
            f"{r['runner_ms_per_event']:.2f} | {_counts(r['ledger_calls_per_event'])} | {rpcs} | "
            f"{off_path} |"
        )
    for name, reason in skipped.items():
        print(f"\n{name}: skipped ({reason})")
    problems = [(r["backend"], r["phase"], p) for r in rows for p in r["problems"]]
    for backend, phase, problem in problems:
        print(f"\nPROBLEM {backend}/{phase}: {problem}")
    print(
        "\nEvery new event starts one execution, which the emulator runs as a local process "
        f"(`python -c pass`): on {os.cpu_count()} cores process creation bounds the new-event "
        "rate. Duplicates never reach the emulator."
    )


# ---------------------------------------------------------------------------- main


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so that every `finally` below runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200, help="new events per backend")
    parser.add_argument(
        "--storm",
        type=int,
        default=3,
        help="how many more times each event is delivered (the duplicate phase)",
    )
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="dispatch from a pool of K threads (default: 1, sequential)",
    )
    parser.add_argument(
        "--grouped",
        action="store_true",
        help="deliver each event's --storm copies back to back (default: all events, then again)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; choose from {', '.join(BACKENDS)}")
    if args.events < 1 or args.storm < 1 or args.concurrency < 1:
        parser.error("--events, --storm and --concurrency must be at least 1")

    signal.signal(signal.SIGTERM, _terminate)
    run_id = uuid.uuid4().hex[:8]
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="triggers-bench-dispatch-") as tmp:
        tmp_path = Path(tmp)
        emu = quiet_cloud_run_emulator(tmp_path, JOBS_YAML)
        emu.start()
        say(f"Cloud Run emulator on {emu.url}; job {JOB} runs `{sys.executable} -c pass`")
        runner = CloudRunRunner(endpoint=emu.url)
        try:
            for name in names:
                if name == "sqlite":
                    backend = SQLiteBackend(tmp_path / "ledger.sqlite3")
                    try:
                        rows += measure_backend(name, backend, runner, emu, args, run_id)
                    finally:
                        backend.close()
                elif name == "memory":
                    rows += measure_backend(name, MemoryBackend(), runner, emu, args, run_id)
                elif name == "firestore":
                    reason = FirestoreEmulator.unavailable()
                    if reason is not None:
                        say(f"[firestore] skipped: {reason}")
                        skipped[name] = reason
                        continue
                    from triggers.ledger.firestore import FirestoreBackend

                    firestore = FirestoreEmulator(tmp_path)
                    try:
                        say("[firestore] starting the Firestore emulator...")
                        started = time.perf_counter()
                        firestore.start()
                        say(
                            f"[firestore] emulator on {firestore.host_port} after "
                            f"{time.perf_counter() - started:.1f}s"
                        )
                        client = firestore.client()
                        try:
                            backend = FirestoreBackend(client, collection=f"bench-{run_id}")
                            rows += measure_backend(name, backend, runner, emu, args, run_id)
                        finally:
                            client.close()
                    finally:
                        firestore.stop()
        finally:
            say("stopping the Cloud Run emulator...")
            emu.stop()

    if args.json:
        print(
            json.dumps(
                {
                    "python": platform.python_version(),
                    "cores": os.cpu_count(),
                    "events": args.events,
                    "storm": args.storm,
                    "grouped": args.grouped,
                    "concurrency": args.concurrency,
                    "skipped": skipped,
                    "results": rows,
                },
                indent=2,
            )
        )
    else:
        print_table(rows, skipped, args)
    return 1 if any(r["problems"] for r in rows) else 0


if __name__ == "__main__":
    run_main(main)
