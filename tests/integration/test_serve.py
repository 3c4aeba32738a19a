"""`triggers serve`, `send`, `runs` and `demo` as users run them: real processes, free ports.

A served stack is started once per module with the sample config and a ledger in a temporary
directory; the clock and shutdown tests start their own with the probe job, which can be told to
sleep. Every server is stopped with SIGTERM (what Ctrl-C and container runtimes send) and must
exit 0 having killed its task processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from triggers.emulators.probe import write_probe_jobs
from triggers.local.clock import ScheduledJob, SchedulerClock, offset_clock
from triggers.rules.schedule import Schedule

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "rules.yaml"
JOBS = ROOT / "config" / "jobs.yaml"
EVENTS = ROOT / "config" / "events"
# The installed console script runs triggers.cli:main; `-m` runs the same without needing PATH.
TRIGGERS = [sys.executable, "-m", "triggers.cli"]
START_TIMEOUT = 30.0
PARENT = "projects/demo-project/locations/europe-west1"


class Served:
    """One `triggers serve` process: its URLs, its output, and helpers to talk to it."""

    def __init__(
        self, workdir: Path, *options: str, rules: Path = RULES, jobs: Path = JOBS
    ) -> None:
        self.workdir = workdir
        self.ledger = workdir / "ledger.sqlite3"
        self.log_dir = workdir / "logs"
        self.stderr_path = workdir / "serve.stderr"
        self.lines: list[str] = []
        self._ready = threading.Event()
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRIGGERS_")}
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                [
                    *TRIGGERS,
                    "serve",
                    "--port",
                    "0",
                    "--config",
                    str(rules),
                    "--jobs",
                    str(jobs),
                    "--sqlite-path",
                    str(self.ledger),
                    "--log-dir",
                    str(self.log_dir),
                    *options,
                ],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,  # its own group: a failed test can kill tasks too
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._ready.wait(START_TIMEOUT):
            self.kill()
            pytest.fail(f"triggers serve did not get ready:\n{self.output()}", pytrace=False)
        ready = next(line for line in self.lines if line.startswith("ready:"))
        self.url = re.search(r"http://\S+/", ready).group(0)
        emulator = next((line for line in self.lines if line.strip().startswith("emulator ")), "")
        found = re.search(r"http://[\d.]+:\d+", emulator)
        self.emulator_url = found.group(0) if found else None

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            if line.startswith("ready:"):
                self._ready.set()
        self._ready.set()  # exited: let the waiter see it

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.stderr_path.read_text()

    # -- talking to it ------------------------------------------------------------------------

    def triggers(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*TRIGGERS, *argv],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("TRIGGERS_")},
        )

    def send(self, *argv: str) -> subprocess.CompletedProcess:
        return self.triggers("send", "--url", self.url, *argv)

    def runs(self, *argv: str) -> list[dict]:
        done = self.triggers("runs", "--sqlite-path", str(self.ledger), "--json", *argv)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def execution(self, short: str, timeout: float = 20.0) -> dict:
        """The finished execution, from the emulator's REST API."""
        job = short.rsplit("-", 1)[0]  # short names are <job>-<5 characters>
        url = f"{self.emulator_url}/v2/{PARENT}/jobs/{job}/executions/{short}"
        deadline = time.monotonic() + timeout
        while True:
            with urllib.request.urlopen(url, timeout=5) as response:
                execution = json.load(response)
            if execution.get("completionTime"):
                return execution
            if time.monotonic() > deadline:
                raise AssertionError(f"{short} did not finish: {execution}")
            time.sleep(0.05)

    def task_log(self, short: str, task: int = 0) -> str:
        return (self.log_dir / short / f"task{task}-attempt0.log").read_text()

    # -- stopping -----------------------------------------------------------------------------

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as Ctrl-C or a container runtime would; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"triggers serve did not stop on SIGTERM:\n{self.output()}"
            ) from None
        self._reader.join(5)
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def launched(done: subprocess.CompletedProcess, rule: str) -> str:
    """The short execution name that `triggers send` reported for `rule`."""
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(rf"^\s+{re.escape(rule)}\s+launched\s+(\S+)$", done.stdout, re.M)
    assert found, done.stdout
    return found.group(1)


