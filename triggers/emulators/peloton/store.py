"""The Peloton emulator's state: batch jobs, by id, and the supervision of their instances.

A job is created from the full ``JobConfig`` its ``Create`` request carries (Peloton keeps no
templates): every instance runs ``defaultConfig.command`` as a local process (``shell: true``
through ``/bin/sh -c``, else ``value`` + ``arguments``), with the config's environment plus
``PELOTON_JOB_ID``, ``PELOTON_INSTANCE_ID`` and ``PELOTON_TASK_ID`` (``<job>-<instance>-<run>``).
``{python}`` in the command stands for the emulator's interpreter and ``{jobs}`` for the
directory of its jobs file: the emulator's stand-in for a container image.

Instances are driven by the shared ``ExecutionMachine``: ``sla.maximumRunningInstances`` is its
parallelism (0 = all at once), ``defaultConfig.restartPolicy.maxFailures`` its retries,
``sla.maxRunningTime`` (seconds) each run's time limit. The job's runtime state goes
INITIALIZED -> PENDING -> RUNNING -> SUCCEEDED / FAILED, or KILLING -> KILLED after a stop.

One ``threading.Condition`` guards everything; every read renders under it (one snapshot).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ..machine import AttemptResult, ExecutionMachine, Launch, Outcome, TaskStatus
from ..process import AttemptExit, AttemptSpec
from ..rpc import timestamp

log = logging.getLogger("triggers.emulators")

MAX_INSTANCES = 100  # the emulator's own bound: every instance is a local process
DEFAULT_MAX_RUNNING_SECONDS = 24 * 3600
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "KILLED"})
JOB_STATES = (
    "UNKNOWN",
    "INITIALIZED",
    "PENDING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "KILLED",
    "KILLING",
    "UNINITIALIZED",
    "DELETED",
)
# What the machine's task states are called in a Peloton runtime's ``taskStats``.
_TASK_STATE = {
    TaskStatus.PENDING: "PENDING",
    TaskStatus.RUNNING: "RUNNING",
    TaskStatus.SUCCEEDED: "SUCCEEDED",
    TaskStatus.FAILED: "FAILED",
    TaskStatus.CANCELLED: "KILLED",
}


class Handle(Protocol):
    def kill(self) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...


class Launcher(Protocol):
    def launch(self, spec: AttemptSpec, on_exit: Callable[[AttemptExit], None]) -> Handle: ...


class InvalidConfig(ValueError):
    """The job config cannot be run (Peloton's in-body ``invalidConfig``)."""


class AlreadyExists(KeyError):
    """A job with this id exists (Peloton's in-body ``alreadyExists``)."""


class NotRunning(RuntimeError):
    """The job is not in a state where this is allowed (e.g. deleting a running job)."""


@dataclass
class Instance:
    argv: tuple[str, ...]
    env: dict[str, str]
    timeout: float


@dataclass
class JobRecord:
    id: str
    config: dict[str, Any]
    instance: Instance
    machine: ExecutionMachine
    created: datetime
    state: str = "INITIALIZED"
    started: datetime | None = None
    completed: datetime | None = None
    handles: dict[tuple[int, int], Handle] = field(default_factory=dict)

    @property
    def labels(self) -> list[dict[str, str]]:
        return list(self.config.get("labels") or [])


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobStore:
    """The batch jobs of one emulated job manager."""

    def __init__(
        self,
        log_dir: str | os.PathLike[str],
        launcher: Launcher,
        *,
        jobs_dir: str | os.PathLike[str] = ".",
        base_env: Mapping[str, str] | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.log_root = Path(log_dir)
        self.launcher = launcher
        self.jobs_dir = str(jobs_dir)
        self.base_env = dict(base_env or {})
        self.clock = clock
        self._cond = threading.Condition(threading.RLock())
        self._jobs: dict[str, JobRecord] = {}
        self._closed = False

    # ------------------------------------------------------------------ procedures

    def create(self, job_id: str | None, config: Any) -> str:
        """Create and start a job; its id. Raises InvalidConfig, AlreadyExists, ValueError (a
        job id that is not a UUID)."""
        if job_id is None:
            job_id = str(uuid.uuid4())
        try:
            job_id = str(uuid.UUID(job_id))
        except (ValueError, AttributeError, TypeError):
            raise ValueError(f"job id {job_id!r} is not a UUID") from None
        instance, machine = self._parse(config)
        with self._cond:
            if self._closed:
                raise NotRunning("the job manager is shutting down")
            if job_id in self._jobs:
                raise AlreadyExists(job_id)
            record = JobRecord(job_id, dict(config), instance, machine, created=self.clock())
            self._jobs[job_id] = record
            record.state = "PENDING"
            self._launch(record, machine.start())
            record.state = "RUNNING"
            record.started = self.clock()
            self._cond.notify_all()
        log.info("peloton job %s (%s) created", job_id, config.get("name"))
        return job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The JobInfo (id, config, runtime), or None."""
        with self._cond:
            record = self._jobs.get(job_id)
            return None if record is None else self._info(record)

    def query(
        self, labels: list[dict[str, str]], states: list[str], offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        """JobInfos whose labels include ``labels`` and state is one of ``states`` (any when
        empty), oldest first, from ``offset``, at most ``limit`` (0 = all); and the total."""
        with self._cond:
            found = [
                r
                for r in self._jobs.values()
                if all(label in r.labels for label in labels) and (not states or r.state in states)
            ]
            chunk = found[offset : offset + limit] if limit else found[offset:]
            return [self._info(r) for r in chunk], len(found)

    def delete(self, job_id: str) -> bool:
        """Forget a finished job; False if unknown. NotRunning while it runs."""
        with self._cond:
            record = self._jobs.get(job_id)
            if record is None:
                return False
            if record.state not in TERMINAL:
                raise NotRunning(f"job {job_id} is {record.state}: stop it before deleting it")
            del self._jobs[job_id]
            return True

    def stop(self, job_id: str) -> list[int] | None:
        """Kill every instance that has not ended (TaskManager.Stop); the instance ids that were
        stopped, or None if the job is unknown."""
        with self._cond:
            record = self._jobs.get(job_id)
            if record is None:
                return None
            to_kill = record.machine.cancel()
            stopped = sorted(
                {t.index for t in record.machine.tasks if t.status is TaskStatus.CANCELLED}
                | {launch.index for launch in to_kill}
            )
            for launch in to_kill:
                handle = record.handles.get((launch.index, launch.attempt))
                if handle is not None:
                    handle.kill()
            if record.state not in TERMINAL:
                record.state = "KILLING"
            self._settle(record)
            return stopped

    # ------------------------------------------------------------------ waiting, lifecycle

    def wait_job(self, job_id: str, timeout: float = 30.0) -> str | None:
        """Block until the job reaches a terminal state (or ``timeout``); its state."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                record = self._jobs.get(job_id)
                if record is None or record.state in TERMINAL:
                    return None if record is None else record.state
                left = deadline - time.monotonic()
                if left <= 0:
                    return record.state
                self._cond.wait(left)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every job has reached a terminal state. True if idle in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(r.state not in TERMINAL for r in self._jobs.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def reset(self) -> None:
        with self._cond:
            records = list(self._jobs.values())
            self._jobs.clear()
        for record in records:
            self._kill_all(record)

    def shutdown(self, timeout: float) -> None:
        with self._cond:
            self._closed = True
            records = list(self._jobs.values())
        handles = [h for r in records for h in self._kill_all(r)]
        deadline = time.monotonic() + timeout
        for handle in handles:
            handle.join(max(0.0, deadline - time.monotonic()))

    def count(self) -> int:
        with self._cond:
            return len(self._jobs)

    # ------------------------------------------------------------------ internals

    def _kill_all(self, record: JobRecord) -> list[Handle]:
        with self._cond:
            record.machine.cancel()
            handles = list(record.handles.values())
        for handle in handles:
            handle.kill()
        return handles

    def _parse(self, config: Any) -> tuple[Instance, ExecutionMachine]:
        if not isinstance(config, dict):
            raise InvalidConfig("config is required")
        if not isinstance(config.get("name"), str) or not config["name"]:
            raise InvalidConfig("config.name is required")
        if config.get("type", "BATCH") != "BATCH":
            raise InvalidConfig(f"job type {config.get('type')!r}: the JobManager runs BATCH jobs")
        respool = (config.get("respoolID") or {}).get("value")
        if not isinstance(respool, str) or not respool:
            raise InvalidConfig("config.respoolID.value (the resource pool) is required")
        count = config.get("instanceCount")
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_INSTANCES:
            raise InvalidConfig(f"instanceCount must be 1..{MAX_INSTANCES}, not {count!r}")
        default = config.get("defaultConfig") or {}
        command = default.get("command") if isinstance(default, dict) else None
        if not isinstance(command, dict) or not isinstance(command.get("value"), str):
            raise InvalidConfig("defaultConfig.command.value is required")
        arguments = command.get("arguments") or []
        if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
            raise InvalidConfig("defaultConfig.command.arguments must be a list of strings")
        env: dict[str, str] = {}
        for variable in (command.get("environment") or {}).get("variables") or []:
            name, value = variable.get("name"), variable.get("value", "")
            if not isinstance(name, str) or not name or not isinstance(value, str):
                raise InvalidConfig(f"bad environment variable {variable!r}")
            env[name] = value
        sla = config.get("sla") or {}
        parallelism = _non_negative(sla, "maximumRunningInstances", 0)
        limit = _non_negative(sla, "maxRunningTime", 0) or DEFAULT_MAX_RUNNING_SECONDS
        retries = _non_negative(default.get("restartPolicy") or {}, "maxFailures", 0)
        value = self._expand(command["value"])
        if command.get("shell", True):
            argv: tuple[str, ...] = ("/bin/sh", "-c", value)
        else:
            argv = (value, *(self._expand(a) for a in arguments))
        machine = ExecutionMachine(count, parallelism=parallelism, max_retries=retries)
        return Instance(argv, env, float(limit)), machine

    def _expand(self, text: str) -> str:
        return text.replace("{python}", sys.executable).replace("{jobs}", self.jobs_dir)

    def _launch(self, record: JobRecord, launches: list[Launch]) -> None:
        for launch in launches:
            index, attempt = launch.index, launch.attempt
            env = {
                **self.base_env,
                **record.instance.env,
                "PELOTON_JOB_ID": record.id,
                "PELOTON_INSTANCE_ID": str(index),
                "PELOTON_TASK_ID": f"{record.id}-{index}-{attempt + 1}",
            }
            spec = AttemptSpec(
                argv=record.instance.argv,
                env=env,
                cwd=self.jobs_dir,
                timeout=record.instance.timeout,
                log_path=self.log_root / "peloton" / record.id / f"{index}-{attempt + 1}.log",
                label=f"peloton {record.id} instance {index} run {attempt + 1}",
            )

            def on_exit(exit: AttemptExit, i: int = index, a: int = attempt) -> None:
                self._exited(record, i, a, exit)

            record.handles[(index, attempt)] = self.launcher.launch(spec, on_exit)

    def _exited(self, record: JobRecord, index: int, attempt: int, exit: AttemptExit) -> None:
        with self._cond:
            record.handles.pop((index, attempt), None)
            result = exit.result
            if result is AttemptResult.TIMEOUT:
                result = AttemptResult.FAILED
            launches = record.machine.finished(index, attempt, result)
            if self._jobs.get(record.id) is record and not self._closed:
                self._launch(record, launches)
            self._settle(record)

    def _settle(self, record: JobRecord) -> None:
        outcome = record.machine.outcome
        if outcome is not None and record.state not in TERMINAL:
            record.state = {
                Outcome.SUCCEEDED: "SUCCEEDED",
                Outcome.FAILED: "FAILED",
                Outcome.CANCELLED: "KILLED",
            }[outcome]
            record.completed = self.clock()
            log.info("peloton job %s %s", record.id, record.state)
        self._cond.notify_all()

    def _info(self, record: JobRecord) -> dict[str, Any]:
        stats: dict[str, int] = {}
        for task in record.machine.tasks:
            name = _TASK_STATE[task.status]
            stats[name] = stats.get(name, 0) + 1
        runtime: dict[str, Any] = {
            "state": record.state,
            "goalState": "KILLED" if record.machine.cancel_requested else "SUCCEEDED",
            "creationTime": timestamp(record.created),
            "taskStats": stats,
        }
        if record.started is not None:
            runtime["startTime"] = timestamp(record.started)
        if record.completed is not None:
            runtime["completionTime"] = timestamp(record.completed)
        return {"id": {"value": record.id}, "config": record.config, "runtime": runtime}


def _non_negative(mapping: Any, key: str, default: int) -> int:
    value = mapping.get(key, default) if isinstance(mapping, dict) else default
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidConfig(f"{key} must be a non-negative integer, not {value!r}")
    return value
