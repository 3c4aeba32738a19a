"""Cron schedules: next and previous fire times, in a time zone, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from triggers.rules.schedule import Schedule, ScheduleError, next_fire_times, rfc3339

UTC = UTC
BERLIN = "Europe/Berlin"


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def fires(cron: str, after: str, count: int, zone: str | None = None) -> list[str]:
    return [rfc3339(x) for x in next_fire_times(cron, zone, t(after), count)]


# -- the format -------------------------------------------------------------------------------


def test_next_is_strictly_after_and_in_utc():
    assert fires("0 2 * * *", "2026-11-21T01:59:59", 1) == ["2026-11-21T02:00:00Z"]
    assert fires("0 2 * * *", "2026-11-21T02:00:00", 1) == ["2026-11-22T02:00:00Z"]
    at = Schedule("0 2 * * *").next_after(t("2026-11-21T00:00:00"))
    assert at.tzinfo is not None and at.utcoffset() == timedelta(0)


def test_a_naive_start_is_utc():
    assert Schedule("30 * * * *").next_after(datetime(2026, 1, 1, 10, 0)) == t(
        "2026-01-01T10:30:00"
    )


@pytest.mark.parametrize(
    "cron, expected",
    [
        ("*/15 * * * *", ["10:15", "10:30", "10:45", "11:00"]),
        ("10/20 * * * *", ["10:10", "10:30", "10:50", "11:10"]),
        ("5-20/5 * * * *", ["10:05", "10:10", "10:15", "10:20", "11:05"]),
        ("0 */6 * * *", ["12:00", "18:00", "00:00", "06:00"]),
        ("0 9,12,18 * * *", ["12:00", "18:00", "09:00"]),
        ("0 9-11 * * *", ["11:00", "09:00", "10:00"]),
        ("0,30 10-11 * * *", ["10:30", "11:00", "11:30", "10:00"]),
    ],
)
def test_steps_lists_and_ranges(cron, expected):
    got = fires(cron, "2026-11-21T10:00:00", len(expected))
    assert [x[11:16] for x in got] == expected


def test_days_of_week_by_number_and_name():
    # 2026-11-21 is a Saturday.
    weekdays = fires("0 9 * * 1-5", "2026-11-21T00:00:00", 5)
    assert [x[:10] for x in weekdays] == [
        "2026-11-23",
        "2026-11-24",
        "2026-11-25",
        "2026-11-26",
        "2026-11-27",
    ]
    assert fires("0 9 * * MON-FRI", "2026-11-21T00:00:00", 5) == weekdays
    assert fires("0 9 * * mon-fri", "2026-11-21T00:00:00", 5) == weekdays
    sundays = fires("0 9 * * 0", "2026-11-21T00:00:00", 2)
    assert sundays == ["2026-11-22T09:00:00Z", "2026-11-29T09:00:00Z"]
    assert fires("0 9 * * 7", "2026-11-21T00:00:00", 2) == sundays
    assert fires("0 9 * * SUN", "2026-11-21T00:00:00", 2) == sundays
    assert [x[:10] for x in fires("0 9 * * SAT,SUN", "2026-11-21T10:00:00", 3)] == [
        "2026-11-22",
        "2026-11-28",
        "2026-11-29",
    ]


def test_months_by_number_and_name():
    expected = ["2027-01-01T00:00:00Z", "2027-07-01T00:00:00Z", "2028-01-01T00:00:00Z"]
    assert fires("0 0 1 JAN,JUL *", "2026-11-21T00:00:00", 3) == expected
    assert fires("0 0 1 1,7 *", "2026-11-21T00:00:00", 3) == expected


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    # Cloud Scheduler (like Vixie cron): the 1st of the month OR any Saturday.
    got = [x[:10] for x in fires("0 0 1 * SAT", "2026-11-22T00:00:00", 3)]
    assert got == ["2026-11-28", "2026-12-01", "2026-12-05"]
    # One of them unrestricted: only the other counts.
    assert [x[:10] for x in fires("0 0 1 * *", "2026-11-22T00:00:00", 2)] == [
        "2026-12-01",
        "2027-01-01",
    ]


def test_february_29th_is_found_years_ahead():
    assert fires("0 0 29 2 *", "2026-11-21T00:00:00", 2) == [
        "2028-02-29T00:00:00Z",
        "2032-02-29T00:00:00Z",
    ]


# -- time zones and daylight saving time --------------------------------------------------------


def test_a_time_zone_moves_the_utc_time_with_the_seasons():
    assert fires("0 2 * * *", "2026-06-30T12:00:00", 1, BERLIN) == ["2026-07-01T00:00:00Z"]  # CEST
    assert fires("0 2 * * *", "2026-11-30T12:00:00", 1, BERLIN) == ["2026-12-01T01:00:00Z"]  # CET
    assert fires("0 9 * * *", "2026-01-15T00:00:00", 1, "America/New_York") == [
        "2026-01-15T14:00:00Z"
    ]


def test_spring_forward_a_skipped_wall_time_fires_once_at_the_end_of_the_gap():
    # Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    assert fires("30 2 * * *", "2026-03-28T12:00:00", 3, BERLIN) == [
        "2026-03-29T01:00:00Z",  # 03:00 CEST
        "2026-03-30T00:30:00Z",  # 02:30 CEST
        "2026-03-31T00:30:00Z",
    ]
    assert fires("0 2 * * *", "2026-03-27T12:00:00", 3, BERLIN) == [
        "2026-03-28T01:00:00Z",  # 02:00 CET
        "2026-03-29T01:00:00Z",  # 03:00 CEST, the end of the gap
        "2026-03-30T00:00:00Z",  # 02:00 CEST
    ]
    # A time after the gap is unaffected.
    assert fires("30 3 * * *", "2026-03-28T12:00:00", 1, BERLIN) == ["2026-03-29T01:30:00Z"]


def test_fall_back_a_repeated_wall_time_fires_once_at_its_first_occurrence():
    # Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:00-02:59 happens twice.
    assert fires("30 2 * * *", "2026-10-24T12:00:00", 3, BERLIN) == [
        "2026-10-25T00:30:00Z",  # 02:30 CEST; not again at 02:30 CET (01:30Z)
        "2026-10-26T01:30:00Z",  # 02:30 CET
        "2026-10-27T01:30:00Z",
    ]


def test_fall_back_from_inside_the_repeated_hour_does_not_go_back_in_time():
    # 01:10Z is 02:10 CET, the second pass; 02:45 of the first pass (00:45Z) is already gone.
    assert fires("45 2 * * *", "2026-10-25T01:10:00", 1, BERLIN) == ["2026-10-26T01:45:00Z"]


def test_schedules_on_the_real_clock_fire_through_both_transitions():
    # A minute or hour field starting with * follows elapsed time, not the wall clock.
    assert fires("*/30 * * * *", "2026-10-24T23:40:00", 6, BERLIN) == [
        "2026-10-25T00:00:00Z",  # 02:00 CEST
        "2026-10-25T00:30:00Z",
        "2026-10-25T01:00:00Z",  # 02:00 CET
        "2026-10-25T01:30:00Z",
        "2026-10-25T02:00:00Z",
        "2026-10-25T02:30:00Z",
    ]
    assert fires("0 * * * *", "2026-03-28T23:30:00", 3, BERLIN) == [
        "2026-03-29T00:00:00Z",  # 01:00 CET
        "2026-03-29T01:00:00Z",  # 03:00 CEST: one real hour later
        "2026-03-29T02:00:00Z",
    ]


def test_fire_times_always_increase_across_a_year_of_berlin_transitions():
    for cron in ("30 2 * * *", "0 1-3 * * *", "*/20 2 * * *", "15 * * * *"):
        times = next_fire_times(cron, BERLIN, t("2026-01-01T00:00:00"), 2000)
        assert all(a < b for a, b in pairwise(times)), cron


# -- previous fire time -----------------------------------------------------------------------


def test_previous_before_includes_an_exact_fire_time():
    schedule = Schedule("0 2 * * *", BERLIN)
    assert schedule.previous_before(t("2026-11-21T15:00:00")) == t("2026-11-21T01:00:00")
    assert schedule.previous_before(t("2026-11-21T01:00:00")) == t("2026-11-21T01:00:00")
    assert schedule.previous_before(t("2026-11-21T00:59:59")) == t("2026-11-20T01:00:00")


def test_previous_before_from_inside_a_repeated_hour():
    # At 01:10Z (02:10 CET, second pass) the last 02:30 tick was 02:30 CEST, at 00:30Z.
    assert Schedule("30 2 * * *", BERLIN).previous_before(t("2026-10-25T01:10:00")) == t(
        "2026-10-25T00:30:00"
    )


# -- what is refused --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cron, message",
    [
        ("0 2 * *", "has 4 fields"),
        ("0 0 2 * * *", "has 6 fields"),
        ("@daily", "has 1 fields"),
        ("60 * * * *", "bad minute"),
        ("0 24 * * *", "bad hour"),
        ("0 0 0 * *", "bad day-of-month"),
        ("0 0 30 2 *", "bad day-of-month"),  # never fires
        ("0 0 * 13 *", "bad month"),
        ("0 0 * * 8", "bad day-of-week"),
        ("0 0 * * MON-XYZ", "bad day-of-week"),
        ("*/0 * * * *", "bad minute"),
        ("0 0 L * *", "does not support L"),
        ("0 0 * * 5L", "does not support L"),
        ("0 0 1,LW * *", "does not support L"),
    ],
)
def test_invalid_schedules_are_refused_with_the_reason(cron, message):
    with pytest.raises(ScheduleError, match=message):
        Schedule(cron)


def test_day_and_month_names_with_an_l_or_w_are_not_mistaken_for_l():
    # JUL and WED hold an L or a W, which the "no L/W" check must not take for the operators:
    # the schedules are accepted and fire when the names say.
    wednesdays_in_july = Schedule("0 0 * JUL WED").upcoming(t("2026-01-01T00:00:00"), 3)
    assert wednesdays_in_july == [
        t("2026-07-01T00:00:00"),
        t("2026-07-08T00:00:00"),
        t("2026-07-15T00:00:00"),
    ]
    april_and_july = Schedule("0 0 * APR,JUL * ").upcoming(t("2026-04-30T12:00:00"), 2)
    assert april_and_july == [t("2026-07-01T00:00:00"), t("2026-07-02T00:00:00")]


def test_an_unknown_time_zone_is_refused():
    with pytest.raises(ScheduleError, match="unknown time zone 'Mars/Olympus'"):
        Schedule("0 2 * * *", "Mars/Olympus")


def test_describe_says_it_in_words_with_the_zone():
    assert Schedule("0 2 * * *", BERLIN).describe() == "at 02:00 every day, Europe/Berlin time"
    assert Schedule("*/15 * * * *").describe().endswith(", UTC time")


def test_rfc3339_is_whole_seconds_in_utc():
    berlin = datetime(2026, 11, 21, 3, 0, 0, 500_000).astimezone(timezone(timedelta(hours=1)))
    assert rfc3339(berlin).endswith("Z") and len(rfc3339(berlin)) == 20


# -- against an independent, brute-force evaluator (UTC) --------------------------------------


def _expand(field: str, low: int, high: int) -> set[int]:
    values: set[int] = set()
    for term in field.split(","):
        part, _, step = term.partition("/")
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start, end = (int(x) for x in part.split("-"))
        else:
            start = int(part)
            end = high if step else start
        values.update(range(start, end + 1, int(step or 1)))
    return values


def brute_force_next(cron: str, after: datetime) -> datetime | None:
    """Day by day, then every minute of a matching day: slow, but obviously right."""
    minute, hour, dom, month, dow = cron.split()
    minutes, hours = _expand(minute, 0, 59), _expand(hour, 0, 23)
    days, months = _expand(dom, 1, 31), _expand(month, 1, 12)
    weekdays = {d % 7 for d in _expand(dow, 0, 7)}
    # Vixie cron: a field starting with * leaves the day to the other field alone (AND).
    both_restricted = not (dom.startswith("*") or dow.startswith("*"))
    day = after.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(366 * 8):
        in_dom, in_dow = day.day in days, (day.isoweekday() % 7) in weekdays
        if day.month in months and ((in_dom or in_dow) if both_restricted else (in_dom and in_dow)):
            for h in sorted(hours):
                for m in sorted(minutes):
                    moment = day.replace(hour=h, minute=m)
                    if moment > after:
                        return moment
        day += timedelta(days=1)
    return None


def _field(low: int, high: int):
    number = st.integers(low, high)
    single = number.map(str)
    span = st.tuples(number, number).map(lambda p: f"{min(p)}-{max(p)}")
    stepped = st.tuples(st.sampled_from(["*", str(low)]), st.integers(1, high - low + 1)).map(
        lambda p: f"{p[0]}/{p[1]}"
    )
    term = st.one_of(single, span, stepped)
    listed = st.lists(st.one_of(single, span), min_size=2, max_size=3).map(",".join)
    return st.one_of(st.just("*"), term, listed)


@settings(max_examples=60, deadline=None)
@given(
    minute=_field(0, 59),
    hour=_field(0, 23),
    dom=st.one_of(st.just("*"), _field(1, 28)),
    month=st.one_of(st.just("*"), _field(1, 12)),
    dow=st.one_of(st.just("*"), _field(0, 6)),
    offset=st.integers(0, 60 * 24 * 365),
)
def test_agrees_with_a_brute_force_evaluator_in_utc(minute, hour, dom, month, dow, offset):
    cron = f"{minute} {hour} {dom} {month} {dow}"
    after = t("2026-01-01T00:00:00") + timedelta(minutes=offset, seconds=7)
    expected = brute_force_next(cron, after)
    assume(expected is not None)  # e.g. "1 1 */7": Sunday Jan 1sts are years apart
    assert Schedule(cron).next_after(after) == expected