def closed(url: str) -> bool:
    host, port = re.match(r"http://([\d.]+):(\d+)", url).groups()
    with socket.socket() as sock:
        return sock.connect_ex((host, int(port))) != 0


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    server = Served(tmp_path_factory.mktemp("serve"))
    yield server
    code = server.stop()
    assert code == 0, server.output()


# -- the sample stack ---------------------------------------------------------------------------


def test_serve_says_where_it_listens_and_what_it_loaded(served):
    text = "\n".join(served.lines)
    assert f"function   {served.url}" in text
    assert "rules      " in text and "6 rules (pubsub 1, scheduler 2, storage 3)" in text
    assert f"ledger     sqlite {served.ledger}" in text
    assert served.emulator_url and "6 jobs from" in text
    assert 'scheduler  nightly-report: "0 2 * * *" (at 02:00 every day, Europe/Berlin time)' in text
    assert re.search(
        r"next tick \d{4}-\d\d-\d\d 02:00 CES?T \(\d{4}-\d\d-\d\dT0[01]:00:00Z\)", text
    )
    assert "triggers send storage --url" in text


def test_send_pubsub_runs_the_order_processor(served):
    done = served.send(
        "pubsub",
        "--data",
        '{"order_id": "B-7", "status": "paid", "amount": 12}',
        "--attribute",
        "kind=order",
    )
    assert "200 OK  ack" in done.stdout
    short = launched(done, "paid-orders")
    assert served.execution(short)["succeededCount"] == 1
    log = served.task_log(short)
    assert 'args: ["--order=B-7"]' in log and "env: ORDER_AMOUNT=12" in log


def test_send_pubsub_that_no_rule_wants(served):
    done = served.send("pubsub", "--data", '{"status": "cancelled"}', "--attribute", "kind=order")
    assert done.returncode == 0
    assert "no rule matched" in done.stdout


def test_send_storage_runs_once_per_object_version(served):
    first = served.send(
        "storage",
        "--bucket",
        "raw-data",
        "--name",
        "incoming/a.csv",
        "--generation",
        "7",
        "--size",
        "100",
    )
    short = launched(first, "csv-ingest")
    again = served.send(
        "storage", "--name", "incoming/a.csv", "--generation", "7", "--form", "notification"
    )
    assert again.returncode == 0
    assert re.search(rf"csv-ingest\s+duplicate\s+{short}$", again.stdout, re.M), again.stdout
    execution = served.execution(short)
    assert execution["succeededCount"] == 2  # the rule asks for two tasks
    log = served.task_log(short, task=1)
    assert '"--input=gs://raw-data/incoming/a.csv"' in log and "env: GENERATION=7" in log


def test_send_scheduler_runs_the_report_for_its_date(served):
    done = served.send(
        "scheduler", "--job", "nightly-report", "--schedule-time", "2026-03-29T01:00:00Z"
    )
    short = launched(done, "nightly-report")
    assert "event nightly-report#2026-03-29T01:00:00Z" in done.stdout
    served.execution(short)
    assert 'args: ["--date=2026-03-29"]' in served.task_log(short)


def test_send_a_sample_file(served):
    done = served.send("--file", str(EVENTS / "storage-deleted.notification-none.json"))
    short = launched(done, "csv-deleted")
    served.execution(short)
    assert "--forget=gs://raw-data/incoming/2026/11/21/orders.csv" in served.task_log(short)


