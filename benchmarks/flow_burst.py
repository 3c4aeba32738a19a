"""Flow control under a burst: a backfill of storage events against the jobs.run quota.

    python benchmarks/flow_burst.py [--events 20000] [--scale 20] [--configs inline,rate,batch]
                                    [--quota 180/min] [--workers 16] [--timeout 1800] [--json]

The scenario of issue 13: N objects land in a bucket at the density of 20,000 in ten minutes
(so N events arrive evenly over 600 x N / 20,000 emulated seconds), one storage rule matches
them all, and the Cloud Run emulator answers `jobs.run` with 429 RESOURCE_EXHAUSTED past
180 per (emulated) minute in the region, as the real quota does.

Every configuration runs on the stack `triggers serve` starts (`LocalServer`: the function
served by functions-framework on werkzeug in this process, an SQLite ledger, the project's
emulator serving Cloud Run v2 and Cloud Tasks v2, reached through the real google-cloud-run and
google-cloud-tasks clients), fresh for each configuration, with `--scale F` as its time scale:
queue rates, task backoffs and the quota minute run F times faster than the wall clock. Every
figure in emulated seconds is on that clock.

* inline — the rule has no flow control: each event calls `jobs.run` itself; a 429 is answered
           503 and the sender (playing Pub/Sub push with a retry policy of 10 s .. 600 s)
           redelivers the event after 10, 20, 40 ... 600 emulated seconds.
* rate   — `limits: {rate: 150/min}`: the event is acked `queued`, a Cloud Tasks queue paced at
           150/min calls the function back, which launches.
* batch  — `batch: {window: 2m, max_events: 500, key: "{{ data.bucket }}", per_task: 100}`: the
           events join batches of 500, each one execution of 5 tasks. Cloud Tasks'
           `scheduleTime` is on the real clock (docs/emulator.md), so the window is written
           as 120 / F real seconds: two emulated minutes.

The sender posts each event as a CloudEvent (binary mode) from a pool of --workers threads, at
its arrival time, and redelivers any answer other than 2xx (or a failed connection) with the
backoff above. A configuration has drained when every event was acknowledged and the emulator's
queues hold no task. Then it is checked against the emulator: the executions started, their
`TRIGGERS_RUN_KEY`s (inline, rate) or their manifests' members (batch): every event launched
exactly once. The job is `true` (each execution's tasks are real processes that do nothing).
"""

from __future__ import annotations

import argparse
import heapq
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _serving import machine_note, run_main, say  # noqa: E402

PROJECT = "demo-project"
REGION = "europe-west1"
JOB = "loader"
RULE = "landing"
BUCKET = "landing"
QUOTA = "180/min"
RATE = "150/min"
BATCH_MAX_EVENTS = 500
BATCH_PER_TASK = 100
BATCH_WINDOW_EMULATED = 120.0
BURST_DENSITY = 20_000 / 600.0  # events per emulated second: 20,000 objects in ten minutes
PUBSUB_MIN_BACKOFF, PUBSUB_MAX_BACKOFF = 10.0, 600.0
CONFIGS = ("inline", "rate", "batch")

JOBS_YAML = f"""\
project: {PROJECT}
region: {REGION}
inherit_env: [PATH]
jobs:
  - {{name: {JOB}, command: ["true"], max_retries: 0, timeout: 60s}}
"""


def rules_yaml(config: str, scale: float) -> str:
    rule = f"  - name: {RULE}\n    on: storage.finalized\n    bucket: {BUCKET}\n    job: {JOB}\n"
    if config == "rate":
        rule += f"    limits: {{rate: {RATE}}}\n"
    elif config == "batch":
        window = max(1, round(BATCH_WINDOW_EMULATED / scale))
        key = '"{{ data.bucket }}"'
        rule += (
            f"    batch: {{window: {window}s, max_events: {BATCH_MAX_EVENTS}, key: {key},"
            f" per_task: {BATCH_PER_TASK}}}\n"
        )
    return f"project: {PROJECT}\nregion: {REGION}\nrules:\n{rule}"


