"""The `jobs.run` quota of the Cloud Run Admin API, emulated: N run requests per minute per
region, past which `jobs.run` answers 429 RESOURCE_EXHAUSTED as the service does (quota limit
`JobRunRequestsPerMinutePerRegion`; projects report 60 to 180).

A minute here is a minute on the emulator's clock: with a time scale F (the same as the Cloud
Tasks emulator's, `--tasks-time-scale`), the window lasts 60/F real seconds, so a burst that
would take minutes against the real quota drains in seconds in a test. The window slides (the
last 60 s), which is never more permissive than the service's per-minute buckets.

    quota = RunQuota.parse("180/min", time_scale=60)
    quota.take("europe-west1")      # raises ApiError(429) when the region's minute is full
"""

from __future__ import annotations

import re
import threading
import time
from collections import deque
from collections.abc import Callable

from ..rpc import ApiError

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60}
_UNIT_SECONDS |= {"h": 3600, "hour": 3600}
WINDOW_SECONDS = 60.0  # the quota is per minute


class RunQuota:
    """At most ``per_minute`` accepted `jobs.run` calls per region in any emulator minute."""

    def __init__(
        self,
        per_minute: float,
        *,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or time_scale <= 0:
            raise ValueError("the run quota and the time scale must be positive")
        self.per_minute = per_minute
        self.time_scale = time_scale
        self.clock = clock
        self._start = clock()
        self._accepted: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        # What happened, in emulator seconds since the start: for tests and the benchmark.
        self.accepted_at: list[float] = []
        self.refused = 0

    @classmethod
    def parse(cls, spec: str, *, time_scale: float = 1.0) -> RunQuota:
        """`180/min`, `3/s`, `1000/h` (converted to a per-minute quota)."""
        match = _SPEC.match(spec)
        if match is None or int(match.group(1)) <= 0:
            raise ValueError(f"a run quota looks like 180/min, not {spec!r}")
        per_minute = int(match.group(1)) * WINDOW_SECONDS / _UNIT_SECONDS[match.group(2)]
        return cls(per_minute, time_scale=time_scale)

    def now(self) -> float:
        """Emulator seconds since the quota was made."""
        return (self.clock() - self._start) * self.time_scale

    def reset(self) -> None:
        with self._lock:
            self._accepted.clear()
            self.accepted_at.clear()
            self.refused = 0

    def take(self, region: str) -> None:
        with self._lock:
            now = self.now()
            window = self._accepted.setdefault(region, deque())
            while window and window[0] <= now - WINDOW_SECONDS:
                window.popleft()
            if len(window) >= self.per_minute:
                self.refused += 1
                raise ApiError.injected(
                    429,
                    "Quota exceeded for quota metric 'Job run requests' and limit 'Job run"
                    f" requests per minute per region' of service 'run.googleapis.com' for"
                    f" region {region} ({self.per_minute:g}/min, emulated).",
                )
            window.append(now)
            self.accepted_at.append(now)
