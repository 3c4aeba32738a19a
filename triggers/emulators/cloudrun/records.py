"""The records the store keeps: task attempts, executions, operations; and list paging."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from ..machine import AttemptResult, ExecutionMachine, Outcome
from ..rpc import RPC_CODES, ApiError, timestamp
from .jobs import JobSpec
from .overrides import EffectiveRun

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class Handle(Protocol):
    """A running attempt, as a launcher returns it."""

    pid: int | None

    def kill(self) -> None: ...

    def join(self, timeout: float | None = None) -> bool: ...


@dataclass(slots=True)
class AttemptRecord:
    index: int
    attempt: int
    log_path: Path
    start_time: datetime
    pid: int | None = None
    end_time: datetime | None = None
    exit_code: int | None = None
    result: AttemptResult | None = None
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "attempt": self.attempt,
            "pid": self.pid,
            "logPath": str(self.log_path),
            "startTime": timestamp(self.start_time),
            "endTime": timestamp(self.end_time) if self.end_time else None,
            "exitCode": self.exit_code,
            "result": self.result.value if self.result else None,
            "message": self.message,
        }


@dataclass(eq=False)
class ExecutionRecord:
    name: str
    short: str
    job: JobSpec
    run: EffectiveRun
    machine: ExecutionMachine
    create_time: datetime
    update_time: datetime
    log_dir: Path
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))
    etag: str = field(default_factory=lambda: '"' + secrets.token_hex(8) + '"')
    operation: str = ""
    start_time: datetime | None = None
    completion_time: datetime | None = None
    delete_time: datetime | None = None
    failure_message: str = ""
    attempts: list[AttemptRecord] = field(default_factory=list)
    handles: dict[tuple[int, int], Handle] = field(default_factory=dict)

    @property
    def log_uri(self) -> str:
        return self.log_dir.resolve().as_uri()

    @property
    def done(self) -> bool:
        return self.machine.done

    @property
    def state(self) -> str:
        outcome = self.machine.outcome
        if outcome is not None:
            return outcome.value
        if self.machine.cancel_requested:
            return "cancelling"
        return "running" if self.start_time else "pending"

    def env_value(self, name: str) -> str | None:
        return dict(self.run.env).get(name)


@dataclass(eq=False)
class OperationRecord:
    name: str
    kind: str  # "run" | "cancel" | "delete"
    execution: ExecutionRecord
    create_time: datetime

    @property
    def done(self) -> bool:
        return self.kind == "delete" or self.execution.done

    @property
    def error(self) -> tuple[int, str] | None:
        """(google.rpc.Code, message) when a run operation's execution failed."""
        if self.kind == "run" and self.execution.machine.outcome is Outcome.FAILED:
            return RPC_CODES["FAILED_PRECONDITION"], self.execution.failure_message
        return None


def encode_token(offset: int, scope: str) -> str:
    raw = json.dumps({"o": offset, "s": scope}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, scope: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        if data["s"] != scope or not isinstance(data["o"], int) or data["o"] < 0:
            raise ValueError
        return data["o"]
    except (ValueError, KeyError, TypeError):
        raise ApiError.invalid(f"Invalid page token: {token!r}", "page_token") from None


def page(items: list[Any], page_size: int, page_token: str, scope: str) -> tuple[list[Any], str]:
    if page_size < 0:
        raise ApiError.invalid("page_size must not be negative", "page_size")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    start = decode_token(page_token, scope) if page_token else 0
    chunk = items[start : start + size]
    nxt = encode_token(start + size, scope) if start + size < len(items) else ""
    return chunk, nxt