def pubsub_backoff(attempt: int) -> float:
    """Emulated seconds before delivery `attempt + 1`, after `attempt` failed ones."""
    return min(PUBSUB_MAX_BACKOFF, PUBSUB_MIN_BACKOFF * 2 ** (attempt - 1))


# ---------------------------------------------------------------------------- the sender


@dataclass
class Sender:
    """Pub/Sub push, played: each event at its arrival time, redelivered with backoff until a
    2xx answer, from a pool of threads. Times are emulated seconds on `now()`."""

    url: str
    count: int
    arrival: float  # emulated seconds over which the events first arrive
    now: Any  # () -> emulated seconds
    scale: float
    workers: int
    deliveries: int = 0
    refused: int = 0  # answers other than 2xx, and failed connections
    outcomes: dict[str, int] = field(default_factory=dict)
    acked: int = 0
    lag: float = 0.0  # the most a delivery started after its due time, emulated s
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _due: list[tuple[float, int, int]] = field(default_factory=list)  # (at, event, attempt)
    _local: threading.local = field(default_factory=threading.local)

    def run(self, stop: threading.Event) -> None:
        start = self.now()
        self._due = [(start + i * self.arrival / self.count, i, 0) for i in range(self.count)]
        in_flight = threading.Semaphore(self.workers * 2)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="sender") as pool:
            while not stop.is_set():
                with self._lock:
                    if not self._due:
                        if self.acked == self.count:
                            return
                        wait = 0.05
                    elif self._due[0][0] <= self.now():
                        due, event, attempt = heapq.heappop(self._due)
                        self.lag = max(self.lag, self.now() - due)
                        wait = 0.0
                    else:
                        wait = min(0.05, (self._due[0][0] - self.now()) / self.scale)
                if wait > 0:
                    stop.wait(wait)
                    continue
                in_flight.acquire()
                future = pool.submit(self._deliver, event, attempt)
                future.add_done_callback(lambda _: in_flight.release())

    def _session(self) -> Any:
        session = getattr(self._local, "session", None)
        if session is None:
            import requests

            session = self._local.session = requests.Session()
        return session

    def _deliver(self, event: int, attempt: int) -> None:
        name = f"backfill/part-{event:06d}.csv"
        headers = {
            "Content-Type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": f"burst-{event}",
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{BUCKET}",
            "ce-type": "google.cloud.storage.object.v1.finalized",
            "ce-subject": f"objects/{name}",
            "ce-time": "2026-12-05T00:00:00Z",
        }
        body = json.dumps({"bucket": BUCKET, "name": name, "generation": "1", "size": "1024"})
        status, outcome = 0, "connection failed"
        try:
            answer = self._session().post(self.url, headers=headers, data=body, timeout=60)
            status = answer.status_code
            try:
                answered = answer.json()
                rules = answered.get("rules") or [{}]
                outcome = str(rules[0].get("outcome") or answered.get("decision"))
            except (ValueError, AttributeError):
                outcome = f"HTTP {status}"
        except Exception:  # noqa: BLE001 - a lost connection is a failed push, retried
            pass
        with self._lock:
            self.deliveries += 1
            key = f"{status} {outcome}"
            self.outcomes[key] = self.outcomes.get(key, 0) + 1
            if 200 <= status < 300:
                self.acked += 1
            else:
                self.refused += 1
                retry_at = self.now() + pubsub_backoff(attempt + 1)
                heapq.heappush(self._due, (retry_at, event, attempt + 1))


# ---------------------------------------------------------------------------- one configuration