def test_runs_shows_what_was_sent(served):
    done = served.send(
        "pubsub",
        "--id",
        "5550001",
        "--data",
        '{"order_id": "R-1", "status": "paid", "amount": 99}',
        "--attribute",
        "kind=order",
    )
    short = launched(done, "paid-orders")
    assert (
        served.send(
            "pubsub",
            "--id",
            "5550001",
            "--data",
            '{"order_id": "R-1", "status": "paid", "amount": 99}',
            "--attribute",
            "kind=order",
        ).returncode
        == 0
    )
    records = [r for r in served.runs("--rule", "paid-orders") if r["event"]["id"] == "5550001"]
    assert len(records) == 1
    record = records[0]
    assert record["status"] == "launched"
    assert record["execution"].endswith(f"/executions/{short}")
    assert record["duplicates"] == 1
    table = served.triggers("runs", "--sqlite-path", str(served.ledger), "--since", "1h")
    assert table.returncode == 0
    assert re.search(rf"paid-orders\s+launched\s+{short}\s+1\s+1\s", table.stdout), table.stdout
    # The console gets short lines, not the Cloud Logging JSON a deployment prints.
    log = served.stderr_path.read_text()
    assert (
        f"function paid-orders: launched {PARENT}/jobs/orders-processor/executions/{short}" in log
    )
    assert '"severity"' not in log and '"severity"' not in "\n".join(served.lines)


def test_send_to_nothing_exits_2(served):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = served.triggers("send", "pubsub", "--url", f"http://127.0.0.1:{port}/")
    assert done.returncode == 2
    assert "no server at" in done.stderr and "triggers serve" in done.stderr


# -- the clock and a clean stop -----------------------------------------------------------------

CLOCK_RULES = """\
project: demo-project
region: europe-west1
rules:
  - name: every-minute
    on: scheduler
    schedule: "* * * * *"
    job: probe
  - name: slow
    on: pubsub
    topic: slow
    job: probe
    overrides:
      env: {PROBE_SLEEP: "60"}
"""


