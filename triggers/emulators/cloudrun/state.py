"""The emulator's in-memory state: executions, operations, and the supervision of their tasks.

One ``threading.Condition`` guards everything. Task processes report their exit from their own
waiter thread (see ``process.py``); the store feeds that into the execution's ``ExecutionMachine``
and launches what it says. Waiting for an operation (``wait_operation``) blocks on the condition:
nothing polls. Every method that returns a resource renders it under the lock, so a response is
always one consistent snapshot.

The launcher is injected, so the store can be tested with a fake one that runs nothing.
"""

from __future__ import annotations

import logging
import os
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from ..machine import ExecutionMachine, Launch
from ..process import AttemptExit, AttemptSpec, task_environ
from ..rpc import ApiError
from . import resources
from .jobs import JobCatalog, JobSpec, inherited_environ
from .overrides import RunRequest, apply_overrides
from .records import AttemptRecord, ExecutionRecord, Handle, OperationRecord, page

log = logging.getLogger("triggers.emulators")

_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
MAX_WAIT_SECONDS = 60.0


class Launcher(Protocol):
    def launch(self, spec: AttemptSpec, on_exit: Callable[[AttemptExit], None]) -> Handle: ...


def utcnow() -> datetime:
    return datetime.now(UTC)


class Store:
    """Executions and operations of one emulator instance."""

    def __init__(
        self,
        catalog: JobCatalog,
        log_dir: str | os.PathLike[str],
        launcher: Launcher,
        *,
        clock: Callable[[], datetime] = utcnow,
        environ: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
    ) -> None:
        self.catalog = catalog
        # Secret Manager as the emulator knows it: secret name -> value (`--secrets FILE`).
        self.secrets: Mapping[str, str] = dict(secrets or {})
        self.log_root = Path(log_dir)
        self.launcher = launcher
        self.clock = clock
        self._base_env = inherited_environ(catalog.inherit_env, environ)
        self._cond = threading.Condition(threading.RLock())
        self._executions: dict[str, ExecutionRecord] = {}  # live (not deleted), by name
        self._operations: dict[str, OperationRecord] = {}
        self._order: list[ExecutionRecord] = []  # every execution ever created, oldest first
        self._job_created = clock()
        self._job_uids = {
            j.full_name: str(uuid.uuid5(uuid.NAMESPACE_URL, j.full_name)) for j in catalog
        }
        self._closed = False

    # ================================================================== jobs

    def _job(self, full_name: str) -> JobSpec:
        job = self.catalog.get(full_name)
        if job is None:
            raise ApiError(404, f"Resource '{full_name}' was not found", "NOT_FOUND")
        return job

    def _job_etag(self, job: JobSpec) -> str:
        return '"' + uuid.uuid5(uuid.NAMESPACE_URL, repr(job)).hex[:16] + '"'

    def _job_json(self, job: JobSpec) -> dict[str, Any]:
        mine = [r for r in self._order if r.job.full_name == job.full_name]
        return resources.job_json(
            job,
            create_time=self._job_created,
            execution_count=len(mine),
            latest=mine[-1] if mine else None,
            etag=self._job_etag(job),
            uid=self._job_uids[job.full_name],
        )

    def get_job(self, full_name: str) -> dict[str, Any]:
        with self._cond:
            return self._job_json(self._job(full_name))

    def list_jobs(
        self, project: str, region: str, page_size: int = 0, page_token: str = ""
    ) -> dict[str, Any]:
        with self._cond:
            jobs = self.catalog.in_location(project, region)
            chunk, nxt = page(jobs, page_size, page_token, f"jobs/{project}/{region}")
            out: dict[str, Any] = {"jobs": [self._job_json(j) for j in chunk]}
            if nxt:
                out["nextPageToken"] = nxt
            return out

    # ================================================================== jobs.run

    def run_job(self, full_name: str, request: RunRequest) -> dict[str, Any]:
        """Start an execution (or only validate); returns the Operation resource."""
        with self._cond:
            if self._closed:
                raise ApiError(503, "The emulator is shutting down", "UNAVAILABLE")
            job = self._job(full_name)
            if request.etag and request.etag != self._job_etag(job):
                raise ApiError(409, f"etag mismatch for job '{full_name}'", "ABORTED")
            run = apply_overrides(job, request.overrides, self.secrets)
            now = self.clock()
            short = self._new_short_name(job.name)
            rec = ExecutionRecord(
                name=f"{full_name}/executions/{short}",
                short=short,
                job=job,
                run=run,
                machine=ExecutionMachine(run.task_count, run.parallelism, run.max_retries),
                create_time=now,
                update_time=now,
                log_dir=self.log_root / short,
            )
            op = OperationRecord(
                name=f"{job.parent}/operations/{uuid.uuid4()}",
                kind="run",
                execution=rec,
                create_time=now,
            )
            if request.validate_only:
                log.info("jobs.run %s: validate_only, nothing launched", full_name)
                body = resources.operation_json(op)
                body["name"] = ""
                body["done"] = True
                body["metadata"]["name"] = ""
                body.pop("error", None)
                body["response"] = dict(body["metadata"])
                return body
            rec.operation = op.name
            self._executions[rec.name] = rec
            self._order.append(rec)
            self._operations[op.name] = op
            log.info(
                "execution %s: created (tasks=%d parallelism=%d timeout=%gs max_retries=%d)",
                rec.name,
                run.task_count,
                rec.machine.slots,
                run.timeout,
                run.max_retries,
            )
            self._start(rec)
            return resources.operation_json(op)

    def _new_short_name(self, job: str) -> str:
        taken = {r.short for r in self._order}
        while True:
            short = f"{job}-" + "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(5))
            if short not in taken:
                return short

    def _start(self, rec: ExecutionRecord) -> None:
        rec.log_dir.mkdir(parents=True, exist_ok=True)
        rec.start_time = rec.update_time = self.clock()
        launches = rec.machine.start()
        log.info("execution %s: running", rec.name)
        self._launch(rec, launches)

    def _launch(self, rec: ExecutionRecord, launches: list[Launch]) -> None:
        for launch in launches:
            now = self.clock()
            path = rec.log_dir / f"task{launch.index}-attempt{launch.attempt}.log"
            attempt = AttemptRecord(launch.index, launch.attempt, path, now)
            rec.attempts.append(attempt)
            env = task_environ(
                self._base_env,
                rec.run.env,
                job=rec.job.name,
                execution=rec.short,
                index=launch.index,
                attempt=launch.attempt,
                task_count=rec.run.task_count,
            )
            spec = AttemptSpec(
                argv=tuple(rec.run.command) + tuple(rec.run.args),
                env=env,
                cwd=rec.run.working_dir,
                timeout=rec.run.timeout,
                log_path=path,
                label=f"{rec.short} task {launch.index} attempt {launch.attempt}",
            )

            def on_exit(
                exit: AttemptExit, rec: ExecutionRecord = rec, launch: Launch = launch
            ) -> None:
                self._attempt_exited(rec, launch, exit)

            handle = self.launcher.launch(spec, on_exit)
            if attempt.end_time is None:  # a launcher may report the exit before returning
                rec.handles[(launch.index, launch.attempt)] = handle
            log.debug(
                "execution %s: task %d attempt %d started", rec.name, launch.index, launch.attempt
            )

    def _attempt_exited(self, rec: ExecutionRecord, launch: Launch, exit: AttemptExit) -> None:
        with self._cond:
            now = self.clock()
            handle = rec.handles.pop((launch.index, launch.attempt), None)
            for a in rec.attempts:
                if a.index == launch.index and a.attempt == launch.attempt:
                    a.end_time, a.exit_code, a.result, a.message = (
                        now,
                        exit.exit_code,
                        exit.result,
                        exit.message,
                    )
                    if handle is not None and a.pid is None:
                        a.pid = handle.pid
            log.debug(
                "execution %s: task %d attempt %d %s (exit code %s)",
                rec.name,
                launch.index,
                launch.attempt,
                exit.result.value,
                exit.exit_code,
            )
            was_failing = rec.machine.failing
            launches = rec.machine.finished(launch.index, launch.attempt, exit.result)
            if rec.machine.failing and not was_failing:
                rec.failure_message = (
                    f"Task {rec.short}-task{launch.index} failed with message:"
                    f" {exit.message or 'unknown error'}"
                )
                log.info("execution %s: failing (%s)", rec.name, rec.failure_message)
            rec.update_time = now
            self._launch(rec, launches)
            if rec.machine.done:
                self._finish(rec)
            self._cond.notify_all()

    def _finish(self, rec: ExecutionRecord) -> None:
        if rec.completion_time is not None:
            return
        rec.completion_time = rec.update_time = self.clock()
        m = rec.machine
        log.info(
            "execution %s: %s (succeeded=%d failed=%d cancelled=%d retried=%d) in %.2fs",
            rec.name,
            m.outcome.value if m.outcome else "?",
            m.succeeded_count,
            m.failed_count,
            m.cancelled_count,
            m.retried_count,
            (rec.completion_time - rec.create_time).total_seconds(),
        )

    # ================================================================== executions

    def _execution(self, name: str) -> ExecutionRecord:
        rec = self._executions.get(name)
        if rec is None:
            raise ApiError(404, f"Resource '{name}' was not found", "NOT_FOUND")
        return rec

    def get_execution(self, name: str) -> dict[str, Any]:
        with self._cond:
            return resources.execution_json(self._execution(name))

    def list_executions(
        self, job_full_name: str, page_size: int = 0, page_token: str = ""
    ) -> dict[str, Any]:
        """Newest first, as the service lists them."""
        with self._cond:
            self._job(job_full_name)
            mine = [
                r
                for r in reversed(self._order)
                if r.job.full_name == job_full_name and r.name in self._executions
            ]
            chunk, nxt = page(mine, page_size, page_token, f"executions/{job_full_name}")
            out: dict[str, Any] = {"executions": [resources.execution_json(r) for r in chunk]}
            if nxt:
                out["nextPageToken"] = nxt
            return out

    def cancel_execution(self, name: str) -> dict[str, Any]:
        with self._cond:
            rec = self._execution(name)
            if rec.done:
                raise ApiError(
                    400,
                    f"Execution '{name}' has already completed ({rec.state}) "
                    f"and cannot be cancelled",
                    "FAILED_PRECONDITION",
                )
            self._cancel(rec)
            op = OperationRecord(
                name=f"{rec.job.parent}/operations/{uuid.uuid4()}",
                kind="cancel",
                execution=rec,
                create_time=self.clock(),
            )
            self._operations[op.name] = op
            return resources.operation_json(op)

    def _cancel(self, rec: ExecutionRecord) -> None:
        if rec.done or rec.machine.cancel_requested:
            return
        kills = rec.machine.cancel()
        rec.update_time = self.clock()
        log.info("execution %s: cancelling (%d running task(s) to stop)", rec.name, len(kills))
        for launch in kills:
            handle = rec.handles.get((launch.index, launch.attempt))
            if handle is not None:
                handle.kill()
        if rec.machine.done:
            self._finish(rec)
        self._cond.notify_all()

    def delete_execution(self, name: str) -> dict[str, Any]:
        with self._cond:
            rec = self._execution(name)
            self._cancel(rec)
            rec.delete_time = rec.update_time = self.clock()
            del self._executions[name]
            op = OperationRecord(
                name=f"{rec.job.parent}/operations/{uuid.uuid4()}",
                kind="delete",
                execution=rec,
                create_time=self.clock(),
            )
            self._operations[op.name] = op
            log.info("execution %s: deleted", rec.name)
            return resources.operation_json(op)

    # ================================================================== operations

    def _operation(self, name: str) -> OperationRecord:
        op = self._operations.get(name)
        if op is None:
            raise ApiError(404, f"Operation '{name}' was not found", "NOT_FOUND")
        return op

    def get_operation(self, name: str) -> dict[str, Any]:
        with self._cond:
            return resources.operation_json(self._operation(name))

    def list_operations(
        self, parent: str, page_size: int = 0, page_token: str = ""
    ) -> dict[str, Any]:
        with self._cond:
            ops = [
                op
                for op in self._operations.values()
                if op.name.startswith(parent + "/operations/")
            ]
            ops.sort(key=lambda op: op.create_time, reverse=True)
            chunk, nxt = page(ops, page_size, page_token, f"operations/{parent}")
            out: dict[str, Any] = {"operations": [resources.operation_json(op) for op in chunk]}
            if nxt:
                out["nextPageToken"] = nxt
            return out

    def wait_operation(self, name: str, timeout: float | None) -> dict[str, Any]:
        """Block until the operation is done or ``timeout`` (capped at 60 s) passes."""
        limit = (
            MAX_WAIT_SECONDS if timeout is None or timeout <= 0 else min(timeout, MAX_WAIT_SECONDS)
        )
        deadline = time.monotonic() + limit
        with self._cond:
            op = self._operation(name)
            while not op.done and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return resources.operation_json(op)

    def delete_operation(self, name: str) -> dict[str, Any]:
        with self._cond:
            self._operation(name)
            del self._operations[name]
            return {}

    # ================================================================== for tests and tools

    def execution_record(self, name: str) -> ExecutionRecord | None:
        with self._cond:
            return self._executions.get(name)

    def records(self) -> list[ExecutionRecord]:
        with self._cond:
            return list(self._order)

    def dump(self) -> dict[str, Any]:
        """Everything, for ``GET /_emulator/executions``: each execution with its attempts."""
        with self._cond:
            items = []
            for r in self._order:
                e = resources.execution_json(r)
                e["emulator"] = {
                    "state": r.state,
                    "deleted": r.name not in self._executions,
                    "operation": r.operation,
                    "logDir": str(r.log_dir),
                    "attempts": [self._attempt_json(r, a) for a in r.attempts],
                }
                items.append(e)
            return {"executions": items}

    @staticmethod
    def _attempt_json(rec: ExecutionRecord, a: AttemptRecord) -> dict[str, Any]:
        if a.pid is None:
            handle = rec.handles.get((a.index, a.attempt))
            a.pid = getattr(handle, "pid", None)
        return a.as_json()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no execution is running. True if idle in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(not r.done for r in self._executions.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def wait_execution(self, name: str, timeout: float = 10.0) -> ExecutionRecord:
        deadline = time.monotonic() + timeout
        with self._cond:
            rec = next((r for r in self._order if r.name == name), None)
            if rec is None:
                raise KeyError(name)
            while not rec.done:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"execution {name} still {rec.state} after {timeout}s")
                self._cond.wait(left)
            return rec

    def _stop_all(self, timeout: float) -> bool:
        with self._cond:
            running = [r for r in self._executions.values() if not r.done]
            for r in running:
                self._cancel(r)
            handles = [h for r in self._order for h in r.handles.values()]
        deadline = time.monotonic() + timeout
        for h in handles:
            h.join(max(0.0, deadline - time.monotonic()))
        return self.wait_idle(max(0.0, deadline - time.monotonic()))

    def reset(self, timeout: float = 10.0) -> None:
        """Cancel everything running, then forget every execution and operation."""
        self._stop_all(timeout)
        with self._cond:
            self._executions.clear()
            self._operations.clear()
            self._order.clear()
            self._cond.notify_all()
        log.info("state reset")

    def shutdown(self, timeout: float = 10.0) -> None:
        """Refuse new runs, kill every running task and wait for the processes to be gone."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._stop_all(timeout)
