"""One `Runner` over every job system: each request goes to the runner of its rule's system.

The function has one runner; rules may target different systems (triggers.runners.systems).
`SystemRunners` builds each system's runner the first time a request or an execution of that
system needs it, so a function whose rules all target Cloud Run v2 never imports another
system's client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..errors import PermanentRunError
from ..plan import RunRequest
from .base import Launch, Runner
from .systems import System, get, of_execution


class SystemRunners:
    """Routes `run` and `find` by ``request.system``, `execution_status` by the execution's
    name. ``build(system)`` makes a system's runner; it is called once per system."""

    def __init__(self, build: Callable[[System], Runner]) -> None:
        self._build = build
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()

    def runner(self, system: str) -> Runner:
        runner = self._runners.get(system)
        if runner is None:
            with self._lock:
                runner = self._runners.get(system)
                if runner is None:
                    runner = self._runners[system] = self._build(get(system))
        return runner

    def run(self, request: RunRequest, *, validate_only: bool = False) -> Launch:
        return self.runner(request.system).run(request, validate_only=validate_only)

    def find(self, request: RunRequest, *, since: datetime) -> Launch | None:
        return self.runner(request.system).find(request, since=since)

    def running(self, job: str) -> list[str]:
        # Only Cloud Run v2 counts executions (the rules refuse max_running elsewhere).
        return self.runner("cloudrun").running(job)

    def cancel(self, execution: str) -> None:
        system = of_execution(execution)
        if system is None:
            raise PermanentRunError(f"no job system makes executions named like {execution!r}")
        self.runner(system.name).cancel(execution)

    def execution_status(self, name: str) -> dict[str, Any] | None:
        system = of_execution(name)
        if system is None:
            raise PermanentRunError(f"no job system makes executions named like {name!r}")
        return self.runner(system.name).execution_status(name)
