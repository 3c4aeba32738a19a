"""The served function end to end: events/s and latency over HTTP, and resident memory.

    python benchmarks/serve.py [--events 200] [--storm 5] [--concurrency 4]
                               [--servers gunicorn,werkzeug] [--ledgers firestore,sqlite]
                               [--variants triggers,minimal] [--rules-count 1000]
                               [--rounds 2] [--no-warmup-round] [--firestore-warmup 6000]
                               [--no-throughput] [--no-memory] [--json]

Each measured function is a fresh `functions-framework --target handle_http --source ...`
process (its own process group, a free loopback port) served by

* gunicorn  — what `functions-framework` does when gunicorn is installed (it is a dependency
              on Linux, and what Cloud Run functions run): one worker process forked from an
              arbiter, gthread, THREADS = 4 x cores threads (8 on 2 cores), keep-alive 2 s
* werkzeug  — the same command line with gunicorn hidden: functions-framework's fallback,
              Flask's threaded development server (one process, a thread per connection,
              HTTP/1.1 keep-alive, one access-log line per request on stderr)

Functions: `triggers` (config/rules.yaml, 4 rules; ledger `firestore` against the official
Firestore emulator, or `sqlite` in a temporary file) and `minimal`, the hand-written
benchmarks/_minimal_function.py (Firestore only). Every job runs in the in-process Cloud Run
emulator as `/bin/true`; config/rules.yaml's csv-ingest asks for 2 tasks, so each new event
costs the emulator one execution and two short processes (in this process, on the same cores).

Throughput: --concurrency client threads, each with one keep-alive `http.client` connection,
send the requests of a phase as fast as answers come back:

* new        — --events storage-finalized events with fresh ids, names and generations: each
               launches one execution (checked against the emulator)
* duplicates — the same events re-sent --storm times: each answered as a duplicate
* nomatch    — --events events from a bucket no rule watches: answered without the ledger

Before the measured rounds, the Firestore emulator takes --firestore-warmup untimed writes and
each function serves one untimed round of 100 events (both warm the emulator's JVM: cold, the
function measured first paid several times the emulator CPU per request). --rounds measured
rounds follow, the functions' order reversed every other round, and the ratio table compares
the same round and phase. In each process one untimed warm-up (a new event, its duplicate, a
no-match event) pays the cold start; between phases the emulator is drained, untimed, and so
are triggers' duplicate counts, which the Firestore ledger writes off the request path: the
table says how long after the phase's last answer they were all written.

Reported per phase: events/s (requests / wall time of the phase), p50/p99 latency of one
request as the client sees it, the user + system CPU time the serving process (the gunicorn
worker, or the werkzeug process) spent per request (from /proc, 10 ms ticks: steadier than
rates on a busy machine), whether every answer was the expected one, and the serving
process's VmRSS after the run.

Memory: fresh processes answer one new event, then VmRSS and VmHWM (peak) of the process that
served it (under gunicorn the worker; the arbiter's RSS and the group's PSS are shown too) are
read from /proc: triggers with the 4 sample rules, triggers with --rules-count generated rules
(benchmarks/match.py's generator) plus the 4 samples, and the minimal function.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import platform
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _serving import (  # noqa: E402
    SAMPLE_RULES,
    SERVERS,
    TRIVIAL_JOBS_YAML,
    EventFactory,
    FirestoreEmulator,
    ServedFunction,
    add_server_options,
    bytecode_note,
    install_sigterm,
    machine_cpu_seconds,
    machine_note,
    nearest_rank,
    outcome_of,
    quiet_cloud_run_emulator,
    run_main,
    say,
    server_env,
    server_threads,
)
from match import make_patterns, rules_yaml  # noqa: E402

from triggers.emulators.server import EmulatorServer  # noqa: E402

LEDGERS = ("firestore", "sqlite")
VARIANTS = ("triggers", "minimal")
REQUEST_TIMEOUT = 60.0

Request = tuple[dict[str, str], bytes]


# ---------------------------------------------------------------------------- load generation


def run_phase(
    port: int, variant: str, stream: list[Request], concurrency: int
) -> tuple[float, list[float], Counter[str]]:
    """Send every request from `concurrency` keep-alive connections; (wall, latencies, outcomes).
    A failed request is counted as `error ...` and not retried (a retry could be a duplicate)."""
    n = len(stream)
    latencies = [0.0] * n
    outcomes = [""] * n
    counter = itertools.count()
    lock = threading.Lock()
    threads = max(1, min(concurrency, n))
    gate = threading.Barrier(threads + 1)
    failures: list[BaseException] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
        try:
            conn.connect()
            gate.wait()
            while True:
                with lock:
                    index = next(counter)
                if index >= n:
                    return
                headers, body = stream[index]
                start = time.perf_counter()
                try:
                    conn.request("POST", "/", body=body, headers=headers)
                    response = conn.getresponse()
                    data = response.read()
                    outcome = outcome_of(variant, response.status, data)
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
                    outcome = f"error {type(exc).__name__}"
                latencies[index] = time.perf_counter() - start
                outcomes[index] = outcome
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failures.append(exc)
            gate.abort()
        finally:
            conn.close()

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):  # a thread could not connect: below
        gate.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    wall = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"a client thread failed: {failures[0]!r}")
    return wall, latencies, Counter(outcomes)


# ---------------------------------------------------------------------------- measurements


def measure_throughput(
    variant: str,
    server: str,
    ledger: str,
    env: dict[str, str],
    events: EventFactory,
    emu: EmulatorServer,
    args: argparse.Namespace,
    log_dir: Path,
    tag: str | None = None,
    counted: Any = None,
    firestore_cpu: Any = None,
) -> list[dict[str, Any]]:
    """`counted`: how many duplicates the function's ledger has recorded (triggers on Firestore
    writes them off the request path): the duplicate phase ends when all are written."""
    label = f"{variant}/{server}/{ledger}"
    tag = tag or f"{variant}-{server}-{ledger}"
    served = ServedFunction(variant, server, env, log_dir / f"{tag}.log")
    rows = []
    try:
        served.spawn()
        warm_headers, warm_body = events.make(f"{tag}-warm", 0)
        first = served.first_answer(warm_headers, warm_body, args.timeout)
        if first["outcome"] != "launched":
            raise RuntimeError(
                f"{label}: warm-up event not launched: {first['body']}\n{served.output()}"
            )
        say(f"[{label}] up; first answer after {first['answer_s']:.2f}s")
        warm = [(warm_headers, warm_body), events.make(f"{tag}-warm", 1, match=False)]
        _, _, warm_outcomes = run_phase(served.port, variant, warm, 1)
        if warm_outcomes != Counter({"duplicate": 1, "nomatch": 1}):
            raise RuntimeError(f"{label}: unexpected warm-up answers {dict(warm_outcomes)}")
        emu.wait_idle(60)

        new = [events.make(tag, i) for i in range(args.events)]
        phases = (
            ("new", new, "launched"),
            ("duplicates", new * args.storm, "duplicate"),
            (
                "nomatch",
                [events.make(f"{tag}-x", i, match=False) for i in range(args.events)],
                "nomatch",
            ),
        )
        for number, (phase, stream, expected) in enumerate(phases, start=1):
            say(f"[{label}] {phase}: {len(stream)} requests, concurrency {args.concurrency}...")
            executions_before = len(emu.store.records())
            cpu_before = served.cpu_seconds()
            machine_before = machine_cpu_seconds()
            fs_before = firestore_cpu() if firestore_cpu else 0.0
            profile = env.get("TRIGGERS_BENCH_PROFILE")
            with (
                profiled(serving_pid(served), profile, number)
                if profile
                else contextlib.nullcontext()
            ):
                wall, latencies, outcomes = run_phase(
                    served.port, variant, stream, args.concurrency
                )
            cpu = served.cpu_seconds() - cpu_before
            machine = machine_cpu_seconds() - machine_before
            fs_cpu = (firestore_cpu() if firestore_cpu else 0.0) - fs_before
            idle = emu.wait_idle(120)
            executions = len(emu.store.records()) - executions_before
            counts_after = None
            if counted is not None and expected == "duplicate":
                # Untimed like the emulator's drain, but reported: the counts' writes must not
                # land in the next phase (they cost the server and the Firestore emulator).
                # The warm-up's one duplicate is counted too.
                counts_after = wait_counted(counted, 1 + len(stream))
            latencies.sort()
            n = len(stream)
            problems = []
            if outcomes != Counter({expected: n}):
                problems.append(f"expected {n} x {expected}, got {dict(outcomes)}")
            wanted = n if expected == "launched" else 0
            if executions != wanted:
                problems.append(f"expected {wanted} executions, the emulator has {executions}")
            if not idle:
                problems.append("executions still running 120 s after the phase")
            if counts_after is not None and counts_after[1] != 1 + n:
                problems.append(f"{counts_after[1]} duplicates counted, expected {1 + n}")
            row = {
                "function": variant,
                "server": server,
                "ledger": ledger,
                "phase": phase,
                "requests": n,
                "concurrency": args.concurrency,
                "seconds": round(wall, 3),
                "events_per_s": round(n / wall, 1),
                "p50_ms": round(nearest_rank(latencies, 0.50) * 1000, 2),
                "p99_ms": round(nearest_rank(latencies, 0.99) * 1000, 2),
                "server_cpu_ms_per_request": round(cpu / n * 1000, 2),
                # Everything the phase cost the machine: the server, the Firestore emulator,
                # the Cloud Run emulator's task processes, the client threads.
                "machine_cpu_ms_per_request": round(machine / n * 1000, 2),
                "firestore_cpu_ms_per_request": round(fs_cpu / n * 1000, 2),
                "outcomes": dict(outcomes),
                "executions": executions,
                "problems": problems,
                "counts_written_after_s": None if counts_after is None else counts_after[0],
            }
            for problem in problems:
                say(f"[{label}] {phase}: PROBLEM: {problem}")
            say(
                f"[{label}] {phase}: {row['events_per_s']:,.1f} events/s, p50 {row['p50_ms']} ms, "
                f"p99 {row['p99_ms']} ms, server CPU {row['server_cpu_ms_per_request']} ms/req"
            )
            rows.append(row)
        memory = served.memory()
        for row in rows:
            row["rss_after_kib"] = memory.get("rss_kib")
            row["hwm_after_kib"] = memory.get("hwm_kib")
    finally:
        served.stop()
    return rows


def warm_up(
    variant: str,
    server: str,
    env: dict[str, str],
    events: EventFactory,
    emu: EmulatorServer,
    args: argparse.Namespace,
    log_dir: Path,
) -> None:
    served = ServedFunction(variant, server, env, log_dir / f"warm-{variant}-{server}.log")
    try:
        say(f"[{variant}/{server}] untimed warm-up process...")
        served.spawn()
        served.first_answer(*events.make(f"warm-{variant}-{server}", 0), args.timeout)
    finally:
        served.stop()
    emu.wait_idle(60)


def measure_memory(
    name: str,
    variant: str,
    server: str,
    env: dict[str, str],
    events: EventFactory,
    emu: EmulatorServer,
    args: argparse.Namespace,
    log_dir: Path,
    rules: int,
) -> dict[str, Any]:
    served = ServedFunction(variant, server, env, log_dir / f"memory-{name}-{server}.log")
    try:
        served.spawn()
        headers, body = events.make(f"mem-{name}-{server}", 0)
        first = served.first_answer(headers, body, args.timeout)
        if first["outcome"] != "launched":
            raise RuntimeError(
                f"{name}/{server}: event not launched: {first['body']}\n{served.output()}"
            )
        time.sleep(0.2)  # let the answered request's thread settle
        memory = served.memory()
    finally:
        served.stop()
    emu.wait_idle(60)
    row = {
        "function": name,
        "server": server,
        "rules": rules,
        "ledger": env.get("TRIGGERS_LEDGER", "firestore"),
        "first_answer_s": round(first["answer_s"], 3),
        **memory,
    }
    say(
        f"[memory] {name}/{server}: VmRSS {row.get('rss_kib', 0) / 1024:.1f} MiB, VmHWM "
        f"{row.get('hwm_kib', 0) / 1024:.1f} MiB (first answer {row['first_answer_s']}s)"
    )
    return row


# ---------------------------------------------------------------------------- output


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def _mib(kib: Any) -> str:
    return f"{kib / 1024:.1f}" if isinstance(kib, (int, float)) else "-"


def print_tables(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"\nPython {result['python']} on {platform.machine()}, {result['cores']} cores"
        f"{'; ' + result['machine'] if result['machine'] else ''}. Servers: "
        + "; ".join(f"{k} = {v}" for k, v in result["servers"].items())
        + f"; {result['bytecode']}."
    )
    if result["throughput"]:
        print(
            f"\nThroughput: {args.concurrency} client threads with keep-alive connections; "
            f"{args.events} new events, {args.storm}x duplicates of them, {args.events} "
            "no-match events.\n"
        )
        print(
            "| round | function | server | ledger | phase | requests | events/s | p50 (ms) | "
            "p99 (ms) | server CPU (ms/req) | Firestore emulator CPU (ms/req) | machine CPU "
            "(ms/req) | answers as expected | RSS after (MiB) | counts written after (s) |"
        )
        print("|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|")
        for r in result["throughput"]:
            ok = "yes" if not r["problems"] else "NO"
            print(
                f"| {r.get('round', 1)} | {r['function']} | {r['server']} | {r['ledger']} | "
                f"{r['phase']} | "
                f"{r['requests']:,} | {r['events_per_s']:,.1f} | {r['p50_ms']:.2f} | "
                f"{r['p99_ms']:.2f} | {r['server_cpu_ms_per_request']:.2f} | "
                f"{r['firestore_cpu_ms_per_request']:.2f} | "
                f"{r['machine_cpu_ms_per_request']:.2f} | {ok} | "
                f"{_mib(r.get('rss_after_kib'))} | {_or_dash(r.get('counts_written_after_s'))} |"
            )
        ratios = ratio_rows(result["throughput"])
        if ratios:
            print(
                "\ntriggers (Firestore ledger) against the minimal function, events/s of the "
                "same round and phase:\n"
            )
            print(
                "| server | phase | ratio per round | ratio of the sums | machine CPU per "
                "request, minimal / triggers |"
            )
            print("|---|---|---|---:|---:|")
            for r in ratios:
                rounds = ", ".join(f"{x:.2f}x" for x in r["per_round"])
                print(
                    f"| {r['server']} | {r['phase']} | {rounds} | **{r['overall']:.2f}x** | "
                    f"{r['machine_cpu']:.2f}x |"
                )
    if result["memory"]:
        print(
            "\nMemory after one answered event (the serving process: the gunicorn worker, or "
            "the werkzeug process). First answer: one cold start each, informative only:\n"
        )
        print(
            "| function | server | rules | first answer (s) | VmRSS (MiB) | VmHWM (MiB) | "
            "arbiter RSS (MiB) | group PSS (MiB) |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in result["memory"]:
            print(
                f"| {r['function']} | {r['server']} | {r['rules']:,} | "
                f"{r['first_answer_s']:.2f} | {_mib(r.get('rss_kib'))} | "
                f"{_mib(r.get('hwm_kib'))} | {_mib(r.get('arbiter_rss_kib'))} | "
                f"{_mib(r.get('group_pss_kib'))} |"
            )
    for what, reason in result["skipped"].items():
        print(f"\n{what}: skipped ({reason})")
    for r in result["throughput"]:
        for problem in r["problems"]:
            print(f"\nPROBLEM {r['function']}/{r['server']}/{r['ledger']}/{r['phase']}: {problem}")
    print(
        "\nThe Cloud Run emulator and the client threads share this process and the machine's "
        "cores with the server and the Firestore emulator: compare rows with each other, "
        "not with a deployed function."
    )


# Loaded by every Python process of a --profile run (PYTHONPATH): the serving worker starts
# yappi (CPU clock, every thread) on SIGRTMIN+1 and writes what it measured on SIGRTMIN+2.
PROFILE_HOOK = """
import os, signal
_out = os.environ.get("TRIGGERS_BENCH_PROFILE")
if _out:
    import yappi
    yappi.set_clock_type("cpu")
    _runs = [0]

    def _start(signum, frame):
        yappi.clear_stats()
        yappi.start(builtins=False, profile_threads=True)

    def _write(signum, frame):
        yappi.stop()
        _runs[0] += 1
        path = f"{_out}-{_runs[0]}.txt"
        columns = {0: ("name", 100), 1: ("ncall", 12), 2: ("tsub", 9), 3: ("ttot", 9)}
        with open(path + ".tmp", "w") as out:
            yappi.get_func_stats().sort("ttot").print_all(out=out, columns=columns)
        os.replace(path + ".tmp", path)

    signal.signal(signal.SIGRTMIN + 1, _start)
    signal.signal(signal.SIGRTMIN + 2, _write)
