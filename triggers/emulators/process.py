"""Task attempts as local processes: spawn, wait (with the task timeout), kill, report.

One thread per running attempt blocks in ``Popen.wait(timeout)``: no polling. Each process gets
its own session (process group) so that killing it also kills what it started. Output (stdout
and stderr, interleaved) goes to the attempt's log file.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .machine import AttemptResult

log = logging.getLogger("triggers.emulators")

_POSIX = os.name == "posix"


@dataclass(frozen=True, slots=True)
class AttemptSpec:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    timeout: float
    log_path: Path
    label: str  # e.g. "csv-loader-ab12c task 0 attempt 1", for log lines


@dataclass(frozen=True, slots=True)
class AttemptExit:
    result: AttemptResult
    exit_code: int | None
    message: str


class AttemptHandle:
    """A running attempt. ``kill()`` stops it; the exit is reported as CANCELLED."""

    def __init__(
        self, spec: AttemptSpec, on_exit: Callable[[AttemptExit], None], grace: float
    ) -> None:
        self.spec = spec
        self._on_exit = on_exit
        self._grace = grace
        self._proc: subprocess.Popen[bytes] | None = None
        self._killed = threading.Event()
        self._exited = threading.Event()
        self._lock = threading.Lock()
        self.pid: int | None = None
        self.thread = threading.Thread(target=self._run, name=f"task {spec.label}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def exited(self) -> bool:
        return self._exited.is_set()

    def _run(self) -> None:
        outcome: AttemptExit
        try:
            outcome = self._run_process()
        except Exception as exc:  # never let a task thread die silently
            log.exception("task %s: supervisor error", self.spec.label)
            outcome = AttemptExit(AttemptResult.FAILED, None, f"emulator error: {exc}")
        self._exited.set()
        self._on_exit(outcome)

    def _run_process(self) -> AttemptExit:
        spec = self.spec
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(spec.log_path, "ab") as out:
            with self._lock:
                if self._killed.is_set():
                    return AttemptExit(AttemptResult.CANCELLED, None, "cancelled before it started")
                try:
                    self._proc = subprocess.Popen(
                        list(spec.argv),
                        env=dict(spec.env),
                        cwd=spec.cwd,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=_POSIX,
                    )
                except OSError as exc:
                    out.write(f"[emulator] cannot start {list(spec.argv)!r}: {exc}\n".encode())
                    return AttemptExit(
                        AttemptResult.FAILED, None, f"the container could not start: {exc}"
                    )
                self.pid = self._proc.pid
            proc = self._proc
            try:
                code = proc.wait(timeout=spec.timeout)
            except subprocess.TimeoutExpired:
                self._terminate(proc)
                proc.wait()
                out.write(f"\n[emulator] killed at the task timeout ({spec.timeout:g}s)\n".encode())
                return AttemptExit(
                    AttemptResult.TIMEOUT, proc.returncode, "The configured timeout was reached."
                )
        if self._killed.is_set() and code != 0:
            return AttemptExit(AttemptResult.CANCELLED, code, "The task was cancelled.")
        if code == 0:
            return AttemptExit(AttemptResult.SUCCEEDED, 0, "")
        return AttemptExit(
            AttemptResult.FAILED, code, f"The container exited with an error (exit code {code})."
        )

    def kill(self) -> None:
        """Stop the attempt: SIGTERM to its process group, SIGKILL after the grace period."""
        with self._lock:
            self._killed.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            threading.Thread(target=self._terminate, args=(proc,), daemon=True).start()

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        _signal(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=self._grace)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL if _POSIX else signal.SIGTERM)
        if _POSIX:  # whatever the task left behind in its group
            _signal(proc, signal.SIGKILL, group_only=True)

    def join(self, timeout: float | None = None) -> bool:
        self.thread.join(timeout)
        return not self.thread.is_alive()


def _signal(proc: subprocess.Popen[bytes], sig: int, group_only: bool = False) -> None:
    try:
        if _POSIX:
            os.killpg(proc.pid, sig)
        elif not group_only:
            proc.kill() if sig != signal.SIGTERM else proc.terminate()
    except (ProcessLookupError, PermissionError, OSError):
        pass


class ProcessLauncher:
    """Starts attempts as processes. ``grace`` is the SIGTERM -> SIGKILL delay when killing."""

    def __init__(self, grace: float = 2.0) -> None:
        self.grace = grace

    def launch(self, spec: AttemptSpec, on_exit: Callable[[AttemptExit], None]) -> AttemptHandle:
        handle = AttemptHandle(spec, on_exit, self.grace)
        handle.start()
        return handle


def task_environ(
    base: Mapping[str, str],
    env: Sequence[tuple[str, str]],
    *,
    job: str,
    execution: str,
    index: int,
    attempt: int,
    task_count: int,
) -> dict[str, str]:
    """The environment of one attempt: inherited base, then the job/override env, then the
    Cloud Run job contract variables (which nothing may override)."""
    result = dict(base)
    result.update(env)
    result.update(
        {
            "CLOUD_RUN_JOB": job,
            "CLOUD_RUN_EXECUTION": execution,
            "CLOUD_RUN_TASK_INDEX": str(index),
            "CLOUD_RUN_TASK_ATTEMPT": str(attempt),
            "CLOUD_RUN_TASK_COUNT": str(task_count),
        }
    )
    return result


def wait_all(handles: Sequence[AttemptHandle], deadline: float) -> None:
    for h in handles:
        h.join(max(0.0, deadline - time.monotonic()))