def run_config(
    config: str, events: int, scale: float, workers: int, timeout: float, run_quota: str = QUOTA
) -> dict:
    from triggers.local.serve import LocalServer, ServeOptions

    work = Path(tempfile.mkdtemp(prefix=f"flow-burst-{config}-"))
    (work / "jobs.yaml").write_text(JOBS_YAML, encoding="utf-8")
    (work / "rules.yaml").write_text(rules_yaml(config, scale), encoding="utf-8")
    options = ServeOptions(
        rules=str(work / "rules.yaml"),
        jobs=str(work / "jobs.yaml"),
        port=0,
        sqlite_path=str(work / "ledger.sqlite3"),
        log_dir=str(work / "logs"),
        clock=False,
        reload_interval=0,
        console=False,
        log_level=logging.CRITICAL,  # a 429 storm logs thousands of lines
        time_scale=scale,
        run_quota=run_quota,
    )
    cwd = os.getcwd()
    os.chdir(work)  # batch manifests go to ./.triggers/manifests (file:// URIs)
    server = LocalServer(options)
    stop = threading.Event()
    try:
        server.start()
        _warm(server, flow=config != "inline")
        quota = _cloud_run(server.emulator).quota
        tasks = server.emulator.tasks
        arrival = events / BURST_DENSITY
        t0, real0 = quota.now(), time.monotonic()
        sender = Sender(server.url, events, arrival, quota.now, scale, workers)
        thread = threading.Thread(target=sender.run, args=(stop,), name="sender", daemon=True)
        thread.start()
        deadline = real0 + timeout
        last_progress = 0.0
        drained = False
        while time.monotonic() < deadline:
            time.sleep(0.25)
            if not thread.is_alive() and tasks.pending() == 0:
                drained = True
                break
            if time.monotonic() - last_progress >= 5:
                last_progress = time.monotonic()
                say(
                    f"  [{config}] t={quota.now() - t0:7.0f} s emulated"
                    f" ({time.monotonic() - real0:5.1f} s real): {sender.deliveries} deliveries,"
                    f" {sender.acked}/{events} acked, jobs.run {len(quota.accepted_at)} accepted"
                    f" {quota.refused} refused (429), {tasks.pending()} tasks pending"
                )
        real = time.monotonic() - real0
        stop.set()
        thread.join(10)
        accepted = sorted(a - t0 for a in quota.accepted_at)
        dispatches = tasks.dispatch_log()
        check = _check(server, config, events)
        return {
            "config": config,
            "events": events,
            "scale": scale,
            "drained": drained,
            "executions": check["executions"],
            "tasks_run": check["tasks"],
            "runs_accepted": len(accepted),
            "jobs_run_calls": len(accepted) + quota.refused,
            "http_429": quota.refused,
            "deliveries": sender.deliveries,
            "deliveries_refused": sender.refused,
            "outcomes": sender.outcomes,
            "task_attempts": len(dispatches),
            "task_attempts_failed": sum(
                1 for d in dispatches if not (d["status"] and 200 <= d["status"] < 300)
            ),
            "peak_runs_per_minute": _peak(accepted, 60.0),
            "sender_lag_emulated_s": sender.lag,
            "drain_emulated_s": accepted[-1] if accepted else float("nan"),
            "drain_real_s": real,
            "launched_once": check["distinct"],
            "launched_twice": check["duplicates"],
            "exactly_once": check["distinct"] == events and check["duplicates"] == 0,
        }
    finally:
        stop.set()
        server.stop()
        os.chdir(cwd)
        shutil.rmtree(work, ignore_errors=True)  # ledger, task logs, manifests


def _warm(server: Any, *, flow: bool) -> None:
    """Create the function's Cloud Run and Cloud Tasks clients before the clock starts: the
    function's cold start (imports, channels) is not part of the burst's figures."""
    _ = server.app.runner.runner("cloudrun").jobs_client
    if flow:  # the function's LazyTaskQueue builds its CloudTasksQueue, which its client
        _ = server.app.dispatcher.queue.queue.client


def _cloud_run(emulator: Any) -> Any:
    from triggers.emulators.cloudrun.api import CloudRunService

    return next(s for s in emulator.services if isinstance(s, CloudRunService))


def _peak(times: list[float], window: float) -> int:
    """The most accepted runs in any `window` seconds (times sorted)."""
    peak, low = 0, 0
    for high, at in enumerate(times):
        while at - times[low] >= window:
            low += 1
        peak = max(peak, high - low + 1)
    return peak