"""


def profiled(pid: int, path_prefix: str, number: int) -> Any:
    """Context manager: the worker `pid` profiled (PROFILE_HOOK) for the duration; its
    numbered report is waited for afterwards."""

    @contextlib.contextmanager
    def around():
        os.kill(pid, signal.SIGRTMIN + 1)
        time.sleep(0.3)  # the handler runs between bytecodes of the worker's main thread
        try:
            yield
        finally:
            os.kill(pid, signal.SIGRTMIN + 2)
            report = Path(f"{path_prefix}-{number}.txt")
            deadline = time.monotonic() + 30
            while not report.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            say(f"CPU profile: {report}" if report.exists() else f"no profile in {report}")

    return around()


def warm_up_args(args: argparse.Namespace) -> argparse.Namespace:
    """The warm-up round's size: enough requests of every phase to compile their paths."""
    return argparse.Namespace(
        **{**vars(args), "events": min(args.events, 100), "storm": min(args.storm, 2)}
    )


def serving_pid(served: ServedFunction) -> int:
    """The process that serves requests: gunicorn's worker, or the werkzeug process."""
    pids = served.pids()
    return pids.get("worker", pids["main"])


def with_profile_hook(
    environ: dict[str, str], tmp_path: Path, directory: str, name: str
) -> dict[str, str]:
    """`environ` for a --profile run: PROFILE_HOOK on the path, reports to `directory`."""
    hook = tmp_path / "profile-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(PROFILE_HOOK, encoding="utf-8")
    Path(directory).mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join(p for p in (str(hook), environ.get("PYTHONPATH", "")) if p)
    prefix = str(Path(directory).resolve() / name)
    return {**environ, "PYTHONPATH": path, "TRIGGERS_BENCH_PROFILE": prefix}