def test_the_clock_fires_on_schedule_and_sigterm_stops_everything(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(CLOCK_RULES)
    jobs = write_probe_jobs(tmp_path / "probe")
    out = tmp_path / "probe" / "out"
    # Two seconds before a minute: the `* * * * *` rule fires at 10:01:00 without a minute's wait.
    server = Served(tmp_path, "--clock-start", "2026-11-21T10:00:58Z", rules=rules, jobs=jobs)
    try:
        assert any('every-minute: "* * * * *"' in line for line in server.lines)
        assert any("next tick 2026-11-21T10:01:00Z" in line for line in server.lines)
        deadline = time.monotonic() + 20
        ticks: list[dict] = []
        while time.monotonic() < deadline:
            ticks = server.runs("--rule", "every-minute")
            if ticks and ticks[0]["status"] != "claimed":  # claimed: jobs.run is under way
                break
            time.sleep(0.1)
        assert len(ticks) == 1, server.output()
        assert ticks[0]["dedup_key"] == "every-minute#2026-11-21T10:01:00Z"
        assert ticks[0]["status"] == "launched"
        short = ticks[0]["execution"].rsplit("/", 1)[-1]
        assert server.execution(short)["succeededCount"] == 1
        assert "every-minute fired for 2026-11-21T10:01:00Z -> 200 ack" in server.output()

        # A task that would run for a minute, then SIGTERM: the server kills it and exits 0.
        launched(server.send("pubsub", "--topic", "slow", "--data", "x"), "slow")
        deadline = time.monotonic() + 20
        started: list[Path] = []
        while not started and time.monotonic() < deadline:
            started = [p for p in out.glob("*.started") if short not in p.name]
            time.sleep(0.05)
        assert started, server.output()
        pid = json.loads(started[0].read_text())["pid"]
        began = time.monotonic()
        assert server.stop() == 0, server.output()
        assert time.monotonic() - began < 15
        assert "stopping (killing 1 running task(s))..." in server.lines
        assert server.lines[-1] == "stopped"
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert closed(server.url) and closed(server.emulator_url)
    finally:
        if server.process.poll() is None:
            server.kill()


def test_the_clock_fires_the_latest_missed_tick_only(tmp_path):
    """The clock component with an injected clock: on time, then after a 'suspend'."""
    start = datetime(2026, 11, 21, 10, 0, 59, 800000, tzinfo=UTC)
    offset = [timedelta(0)]
    real = offset_clock(start)
    fired: list[datetime] = []
    job = ScheduledJob("tick", Schedule("* * * * *"), ("tick",))
    clock = SchedulerClock([job], lambda _job, at: fired.append(at), now=lambda: real() + offset[0])
    clock.MAX_SLEEP = 0.05
    clock.start()
    try:
        deadline = time.monotonic() + 5
        while not fired and time.monotonic() < deadline:
            time.sleep(0.01)
        assert fired == [datetime(2026, 11, 21, 10, 1, tzinfo=UTC)]
        offset[0] = timedelta(minutes=4, seconds=30)  # the laptop slept through 10:02..10:05
        deadline = time.monotonic() + 5
        while len(fired) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        assert fired[1:] == [datetime(2026, 11, 21, 10, 5, tzinfo=UTC)]
        assert clock.upcoming()[0][1] == datetime(2026, 11, 21, 10, 6, tzinfo=UTC)
    finally:
        clock.stop()


# -- other ways to start ------------------------------------------------------------------------


def test_dry_run_records_without_launching(tmp_path):
    server = Served(tmp_path, "--dry-run", "--no-clock")
    try:
        assert any("dry run" in line for line in server.lines)
        assert any("clock off (--no-clock)" in line for line in server.lines)
        done = server.send("pubsub")
        short = launched(done, "paid-orders")
        assert re.fullmatch(r"dry-run-[0-9a-f]{12}", short)
        assert server.runs()[0]["execution"].endswith(f"/executions/{short}")
        assert not server.log_dir.exists()
    finally:
        assert server.stop() == 0


def test_an_edited_rules_file_is_served_and_a_broken_edit_is_not(tmp_path):
    rules = tmp_path / "rules.yaml"
    original = RULES.read_text()
    rules.write_text(original)
    server = Served(tmp_path, "--no-clock", rules=rules)
    try:
        text = "\n".join(server.lines)
        assert f"export TRIGGERS_SQLITE_PATH={server.ledger}" in text
        assert f"export TRIGGERS_CLOUD_RUN_ENDPOINT={server.emulator_url}" in text
        assert "no rule matched" in server.send("storage", "--bucket", "other-bucket").stdout
        # GIVEN a valid edit: csv-ingest now takes every bucket
        rules.write_text(original.replace("    bucket: raw-data\n", "", 1))
        # THEN the next events use it (polled: the watcher looks once a second)
        deadline = time.monotonic() + 20
        while (
            "csv-ingest  launched"
            not in (
                done := server.send(
                    "storage", "--bucket", "other-bucket", "--name", "incoming/x.csv"
                )
            ).stdout
        ):
            assert time.monotonic() < deadline, done.stdout + server.output()
            time.sleep(0.2)
        # GIVEN a broken edit THEN the previous rules keep serving, and the log says why
        rules.write_text("rules:\n  - name: x\n    on: nope\n    job: j\n")
        deadline = time.monotonic() + 20
        while "changed but cannot be used" not in server.stderr_path.read_text():
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.2)
        assert "unknown event source 'nope'" in server.stderr_path.read_text()
        done = server.send("storage", "--bucket", "other-bucket", "--name", "incoming/y.csv")
        assert "csv-ingest  launched" in done.stdout
    finally:
        assert server.stop() == 0


