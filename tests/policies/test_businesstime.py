"""Tests for policies.businesstime: worked examples and hypothesis properties."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies import businesstime
from policies.businesstime import Calendar, CalendarError, NaiveDatetimeError

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
AUCKLAND = ZoneInfo("Pacific/Auckland")
SAO_PAULO = ZoneInfo("America/Sao_Paulo")

H = 3600
US = timedelta(microseconds=1)

Intervals = Sequence[tuple[time, time]]


def at(
    zone: tzinfo,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
    *,
    fold: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=zone, fold=fold)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, *rest: int) -> datetime:
    return at(UTC, year, month, day, hour, minute, *rest)


def office_hours(
    tz: str = "Europe/Paris",
    *,
    holidays: Iterable[date] = (),
    overrides: Mapping[date, Intervals] | None = None,
    closures: Iterable[tuple[datetime, datetime]] = (),
) -> Calendar:
    """Monday to Friday 09:00-17:00."""
    weekly = {d: [(time(9), time(17))] for d in range(5)}
    return Calendar(tz, weekly, holidays=holidays, overrides=overrides, closures=closures)


def every_day(tz: str, intervals: Intervals, *, holidays: Iterable[date] = ()) -> Calendar:
    return Calendar(tz, weekly={d: list(intervals) for d in range(7)}, holidays=holidays)


LUNCH = [(time(9), time(12)), (time(13), time(17))]

# --------------------------------------------------------------------------- basics


def test_it_adds_eight_hours_within_one_day() -> None:
    cal = office_hours()
    assert cal.add(at(PARIS, 2026, 1, 5, 9), 8 * H) == at(PARIS, 2026, 1, 5, 17)


def test_it_returns_aware_utc_datetimes() -> None:
    result = office_hours().add(at(PARIS, 2026, 1, 5, 10), H)
    assert result.tzinfo is UTC
    assert result == utc(2026, 1, 5, 10)


def test_adding_zero_returns_the_start_converted_to_utc() -> None:
    cal = office_hours()
    saturday = at(PARIS, 2026, 1, 10, 15, 30, 12, 345678)
    result = cal.add(saturday, 0)
    assert result == saturday
    assert result.tzinfo is UTC
    assert result.microsecond == 345678


def test_it_carries_over_to_the_next_working_day() -> None:
    cal = office_hours()
    assert cal.add(at(PARIS, 2026, 1, 5, 16), 2 * H) == at(PARIS, 2026, 1, 6, 10)


def test_it_skips_the_weekend() -> None:
    cal = office_hours()
    assert cal.add(at(PARIS, 2026, 1, 9, 16), 2 * H) == at(PARIS, 2026, 1, 12, 10)


def test_a_start_outside_working_time_begins_at_the_next_opening() -> None:
    cal = office_hours()
    assert cal.add(at(PARIS, 2026, 1, 10, 12), 30 * 60) == at(PARIS, 2026, 1, 12, 9, 30)
    assert cal.add(at(PARIS, 2026, 1, 5, 6), H) == at(PARIS, 2026, 1, 5, 10)


def test_it_skips_the_lunch_break() -> None:
    cal = Calendar("Europe/Paris", weekly=dict.fromkeys(range(5), LUNCH))
    assert cal.add(at(PARIS, 2026, 1, 5, 11), 2 * H) == at(PARIS, 2026, 1, 5, 14)
    assert cal.between(at(PARIS, 2026, 1, 5, 0), at(PARIS, 2026, 1, 6, 0)) == 7 * H
    assert not cal.is_open(at(PARIS, 2026, 1, 5, 12, 30))


def test_adding_exactly_a_days_work_ends_at_the_close_not_the_next_opening() -> None:
    cal = Calendar("Europe/Paris", weekly=dict.fromkeys(range(5), LUNCH))
    assert cal.add(at(PARIS, 2026, 1, 5, 9), 3 * H) == at(PARIS, 2026, 1, 5, 12)
    assert cal.add(at(PARIS, 2026, 1, 5, 9), 7 * H) == at(PARIS, 2026, 1, 5, 17)


def test_it_accepts_float_seconds() -> None:
    cal = office_hours()
    assert cal.add(at(PARIS, 2026, 1, 5, 9), 1.5) == at(PARIS, 2026, 1, 5, 9, 0, 1, 500000)


def test_it_is_exact_to_the_microsecond() -> None:
    cal = office_hours()
    start = at(PARIS, 2026, 1, 5, 16, 59, 59, 999999)
    assert cal.add(start, 0.000001) == at(PARIS, 2026, 1, 5, 17)
    assert cal.add(start, 0.000002) == at(PARIS, 2026, 1, 6, 9, 0, 0, 1)
    assert cal.between(start, at(PARIS, 2026, 1, 6, 9, 0, 0, 1)) == 0.000002
    assert cal.add(at(PARIS, 2026, 1, 5, 9), 3e-06) == at(PARIS, 2026, 1, 5, 9, 0, 0, 3)
    always = Calendar.always("Australia/Sydney")
    last = at(SYDNEY, 2026, 4, 5, 23, 59, 59, 999999)
    assert always.between(at(SYDNEY, 2026, 4, 5), last) == 25 * H - 0.000001
    assert always.between(at(SYDNEY, 2026, 4, 4), last) == 49 * H - 0.000001


def test_it_accepts_any_aware_tzinfo() -> None:
    cal = office_hours()
    tokyo = timezone(timedelta(hours=9))
    assert cal.add(datetime(2026, 1, 5, 17, tzinfo=tokyo), H) == at(PARIS, 2026, 1, 5, 10)


# --------------------------------------------------------------------------- subtraction


def test_subtracting_walks_back_into_the_previous_day() -> None:
    cal = office_hours()
    assert cal.add(at(PARIS, 2026, 1, 6, 10), -2 * H) == at(PARIS, 2026, 1, 5, 16)


def test_subtracting_a_whole_day_returns_the_latest_start() -> None:
    cal = office_hours()
    assert cal.add(at(PARIS, 2026, 1, 6, 9), -8 * H) == at(PARIS, 2026, 1, 5, 9)
    assert cal.add(at(PARIS, 2026, 1, 5, 17), -8 * H) == at(PARIS, 2026, 1, 5, 9)


def test_subtracting_over_a_weekend_and_lunch() -> None:
    cal = Calendar("Europe/Paris", weekly=dict.fromkeys(range(5), LUNCH))
    assert cal.add(at(PARIS, 2026, 1, 12, 9, 30), -H) == at(PARIS, 2026, 1, 9, 16, 30)
    assert cal.add(at(PARIS, 2026, 1, 9, 14), -2 * H) == at(PARIS, 2026, 1, 9, 11)


def test_between_counts_business_seconds() -> None:
    cal = office_hours()
    assert cal.between(at(PARIS, 2026, 1, 5, 10), at(PARIS, 2026, 1, 5, 12)) == 2 * H
    assert cal.between(at(PARIS, 2026, 1, 9, 16), at(PARIS, 2026, 1, 12, 10)) == 2 * H
    assert cal.between(at(PARIS, 2026, 1, 10, 0), at(PARIS, 2026, 1, 11, 23)) == 0
    assert isinstance(cal.between(at(PARIS, 2026, 1, 10), at(PARIS, 2026, 1, 11)), float)


def test_between_is_negative_when_the_end_is_before_the_start() -> None:
    cal = office_hours()
    assert cal.between(at(PARIS, 2026, 1, 12, 10), at(PARIS, 2026, 1, 9, 16)) == -2 * H


def test_between_over_a_year_matches_the_weekday_count() -> None:
    cal = office_hours()
    weekdays = sum(1 for n in range(365) if (date(2026, 1, 1) + timedelta(n)).weekday() < 5)
    assert cal.between(at(PARIS, 2026, 1, 1), at(PARIS, 2027, 1, 1)) == weekdays * 8 * H


# --------------------------------------------------------------------------- DST


def test_a_nine_to_five_day_is_eight_hours_on_a_spring_forward_day() -> None:
    cal = every_day("Europe/Paris", [(time(9), time(17))])
    assert cal.between(at(PARIS, 2026, 3, 29), at(PARIS, 2026, 3, 30)) == 8 * H
    assert cal.add(at(PARIS, 2026, 3, 29, 9), 8 * H) == at(PARIS, 2026, 3, 29, 17)


def test_a_nine_to_five_day_is_eight_hours_on_a_fall_back_day() -> None:
    cal = every_day("Australia/Sydney", [(time(9), time(17))])
    assert cal.between(at(SYDNEY, 2026, 4, 5), at(SYDNEY, 2026, 4, 6)) == 8 * H
    assert cal.between(at(SYDNEY, 2026, 10, 4), at(SYDNEY, 2026, 10, 5)) == 8 * H


@pytest.mark.parametrize(
    ("zone", "spring", "fall"),
    [
        ("Europe/Paris", date(2026, 3, 29), date(2026, 10, 25)),
        ("America/New_York", date(2026, 3, 8), date(2026, 11, 1)),
        ("Australia/Sydney", date(2026, 10, 4), date(2026, 4, 5)),
        ("Pacific/Auckland", date(2026, 9, 27), date(2026, 4, 5)),
        ("America/Sao_Paulo", date(2018, 11, 4), date(2019, 2, 16)),
    ],
)
def test_a_24x7_calendar_has_23_hours_on_spring_forward_and_25_on_fall_back(
    zone: str, spring: date, fall: date
) -> None:
    cal = Calendar.always(zone)
    z = ZoneInfo(zone)

    def midnight(d: date) -> datetime:
        return datetime.combine(d, time(0), tzinfo=z)

    assert cal.between(midnight(spring), midnight(spring + timedelta(1))) == 23 * H
    assert cal.between(midnight(fall), midnight(fall + timedelta(1))) == 25 * H
    assert cal.add(midnight(spring), 23 * H) == midnight(spring + timedelta(1))
    assert cal.add(midnight(fall + timedelta(1)), -25 * H) == midnight(fall)


def test_a_24x7_calendar_counts_real_elapsed_time() -> None:
    cal = Calendar.always("UTC")
    assert cal.add(at(NEW_YORK, 2026, 3, 7, 12), 24 * H) == at(NEW_YORK, 2026, 3, 8, 13)
    assert cal.between(at(NEW_YORK, 2026, 3, 7, 12), at(NEW_YORK, 2026, 3, 8, 12)) == 23 * H


def test_a_boundary_in_a_spring_forward_gap_moves_forward_by_the_gap() -> None:
    cal = Calendar("Europe/Paris", weekly={6: [(time(2, 30), time(6))]})
    night = at(PARIS, 2026, 3, 29)
    assert cal.next_open(night) == at(PARIS, 2026, 3, 29, 3, 30)
    assert cal.next_open(night) == utc(2026, 3, 29, 1, 30)
    assert cal.between(night, at(PARIS, 2026, 3, 30)) == 2.5 * H
    assert not cal.is_open(at(PARIS, 2026, 3, 29, 3, 15))
    # An ordinary Sunday has the full 3.5 h.
    assert cal.between(at(PARIS, 2026, 3, 22), at(PARIS, 2026, 3, 23)) == 3.5 * H


def test_a_gap_boundary_in_new_york_becomes_three_thirty_daylight_time() -> None:
    cal = Calendar("America/New_York", weekly={6: [(time(2, 30), time(6))]})
    assert cal.next_open(at(NEW_YORK, 2026, 3, 8)) == utc(2026, 3, 8, 7, 30)
    assert cal.between(at(NEW_YORK, 2026, 3, 8), at(NEW_YORK, 2026, 3, 9)) == 2.5 * H


def test_an_end_in_a_gap_also_moves_forward_so_the_shift_lasts_the_elapsed_time() -> None:
    cal = Calendar("Europe/Paris", weekly={6: [(time(0), time(2, 30))]})
    day = at(PARIS, 2026, 3, 29)
    assert cal.between(day, at(PARIS, 2026, 3, 30)) == 2.5 * H
    assert cal.add(day, 2.5 * H) == at(PARIS, 2026, 3, 29, 3, 30)


def test_an_interval_inside_the_gap_moves_forward_whole_but_one_ending_after_it_shrinks() -> None:
    cal = Calendar("Europe/Paris", weekly={6: [(time(2, 15), time(2, 45))]})
    assert cal.between(at(PARIS, 2026, 3, 29), at(PARIS, 2026, 3, 30)) == 30 * 60
    assert cal.next_open(at(PARIS, 2026, 3, 29)) == at(PARIS, 2026, 3, 29, 3, 15)
    # 02:30 becomes 03:30, which is after 03:00: the interval is empty that night.
    cal = Calendar("Europe/Paris", weekly={6: [(time(2, 30), time(3))]})
    assert cal.between(at(PARIS, 2026, 3, 29), at(PARIS, 2026, 3, 30)) == 0


def test_an_ambiguous_boundary_takes_its_first_occurrence() -> None:
    cal = Calendar("Europe/Paris", weekly={6: [(time(2, 30), time(6))]})
    fall_back = at(PARIS, 2026, 10, 25)
    assert cal.next_open(fall_back) == utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    assert cal.between(fall_back, at(PARIS, 2026, 10, 26)) == 4.5 * H
    cal = Calendar("Europe/Paris", weekly={6: [(time(1), time(2, 30))]})
    assert cal.between(fall_back, at(PARIS, 2026, 10, 26)) == 1.5 * H


def test_a_whole_day_starts_at_one_in_the_morning_when_midnight_is_skipped() -> None:
    cal = Calendar("America/Sao_Paulo", weekly={6: [(time(0), time(0))]})
    assert cal.next_open(at(SAO_PAULO, 2018, 11, 3, 23, 30)) == utc(2018, 11, 4, 3)
    assert cal.next_open(at(SAO_PAULO, 2018, 11, 3, 23, 30)) == at(SAO_PAULO, 2018, 11, 4, 1)
    assert cal.between(at(SAO_PAULO, 2018, 11, 3), at(SAO_PAULO, 2018, 11, 6)) == 23 * H


def test_a_day_that_ends_with_a_repeated_hour_has_25_hours_in_sao_paulo() -> None:
    cal = Calendar("America/Sao_Paulo", weekly={5: [(time(0), time(0))]})
    assert cal.between(at(SAO_PAULO, 2019, 2, 15), at(SAO_PAULO, 2019, 2, 18)) == 25 * H
    # The repeated 23:xx hour is working time both times.
    assert cal.is_open(at(SAO_PAULO, 2019, 2, 16, 23, 30, fold=1))


# --------------------------------------------------------------------------- overnight


def test_an_overnight_shift_belongs_to_the_day_it_starts() -> None:
    cal = Calendar("America/New_York", weekly={0: [(time(22), time(6))]})
    monday = at(NEW_YORK, 2026, 1, 5)
    assert cal.next_open(monday) == at(NEW_YORK, 2026, 1, 5, 22)
    assert cal.is_open(at(NEW_YORK, 2026, 1, 6, 5, 59))
    assert not cal.is_open(at(NEW_YORK, 2026, 1, 6, 6))
    assert cal.between(monday, at(NEW_YORK, 2026, 1, 12)) == 8 * H
    assert cal.add(monday, 8 * H) == at(NEW_YORK, 2026, 1, 6, 6)


def test_an_overnight_shift_across_spring_forward_is_seven_hours() -> None:
    cal = Calendar("America/New_York", weekly={5: [(time(22), time(6))]})
    saturday = at(NEW_YORK, 2026, 3, 7)
    assert cal.between(saturday, at(NEW_YORK, 2026, 3, 9)) == 7 * H
    assert cal.add(at(NEW_YORK, 2026, 3, 7, 22), 7 * H) == at(NEW_YORK, 2026, 3, 8, 6)


def test_an_overnight_shift_across_fall_back_is_nine_hours() -> None:
    cal = Calendar("America/New_York", weekly={5: [(time(22), time(6))]})
    assert cal.between(at(NEW_YORK, 2026, 10, 31), at(NEW_YORK, 2026, 11, 2)) == 9 * H
    assert cal.add(at(NEW_YORK, 2026, 11, 1, 6), -9 * H) == at(NEW_YORK, 2026, 10, 31, 22)


def test_an_overnight_shift_runs_into_a_holiday_but_none_starts_on_it() -> None:
    cal = every_day("Europe/Paris", [(time(22), time(6))], holidays={date(2026, 12, 25)})
    assert cal.is_open(at(PARIS, 2026, 12, 25, 3))
    assert not cal.is_open(at(PARIS, 2026, 12, 25, 23))
    assert not cal.is_open(at(PARIS, 2026, 12, 26, 3))
    # Dec 23 shift tail (6 h) + Dec 24 shift (8 h) + Dec 26 22:00-24:00 (2 h)
    assert cal.between(at(PARIS, 2026, 12, 24), at(PARIS, 2026, 12, 27)) == 16 * H
    assert cal.add(at(PARIS, 2026, 12, 25, 5), 2 * H) == at(PARIS, 2026, 12, 26, 23)


def test_an_end_of_midnight_means_the_end_of_the_day() -> None:
    cal = Calendar("Europe/Paris", weekly={0: [(time(18), time(0))]})
    assert cal.between(at(PARIS, 2026, 1, 5), at(PARIS, 2026, 1, 7)) == 6 * H
    assert cal.add(at(PARIS, 2026, 1, 5, 18), 6 * H) == at(PARIS, 2026, 1, 6)


def test_an_overnight_shift_overlapping_the_next_days_interval_is_merged() -> None:
    cal = Calendar(
        "Europe/Paris",
        weekly={0: [(time(20), time(10))], 1: [(time(9), time(17))]},
    )
    # Mon 20:00 -> Tue 17:00 without counting 09:00-10:00 twice.
    assert cal.between(at(PARIS, 2026, 1, 5), at(PARIS, 2026, 1, 7)) == 21 * H
    assert cal.add(at(PARIS, 2026, 1, 5, 20), 21 * H) == at(PARIS, 2026, 1, 6, 17)


def test_a_whole_day_interval_covers_midnight_to_midnight() -> None:
    cal = Calendar("Europe/Paris", weekly={2: [(time(0), time(0))]})
    assert cal.between(at(PARIS, 2026, 1, 5), at(PARIS, 2026, 1, 12)) == 24 * H
    assert cal.next_open(at(PARIS, 2026, 1, 5, 12)) == at(PARIS, 2026, 1, 7)


# --------------------------------------------------------------------------- holidays etc.


def test_a_holiday_removes_that_days_hours() -> None:
    cal = office_hours(holidays={date(2026, 5, 1)})  # a Friday
    assert cal.add(at(PARIS, 2026, 4, 30, 16), 2 * H) == at(PARIS, 2026, 5, 4, 10)
    assert cal.between(at(PARIS, 2026, 4, 27), at(PARIS, 2026, 5, 4)) == 32 * H


def test_an_override_replaces_that_days_hours() -> None:
    cal = office_hours(
        holidays={date(2026, 12, 25)},
        overrides={date(2026, 12, 24): [(time(9), time(12))]},
    )
    assert cal.add(at(PARIS, 2026, 12, 24, 11), 2 * H) == at(PARIS, 2026, 12, 28, 10)
    assert cal.between(at(PARIS, 2026, 12, 21), at(PARIS, 2026, 12, 28)) == 27 * H


def test_an_empty_override_closes_the_day_and_an_override_can_open_a_weekend() -> None:
    cal = office_hours(
        overrides={date(2026, 1, 7): [], date(2026, 1, 10): [(time(10), time(14))]},
    )
    assert cal.between(at(PARIS, 2026, 1, 5), at(PARIS, 2026, 1, 12)) == (32 + 4) * H
    assert cal.add(at(PARIS, 2026, 1, 9, 16), 2 * H) == at(PARIS, 2026, 1, 10, 11)


def test_an_override_wins_over_a_holiday_on_the_same_date() -> None:
    cal = office_hours(
        holidays={date(2026, 1, 6)}, overrides={date(2026, 1, 6): [(time(9), time(10))]}
    )
    assert cal.between(at(PARIS, 2026, 1, 6), at(PARIS, 2026, 1, 7)) == H


def test_a_closure_removes_exact_instants() -> None:
    maintenance = (at(PARIS, 2026, 1, 5, 14), at(PARIS, 2026, 1, 5, 15))
    cal = office_hours(closures=[maintenance])
    assert cal.add(at(PARIS, 2026, 1, 5, 9), 7 * H) == at(PARIS, 2026, 1, 5, 17)
    assert cal.add(at(PARIS, 2026, 1, 5, 9), 8 * H) == at(PARIS, 2026, 1, 6, 10)
    assert cal.add(at(PARIS, 2026, 1, 5, 13), H) == at(PARIS, 2026, 1, 5, 14)
    assert not cal.is_open(at(PARIS, 2026, 1, 5, 14, 30))
    assert cal.is_open(at(PARIS, 2026, 1, 5, 15))
    assert cal.next_open(at(PARIS, 2026, 1, 5, 14, 30)) == at(PARIS, 2026, 1, 5, 15)


def test_with_closures_pauses_the_clock_and_leaves_the_original_alone() -> None:
    cal = office_hours()
    paused = cal.with_closures([(at(PARIS, 2026, 1, 5, 12), at(PARIS, 2026, 1, 7, 12))])
    monday, wednesday_close = at(PARIS, 2026, 1, 5, 9), at(PARIS, 2026, 1, 7, 17)
    assert paused.between(monday, wednesday_close) == 8 * H
    assert cal.between(monday, wednesday_close) == 24 * H
    more = paused.with_closures([(utc(2026, 1, 8, 8), utc(2026, 1, 8, 9))])
    assert more.between(monday, at(PARIS, 2026, 1, 9)) == 15 * H
    assert paused.between(monday, at(PARIS, 2026, 1, 9)) == 16 * H
    assert len(more.closures) == 2


def test_overlapping_closures_are_merged() -> None:
    cal = office_hours(
        closures=[
            (at(PARIS, 2026, 1, 5, 10), at(PARIS, 2026, 1, 5, 12)),
            (at(PARIS, 2026, 1, 5, 11), at(PARIS, 2026, 1, 5, 13)),
            (at(PARIS, 2026, 1, 5, 13), at(PARIS, 2026, 1, 5, 14)),
        ]
    )
    assert cal.between(at(PARIS, 2026, 1, 5), at(PARIS, 2026, 1, 6)) == 4 * H
    assert cal.closures == ((utc(2026, 1, 5, 9), utc(2026, 1, 5, 13)),)


# --------------------------------------------------------------------------- next_open / is_open


def test_next_open_returns_the_instant_itself_when_open() -> None:
    cal = office_hours()
    assert cal.next_open(at(PARIS, 2026, 1, 5, 10)) == at(PARIS, 2026, 1, 5, 10)
    assert cal.next_open(at(PARIS, 2026, 1, 5, 17)) == at(PARIS, 2026, 1, 6, 9)
    assert cal.next_open(at(PARIS, 2026, 1, 9, 18)) == at(PARIS, 2026, 1, 12, 9)


def test_intervals_are_half_open() -> None:
    cal = office_hours()
    assert cal.is_open(at(PARIS, 2026, 1, 5, 9))
    assert not cal.is_open(at(PARIS, 2026, 1, 5, 17))
    assert cal.is_open(at(PARIS, 2026, 1, 5, 16, 59, 59, 999999))


# --------------------------------------------------------------------------- errors


def test_a_naive_datetime_is_rejected_with_a_clear_message() -> None:
    cal = office_hours()
    naive = datetime(2026, 1, 5, 9)  # noqa: DTZ001
    with pytest.raises(NaiveDatetimeError, match="aware"):
        cal.add(naive, 60)
    with pytest.raises(NaiveDatetimeError):
        cal.between(at(PARIS, 2026, 1, 5), naive)
    with pytest.raises(NaiveDatetimeError):
        cal.next_open(naive)
    with pytest.raises(NaiveDatetimeError):
        cal.is_open(naive)
    with pytest.raises(NaiveDatetimeError):
        cal.with_closures([(naive, at(PARIS, 2026, 1, 6))])
    assert issubclass(NaiveDatetimeError, CalendarError)
    assert issubclass(CalendarError, ValueError)


def test_an_empty_calendar_raises_instead_of_looping() -> None:
    cal = Calendar("Europe/Paris")
    with pytest.raises(CalendarError, match="no working time"):
        cal.add(at(PARIS, 2026, 1, 5), H)
    with pytest.raises(CalendarError, match="no working time"):
        cal.add(at(PARIS, 2026, 1, 5), -H)
    with pytest.raises(CalendarError, match="no working time"):
        cal.next_open(at(PARIS, 2026, 1, 5))
    assert cal.between(at(PARIS, 2026, 1, 5), at(PARIS, 2026, 2, 5)) == 0
    assert not cal.is_open(at(PARIS, 2026, 1, 5))
    empty_days = Calendar("Europe/Paris", weekly={0: [], 1: []}, overrides={date(2026, 1, 1): []})
    with pytest.raises(CalendarError, match="no working time"):
        empty_days.add(at(PARIS, 2026, 1, 5), H)


def test_a_calendar_whose_working_time_is_all_in_the_past_gives_up() -> None:
    cal = Calendar("Europe/Paris", overrides={date(2026, 1, 5): [(time(9), time(17))]})
    days = businesstime.MAX_SEARCH_DAYS
    with pytest.raises(CalendarError, match=f"no working time within {days} days of 2026-02"):
        cal.add(at(PARIS, 2026, 2, 1), H)
    with pytest.raises(CalendarError, match="no working time within"):
        cal.next_open(at(PARIS, 2026, 2, 1))
    assert cal.add(at(PARIS, 2026, 2, 1), -H) == at(PARIS, 2026, 1, 5, 16)
    with pytest.raises(CalendarError, match="no working time within .* days before"):
        cal.add(at(PARIS, 2026, 1, 1), -H)


def test_the_search_limit_is_configurable() -> None:
    cal = Calendar(
        "Europe/Paris", overrides={date(2026, 3, 1): [(time(9), time(17))]}, search_days=30
    )
    with pytest.raises(CalendarError, match="within 30 days"):
        cal.add(at(PARIS, 2026, 1, 1), H)
    assert cal.add(at(PARIS, 2026, 2, 1), H) == at(PARIS, 2026, 3, 1, 10)
    with pytest.raises(CalendarError, match="search_days"):
        Calendar(search_days=0)


def test_an_unknown_time_zone_is_rejected() -> None:
    with pytest.raises(CalendarError, match=r"^unknown time zone 'Mars/Base'$"):
        Calendar("Mars/Base")
    with pytest.raises(CalendarError, match="unknown time zone"):
        Calendar("../etc/passwd")
    with pytest.raises(CalendarError, match="unknown time zone"):
        Calendar("")


@pytest.mark.parametrize(
    ("weekly", "message"),
    [
        ({0: [(time(9), time(12)), (time(11), time(13))]}, r"Monday.*09:00-12:00.*11:00-13:00"),
        ({4: [(time(22), time(6)), (time(23), time(1))]}, r"Friday.*overlap"),
        ({6: [(time(0), time(0)), (time(9), time(10))]}, r"Sunday.*overlap"),
        ({2: [(time(9), time(9))]}, r"Wednesday.*empty interval 09:00-09:00"),
        ({7: [(time(9), time(17))]}, r"weekday numbers 0 \(Monday\) to 6"),
        ({-1: [(time(9), time(17))]}, r"weekday numbers"),
        ({0: [(time(9),)]}, r"pair"),
        ({0: [("09:00", "17:00")]}, r"pair"),
        ({0: [(time(9, tzinfo=UTC), time(17))]}, r"naive"),
    ],
)
def test_bad_weekly_intervals_are_rejected(weekly: object, message: str) -> None:
    with pytest.raises(CalendarError, match=message):
        Calendar("Europe/Paris", weekly=weekly)  # type: ignore[arg-type]


def test_adjacent_intervals_are_accepted() -> None:
    cal = Calendar("UTC", weekly={0: [(time(9), time(12)), (time(12), time(17))]})
    assert cal.between(utc(2026, 1, 5), utc(2026, 1, 6)) == 8 * H
    assert cal.is_open(utc(2026, 1, 5, 12))


def test_overlapping_override_intervals_are_rejected_with_the_date() -> None:
    with pytest.raises(CalendarError, match=r"2026-12-24.*overlap"):
        Calendar(overrides={date(2026, 12, 24): [(time(9), time(12)), (time(10), time(11))]})


def test_bad_closures_holidays_and_seconds_are_rejected() -> None:
    with pytest.raises(CalendarError, match="before its end"):
        Calendar(closures=[(utc(2026, 1, 2), utc(2026, 1, 1))])
    with pytest.raises(CalendarError, match="before its end"):
        Calendar(closures=[(utc(2026, 1, 1), utc(2026, 1, 1))])
    with pytest.raises(NaiveDatetimeError):
        Calendar(closures=[(datetime(2026, 1, 1), utc(2026, 1, 2))])  # noqa: DTZ001
    with pytest.raises(CalendarError, match="date"):
        Calendar(holidays=[utc(2026, 1, 1)])
    cal = Calendar.always()
    for bad in (float("nan"), float("inf"), "60", None, True):
        with pytest.raises(CalendarError):
            cal.add(utc(2026, 1, 1), bad)  # type: ignore[arg-type]
    with pytest.raises(CalendarError, match="datetime"):
        cal.add(date(2026, 1, 1), 60)  # type: ignore[arg-type]


def test_arithmetic_outside_the_datetime_range_raises_a_calendar_error() -> None:
    cal = Calendar.always()
    with pytest.raises(CalendarError, match="supported datetime range"):
        cal.add(utc(9999, 12, 30), 5 * 86400)
    with pytest.raises(CalendarError, match="supported datetime range"):
        cal.add(utc(1, 1, 2), -5 * 86400)
    with pytest.raises(CalendarError, match="supported datetime range"):
        cal.add(utc(2026, 1, 1), 1e300)


def test_holidays_can_come_from_the_holidays_package() -> None:
    import holidays

    cal = office_hours(holidays=holidays.country_holidays("FR", years=[2026]))
    assert cal.add(at(PARIS, 2026, 4, 30, 16), 2 * H) == at(PARIS, 2026, 5, 4, 10)  # May 1


# --------------------------------------------------------------------------- property tests


@dataclass(frozen=True)
class Spec:
    tz: str
    weekly: Mapping[int, Intervals]
    holidays: frozenset[date] = frozenset()
    overrides: Mapping[date, Intervals] = field(default_factory=dict)
    closures: tuple[tuple[datetime, datetime], ...] = ()
    extra_closures: tuple[tuple[datetime, datetime], ...] = ()

    def build(self) -> Calendar:
        cal = Calendar(
            self.tz,
            weekly=self.weekly,
            holidays=self.holidays,
            overrides=self.overrides,
            closures=self.closures,
        )
        return cal.with_closures(self.extra_closures) if self.extra_closures else cal


def _french_holidays() -> frozenset[date]:
    days = set()
    for y in range(2025, 2029):
        days |= {date(y, 1, 1), date(y, 5, 1), date(y, 5, 8), date(y, 7, 14), date(y, 8, 15)}
        days |= {date(y, 11, 1), date(y, 11, 11), date(y, 12, 25)}
    days |= {date(2026, 4, 6), date(2026, 5, 14), date(2026, 5, 25), date(2027, 3, 29)}
    return frozenset(days)


def _auckland_closures() -> tuple[tuple[datetime, datetime], ...]:
    closures = []
    day = date(2025, 6, 4)  # Wednesdays: 12:00-14:30 maintenance
    while day < date(2028, 6, 1):
        start = datetime.combine(day, time(12), tzinfo=AUCKLAND)
        closures.append((start, start + timedelta(hours=2, minutes=30)))
        day += timedelta(weeks=1)
    # Long pauses across DST changes and a one-microsecond one.
    closures.append((at(AUCKLAND, 2026, 4, 3, 15), at(AUCKLAND, 2026, 4, 7, 9, 30)))
    closures.append((at(AUCKLAND, 2026, 9, 26, 18), at(AUCKLAND, 2026, 9, 28, 8)))
    closures.append((utc(2027, 1, 4, 1), utc(2027, 1, 4, 1, 0, 0, 1)))
    return tuple(closures)


SPECS = {
    "paris-office": Spec(
        "Europe/Paris",
        weekly=dict.fromkeys(range(5), LUNCH),
        holidays=_french_holidays(),
        overrides={
            date(2026, 12, 24): [(time(9), time(12))],
            date(2026, 12, 31): [],
            date(2026, 3, 28): [(time(10), time(14))],  # a Saturday make-up day
            date(2027, 10, 31): [(time(1), time(4))],  # fall-back Sunday (ambiguous)
        },
    ),
    "new-york-nights": Spec(
        "America/New_York",
        weekly={
            0: [(time(22), time(6))],
            1: [(time(22), time(6))],
            2: [(time(22), time(6))],
            3: [(time(22), time(6))],
            4: [(time(22), time(9))],
            5: [(time(8), time(12)), (time(22), time(6))],
            6: [(time(2, 30), time(5)), (time(20), time(23))],
        },
        holidays=frozenset({date(2026, 7, 4), date(2026, 12, 25), date(2027, 1, 1)}),
        overrides={date(2026, 11, 26): []},
    ),
    "sydney-24x7": Spec("Australia/Sydney", weekly={d: [(time(0), time(0))] for d in range(7)}),
    "auckland-closures": Spec(
        "Pacific/Auckland",
        weekly={d: [(time(7), time(19))] for d in range(7)},
        closures=_auckland_closures()[:-3],
        extra_closures=_auckland_closures()[-3:],
    ),
}
CALENDARS = {name: spec.build() for name, spec in SPECS.items()}

LO = datetime(2025, 6, 1, tzinfo=UTC)
HI = datetime(2028, 6, 1, tzinfo=UTC)
SPAN_US = (HI - LO) // US
INTERESTING_DATES = [
    date(2026, 3, 28),
    date(2026, 3, 29),
    date(2026, 10, 25),
    date(2026, 3, 8),
    date(2026, 11, 1),
    date(2026, 4, 5),
    date(2026, 10, 4),
    date(2026, 9, 27),
    date(2026, 12, 24),
    date(2026, 12, 31),
    date(2026, 7, 3),
    date(2026, 4, 3),
    date(2027, 10, 31),
    date(2027, 1, 4),
]
DISPLAY_ZONES: list[tzinfo] = [
    UTC,
    PARIS,
    NEW_YORK,
    SYDNEY,
    timezone(timedelta(hours=5, minutes=30)),
]

uniform_instants = st.integers(0, SPAN_US).map(lambda us: LO + us * US)
near_boundaries = st.builds(
    lambda d, quarter, jitter: (
        datetime.combine(d, time(0), tzinfo=UTC) + timedelta(minutes=15 * quarter) + jitter
    ),
    st.sampled_from(INTERESTING_DATES),
    st.integers(-4 * 24, 4 * 48),
    st.sampled_from([timedelta(0), timedelta(0), US, -US, timedelta(seconds=1)]),
)
# Note: PEP 495 makes == between an ambiguous local time and another zone always False, so
# properties compare instants through utc_of().
instants = st.builds(
    lambda t, z: t.astimezone(z),
    st.one_of(uniform_instants, near_boundaries),
    st.sampled_from(DISPLAY_ZONES),
)
# Business durations as integer seconds, or as microseconds given as float seconds.
durations: st.SearchStrategy[float] = st.one_of(
    st.integers(-15 * 86400, 15 * 86400),
    st.sampled_from([0, 1, -1, 15 * 60, H, 8 * H, 24 * H, -8 * H]),
    st.integers(-(10**12), 10**12).map(lambda us: us / 1_000_000),
)
calendar_names = st.sampled_from(sorted(CALENDARS))

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def utc_of(t: datetime) -> datetime:
    return t.astimezone(UTC)


def us_of(seconds: float) -> int:
    return round(seconds * 1_000_000)


def reference_between(spec: Spec, a: datetime, b: datetime) -> timedelta:
    """Straightforward re-statement of the semantics with aware datetimes, for a <= b."""
    zone = ZoneInfo(spec.tz)
    a, b = utc_of(a), utc_of(b)  # subtracting two same-zone datetimes is wall-clock arithmetic
    first = a.astimezone(zone).date() - timedelta(days=3)
    last = b.astimezone(zone).date() + timedelta(days=1)
    pieces: list[tuple[datetime, datetime]] = []
    day = first
    while day <= last:
        if day in spec.overrides:
            intervals: Iterable[tuple[time, time]] = spec.overrides[day]
        elif day in spec.holidays:
            intervals = []
        else:
            intervals = spec.weekly.get(day.weekday(), [])
        for start, end in intervals:
            end_day = day + timedelta(days=1) if end <= start else day
            s = datetime.combine(day, start, tzinfo=zone).astimezone(UTC)  # fold=0
            e = datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)
            if e > s:
                pieces.append((s, e))
        day += timedelta(days=1)
    # Mark every boundary, then count each elementary segment that is worked and not closed.
    closures = list(spec.closures) + list(spec.extra_closures)
    cuts = {a, b}
    for s, e in pieces + closures:
        for x in (s, e):
            if a < x < b:
                cuts.add(utc_of(x))
    ordered = sorted(cuts)
    total = timedelta(0)
    for lo, hi in zip(ordered, ordered[1:], strict=False):
        worked = any(s <= lo and hi <= e for s, e in pieces)
        closed = any(s <= lo and hi <= e for s, e in closures)
        if worked and not closed:
            total += hi - lo
    return total


@PROPERTY
@given(calendar_names, instants, durations)
def test_between_inverts_add(name: str, t: datetime, seconds: float) -> None:
    cal = CALENDARS[name]
    assert cal.between(t, cal.add(t, seconds)) == seconds


@PROPERTY
@given(calendar_names, instants, instants)
def test_add_inverts_between_up_to_non_working_time(name: str, t: datetime, u: datetime) -> None:
    cal = CALENDARS[name]
    result = cal.add(t, cal.between(t, u))
    if u >= t:
        assert result <= u
        # Equal when u is inside working time or exactly at a close.
        if utc_of(u) == utc_of(t) or cal.is_open(u - US):
            assert result == utc_of(u)
    else:
        assert result >= u
        if cal.is_open(u):
            assert result == utc_of(u)
    assert cal.between(result, u) == 0


@PROPERTY
@given(calendar_names, instants, instants, instants)
def test_between_is_additive_over_adjacent_spans(
    name: str, a: datetime, b: datetime, c: datetime
) -> None:
    cal = CALENDARS[name]
    ab, bc, ac = cal.between(a, b), cal.between(b, c), cal.between(a, c)
    assert us_of(ab) + us_of(bc) == us_of(ac)
    assert cal.between(b, a) == -ab


@PROPERTY
@given(calendar_names, instants, durations, durations)
def test_add_is_monotone_in_the_duration(name: str, t: datetime, s1: float, s2: float) -> None:
    cal = CALENDARS[name]
    s1, s2 = sorted((s1, s2))
    assert cal.add(t, s1) <= cal.add(t, s2)


@PROPERTY
@given(calendar_names, instants, instants, durations)
def test_add_is_monotone_in_the_start(name: str, t1: datetime, t2: datetime, s: float) -> None:
    cal = CALENDARS[name]
    t1, t2 = sorted((t1, t2), key=lambda t: t.astimezone(UTC))
    assert cal.add(t1, s) <= cal.add(t2, s)


@PROPERTY
@given(calendar_names, instants, durations)
def test_add_lands_in_working_time_or_exactly_at_a_close(
    name: str, t: datetime, seconds: float
) -> None:
    cal = CALENDARS[name]
    result = cal.add(t, seconds)
    assert result.tzinfo is UTC
    if seconds > 0:
        assert result > t
        assert cal.is_open(result - US)  # the earliest instant: the last µs was worked
    elif seconds < 0:
        assert result < t
        assert cal.is_open(result)  # the latest instant: the next µs is worked
    else:
        assert result == utc_of(t)


@PROPERTY
@given(calendar_names, instants, durations)
def test_adding_and_subtracting_the_same_duration_covers_no_extra_work(
    name: str, t: datetime, seconds: float
) -> None:
    cal = CALENDARS[name]
    there = cal.add(t, seconds)
    back = cal.add(there, -seconds)
    if seconds < 0:
        # Going back then forward can only stop earlier (at a close before t).
        assert back <= t
        assert back == utc_of(t) or cal.is_open(back - US)
    else:
        # Going forward then back can only stop later (at an opening after t).
        assert back >= t
        assert back == utc_of(t) or cal.is_open(back)
    assert cal.between(t, back) == 0


@PROPERTY
@given(calendar_names, instants, st.integers(0, 20 * 86400 * 1_000_000))
def test_between_matches_a_straightforward_reference(name: str, a: datetime, span: int) -> None:
    b = (utc_of(a) + span * US).astimezone(a.tzinfo)  # not a + ...: that is wall-clock
    expected = reference_between(SPECS[name], a, b)
    assert us_of(CALENDARS[name].between(a, b)) == expected // US


@PROPERTY
@given(calendar_names, instants)
def test_next_open_is_the_first_working_instant(name: str, t: datetime) -> None:
    cal = CALENDARS[name]
    opening = cal.next_open(t)
    assert opening >= t
    assert cal.is_open(opening)
    assert cal.between(t, opening) == 0
    assert (opening == utc_of(t)) == cal.is_open(t)
    if opening > t:
        assert not cal.is_open(opening - US)


def test_calendars_derived_with_closures_share_the_closure_free_cache() -> None:
    base = SPECS["auckland-closures"].build()
    fresh = Calendar(
        "Pacific/Auckland",
        weekly={d: [(time(7), time(19))] for d in range(7)},
        closures=_auckland_closures(),
    )
    derived = base.with_closures([(utc(2026, 5, 5), utc(2026, 5, 6))])
    a, b = utc(2026, 1, 1), utc(2026, 12, 31)
    assert base.between(a, b) == fresh.between(a, b)
    assert derived.between(a, b) < base.between(a, b)
    assert base.between(a, b) == fresh.between(a, b)