def wait_counted(counted: Any, expected: int, timeout: float = 60.0) -> tuple[float, int]:
    """(seconds until `counted()` reached `expected`, the last count)."""
    started = time.perf_counter()
    count = counted()
    while count < expected and time.perf_counter() - started < timeout:
        time.sleep(0.1)
        count = counted()
    return round(time.perf_counter() - started, 2), count


def duplicates_counter(client: Any, collection: str) -> Any:
    """A function summing the `duplicates` of every ledger record in `collection`."""

    def counted() -> int:
        docs = client.collection(collection).select(["duplicates"]).stream()
        return sum(int((doc.to_dict() or {}).get("duplicates") or 0) for doc in docs)

    return counted


def ratio_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """triggers/firestore events/s over the minimal function's, per server and phase: one ratio
    per round and the ratio of the totals (requests over summed wall time) across rounds."""
    by: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for r in rows:
        if r["ledger"] == "firestore":
            by[(r["function"], r["server"], r["phase"], r.get("round", 1))] = r
    out = []
    for (function, server, phase, _), _row in sorted(by.items()):
        if function != "triggers" or any(
            o["server"] == server and o["phase"] == phase for o in out
        ):
            continue
        pairs = [
            (by[("triggers", server, phase, n)], by[("minimal", server, phase, n)])
            for (f, s_, p, n) in sorted(by)
            if f == "triggers" and s_ == server and p == phase and ("minimal", s_, p, n) in by
        ]
        if not pairs:
            continue
        per_round = [t["events_per_s"] / m["events_per_s"] for t, m in pairs]
        spent = lambda rs: sum(r["machine_cpu_ms_per_request"] * r["requests"] for r in rs)  # noqa: E731
        cpu = spent([m for _, m in pairs]) / spent([t for t, _ in pairs])
        rate = lambda rs: sum(r["requests"] for r in rs) / sum(r["seconds"] for r in rs)  # noqa: E731
        overall = rate([t for t, _ in pairs]) / rate([m for _, m in pairs])
        out.append(
            {
                "server": server,
                "phase": phase,
                "per_round": per_round,
                "overall": overall,
                "machine_cpu": cpu,
            }
        )
    return out


