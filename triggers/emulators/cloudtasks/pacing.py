"""The arithmetic of a Cloud Tasks queue, pure: the emulator's clock, the token bucket that paces
dispatches, the burst size derived from the rate, and the retry backoff.

Times here are seconds on the *emulator's* clock (``ScaledClock``): with a time scale F, one
real second is F emulator seconds, so rates and backoffs run F times faster on the real clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Cloud Tasks' defaults for a queue created without rateLimits / retryConfig, as
# `gcloud tasks queues describe` shows them.
DEFAULT_MAX_DISPATCHES_PER_SECOND = 500.0
DEFAULT_MAX_CONCURRENT_DISPATCHES = 1000
DEFAULT_MAX_ATTEMPTS = 100
DEFAULT_MIN_BACKOFF = 0.1
DEFAULT_MAX_BACKOFF = 3600.0
DEFAULT_MAX_DOUBLINGS = 16
MAX_DISPATCHES_PER_SECOND = 500.0
MAX_CONCURRENT_DISPATCHES = 5000
MAX_BURST_SIZE = 100


class ScaledClock:
    """Emulator time: ``origin + (real elapsed) * scale``, from a real monotonic reading.

    ``origin`` is the wall-clock epoch second the emulator started at, so emulator times can be
    shown as timestamps; the dispatch log reports them."""

    def __init__(self, scale: float, real_start: float, wall_start: float) -> None:
        if not scale > 0:
            raise ValueError(f"time scale must be > 0, not {scale!r}")
        self.scale = scale
        self.real_start = real_start
        self.wall_start = wall_start

    def elapsed(self, real_now: float) -> float:
        """Emulator seconds since the start, at the real monotonic time ``real_now``."""
        return (real_now - self.real_start) * self.scale

    def epoch(self, real_now: float) -> float:
        """Emulator time as an epoch second (for timestamps)."""
        return self.wall_start + self.elapsed(real_now)

    def real_seconds(self, emulator_seconds: float) -> float:
        """How long ``emulator_seconds`` last on the real clock."""
        return emulator_seconds / self.scale


def derived_burst_size(rate: float) -> int:
    """maxBurstSize as the emulator derives it (output only; Cloud Tasks does not document its
    formula): a fifth of a second's worth of tokens, at least 1 and at most 100. 500/s gives
    100, the figure a default queue shows; below 10/s the bucket holds one or two tokens, so a
    slow queue never dispatches much faster than its rate."""
    return max(1, min(MAX_BURST_SIZE, math.ceil(rate / 5)))


@dataclass(slots=True)
class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` per second; one token per dispatch.

    Starts full (a queue idle for a while may dispatch a burst), like Cloud Tasks' bucket."""

    rate: float
    capacity: int
    tokens: float
    updated: float  # emulator seconds of the last refill

    @classmethod
    def full(cls, rate: float, capacity: int, now: float) -> TokenBucket:
        return cls(rate, capacity, float(capacity), now)

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(float(self.capacity), self.tokens + (now - self.updated) * self.rate)
            self.updated = now

    def take(self, now: float) -> bool:
        """Take a token if one is there (True), else leave the bucket as it is (False)."""
        self._refill(now)
        if self.tokens >= 1.0 - 1e-9:
            self.tokens -= 1.0
            return True
        return False

    def wait(self, now: float) -> float:
        """Emulator seconds until a token is there (0 if one is)."""
        self._refill(now)
        missing = 1.0 - self.tokens
        return 0.0 if missing <= 1e-9 else missing / self.rate

    def reconfigure(self, rate: float, capacity: int, now: float) -> None:
        """A queue update: new rate and capacity, keeping the tokens there (capped)."""
        self._refill(now)
        self.rate, self.capacity = rate, capacity
        self.tokens = min(self.tokens, float(capacity))


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """A queue's retryConfig, in emulator seconds; ``max_attempts`` -1 = unlimited and
    ``max_retry_duration`` 0 = unlimited."""

    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_retry_duration: float = 0.0
    min_backoff: float = DEFAULT_MIN_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    max_doublings: int = DEFAULT_MAX_DOUBLINGS

    def backoff(self, retry: int) -> float:
        """The delay before retry number ``retry`` (1 = the first retry, after attempt 1).

        As Cloud Tasks documents it: the interval starts at min_backoff, doubles max_doublings
        times, then grows linearly by the last doubled interval, capped at max_backoff
        (min 10s, max 300s, 3 doublings: 10, 20, 40, 80, 160, 240, 300, 300, ...)."""
        if retry < 1:
            raise ValueError("retries are numbered from 1")
        step = retry - 1
        if step <= self.max_doublings:
            # 2**step can be huge for an unlimited doubling count: cap before multiplying
            interval = self.min_backoff * (2.0 ** min(step, 64))
        else:
            top = self.min_backoff * (2.0 ** min(self.max_doublings, 64))
            interval = top * (step - self.max_doublings + 1)
        return min(self.max_backoff, interval)

    def exhausted(self, attempts: int, since_first_attempt: float) -> bool:
        """True when a task that failed its ``attempts``-th attempt is not retried again.

        Cloud Tasks retries until *both* limits are reached; max_attempts -1 is never reached,
        and max_retry_duration 0 means no duration limit (max_attempts alone decides)."""
        attempts_done = self.max_attempts != -1 and attempts >= self.max_attempts
        if self.max_retry_duration <= 0:
            return attempts_done
        return attempts_done and since_first_attempt >= self.max_retry_duration
