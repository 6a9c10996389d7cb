"""Business-time arithmetic over working calendars (pure Python, no Django).

A :class:`Calendar` describes when work happens: weekly wall-clock intervals in a
time zone, holidays, per-date overrides and closures (exact instants, e.g. maintenance
windows or the pauses of an SLA clock). It answers three questions quickly:

* ``add(start, seconds)``: when have ``seconds`` of business time passed?
* ``between(start, end)``: how much business time lies between two instants?
* ``next_open(at)`` / ``is_open(at)``: when does it next open, is it open now?

Business time is *elapsed real time* inside working intervals. All arithmetic is done on
integer UTC epoch microseconds; the time zone is only used to turn local wall-clock
interval boundaries into instants. See ``docs/businesstime.md`` for the full semantics.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "MAX_SEARCH_DAYS",
    "Calendar",
    "CalendarError",
    "NaiveDatetimeError",
]

#: How many consecutive days without any working time ``add``/``next_open`` walk before
#: giving up with a :class:`CalendarError` (about three years).
MAX_SEARCH_DAYS: Final = 3 * 366

#: Upper bound on the number of local dates kept in each per-date cache (about 22 years);
#: a full cache is simply cleared (atomic, so calendars can be shared between threads).
DAY_CACHE_SIZE: Final = 8192

_US: Final = timedelta(microseconds=1)
_SECOND_US: Final = 1_000_000
_DAY_US: Final = 86_400 * _SECOND_US
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORD: Final = date(1970, 1, 1).toordinal()
# Keep a few days of margin so that neighbouring dates can always be built.
_MIN_ORD: Final = date.min.toordinal() + 3
_MAX_ORD: Final = date.max.toordinal() - 3
_MAX_SPAN_US: Final = (_MAX_ORD - _MIN_ORD) * _DAY_US
_WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

Interval = tuple[time, time]
# A cached local date: (window start, window end, flat working intervals
# (s0, e0, s1, e1, ...), total working microseconds), all in UTC epoch microseconds.
_Day = tuple[int, int, tuple[int, ...], int]
_Pairs = tuple[tuple[int, int], ...]


class CalendarError(ValueError):
    """A bad calendar definition or a bad argument to a calendar method."""


class NaiveDatetimeError(CalendarError):
    """A naive datetime was given where an aware one is required."""


# --------------------------------------------------------------------------- helpers


def _fmt(t: time) -> str:
    text = f"{t.hour:02d}:{t.minute:02d}"
    if t.second or t.microsecond:
        text += f":{t.second:02d}"
    if t.microsecond:
        text += f".{t.microsecond:06d}"
    return text


def _time_us(t: time) -> int:
    return ((t.hour * 60 + t.minute) * 60 + t.second) * _SECOND_US + t.microsecond


def _to_us(value: object, name: str) -> int:
    """Aware datetime -> integer UTC epoch microseconds."""
    if not isinstance(value, datetime):
        raise CalendarError(f"{name} must be an aware datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise NaiveDatetimeError(
            f"{name} must be an aware datetime (with tzinfo), got naive {value.isoformat()}"
        )
    return (value - _EPOCH) // _US


def _from_us(us: int) -> datetime:
    try:
        return _EPOCH + timedelta(microseconds=us)
    except OverflowError:
        raise CalendarError("result is outside the supported datetime range") from None


def _iso(us: int, zone: tzinfo = UTC) -> str:
    try:
        return _from_us(us).astimezone(zone).isoformat()
    except (CalendarError, OverflowError):
        return f"{us} µs since the epoch"


def _seconds_to_us(seconds: object) -> int:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise CalendarError(f"seconds must be an int or float, got {type(seconds).__name__}")
    if isinstance(seconds, int):
        return seconds * _SECOND_US
    if not math.isfinite(seconds):
        raise CalendarError(f"seconds must be finite, got {seconds!r}")
    return round(seconds * _SECOND_US)


def _check_span(us: int) -> int:
    if abs(us) > _MAX_SPAN_US:
        raise CalendarError(f"{us / _SECOND_US:g} seconds is outside the supported datetime range")
    return us


def _merge(pairs: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort and merge half-open [s, e) pairs; drops empty ones; touching pairs merge."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(p for p in pairs if p[1] > p[0]):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def _validate_intervals(raw: object, where: str) -> tuple[Interval, ...]:
    if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
        raise CalendarError(f"{where}: expected a list of (start, end) time pairs")
    intervals: list[Interval] = []
    for item in raw:
        if (
            not isinstance(item, Sequence)
            or isinstance(item, str | bytes)
            or len(item) != 2
            or not all(isinstance(x, time) for x in item)
        ):
            raise CalendarError(
                f"{where}: every interval must be a (datetime.time, datetime.time) pair, "
                f"got {item!r}"
            )
        start, end = item[0], item[1]
        if start.tzinfo is not None or end.tzinfo is not None:
            raise CalendarError(
                f"{where}: interval {_fmt(start)}-{_fmt(end)} must use naive (wall-clock) "
                "times; the calendar's tz applies"
            )
        start, end = start.replace(fold=0), end.replace(fold=0)
        if start == end and start != time(0):
            raise CalendarError(
                f"{where}: empty interval {_fmt(start)}-{_fmt(end)} (start == end is only "
                "allowed for the whole day 00:00-00:00)"
            )
        intervals.append((start, end))
    # Overlap check on a 0..48 h wall-clock axis of the day the intervals belong to:
    # an interval whose end is at or before its start runs past midnight.
    spans = []
    for start, end in intervals:
        s = _time_us(start)
        e = _time_us(end)
        if e <= s:
            e += _DAY_US
        spans.append((s, e, start, end))
    spans.sort()
    for (_, e1, a1, b1), (s2, _, a2, b2) in zip(spans, spans[1:], strict=False):
        if s2 < e1:
            raise CalendarError(
                f"{where}: intervals {_fmt(a1)}-{_fmt(b1)} and {_fmt(a2)}-{_fmt(b2)} overlap"
            )
    return tuple(intervals)


def _validate_closures(raw: object) -> list[tuple[int, int]]:
    if isinstance(raw, str | bytes) or not isinstance(raw, Iterable):
        raise CalendarError("closures must be a list of (start, end) aware datetime pairs")
    pairs: list[tuple[int, int]] = []
    for item in raw:
        if not isinstance(item, Sequence) or isinstance(item, str | bytes) or len(item) != 2:
            raise CalendarError(
                f"every closure must be a (start, end) pair of aware datetimes, got {item!r}"
            )
        s = _to_us(item[0], "closure start")
        e = _to_us(item[1], "closure end")
        if s >= e:
            raise CalendarError(
                f"closure start {item[0].isoformat()} must be before its end {item[1].isoformat()}"
            )
        pairs.append((s, e))
    return pairs


def _resolve_zone(tz: object) -> ZoneInfo:
    if isinstance(tz, ZoneInfo):
        return tz
    if not isinstance(tz, str):
        raise CalendarError(f"tz must be an IANA time zone name, got {type(tz).__name__}")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise CalendarError(f"unknown time zone {tz!r}") from None


# --------------------------------------------------------------------------- rules


class _Rules:
    """The closure-free part of a calendar and its per-date caches.

    Shared by every calendar derived with :meth:`Calendar.with_closures`.
    """

    __slots__ = ("zone", "weekly", "holidays", "overrides", "has_work", "_own", "_days")

    def __init__(
        self,
        zone: ZoneInfo,
        weekly: dict[int, tuple[Interval, ...]],
        holidays: frozenset[date],
        overrides: dict[date, tuple[Interval, ...]],
    ) -> None:
        self.zone = zone
        self.weekly = weekly
        self.holidays = holidays
        self.overrides = overrides
        self.has_work = any(weekly.values()) or any(overrides.values())
        self._own: dict[int, _Pairs] = {}
        self._days: dict[int, _Day] = {}

    def wall(self, ordinal: int, t: time) -> int:
        """Epoch µs of local wall-clock ``t`` on date ``ordinal``.

        fold=0 everywhere: an ambiguous time takes its first occurrence and a time in a
        gap is read with the offset in force before the transition (i.e. it moves
        forward by the gap).
        """
        local = datetime.combine(date.fromordinal(ordinal), t, tzinfo=self.zone)
        offset = local.utcoffset()
        assert offset is not None
        return (ordinal - _EPOCH_ORD) * _DAY_US + _time_us(t) - offset // _US

    def own(self, ordinal: int) -> _Pairs:
        """The intervals that belong to (start on) local date ``ordinal``, as epoch µs."""
        cached = self._own.get(ordinal)
        if cached is not None:
            return cached
        day = date.fromordinal(ordinal)
        override = self.overrides.get(day)
        if override is not None:
            intervals = override
        elif day in self.holidays:
            intervals = ()
        else:
            intervals = self.weekly.get(day.weekday(), ())
        pairs = []
        for start, end in intervals:
            s = self.wall(ordinal, start)
            e = self.wall(ordinal + 1, end) if end <= start else self.wall(ordinal, end)
            if e > s:  # (02:30, 03:00) on a spring-forward night is empty
                pairs.append((s, e))
        result = tuple(pairs)
        if len(self._own) >= DAY_CACHE_SIZE:
            self._own.clear()
        self._own[ordinal] = result
        return result

    def day(self, ordinal: int) -> _Day:
        """The working intervals inside the window [local midnight, next local midnight)."""
        cached = self._days.get(ordinal)
        if cached is not None:
            return cached
        if not _MIN_ORD <= ordinal <= _MAX_ORD:
            raise CalendarError("calendar arithmetic left the supported datetime range")
        lo = self.wall(ordinal, time(0))
        hi = max(lo, self.wall(ordinal + 1, time(0)))
        flat: list[int] = []
        total = 0
        if self.has_work:
            # Intervals of the neighbouring dates may spill into this window (overnight
            # shifts, boundaries moved by a DST gap); clip them to the window.
            candidates = []
            for o in range(ordinal - 2, ordinal + 2):
                for s, e in self.own(o):
                    s, e = max(s, lo), min(e, hi)
                    if e > s:
                        candidates.append((s, e))
            for s, e in _merge(candidates):
                flat += (s, e)
                total += e - s
        result: _Day = (lo, hi, tuple(flat), total)
        if len(self._days) >= DAY_CACHE_SIZE:
            self._days.clear()
        self._days[ordinal] = result
        return result


# --------------------------------------------------------------------------- calendar


class Calendar:
    """A working calendar in one IANA time zone.

    ``weekly`` maps weekday numbers (0 = Monday .. 6 = Sunday) to lists of local
    ``(start, end)`` wall-clock times; an interval whose end is at or before its start
    runs past midnight and belongs to the day it starts on, ``(time(0), time(0))`` is a
    whole day. ``holidays`` remove a date's own intervals, ``overrides`` replace them
    (an empty list closes the date) and ``closures`` remove exact instants [start, end).
    """

    __slots__ = ("_rules", "_cs", "_ce", "_cache", "_search_days")

    def __init__(
        self,
        tz: str | ZoneInfo = "UTC",
        weekly: Mapping[int, Sequence[Interval]] | None = None,
        holidays: Iterable[date] = (),
        overrides: Mapping[date, Sequence[Interval]] | None = None,
        closures: Iterable[tuple[datetime, datetime]] = (),
        *,
        search_days: int | None = None,
    ) -> None:
        zone = _resolve_zone(tz)

        weekly_rules: dict[int, tuple[Interval, ...]] = {}
        if weekly is not None:
            if not isinstance(weekly, Mapping):
                raise CalendarError("weekly must be a mapping of weekday (0-6) to intervals")
            for key, value in weekly.items():
                if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key <= 6:
                    raise CalendarError(
                        f"weekly keys must be weekday numbers 0 (Monday) to 6 (Sunday), got {key!r}"
                    )
                where = f"weekly[{key}] ({_WEEKDAYS[key]})"
                weekly_rules[key] = _validate_intervals(value, where)

        if isinstance(holidays, str | bytes) or not isinstance(holidays, Iterable):
            raise CalendarError("holidays must be an iterable of dates")
        holiday_set: set[date] = set()
        for day in holidays:
            if isinstance(day, datetime) or not isinstance(day, date):
                raise CalendarError(f"holidays must be datetime.date values, got {day!r}")
            holiday_set.add(day)

        override_rules: dict[date, tuple[Interval, ...]] = {}
        if overrides is not None:
            if not isinstance(overrides, Mapping):
                raise CalendarError("overrides must be a mapping of date to intervals")
            for day, value in overrides.items():
                if isinstance(day, datetime) or not isinstance(day, date):
                    raise CalendarError(f"override keys must be datetime.date values, got {day!r}")
                where = f"override for {day.isoformat()} ({_WEEKDAYS[day.weekday()]})"
                override_rules[day] = _validate_intervals(value, where)

        if search_days is None:
            search_days = MAX_SEARCH_DAYS
        if isinstance(search_days, bool) or not isinstance(search_days, int) or search_days < 1:
            raise CalendarError(f"search_days must be a positive int, got {search_days!r}")

        rules = _Rules(zone, weekly_rules, frozenset(holiday_set), override_rules)
        self._init(rules, _merge(_validate_closures(closures)), search_days)

    def _init(self, rules: _Rules, closures: list[tuple[int, int]], search_days: int) -> None:
        self._rules = rules
        self._cs = [s for s, _ in closures]
        self._ce = [e for _, e in closures]
        self._cache: dict[int, _Day] = {}
        self._search_days = search_days

    # ------------------------------------------------------------------ constructors

    @classmethod
    def always(cls, tz: str | ZoneInfo = "UTC") -> Calendar:
        """A 24x7 calendar (its DST days have 23 h and 25 h of business time)."""
        return cls(tz, weekly={d: [(time(0), time(0))] for d in range(7)})

    def with_closures(self, extra: Iterable[tuple[datetime, datetime]]) -> Calendar:
        """A copy with more closures; shares the closure-free per-date caches."""
        added = _validate_closures(extra)
        clone = Calendar.__new__(Calendar)
        clone._init(
            self._rules, _merge([*zip(self._cs, self._ce, strict=True), *added]), self._search_days
        )
        return clone

    # ------------------------------------------------------------------ introspection

    @property
    def tz(self) -> tzinfo:
        """The calendar's time zone."""
        return self._rules.zone

    @property
    def closures(self) -> tuple[tuple[datetime, datetime], ...]:
        """The merged closures as aware UTC datetime pairs."""
        return tuple((_from_us(s), _from_us(e)) for s, e in zip(self._cs, self._ce, strict=True))

    def __repr__(self) -> str:
        return (
            f"Calendar(tz={self._rules.zone.key!r}, weekly={self._rules.weekly!r}, "
            f"holidays={len(self._rules.holidays)} dates, "
            f"overrides={len(self._rules.overrides)} dates, closures={len(self._cs)})"
        )

    # ------------------------------------------------------------------ per-date cache

    def _day(self, ordinal: int) -> _Day:
        if not self._cs:
            return self._rules._days.get(ordinal) or self._rules.day(ordinal)
        cached = self._cache.get(ordinal)
        if cached is not None:
            return cached
        base = self._rules._days.get(ordinal) or self._rules.day(ordinal)
        lo, hi, flat, total = base
        cs, ce = self._cs, self._ce
        i = bisect_right(ce, lo)
        if flat and i < len(cs) and cs[i] < hi:
            pieces: list[int] = []
            total = 0
            n = len(cs)
            for k in range(0, len(flat), 2):
                s, e = flat[k], flat[k + 1]
                j = i
                while j < n and ce[j] <= s:
                    j += 1
                while s < e:
                    if j >= n or cs[j] >= e:
                        pieces += (s, e)
                        total += e - s
                        break
                    if cs[j] > s:
                        pieces += (s, cs[j])
                        total += cs[j] - s
                    s = ce[j]  # > s: closures ending at or before s were skipped
                    j += 1
            base = (lo, hi, tuple(pieces), total)
        if len(self._cache) >= DAY_CACHE_SIZE:
            self._cache.clear()
        self._cache[ordinal] = base
        return base

    def _locate(self, t: int) -> tuple[int, _Day]:
        """The date whose window [local midnight, next local midnight) contains ``t``."""
        ordinal = _EPOCH_ORD + t // _DAY_US
        day = self._day(ordinal)
        while t < day[0]:
            ordinal -= 1
            day = self._day(ordinal)
        while t >= day[1]:
            ordinal += 1
            day = self._day(ordinal)
        return ordinal, day

    def _require_work(self) -> None:
        if not self._rules.has_work:
            raise CalendarError(
                "calendar has no working time at all (no weekly intervals and no overrides "
                "with intervals)"
            )

    def _give_up(self, since: int, forward: bool) -> CalendarError:
        which = "of" if forward else "before"
        return CalendarError(
            f"calendar has no working time within {self._search_days} days {which} "
            f"{_iso(since, self._rules.zone)}"
        )

    # ------------------------------------------------------------------ core (µs)

    def _add_forward(self, t: int, rem: int) -> int:
        ordinal, day = self._locate(t)
        idle_since, idle_days = t, 0
        while True:
            lo, hi, flat, total = day
            if total:
                if t <= lo and total < rem:
                    rem -= total
                else:
                    for k in range(0, len(flat), 2):
                        e = flat[k + 1]
                        if e <= t:
                            continue
                        s = flat[k]
                        if s < t:
                            s = t
                        if e - s >= rem:
                            return s + rem
                        rem -= e - s
                idle_days = 0
                idle_since = hi
            else:
                idle_days += 1
                if idle_days > self._search_days:
                    raise self._give_up(idle_since, forward=True)
            ordinal += 1
            t = hi
            day = self._day(ordinal)

    def _add_backward(self, t: int, rem: int) -> int:
        ordinal, day = self._locate(t)
        if t == day[0]:
            # Nothing of this window lies before t.
            ordinal -= 1
            day = self._day(ordinal)
        idle_since, idle_days = t, 0
        while True:
            lo, hi, flat, total = day
            if total:
                if t >= hi and total < rem:
                    rem -= total
                else:
                    for k in range(len(flat) - 2, -1, -2):
                        s = flat[k]
                        if s >= t:
                            continue
                        e = flat[k + 1]
                        if e > t:
                            e = t
                        if e - s >= rem:
                            return e - rem
                        rem -= e - s
                idle_days = 0
                idle_since = lo
            else:
                idle_days += 1
                if idle_days > self._search_days:
                    raise self._give_up(idle_since, forward=False)
            ordinal -= 1
            t = lo
            day = self._day(ordinal)

    def _between(self, a: int, b: int) -> int:
        """Working µs in [a, b) for a <= b."""
        if a >= b or not self._rules.has_work:
            return 0
        ordinal, day = self._locate(a)
        acc = 0
        while True:
            lo, hi, flat, total = day
            if total:
                if a <= lo and hi <= b:
                    acc += total
                else:
                    for k in range(0, len(flat), 2):
                        s = flat[k]
                        e = flat[k + 1]
                        if s < a:
                            s = a
                        if e > b:
                            e = b
                        if e > s:
                            acc += e - s
            if hi >= b:
                return acc
            ordinal += 1
            day = self._day(ordinal)

    def _next_open(self, t: int) -> int:
        ordinal, day = self._locate(t)
        idle_since, idle_days = t, 0
        while True:
            flat = day[2]
            for k in range(0, len(flat), 2):
                if flat[k + 1] > t:
                    return max(flat[k], t)
            idle_days += 1
            if idle_days > self._search_days:
                raise self._give_up(idle_since, forward=True)
            ordinal += 1
            day = self._day(ordinal)

    # ------------------------------------------------------------------ public API

    def add(self, start: datetime, seconds: float) -> datetime:
        """The instant at which ``seconds`` of business time have passed since ``start``.

        For ``seconds >= 0`` the earliest such instant (Mon 09:00 + 8 h is Mon 17:00);
        for ``seconds < 0`` the latest instant from which ``-seconds`` of business time
        run up to ``start``. ``add(t, 0)`` is ``t`` (in UTC). Returns an aware UTC datetime.
        """
        t = _to_us(start, "start")
        rem = _check_span(_seconds_to_us(seconds))
        if rem == 0:
            return _from_us(t)
        self._require_work()
        if rem > 0:
            return _from_us(self._add_forward(t, rem))
        return _from_us(self._add_backward(t, -rem))

    def between(self, start: datetime, end: datetime) -> float:
        """Business seconds in [start, end) (negative when ``end`` is before ``start``)."""
        a = _to_us(start, "start")
        b = _to_us(end, "end")
        if a <= b:
            return self._between(a, b) / _SECOND_US
        return -self._between(b, a) / _SECOND_US or 0.0  # never -0.0

    def next_open(self, at: datetime) -> datetime:
        """The first instant >= ``at`` that is working time, as an aware UTC datetime."""
        t = _to_us(at, "at")
        self._require_work()
        return _from_us(self._next_open(t))

    def is_open(self, at: datetime) -> bool:
        """Whether ``at`` is working time (intervals are half-open: [start, end))."""
        t = _to_us(at, "at")
        flat = self._locate(t)[1][2]
        return any(flat[k] <= t < flat[k + 1] for k in range(0, len(flat), 2))