def warm_firestore(firestore: FirestoreEmulator, writes: int, concurrency: int) -> None:
    """Untimed ledger-shaped traffic on a scratch collection, so that neither function meets
    the emulator's JVM before its JIT has compiled the paths both use: run cold, whichever
    function is measured first paid several times the emulator CPU per request (seen: 8 ms
    against 1.5 ms per new event once warm, falling over ~3,000 events)."""
    if writes <= 0:
        return
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    from google.cloud import firestore as fs

    client = firestore.client()
    collection = client.collection(f"warm-up-{uuid.uuid4().hex[:8]}")
    now = datetime.now(UTC)
    document = json.dumps({"data": {"name": "x" * 200, "bucket": "b", "size": "1"}})

    def one(i: int) -> None:
        doc = collection.document(f"{i:08d}")
        record = {
            **{name: f"{name}-{i}" for name in ("rule", "dedup_key", "job", "token", "event_id")},
            **{name: now for name in ("created_at", "updated_at", "lease_until", "expire_at")},
            "status": "claimed",
            "event": '{"id": "warm"}',
            "event_document": document,
        }
        written = doc.create(record)
        with contextlib.suppress(Exception):
            doc.create(record)  # a duplicate's failed create
        doc.get(field_paths=["status", "token", "lease_until", "expire_at"])
        doc.update(
            {"status": "launched", "execution": f"e-{i}", "request": document},
            option=client.write_option(last_update_time=written.update_time),
        )
        doc.update({"duplicates": fs.Increment(1)})
        doc.update({"status": "launched"})  # the minimal function's plain update

    started = time.perf_counter()
    say(f"warming up the Firestore emulator ({writes} ledger records)...")
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(writes)))
    say(f"Firestore emulator warm after {time.perf_counter() - started:.1f}s")