def _check(server: Any, config: str, events: int) -> dict[str, int]:
    """Every execution the emulator started, through the real client: the events each launched
    (its run key, or its batch manifest's members), counted once and more than once."""
    from google.cloud import run_v2

    from triggers.flow.manifest import read_manifest
    from triggers.plan import RUN_KEY_ENV
    from triggers.runners.cloudrun import CloudRunRunner

    client = CloudRunRunner(endpoint=server.emulator.url, timeout=30.0).executions_client
    parent = f"projects/{PROJECT}/locations/{REGION}/jobs/{JOB}"
    request = run_v2.ListExecutionsRequest(parent=parent, page_size=1000)
    seen: dict[str, int] = {}
    executions = tasks = 0
    for execution in client.list_executions(request=request):
        executions += 1
        tasks += execution.task_count
        env = {e.name: e.value for e in execution.template.containers[0].env}
        if config == "batch":
            keys = [m["ledger_key"] for m in read_manifest(env)["members"]]
        else:
            keys = [env[RUN_KEY_ENV]]
        for key in keys:
            seen[key] = seen.get(key, 0) + 1
    return {
        "executions": executions,
        "tasks": tasks,
        "distinct": len(seen),
        "duplicates": sum(1 for n in seen.values() if n > 1),
    }


# ---------------------------------------------------------------------------- report


def table(results: list[dict]) -> str:
    rows = [
        ("executions started", "executions", "{:,}"),
        ("tasks (processes) run", "tasks_run", "{:,}"),
        ("jobs.run calls", "jobs_run_calls", "{:,}"),
        ("  answered 429", "http_429", "{:,}"),
        ("most runs in one emulated minute", "peak_runs_per_minute", "{:,}"),
        ("event deliveries (pushes)", "deliveries", "{:,}"),
        ("  answered non-2xx (redelivered)", "deliveries_refused", "{:,}"),
        ("task attempts (Cloud Tasks)", "task_attempts", "{:,}"),
        ("  answered non-2xx (retried)", "task_attempts_failed", "{:,}"),
        ("sender's worst lag, emulated s", "sender_lag_emulated_s", "{:,.0f}"),
        ("time to drain, emulated s", "drain_emulated_s", "{:,.0f}"),
        ("time to drain, real s", "drain_real_s", "{:,.1f}"),
        ("events launched", "launched_once", "{:,}"),
        ("events launched twice", "launched_twice", "{:,}"),
        ("drained / exactly once", None, ""),
    ]
    header = f"| {'':34} |" + "".join(f" {r['config']:>9} |" for r in results)
    lines = [header, "|" + "-" * 35 + ":|" + "".join("-" * 10 + ":|" for _ in results)]
    for label, key, fmt in rows:
        if key is None:
            cells = [
                f"{'yes' if r['drained'] else 'NO'}/{'yes' if r['exactly_once'] else 'NO'}"
                for r in results
            ]
        else:
            cells = [fmt.format(r[key]) for r in results]
        lines.append(f"| {label:34} |" + "".join(f" {c:>9} |" for c in cells))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--scale", type=float, default=20.0, help="emulated seconds per real one")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--workers", type=int, default=16, help="sender threads")
    parser.add_argument("--timeout", type=float, default=1800.0, help="real seconds per config")
    parser.add_argument("--quota", default=QUOTA, help="the emulator's jobs.run quota")
    parser.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(configs) - set(CONFIGS)
    if unknown or args.events < 1 or args.scale <= 0:
        parser.error(f"configs are {', '.join(CONFIGS)}; --events >= 1; --scale > 0")
    say(
        f"flow burst: {args.events:,} storage events over {args.events / BURST_DENSITY:,.0f}"
        f" emulated s, jobs.run quota {args.quota}, time scale {args.scale:g}; {machine_note()}"
    )
    results = []
    for config in configs:
        say(f"{config}: starting")
        result = run_config(config, args.events, args.scale, args.workers, args.timeout, args.quota)
        say(f"{config}: done, {result['drain_real_s']:.1f} s real")
        results.append(result)
    print(table(results))
    if args.json:
        print(json.dumps(results, indent=2))
    return 0 if all(r["drained"] and r["exactly_once"] for r in results) else 1


if __name__ == "__main__":
    run_main(main)
