"""Fault injection: make the next calls of a method fail, lose their response, or be slow.

Three kinds of fault, each for one RPC method (``RunJob``, ``GetOperation``, ... or ``*``),
optionally only for requests whose path contains ``match``, for the next ``times`` calls
(``None`` = until cleared):

``error``   the call fails with HTTP ``status`` *before* doing anything (nothing runs);
``drop``    the call is carried out (the job runs), then the response is lost: ``mode="close"``
            closes the connection without a response, ``mode="status"`` answers ``status``
            (503 by default) instead of the result, ``mode="timeout"`` holds the response for
            ``seconds`` and then closes the connection (the client's own deadline fires first);
``latency`` the call sleeps ``seconds`` before it is handled.

Usable in-process (``server.faults.fail("RunJob", 503)``) and over HTTP
(``POST /_emulator/faults`` with the same fields as JSON; ``GET`` lists, ``DELETE`` clears).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

METHODS = frozenset(
    {
        "RunJob",
        "GetJob",
        "ListJobs",
        "GetExecution",
        "ListExecutions",
        "CancelExecution",
        "DeleteExecution",
        "GetOperation",
        "ListOperations",
        "WaitOperation",
        "DeleteOperation",
        # Alibaba Cloud SAE (triggers.emulators.sae)
        "ExecJob",
        "DescribeJobStatus",
        "DescribeJobHistory",
        "*",
    }
)
# Cloud Tasks v2 (triggers.emulators.cloudtasks)
METHODS |= {
    "CreateQueue",
    "GetQueue",
    "ListQueues",
    "UpdateQueue",
    "DeleteQueue",
    "PurgeQueue",
    "PauseQueue",
    "ResumeQueue",
    "CreateTask",
    "GetTask",
    "ListTasks",
    "DeleteTask",
    "RunTask",
}
# Uber Peloton's YARPC procedures (triggers.emulators.peloton), by their full names.
METHODS |= {
    f"peloton.api.v0.{procedure}"
    for procedure in (
        "job.JobManager::Create",
        "job.JobManager::Get",
        "job.JobManager::Query",
        "job.JobManager::Delete",
        "task.TaskManager::Stop",
    )
}
KINDS = frozenset({"error", "drop", "latency"})
DROP_MODES = frozenset({"close", "status", "timeout"})


@dataclass(slots=True)
class Fault:
    id: int
    kind: str
    method: str = "*"
    status: int = 503
    times: int | None = 1
    seconds: float = 0.0
    mode: str = "close"
    match: str = ""
    message: str = ""
    hits: int = 0

    def applies(self, method: str, path: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.method != "*" and self.method != method:
            return False
        return not self.match or self.match in path

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Decision:
    """What the HTTP layer must do with one call."""

    latency: float = 0.0
    error: Fault | None = None  # fail before handling
    drop: Fault | None = None  # handle, then lose the response


@dataclass
class Faults:
    _faults: list[Fault] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ adding

    def add(
        self,
        kind: str,
        method: str = "*",
        *,
        status: int = 503,
        times: int | None = 1,
        seconds: float = 0.0,
        mode: str = "close",
        match: str = "",
        message: str = "",
    ) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (one of {', '.join(sorted(KINDS))})")
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r} (one of {', '.join(sorted(METHODS))})")
        if kind == "drop" and mode not in DROP_MODES:
            raise ValueError(f"unknown drop mode {mode!r} (one of {', '.join(sorted(DROP_MODES))})")
        if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400-599), not {status!r}")
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise ValueError("times must be a positive integer or null (= until cleared)")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("seconds must be a non-negative number")
        if kind == "latency" and not seconds:
            raise ValueError("a latency fault needs seconds > 0")
        if kind == "drop" and mode == "timeout" and not seconds:
            seconds = 30.0
        with self._lock:
            fault = Fault(
                id=next(self._ids),
                kind=kind,
                method=method,
                status=status,
                times=times,
                seconds=float(seconds),
                mode=mode,
                match=match,
                message=message,
            )
            self._faults.append(fault)
            return fault

    def fail(
        self,
        method: str,
        status: int = 503,
        *,
        times: int | None = 1,
        match: str = "",
        message: str = "",
    ) -> Fault:
        """The next ``times`` calls of ``method`` fail with ``status`` before doing anything."""
        return self.add("error", method, status=status, times=times, match=match, message=message)

    def drop_response(
        self,
        method: str = "RunJob",
        *,
        mode: str = "close",
        status: int = 503,
        seconds: float = 0.0,
        times: int | None = 1,
        match: str = "",
    ) -> Fault:
        """The next ``times`` calls of ``method`` are carried out, then their response is lost."""
        return self.add(
            "drop", method, mode=mode, status=status, seconds=seconds, times=times, match=match
        )

    def add_latency(
        self, method: str = "*", seconds: float = 0.1, *, times: int | None = None, match: str = ""
    ) -> Fault:
        """Calls of ``method`` sleep ``seconds`` before they are handled."""
        return self.add("latency", method, seconds=seconds, times=times, match=match)

    def add_from_json(self, body: Any) -> Fault:
        """Add a fault from a ``POST /_emulator/faults`` body; ``ValueError`` if it is wrong."""
        if not isinstance(body, Mapping):
            raise ValueError("the body must be a JSON object")
        allowed = {"kind", "method", "status", "times", "seconds", "mode", "match", "message"}
        unknown = set(body) - allowed
        if unknown:
            raise ValueError(
                f"unknown field(s) {', '.join(sorted(unknown))} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        if "kind" not in body:
            raise ValueError("'kind' is required: error, drop or latency")
        kwargs = {k: v for k, v in body.items() if k not in ("kind", "method")}
        return self.add(body["kind"], body.get("method", "*"), **kwargs)

    # ------------------------------------------------------------------ using

    def take(self, method: str, path: str) -> Decision:
        """Consume the faults that apply to this call (one of each kind, oldest first)."""
        latency = 0.0
        error = drop = None
        with self._lock:
            for fault in self._faults:
                if not fault.applies(method, path):
                    continue
                if fault.kind == "latency":
                    latency += fault.seconds
                elif fault.kind == "error" and error is None and drop is None:
                    error = fault
                elif fault.kind == "drop" and drop is None and error is None:
                    drop = fault
                else:
                    continue
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
            self._faults = [f for f in self._faults if f.times is None or f.times > 0]
        return Decision(latency, error, drop)

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_json() for f in self._faults]

    def remove(self, fault_id: int) -> bool:
        with self._lock:
            before = len(self._faults)
            self._faults = [f for f in self._faults if f.id != fault_id]
            return len(self._faults) != before

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