# ---------------------------------------------------------------------------- main


def _split(
    value: str, allowed: tuple[str, ...], what: str, parser: argparse.ArgumentParser
) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        parser.error(f"unknown {what} {unknown}; choose from {', '.join(allowed)}")
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events",
        type=int,
        default=200,
        help="new events (and no-match events) per throughput run",
    )
    parser.add_argument(
        "--storm",
        type=int,
        default=5,
        help="how many times each event is re-sent in the duplicate phase",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="client threads")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument(
        "--ledgers",
        default=",".join(LEDGERS),
        help="triggers' ledger backends (the minimal function uses Firestore)",
    )
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument(
        "--rules-count", type=int, default=1000, help="generated rules for the memory measurement"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="throughput rounds; the functions run in the reverse order every other round",
    )
    parser.add_argument(
        "--no-warmup-round",
        dest="warmup_round",
        action="store_false",
        help="skip the untimed round (100 events each function) before the measured rounds",
    )
    parser.add_argument(
        "--firestore-warmup",
        type=int,
        default=6000,
        help="untimed ledger writes that warm up the Firestore emulator's JVM first (0: none)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="write a CPU profile (yappi, every thread) of the serving process per measured"
        " phase to DIR/<function>-<server>-<ledger>-r<round>-<phase number>.txt",
    )
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    add_server_options(parser)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    servers = _split(args.servers, SERVERS, "server(s)", parser)
    ledgers = _split(args.ledgers, LEDGERS, "ledger(s)", parser)
    variants = _split(args.variants, VARIANTS, "variant(s)", parser)
    if min(args.events, args.storm, args.concurrency, args.rules_count, args.rounds) < 1:
        parser.error(
            "--events, --storm, --concurrency, --rules-count and --rounds must be at least 1"
        )

    install_sigterm()
    note = machine_note()
    run_id = uuid.uuid4().hex[:8]
    events = EventFactory(run_id)
    skipped: dict[str, str] = {}
    throughput: list[dict[str, Any]] = []
    memory: list[dict[str, Any]] = []
    need_firestore = "minimal" in variants or "firestore" in ledgers or not args.no_memory
    firestore_reason = FirestoreEmulator.unavailable() if need_firestore else None

    with tempfile.TemporaryDirectory(prefix="triggers-bench-serve-") as tmp:
        tmp_path = Path(tmp)
        many_rules = tmp_path / f"rules-{args.rules_count}"
        many_rules.mkdir()
        (many_rules / "generated.yaml").write_text(
            rules_yaml(make_patterns(args.rules_count, random.Random(args.rules_count))),
            encoding="utf-8",
        )
        shutil.copy(SAMPLE_RULES, many_rules / "samples.yaml")

        emu = quiet_cloud_run_emulator(tmp_path, TRIVIAL_JOBS_YAML)
        firestore = FirestoreEmulator(tmp_path)
        pycache = tmp_path / "pycache" if args.bytecode == "cached" else None
        emu.start()
        try:
            say(f"Cloud Run emulator on {emu.url}; every job runs /bin/true")
            fs_host = None
            if need_firestore and firestore_reason is None:
                say("starting the Firestore emulator...")
                started = time.perf_counter()
                firestore.start()
                fs_host = firestore.host_port
                say(f"Firestore emulator on {fs_host} after {time.perf_counter() - started:.1f}s")
                warm_firestore(firestore, args.firestore_warmup, args.concurrency)
            elif need_firestore:
                say(f"Firestore emulator unavailable: {firestore_reason}")

            def env(variant: str, ledger: str, rules: Path, name: str) -> dict[str, str]:
                return server_env(
                    variant,
                    cloud_run=emu.url,
                    firestore=fs_host,
                    ledger=ledger,
                    rules=rules,
                    collection=f"bench-serve-{name}-{run_id}",
                    sqlite_path=tmp_path / f"ledger-{name}.sqlite3",
                    pycache=pycache,
                )

            if not args.no_throughput:
                for server in servers:
                    combos = [("triggers", ledger) for ledger in ledgers if "triggers" in variants]
                    if "minimal" in variants:
                        combos.append(("minimal", "firestore"))
                    fs_client = firestore.client() if fs_host is not None else None
                    # Round 0 is the untimed warm-up: each function's own paths through the
                    # Firestore emulator's JVM (masked reads, preconditions, transforms) get
                    # compiled before any measured round, whichever function comes first.
                    first = 0 if args.warmup_round else 1
                    for round_ in range(first, args.rounds + 1):
                        ordered = combos if round_ % 2 else combos[::-1]
                        for variant, ledger in ordered:
                            if ledger == "firestore" and fs_host is None:
                                skipped[f"{variant}/{server}/{ledger}"] = str(firestore_reason)
                                continue
                            name = f"{variant}-{server}-{ledger}-r{round_}"
                            environ = env(variant, ledger, SAMPLE_RULES, name)
                            if args.profile and round_:
                                environ = with_profile_hook(environ, tmp_path, args.profile, name)
                            counted = None
                            if variant == "triggers" and ledger == "firestore":
                                collection = environ["TRIGGERS_FIRESTORE_COLLECTION"]
                                counted = duplicates_counter(fs_client, collection)
                            if round_ == 0:
                                say(f"[{variant}/{server}/{ledger}] untimed warm-up round...")
                            rows = measure_throughput(
                                variant,
                                server,
                                ledger,
                                environ,
                                events,
                                emu,
                                args if round_ else warm_up_args(args),
                                tmp_path,
                                tag=name,
                                counted=counted,
                                firestore_cpu=firestore.cpu_seconds if fs_host else None,
                            )
                            if round_:
                                throughput += [{**row, "round": round_} for row in rows]

            if not args.no_memory:
                ledger = "firestore" if fs_host is not None else "sqlite"
                for server in servers:
                    if args.no_throughput:
                        # No throughput run has started this server yet: fill the bytecode
                        # cache first (compiling would inflate the peak), untimed.
                        for variant in ("triggers", "minimal"):
                            if variant == "triggers" or fs_host is not None:
                                warm_up(
                                    variant,
                                    server,
                                    env(variant, ledger, many_rules, f"warm-{server}"),
                                    events,
                                    emu,
                                    args,
                                    tmp_path,
                                )
                    cases = [
                        ("triggers", "triggers", SAMPLE_RULES, 4),
                        (
                            f"triggers ({args.rules_count:,} + 4 rules)",
                            "triggers",
                            many_rules,
                            args.rules_count + 4,
                        ),
                        ("minimal", "minimal", None, 1),
                    ]
                    for name, variant, rules, count in cases:
                        if variant == "minimal" and fs_host is None:
                            skipped[f"memory minimal/{server}"] = str(firestore_reason)
                            continue
                        key = f"mem-{variant}-{count}-{server}"
                        memory.append(
                            measure_memory(
                                name,
                                variant,
                                server,
                                env(variant, ledger, rules or SAMPLE_RULES, key),
                                events,
                                emu,
                                args,
                                tmp_path,
                                count,
                            )
                        )
        finally:
            say("stopping the emulators...")
            firestore.stop()
            emu.stop()

    result = {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "machine": note,
        "servers": {
            s: (
                f"gunicorn via functions-framework: 1 worker, gthread, {server_threads()} threads"
                if s == "gunicorn"
                else "werkzeug: functions-framework's fallback, Flask dev server, threaded"
            )
            for s in servers
        },
        "bytecode": bytecode_note(args.bytecode),
        "events": args.events,
        "storm": args.storm,
        "concurrency": args.concurrency,
        "throughput": throughput,
        "memory": memory,
        "skipped": skipped,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_tables(result, args)
    return 1 if any(r["problems"] for r in throughput) else 0


if __name__ == "__main__":
    run_main(main)
