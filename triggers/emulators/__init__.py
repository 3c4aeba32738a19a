"""A local Cloud Run Admin API v2 (Jobs) emulator that runs each job task as a local process.

The production runner talks to it with the real ``google-cloud-run`` client over REST, only
pointed at another endpoint. See ``docs/emulator.md``.

    from triggers.emulators import EmulatorServer
    with EmulatorServer("config/jobs.yaml") as emu:
        ...  # emu.url, emu.faults, emu.store

Modules: ``jobs`` (jobs file), ``machine`` (task state machine, pure), ``overrides`` (jobs.run
bodies, pure), ``resources`` (REST JSON rendering, pure), ``state`` (executions, operations,
supervision), ``process`` (task processes), ``faults`` (fault injection), ``api`` (HTTP),
``server`` (start/stop, CLI).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import EmulatorServer

__all__ = ["EmulatorServer"]


def __getattr__(name: str) -> Any:
    if name == "EmulatorServer":
        from .server import EmulatorServer

        return EmulatorServer
    raise AttributeError(name)
