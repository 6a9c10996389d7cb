"""Public holidays from the `holidays` package, for a calendar's country and years."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import holidays as holiday_data
from holidays import registry

from policies.models import Calendar, Holiday

MAX_YEARS = 10


@lru_cache(maxsize=1)
def country_choices() -> list[tuple[str, str]]:
    """(ISO code, "Name (CODE)") for every supported country, by name."""
    supported = holiday_data.list_supported_countries(include_aliases=False)
    names = {}
    for class_name, code, *_ in registry.COUNTRIES.values():
        if code in supported:
            spaced = "".join(f" {c}" if c.isupper() and i else c for i, c in enumerate(class_name))
            names[code] = f"{spaced} ({code})"
    return sorted(names.items(), key=lambda item: item[1])


def subdivisions(country: str) -> list[str]:
    return list(holiday_data.list_supported_countries(include_aliases=False).get(country, []))


def holidays_for(
    country: str, subdivision: str, first_year: int, last_year: int
) -> dict[date, str]:
    dates = holiday_data.country_holidays(
        country, subdiv=subdivision or None, years=range(first_year, last_year + 1)
    )
    return {day: str(name)[:200] for day, name in sorted(dates.items())}


def import_holidays(
    *, calendar: Calendar, country: str, subdivision: str, first_year: int, last_year: int
) -> tuple[int, int]:
    """Add the public holidays that the calendar does not have yet: (added, already there)."""
    wanted = holidays_for(country, subdivision, first_year, last_year)
    existing = set(calendar.holidays.filter(date__in=list(wanted)).values_list("date", flat=True))
    new = [
        Holiday(calendar=calendar, date=d, name=n) for d, n in wanted.items() if d not in existing
    ]
    Holiday.objects.bulk_create(new)
    calendar.touch()
    return len(new), len(existing)