def test_serve_refuses_bad_rules_and_a_busy_port(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - name: x\n    on: nope\n    job: j\n")
    done = subprocess.run(
        [*TRIGGERS, "serve", "--config", str(bad), "--port", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "problems in the rules" in done.stderr and "unknown event source 'nope'" in done.stderr

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [
                *TRIGGERS,
                "serve",
                "--port",
                str(port),
                "--sqlite-path",
                str(tmp_path / "l.db"),
                "--log-dir",
                str(tmp_path / "logs"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "--port" in done.stderr


def test_demo_runs_everything_and_exits_0():
    done = subprocess.run(
        [*TRIGGERS, "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRIGGERS_")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert (
        "Demo OK: 16 requests (5 launched, 3 batched, 3 duplicate, 3 matched no rule, 2 queued;"
        " then from the queues: 1 launched, 1 skipped, 1 batch launched);"
        " 7 executions succeeded." in out
    )
    # the max_running rule's tick went through its queue, and its task launched it; the next
    # tick, sent while that execution ran, was skipped by its task with the reason
    assert re.search(r"hourly-compaction\s+queued\s+task l-[0-9a-f]{64}-\d+ on queue", out)
    assert re.search(r"triggers-hourly-compaction: \d+ callbacks, 2 done", out)
    assert re.search(
        r"its task recorded it skipped: 1 execution\(s\) of compaction running \(max_running 1\)",
        out,
    )
    assert re.search(r"hourly-compaction\s+skipped\s+-", out)  # in the run history
    # the three landing objects joined one batch, closed now, launched as one execution of two
    # tasks (per_task 2), whose tasks read 2 + 1 members from the manifest, in join order
    batch = re.search(r"landing-batch\s+batched\s+batch (\S+) \(member 1 of", out).group(1)
    assert out.count(f"batch {batch} (member ") == 3
    assert re.search(rf"batch {batch}: 3 members, sealed [\d.]+s into its 120s window", out)
    execution = re.search(r"-> one execution (landing-loader-\w+), 2 tasks", out).group(1)
    shown = out[out.index("Batches (`triggers runs --batches`)") :]
    read = re.findall(r"task (\d): gs://landing/drop/2026/11/21/(part-\d+)\.parquet", shown)
    assert read == [("0", "part-0001"), ("0", "part-0002"), ("1", "part-0003")]
    assert f"execution {execution}: 2 tasks" in shown
    assert "task 0: 2 of the batch's 3 members" in shown
    assert re.search(r"storage-finalized\.cloudevent-structured\.json\s+200 OK  ack", out)
    assert "csv-ingest  duplicate" in out
    assert re.search(r"nightly-report @ \d{4}-\d\d-\d\dT0[01]:00:00Z\s+200 OK  ack", out)
    assert 'args: ["--order=A-1001"]' in out
    assert "Run history (`triggers runs`):" in out
    # reconciled first, so the history says how the executions it just showed ended
    assert "Reconciled (`triggers reconcile`): 7 succeeded, 0 failed" in out
    history = out[out.index("Run history") :]
    assert history.count(" succeeded ") == 7 and " launched " not in history
    assert history.count(" batched ") == 3  # the members; the batch's own run succeeded
    # what matched nothing says why
    assert "why: no rule takes com.example.order.v1.created events" in out
    assert "why: paid-orders: data.topic: null is not one of" in out
    assert all(len(line) <= 100 for line in out[out.index("Run history") :].splitlines()[:8])
    workdir = re.search(r"ledger     sqlite (\S+)/ledger\.sqlite3", out).group(1)
    assert not Path(workdir).exists()  # cleaned up without --keep


def test_demo_all_systems_runs_a_rule_on_each_job_api():
    done = subprocess.run(
        [*TRIGGERS, "demo", "--all-systems"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("TRIGGERS_")},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Demo OK:" in out
    history = out[out.index("Run history") :]
    # one rule per system, each launched and reconciled to succeeded
    for rule in ("paid-orders", "order-export-v1", "paid-orders-on-s", "nightly-peloton"):
        row = re.search(rf"^\s+\S+ \S+\s+{re.escape(rule)}\S*\s+(\S+)", history, re.M)
        assert row and row.group(1) == "succeeded", (rule, history)
    assert re.search(r"nightly-peloton\s+launched\s+[0-9a-f-]{36}", out)
