"""When a Cloud Scheduler job fires: the next (or previous) times of a unix-cron schedule.

    Schedule("0 2 * * *", "Europe/Berlin").next_after(now)      # an aware UTC datetime
    next_fire_times("*/15 * * * *", None, now, count=4)

Cloud Scheduler reads a schedule as 5-field unix-cron (minute hour day-of-month month
day-of-week; lists, ranges, steps, JAN-DEC / SUN-SAT names, 0 or 7 for Sunday, no `L`) in the
job's time zone, `Etc/UTC` by default. When day-of-month and day-of-week are both restricted, a
day matching either one fires (Vixie cron's OR).

The evaluation is cronsim's, which follows Debian cron, daylight saving time included:

* a wall time that does not exist (spring forward: 02:30 in Europe/Berlin on the last Sunday of
  March) fires once, at the end of the gap (03:00 CEST);
* a wall time that happens twice (fall back: 02:30 on the last Sunday of October) fires once, at
  its first occurrence (02:30 CEST);
* a schedule whose minute or hour field starts with `*` (`*/15 * * * *`, `0 * * * *`) follows
  the real clock instead: it fires through the repeated hour and has nothing to fire in the gap.

Every time returned is an aware datetime in UTC, the way Scheduler reports a schedule time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

DEFAULT_TIME_ZONE = "Etc/UTC"  # Cloud Scheduler's default

_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
# `L` (last day / last weekday) is cron syntax that cronsim understands but Cloud Scheduler does
# not: refuse it here rather than fire locally on a schedule the real service would reject.
_REVERSE_MARGIN = timedelta(hours=3)  # more than any DST shift there is
_LAST = re.compile(r"(^|,)(\d*L|LW)(,|$)", re.IGNORECASE)


class ScheduleError(ValueError):
    """A schedule or time zone that Cloud Scheduler would not accept."""


@dataclass(frozen=True)
class Schedule:
    """A unix-cron schedule in an IANA time zone (None: Cloud Scheduler's default, UTC)."""

    cron: str
    time_zone: str | None = None
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = self.cron.split()
        if len(fields) != 5:
            raise ScheduleError(
                f"schedule {self.cron!r} has {len(fields)} fields; unix-cron has 5 "
                "(minute hour day-of-month month day-of-week), e.g. '0 2 * * *'"
            )
        for name, value in zip(_FIELD_NAMES, fields, strict=True):
            if name in ("day-of-month", "day-of-week") and _LAST.search(value):
                raise ScheduleError(
                    f"schedule {self.cron!r}: {name} {value!r}: Cloud Scheduler does not support L"
                )
        zone_name = self.time_zone or DEFAULT_TIME_ZONE
        try:
            zone = ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(f"unknown time zone {zone_name!r} (use an IANA name)") from None
        object.__setattr__(self, "zone", zone)
        try:
            CronSim(self.cron, datetime(2000, 1, 1, tzinfo=zone))
        except CronSimError as exc:  # "Bad day-of-week": say which schedule
            raise ScheduleError(f"schedule {self.cron!r}: {str(exc).lower()}") from None

    # -- evaluation ---------------------------------------------------------------------------

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after `after` (a naive datetime is taken as UTC)."""
        return self.upcoming(after, 1)[0]

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The first `count` fire times strictly after `after`, in order."""
        start = _aware(after)
        times: list[datetime] = []
        # cronsim walks the wall clock, so it starts from `after` in the schedule's zone. A start
        # in the second pass of a repeated hour (fold=1) loses its fold there, and cronsim can
        # answer a time of the first pass, before `after`: those are skipped.
        for moment in self._iterate(start, reverse=False):
            if moment > start:
                times.append(moment)
                if len(times) == count:
                    break
        return times

    def previous_before(self, before: datetime) -> datetime:
        """The last fire time at or before `before` (the tick a Scheduler job fired last)."""
        end = _aware(before)
        # Walk back from a little later and skip what is after `end`: a reverse walk starts a
        # second before its start, and, as above, a start in the second pass of a repeated hour
        # loses its fold (which would skip that hour's first-pass fire time). Fire times mapped
        # to UTC only grow as the wall clock does, so the first one at or before `end` is it.
        probe = end.replace(microsecond=0) + _REVERSE_MARGIN
        for moment in self._iterate(probe, reverse=True):
            if moment <= end:
                return moment
        raise ScheduleError(f"schedule {self.cron!r} never fired in the 50 years before {end}")

    def _iterate(self, start: datetime, *, reverse: bool):
        iterator = CronSim(self.cron, start.astimezone(self.zone), reverse=reverse)
        while True:
            try:
                moment = next(iterator)
            except StopIteration:  # cronsim gives up after 50 years without a match
                if reverse:
                    return
                raise ScheduleError(
                    f"schedule {self.cron!r} does not fire in the 50 years after {start}"
                ) from None
            yield moment.astimezone(UTC)

    def describe(self) -> str:
        """In words, e.g. 'at 02:00 every day, Europe/Berlin time'."""
        words = CronSim(self.cron, datetime(2000, 1, 1, tzinfo=self.zone)).explain()
        return f"{words[:1].lower()}{words[1:]}, {self.time_zone or 'UTC'} time"


def next_fire_times(
    cron: str, time_zone: str | None, after: datetime, count: int = 1
) -> list[datetime]:
    """The first `count` fire times (UTC) of `cron` in `time_zone` strictly after `after`."""
    return Schedule(cron, time_zone).upcoming(after, count)


def rfc3339(moment: datetime) -> str:
    """`2026-11-21T01:00:00Z`: how X-CloudScheduler-ScheduleTime spells a fire time."""
    return _aware(moment).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
