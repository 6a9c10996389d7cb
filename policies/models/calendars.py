"""Working time: business calendars with weekly intervals, holidays, overrides and closures."""

from __future__ import annotations

from datetime import date, time
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from policies.businesstime import Calendar as BusinessCalendar
from tickets.models import validate_timezone

WEEKDAYS = [
    (0, "Monday"),
    (1, "Tuesday"),
    (2, "Wednesday"),
    (3, "Thursday"),
    (4, "Friday"),
    (5, "Saturday"),
    (6, "Sunday"),
]
WEEKDAY_NAMES = dict(WEEKDAYS)
MIDNIGHT = time(0)


def interval_minutes(start: time, end: time) -> tuple[int, int]:
    """Minutes from the start of the day; an end at or before the start runs past midnight."""
    s = start.hour * 60 + start.minute
    e = end.hour * 60 + end.minute
    if e <= s:
        e += 24 * 60
    return s, e


def describe_interval(start: time, end: time) -> str:
    suffix = " (next day)" if end <= start and not (start == end == MIDNIGHT) else ""
    if start == end == MIDNIGHT:
        return "all day"
    return f"{start:%H:%M}–{end:%H:%M}{suffix}"


def overlapping_pairs(intervals: list[tuple[time, time]]) -> list[str]:
    """Human descriptions of intervals of one day that overlap each other."""
    spans = sorted((interval_minutes(s, e), (s, e)) for s, e in intervals)
    problems = []
    for (a, a_raw), (b, b_raw) in zip(spans, spans[1:], strict=False):
        if b[0] < a[1]:
            problems.append(f"{describe_interval(*a_raw)} overlaps {describe_interval(*b_raw)}")
    return problems


class Calendar(models.Model):
    """Working time: weekly intervals, holidays, per-date overrides and one-off closures."""

    name = models.CharField(max_length=200, unique=True)
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text="Working times below are local wall-clock times in this zone.",
    )
    description = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def touch(self) -> None:
        """Mark the calendar changed (built business calendars are cached by updated_at)."""
        Calendar.objects.filter(pk=self.pk).update(updated_at=timezone.now())

    def weekly_hours(self) -> float:
        """Nominal working hours in a week (ignores holidays and DST)."""
        total = 0
        for interval in self.intervals.all():
            s, e = interval_minutes(interval.start, interval.end)
            total += e - s
        return total / 60

    def to_business_calendar(self) -> BusinessCalendar:
        """The pure business-time calendar (policies.businesstime) for this row."""
        weekly: dict[int, list[tuple[time, time]]] = {}
        for interval in self.intervals.all():
            weekly.setdefault(interval.weekday, []).append((interval.start, interval.end))
        overrides: dict[date, list[tuple[time, time]]] = {}
        for override in self.overrides.all():
            slots = overrides.setdefault(override.date, [])
            if not override.closed and override.start is not None and override.end is not None:
                slots.append((override.start, override.end))
        return BusinessCalendar(
            tz=self.timezone,
            weekly=weekly,
            holidays={h.date for h in self.holidays.all()},
            overrides=overrides,
            closures=[(c.starts_at, c.ends_at) for c in self.closures.all()],
        )


class CalendarPart(models.Model):
    """A row that belongs to a calendar: saving or deleting it marks the calendar changed."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        Calendar.objects.filter(pk=self.calendar_id).update(updated_at=timezone.now())  # type: ignore[attr-defined]

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        result = super().delete(*args, **kwargs)
        Calendar.objects.filter(pk=self.calendar_id).update(updated_at=timezone.now())  # type: ignore[attr-defined]
        return result


class WorkingInterval(CalendarPart):
    """One working interval of a weekday. End at or before start = runs past midnight."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="intervals")
    weekday = models.PositiveSmallIntegerField(choices=WEEKDAYS)
    start = models.TimeField(help_text="Local time, e.g. 09:00.")
    end = models.TimeField(
        help_text="Local time. 00:00 means midnight at the end of the day; an end before the "
        "start is an overnight shift that belongs to the day it starts."
    )

    class Meta:
        ordering = ["calendar", "weekday", "start"]
        constraints = [
            models.CheckConstraint(
                condition=Q(weekday__gte=0) & Q(weekday__lte=6), name="interval_weekday_0_6"
            ),
            models.CheckConstraint(
                condition=~Q(start=F("end")) | Q(start=MIDNIGHT),
                name="interval_not_empty",
                violation_error_message="A working interval cannot start and end at the same "
                "time (use 00:00–00:00 for a whole day).",
            ),
            models.UniqueConstraint(
                fields=["calendar", "weekday", "start"], name="interval_unique_start"
            ),
        ]

    def __str__(self) -> str:
        return f"{WEEKDAY_NAMES.get(self.weekday, '?')} {describe_interval(self.start, self.end)}"

    def clean(self) -> None:
        super().clean()
        if self.start is not None and self.end is not None:
            if self.start == self.end and self.start != MIDNIGHT:
                raise ValidationError(
                    {
                        "end": "The interval is empty: the end must differ from the start "
                        "(use 00:00–00:00 for a whole day)."
                    }
                )
            if self.start.second or self.end.second:
                raise ValidationError("Working times are whole minutes (e.g. 09:00, 17:30).")


class Holiday(CalendarPart):
    """A local date on which the calendar's own intervals do not apply."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["calendar", "date"]
        constraints = [
            models.UniqueConstraint(fields=["calendar", "date"], name="holiday_unique_date")
        ]

    def __str__(self) -> str:
        return f"{self.date:%Y-%m-%d} {self.name}".strip()


class DateOverride(CalendarPart):
    """Special hours on one date: replaces that date's weekly intervals (e.g. Christmas Eve)."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="overrides")
    date = models.DateField()
    start = models.TimeField(null=True, blank=True)
    end = models.TimeField(null=True, blank=True)
    closed = models.BooleanField(
        default=False, help_text="Closed all day (leave start and end empty)."
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["calendar", "date", "start"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(closed=True) & Q(start__isnull=True) & Q(end__isnull=True))
                | (
                    Q(closed=False)
                    & Q(start__isnull=False)
                    & Q(end__isnull=False)
                    & (~Q(start=F("end")) | Q(start=MIDNIGHT))
                ),
                name="override_well_formed",
                violation_error_message="An override is either closed all day or has a start "
                "and a different end.",
            ),
        ]

    def __str__(self) -> str:
        if self.closed:
            return f"{self.date:%Y-%m-%d} closed"
        assert self.start is not None and self.end is not None
        return f"{self.date:%Y-%m-%d} {describe_interval(self.start, self.end)}"

    def clean(self) -> None:
        super().clean()
        if self.closed:
            if self.start is not None or self.end is not None:
                raise ValidationError("A closed day has no start or end: clear them.")
            return
        errors = {}
        if self.start is None:
            errors["start"] = "Enter the start, or tick 'closed' for a closed day."
        if self.end is None:
            errors["end"] = "Enter the end, or tick 'closed' for a closed day."
        if errors:
            raise ValidationError(errors)
        if self.start == self.end and self.start != MIDNIGHT:
            raise ValidationError({"end": "The end must differ from the start."})


class Closure(CalendarPart):
    """A one-off closure of exact instants (a maintenance window, an office move)."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="closures")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["calendar", "starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")),
                name="closure_ends_after_start",
                violation_error_message="A closure must end after it starts.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.starts_at:%Y-%m-%d %H:%M} → {self.ends_at:%Y-%m-%d %H:%M} UTC"

    def clean(self) -> None:
        super().clean()
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "A closure must end after it starts."})
