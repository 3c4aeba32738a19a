"""Shared by benchmarks/coldstart.py and benchmarks/serve.py: served function processes,
the Firestore emulator, sample events, process memory. Not a benchmark itself.

Run as a script it is a server launcher (the measured process imports nothing from here but the
standard library):

    python benchmarks/_serving.py werkzeug --target T --source S --host H --port P

runs the real `functions-framework` command line with gunicorn hidden, i.e. exactly the
fallback functions-framework 3.x takes when gunicorn is not installed: Flask's threaded
werkzeug development server (`app.run(host, port, debug=False)`). With gunicorn installed
(it is a dependency of functions-framework on Linux), `functions-framework` itself serves
with gunicorn: one worker process (WORKERS), gthread with THREADS = 4 x cores threads.
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and sys.argv[1:2] == ["werkzeug"]:
    # The launcher: nothing else of this module is imported into the measured process.
    sys.modules["functions_framework._http.gunicorn"] = None  # type: ignore[assignment]
    from functions_framework._cli import _cli

    _cli.main(args=sys.argv[2:], prog_name="functions-framework")
    sys.exit(0)

import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path(__file__).resolve().parent
TRIGGERS_SOURCE = ROOT / "triggers" / "main.py"
MINIMAL_SOURCE = BENCH_DIR / "_minimal_function.py"
FLOOR_SOURCE = BENCH_DIR / "_floor_function.py"  # the minimal function + triggers' settings
SAMPLE_RULES = ROOT / "config" / "rules.yaml"
SAMPLE_EVENT = ROOT / "config" / "events" / "storage-finalized.cloudevent-binary.json"

PROJECT = "demo-project"
REGION = "europe-west1"
CSV_JOB = f"projects/{PROJECT}/locations/{REGION}/jobs/csv-loader"
FIRESTORE_PROJECT = "demo-triggers-bench"
FIRESTORE_START_TIMEOUT = 90.0
SERVERS = ("gunicorn", "werkzeug")

# Every job of config/rules.yaml (and match.py's `worker`), each task a `/bin/true`: the
# emulator still creates an execution and its task processes, but they cost next to nothing.
_TRUE = shutil.which("true") or "/bin/true"
TRIVIAL_JOBS_YAML = f"project: {PROJECT}\nregion: {REGION}\njobs:\n" + "".join(
    f'  - {{name: {job}, command: ["{_TRUE}"], max_retries: 0, timeout: 60s}}\n'
    for job in ("csv-loader", "orders-processor", "nightly-report", "worker")
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def quiet_cloud_run_emulator(directory: Path, jobs_yaml: str):
    """A Cloud Run emulator (not started) for the jobs of `jobs_yaml`, written to `directory`,
    on a free port, its task logs in `directory`/task-logs and not on stderr."""
    from triggers.emulators.server import EmulatorServer

    jobs_file = directory / "jobs.yaml"
    jobs_file.write_text(jobs_yaml, encoding="utf-8")
    return EmulatorServer(jobs_file, port=0, log_dir=directory / "task-logs", log_to_stderr=False)


def run_main(main) -> None:
    """`sys.exit(main())`; Ctrl-C exits 130 after saying that everything was stopped (the
    benchmarks stop what they started in `finally` blocks)."""
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted; everything started here was stopped")
        sys.exit(130)


def add_server_options(parser) -> None:
    """The options every benchmark that starts function servers takes."""
    parser.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="seconds a server may take to answer its first event",
    )
    parser.add_argument(
        "--bytecode",
        choices=("cached", "inherit"),
        default="cached",
        help="cached: the servers read and write .pyc files in a temporary "
        "directory, filled by the warm-up (the default); inherit: as the "
        "environment has it (PYTHONDONTWRITEBYTECODE...)",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def nearest_rank(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def median(values: list[float]) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so that every `finally` runs


def install_sigterm() -> None:
    signal.signal(signal.SIGTERM, _terminate)


def machine_note() -> str:
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return ""
    cores = os.cpu_count() or 1
    busy = " (busy: figures are indicative)" if load1 > 0.5 * cores else ""
    return f"load average {load1:.2f} on {cores} cores at start{busy}"


# ---------------------------------------------------------------------------- process groups


def stop_group(process: subprocess.Popen | None, grace: float = 5.0) -> None:
    """SIGTERM the process group `process` leads, SIGKILL it after `grace` seconds."""
    if process is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(wait)
            break
        except subprocess.TimeoutExpired:
            continue
    # the leader may be gone while a child (a gunicorn worker) lingers: sweep the group
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


# ---------------------------------------------------------------------------- Firestore emulator


def _answers(host_port: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host_port}/", timeout=1) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class FirestoreEmulator:
    """`gcloud emulators firestore start` in its own process group; stop() kills the group."""

    def __init__(self, log_dir: Path) -> None:
        self.log_path = log_dir / "firestore-emulator.log"
        self.host_port = f"127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def unavailable() -> str | None:
        if shutil.which("gcloud") is None:
            return "gcloud is not on PATH"
        if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
            return "the emulator needs Java, and neither java nor JAVA_HOME is present"
        return None

    def start(self) -> FirestoreEmulator:
        env = {**os.environ, "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    shutil.which("gcloud") or "gcloud",
                    "emulators",
                    "firestore",
                    "start",
                    f"--host-port={self.host_port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group: gcloud's Java child goes too
            )
        deadline = time.monotonic() + FIRESTORE_START_TIMEOUT
        while not _answers(self.host_port):
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the Firestore emulator exited with "
                    f"{self.process.returncode}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Firestore emulator did not answer on {self.host_port} "
                    f"within {FIRESTORE_START_TIMEOUT:.0f}s:\n{self.output()}"
                )
            time.sleep(0.2)
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def cpu_seconds(self) -> float:
        """CPU seconds of the emulator (gcloud's launcher and the JVM it starts)."""
        return tree_cpu_seconds(self.process.pid) if self.process is not None else 0.0

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_group(process, grace=10.0)

    def client(self) -> Any:
        from google.cloud import firestore

        # The client reads FIRESTORE_EMULATOR_HOST in its constructor only.
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = self.host_port
        try:
            return firestore.Client(project=FIRESTORE_PROJECT)
        finally:
            if previous is None:
                del os.environ["FIRESTORE_EMULATOR_HOST"]
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = previous


# ---------------------------------------------------------------------------- events


class EventFactory:
    """Variants of the sample binary-mode storage CloudEvent, each with its own id, object name
    and generation (so a dedup key is never reused unless the same event is sent again)."""

    def __init__(self, run_id: str, path: Path = SAMPLE_EVENT) -> None:
        from triggers.events import parse_event_file

        headers, body = parse_event_file(path.read_text(encoding="utf-8"), str(path))
        self.headers = dict(headers)
        self.body = json.loads(body)
        self.run_id = run_id
        self._generation = int(time.time() * 1e6)

    def make(self, tag: str, i: int, *, match: bool = True) -> tuple[dict[str, str], bytes]:
        self._generation += 1
        bucket = self.body["bucket"] if match else "unrelated-bucket"
        name = f"incoming/bench/{self.run_id}/{tag}/part-{i:06d}.csv"
        generation = str(self._generation)
        body = {
            **self.body,
            "bucket": bucket,
            "name": name,
            "generation": generation,
            "id": f"{bucket}/{name}/{generation}",
        }
        headers = {
            **self.headers,
            "ce-id": f"{self.run_id}-{tag}-{i}",
            "ce-source": f"//storage.googleapis.com/projects/_/buckets/{bucket}",
            "ce-subject": f"objects/{name}",
            "ce-bucket": bucket,
        }
        return headers, json.dumps(body, separators=(",", ":")).encode()


def outcome_of(variant: str, status: int, data: bytes) -> str:
    """launched / duplicate / nomatch from the answer of either function, else a description."""
    if status != 200:
        return f"http {status}"
    try:
        answer = json.loads(data)
    except ValueError:
        return "not json"
    if variant in ("minimal", "floor"):
        outcome = answer.get("outcome", "?")
        return "nomatch" if outcome == "ignored" else outcome
    rules = answer.get("rules")
    if rules == []:
        return "nomatch"
    if isinstance(rules, list):
        return "+".join(r.get("outcome", "?") for r in rules)
    return str(answer.get("decision", "?"))


# ---------------------------------------------------------------------------- served functions


def server_env(
    variant: str,
    *,
    cloud_run: str,
    firestore: str | None,
    ledger: str = "firestore",
    rules: Path = SAMPLE_RULES,
    collection: str,
    sqlite_path: Path | None = None,
    pycache: Path | None = None,
) -> dict[str, str]:
    """The measured process's environment. With `pycache`, bytecode is read from and written
    to that directory (PYTHONPYCACHEPREFIX) even where PYTHONDONTWRITEBYTECODE is set: without
    a cache every start compiles the project's own modules (triggers: ~40 of them, ~0.1 s of
    CPU) while site-packages keeps the .pyc files pip wrote."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TRIGGERS_", "MINIMAL_", "FIRESTORE_EMULATOR_HOST"))
    }
    env.update({"PYTHONUNBUFFERED": "1", "GOOGLE_CLOUD_PROJECT": FIRESTORE_PROJECT})
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    if firestore:
        env["FIRESTORE_EMULATOR_HOST"] = firestore
    if variant == "triggers":
        env.update(
            {
                "TRIGGERS_RULES": str(rules),
                "TRIGGERS_LEDGER": ledger,
                "TRIGGERS_FIRESTORE_PROJECT": FIRESTORE_PROJECT,
                "TRIGGERS_FIRESTORE_COLLECTION": collection,
                "TRIGGERS_CLOUD_RUN_ENDPOINT": cloud_run,
            }
        )
        if sqlite_path is not None:
            env["TRIGGERS_SQLITE_PATH"] = str(sqlite_path)
    else:
        env.update(
            {
                "MINIMAL_CLOUD_RUN_ENDPOINT": cloud_run,
                "MINIMAL_JOB": CSV_JOB,
                "MINIMAL_COLLECTION": collection,
            }
        )
    return env


def bytecode_note(mode: str) -> str:
    if mode == "cached":
        return "bytecode cached (PYTHONPYCACHEPREFIX in the run's temporary directory)"
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return (
            "bytecode as the environment has it: PYTHONDONTWRITEBYTECODE is set, so modules "
            "without a .pyc (triggers' own) are compiled at every start"
        )
    return "bytecode as the environment has it"


def server_command(variant: str, server: str, port: int) -> list[str]:
    source = {"triggers": TRIGGERS_SOURCE, "floor": FLOOR_SOURCE}.get(variant, MINIMAL_SOURCE)
    args = [
        "--target",
        "handle_http",
        "--source",
        str(source),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if server == "gunicorn":
        ff = Path(sys.executable).parent / "functions-framework"
        if not ff.exists():
            ff = Path(shutil.which("functions-framework") or "functions-framework")
        return [str(ff), *args]
    if server == "werkzeug":
        return [sys.executable, str(Path(__file__).resolve()), "werkzeug", *args]
    raise ValueError(f"unknown server {server!r}")


class ServedFunction:
    """One functions-framework process (its own process group) on a free loopback port."""

    def __init__(self, variant: str, server: str, env: dict[str, str], log_path: Path) -> None:
        self.variant = variant
        self.server = server
        self.env = env
        self.log_path = log_path
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0

    def spawn(self) -> ServedFunction:
        command = server_command(self.variant, self.server, self.port)
        with self.log_path.open("ab") as log:
            self.spawned_at = time.perf_counter()
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def first_answer(
        self, headers: dict[str, str], body: bytes, timeout: float, poll: float = 0.005
    ) -> dict[str, Any]:
        """Connect as soon as the port accepts, POST, read the answer. Times from spawn()."""
        assert self.process is not None
        deadline = time.perf_counter() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.variant}/{self.server} exited with "
                    f"{self.process.returncode} before answering:\n{self.output()}"
                )
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"{self.variant}/{self.server} did not answer within "
                    f"{timeout:.0f}s:\n{self.output()}"
                )
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
            except (ConnectionRefusedError, ConnectionResetError):
                time.sleep(poll)
                continue
            connected = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            conn.sock = sock
            try:
                conn.request("POST", "/", body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (ConnectionResetError, http.client.RemoteDisconnected):
                conn.close()  # a server still coming up may drop the first connection
                time.sleep(poll)
                continue
            answered = time.perf_counter()
            cpu = self.cpu_seconds(group=True)
            conn.close()
            return {
                "cpu_s": cpu,
                "listening_s": connected - self.spawned_at,
                "answer_s": answered - self.spawned_at,
                "status": response.status,
                "outcome": outcome_of(self.variant, response.status, data),
                "body": data[:500].decode(errors="replace"),
            }

    def pids(self) -> dict[str, int]:
        """{'main': pid} and, under gunicorn, {'worker': pid} (the single worker)."""
        assert self.process is not None
        out = {"main": self.process.pid}
        children = _children(self.process.pid)
        if self.server == "gunicorn" and children:
            out["worker"] = children[0]
        return out

    def cpu_seconds(self, group: bool = False) -> float:
        """User + system CPU seconds of the serving process (group=True: of the leader and its
        children, e.g. the gunicorn arbiter and worker)."""
        pids = self.pids()
        chosen = list(pids.values()) if group else [pids.get("worker", pids["main"])]
        return sum(_cpu_s(p) for p in chosen)

    def memory(self) -> dict[str, Any]:
        """VmRSS/VmHWM (KiB) of the process that serves requests, plus the group's PSS."""
        pids = self.pids()
        serving = pids.get("worker", pids["main"])
        out: dict[str, Any] = {"serving_pid": serving, **_status_kib(serving)}
        if "worker" in pids:
            main = _status_kib(pids["main"])
            out["arbiter_rss_kib"] = main.get("rss_kib")
        pss = [_pss_kib(p) for p in pids.values()]
        out["group_pss_kib"] = sum(p for p in pss if p is not None) if any(pss) else None
        return out

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_group(process)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    except (OSError, ValueError):
        pass
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return sorted(found)


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_cpu_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores: user, nice, system, irq...; not
    idle or iowait) since boot, from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields[:8]) - fields[3] - fields[4]) / _TICKS


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid` and all its descendants."""
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += _cpu_s(current)
        stack.extend(_children(current))
    return total


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICKS
    except (OSError, ValueError, IndexError):
        return 0.0


def _status_kib(pid: int) -> dict[str, int]:
    out = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out["rss_kib" if key == "VmRSS" else "hwm_kib"] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return out


def _pss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def server_threads() -> int:
    """The gthread worker's thread count functions-framework configures (THREADS or 4 x cores)."""
    return int(os.environ.get("THREADS", (os.cpu_count() or 1) * 4))


if __name__ == "__main__":
    sys.exit(__doc__)
