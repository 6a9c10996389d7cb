from __future__ import annotations

from datetime import timedelta

import pytest

from policies.durations import DurationFormatError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15 min", timedelta(minutes=15)),
        ("4 h", timedelta(hours=4)),
        ("4h", timedelta(hours=4)),
        ("1 d 2 h", timedelta(days=1, hours=2)),
        ("1.5 h", timedelta(minutes=90)),
        ("01:30", timedelta(minutes=90)),
        ("90", timedelta(minutes=90)),
        ("2 days 30 minutes", timedelta(days=2, minutes=30)),
    ],
)
def test_it_reads_durations_as_people_write_them(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "4 parsecs", "h 4", "4 h and more"])
def test_it_explains_what_it_cannot_read(text: str) -> None:
    with pytest.raises(DurationFormatError) as error:
        parse_duration(text)
    assert "15 min" in str(error.value) or "unit" in str(error.value).lower()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (timedelta(minutes=15), "15 min"),
        (timedelta(hours=4), "4 h"),
        (timedelta(days=1, hours=2), "1 d 2 h"),
        (timedelta(hours=72), "3 d"),
        (timedelta(seconds=90), "1 min 30 s"),
        (timedelta(0), "0 min"),
    ],
)
def test_it_formats_durations_readably(value: timedelta, expected: str) -> None:
    assert format_duration(value) == expected


def test_formatting_then_reading_gives_the_same_duration() -> None:
    for minutes in (1, 5, 59, 60, 61, 1439, 1440, 1441, 4320):
        value = timedelta(minutes=minutes)
        assert parse_duration(format_duration(value)) == value
