"""Start and stop the emulators: in-process (tests, ``triggers serve``) or as a process (CLI).

One server serves every emulated API in ``APIS`` that it is asked for, on one port, with one
fault model; each API is a ``Service`` of ``triggers.emulators.http`` built over the same jobs
file and the same task processes. Today: ``cloudrun`` (the Cloud Run Admin API v2),
``cloudrun-v1`` (its v1 routes, over the same executions), ``peloton``, ``sae`` and
``cloudtasks`` (Cloud Tasks v2: queues that call HTTP targets; ``self.tasks`` is its store).

    with EmulatorServer("config/jobs.yaml") as emu:      # port 0 = a free port
        client = run_v2.JobsClient(
            transport="rest",
            client_options={"api_endpoint": emu.url},
            credentials=AnonymousCredentials(),
        )

``main(argv)`` implements
``triggers emulator --jobs FILE [--api NAME]... [--port N] [--host H] [--log-dir D]
[--tasks-time-scale F] [--tasks-tombstone SECONDS]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .cloudrun.api import CloudRunService
from .cloudrun.jobs import JobCatalog, JobsFileError, load_jobs
from .cloudrun.state import Store
from .cloudrun.v1 import CloudRunV1Service
from .faults import Faults
from .http import EmulatorHTTPServer, Service
from .process import ProcessLauncher
from .sae.api import SaeService

log = logging.getLogger("triggers.emulators")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest swaps it per test)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(asctime)s emulator %(message)s"))

    @property
    def stream(self):  # noqa: D401
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _ensure_stderr_logging(level: int) -> None:
    if not any(isinstance(h, _StderrHandler) for h in log.handlers):
        log.addHandler(_StderrHandler())
    if log.level == logging.NOTSET or log.level > level:
        log.setLevel(level)


#: The emulated APIs a server can serve, by the name ``--api`` takes.
APIS = ("cloudrun", "cloudrun-v1", "peloton", "sae", "cloudtasks")


class EmulatorServer:
    """The emulated job APIs on ``host:port``, serving the jobs of one file.

    ``jobs`` is a path to a jobs file or an already-loaded ``JobCatalog``. ``log_dir`` holds task
    logs (a fresh temporary directory if omitted). ``kill_grace`` is the SIGTERM -> SIGKILL delay
    when a task is cancelled or times out. ``apis``: which of ``APIS`` to serve (default: all).
    ``secrets``: a secrets file (or its mapping) of name -> value for env vars that reference
    Secret Manager (cloudrun/secrets.py).
    ``store`` is the Cloud Run executions store, ``faults`` the fault model of every API.
    ``tasks_time_scale``: Cloud Tasks rates and backoffs run this many times faster than real
    time; ``tasks_tombstone_seconds``: how long a finished or deleted task's name stays taken.
    """

    def __init__(
        self,
        jobs: str | os.PathLike[str] | JobCatalog,
        host: str = "127.0.0.1",
        port: int = 0,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        kill_grace: float = 2.0,
        log_level: int = logging.INFO,
        log_to_stderr: bool = True,
        apis: tuple[str, ...] = APIS,
        secrets: str | os.PathLike[str] | Mapping[str, str] | None = None,
        tasks_time_scale: float = 1.0,
        tasks_tombstone_seconds: float = 3600.0,
    ) -> None:
        unknown = sorted(set(apis) - set(APIS))
        if unknown or not apis:
            raise ValueError(f"unknown emulated API(s) {unknown}; choose from {', '.join(APIS)}")
        self.catalog = jobs if isinstance(jobs, JobCatalog) else load_jobs(jobs)
        self._own_log_dir = log_dir is None
        self.log_dir = (
            Path(log_dir)
            if log_dir is not None
            else Path(tempfile.mkdtemp(prefix="triggers-emulator-"))
        )
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self._requested_port = port
        self.launcher = ProcessLauncher(grace=kill_grace)
        if secrets is not None and not isinstance(secrets, Mapping):
            from .cloudrun.secrets import load_secrets

            secrets = load_secrets(secrets)
        self.store = Store(self.catalog, self.log_dir, self.launcher, secrets=secrets)
        self.faults = Faults()
        builders: dict[str, Callable[[], Service]] = {
            "cloudrun": lambda: CloudRunService(self.store),
            # v1 routes over the same store: it is reset and shut down with the v2 service
            "cloudrun-v1": lambda: CloudRunV1Service(self.store),
            "peloton": self._peloton,
            "sae": lambda: SaeService(self.store),  # runs its jobs through the same store
            "cloudtasks": lambda: self._cloudtasks(tasks_time_scale, tasks_tombstone_seconds),
        }
        self.services: list[Service] = [builders[name]() for name in dict.fromkeys(apis)]
        self._httpd: EmulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None
        if log_to_stderr:
            _ensure_stderr_logging(log_level)

    def _peloton(self) -> Service:
        """The Peloton job manager (YARPC over HTTP); ``self.peloton_jobs`` is its job store."""
        from .cloudrun.jobs import inherited_environ
        from .peloton.api import PelotonService
        from .peloton.store import JobStore

        here = Path(self.catalog.path).resolve().parent if self.catalog.path else Path.cwd()
        base_env = inherited_environ(self.catalog.inherit_env)
        self.peloton_jobs = JobStore(self.log_dir, self.launcher, jobs_dir=here, base_env=base_env)
        return PelotonService(self.peloton_jobs)

    def _cloudtasks(self, time_scale: float, tombstone_seconds: float) -> Service:
        """Cloud Tasks v2; ``self.tasks`` is its store (dispatch log, wait_drained)."""
        from .cloudtasks.api import CloudTasksService
        from .cloudtasks.store import TasksStore

        self.tasks = TasksStore(time_scale, tombstone_seconds)
        return CloudTasksService(self.tasks)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> EmulatorServer:
        if self._httpd is not None:
            raise RuntimeError("the emulator is already started")
        self._httpd = EmulatorHTTPServer(
            (self.host, self._requested_port), self.services, self.faults
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="cloud-run-emulator",
            daemon=True,
        )
        self._thread.start()
        log.info(
            "Cloud Run Jobs emulator listening on %s (%d jobs, logs in %s)",
            self.url,
            len(self.catalog),
            self.log_dir,
        )
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, kill every running task and wait for it to be gone."""
        httpd = self._httpd
        if httpd is None:
            return
        url = self.url
        self._httpd = None
        httpd.stopping.set()
        httpd.shutdown()
        for service in self.services:
            service.shutdown(timeout)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        log.info("emulator on %s stopped", url)

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ facts

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the emulator is not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"http://{host}:{self.port}"

    def reset(self) -> None:
        """Cancel all executions, forget them and every operation, clear every fault."""
        self.faults.clear()
        for service in self.services:
            service.reset()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no execution of any emulated API is running. True if idle in time."""
        deadline = time.monotonic() + timeout
        stores = [self.store] + ([self.peloton_jobs] if hasattr(self, "peloton_jobs") else [])
        return all(store.wait_idle(max(0.0, deadline - time.monotonic())) for store in stores)


# ---------------------------------------------------------------------- CLI


def build_parser(prog: str = "triggers emulator") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Run a local Cloud Run Admin API v2 (Jobs) emulator"
        " that runs job tasks as local processes.",
    )
    p.add_argument("--jobs", default="config/jobs.yaml", help="jobs file (default: %(default)s)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    p.add_argument(
        "--port",
        type=int,
        default=8123,
        help="port to listen on, 0 = any free port (default: %(default)s)",
    )
    p.add_argument(
        "--log-dir",
        default=None,
        help="directory for task logs (default: a new temporary directory)",
    )
    p.add_argument(
        "--kill-grace",
        type=float,
        default=2.0,
        help="seconds between SIGTERM and SIGKILL (default: %(default)s)",
    )
    p.add_argument(
        "--api",
        action="append",
        choices=APIS,
        help="an emulated API to serve; repeat for several (default: all of them)",
    )
    p.add_argument(
        "--secrets",
        default=None,
        metavar="FILE",
        help="YAML/JSON of secret name -> value, resolving env vars that reference Secret"
        " Manager (default: none, so such a run fails as for an unknown secret)",
    )
    p.add_argument(
        "--tasks-time-scale",
        type=float,
        default=1.0,
        metavar="F",
        help="Cloud Tasks: run queue rates and retry backoffs F times faster than real time"
        " (default: %(default)s)",
    )
    p.add_argument(
        "--tasks-tombstone",
        type=float,
        default=3600.0,
        metavar="SECONDS",
        help="Cloud Tasks: how long the name of a finished or deleted task cannot be reused"
        " (default: %(default)s)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="also log every task attempt")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    try:
        server = EmulatorServer(
            args.jobs,
            args.host,
            args.port,
            args.log_dir,
            kill_grace=args.kill_grace,
            log_level=level,
            apis=tuple(args.api or APIS),
            secrets=args.secrets,
            tasks_time_scale=args.tasks_time_scale,
            tasks_tombstone_seconds=args.tasks_tombstone,
        )
    except (JobsFileError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        server.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    done = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        done.set()

    previous = {s: signal.signal(s, _stop) for s in (signal.SIGINT, signal.SIGTERM)}
    print(f"Cloud Run Jobs emulator: {server.url}", flush=True)
    try:
        done.wait()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        server.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
