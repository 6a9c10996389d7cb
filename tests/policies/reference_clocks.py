"""A deliberately simple reference for SLA clocks: minute by minute, no cleverness.

The engine (``policies.clocks`` on ``policies.businesstime``) computes due times with calendar
arithmetic over target versions, pauses as closures and cycles. This module imports neither:
it walks a ticket's history one minute at a time, asks "is this minute working time?" of a
plain calendar model, and counts. ``tests/policies/test_clock_properties.py`` requires the two
to agree on every generated history, so everything here must be on whole minutes (opening,
events, ``now``, target durations, calendar boundaries).

The rules are the ones docs/sla-engine.md states; where the reference follows a rule that a
naive minute count would not, a comment says which.

Time is a sequence of minute *boundaries* t (instants) and *minutes* [t, t + 1 min). Facts
happen at boundaries; the ticket's state during minute [t, t + 1) is its state after every fact
at or before t. A clock:

* exists from its start (the opening; a reopen for a new resolution cycle);
* at each boundary t, in this order: finishes if a fact at t finishes it (judged under the
  target in force during the minute before t, or at the start when t is the start); else takes
  the target in force at t (a metric with no target any more stops it, once it had one); else
  is breached at t if the business minutes it has run under that target reach the target's;
* runs during minute [t, t + 1) under a target T when the minute is working time on T's
  calendar and the ticket is in none of T's pause statuses (nor resolved or closed).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MINUTE = timedelta(minutes=1)
FINISHED = frozenset({"resolved", "closed"})
FIRST_RESPONSE, RESOLUTION_PLAN, RESOLUTION = "first_response", "resolution_plan", "resolution"
MAX_DUE_SEARCH = timedelta(days=60)


@dataclass
class RefCalendar:
    """Working time as people write it: weekly local intervals, holidays, overrides, closures.

    An interval ending at or before its start runs past midnight and belongs to the day it
    starts (``(time(0), time(0))`` is the whole day). A holiday removes its date's own
    intervals; an override replaces them; a closure removes exact instants.
    """

    tz: str
    weekly: Mapping[int, Iterable[tuple[time, time]]]  # 0 = Monday
    holidays: frozenset[date] = frozenset()
    overrides: Mapping[date, Iterable[tuple[time, time]]] = field(default_factory=dict)
    closures: tuple[tuple[datetime, datetime], ...] = ()
    _minutes: dict[datetime, bool] = field(default_factory=dict, repr=False)

    def _own_intervals(self, day: date) -> list[tuple[datetime, datetime]]:
        """``day``'s own intervals as UTC instants.

        A local time becomes an instant the way Python reads it with ``fold=0`` (PEP 495): in a
        spring-forward gap with the offset before the jump, an ambiguous autumn time as its
        first occurrence. docs/businesstime.md documents exactly this, so the reference follows
        it rather than "the minutes whose wall-clock reading lies inside the interval".
        """
        if day in self.overrides:
            local = list(self.overrides[day])
        elif day in self.holidays:
            local = []
        else:
            local = list(self.weekly.get(day.weekday(), ()))
        zone = ZoneInfo(self.tz)
        result = []
        for start, end in local:
            end_day = day + timedelta(days=1) if end <= start else day
            result.append(
                (
                    datetime.combine(day, start, tzinfo=zone).astimezone(UTC),
                    datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC),
                )
            )
        return result

    def is_working(self, minute: datetime) -> bool:
        """Is the minute [minute, minute + 1 min) working time?"""
        known = self._minutes.get(minute)
        if known is not None:
            return known
        local_day = minute.astimezone(ZoneInfo(self.tz)).date()
        working = any(
            start <= minute < end
            for day in (local_day - timedelta(days=1), local_day)
            for start, end in self._own_intervals(day)
        ) and not any(start <= minute < end for start, end in self.closures)
        self._minutes[minute] = working
        return working


@dataclass(frozen=True)
class RefTarget:
    target_id: int
    policy_id: int
    minutes: int
    calendar: RefCalendar
    pause_statuses: frozenset[str] = frozenset({"waiting_on_customer"})
    automated_replies_count: bool = False
    restart_on_reopen: bool = True


@dataclass(frozen=True)
class Fact:
    """One thing that happened to the ticket. ``kind`` is an event kind (``replied``,
    ``plan_sent``, ``status_changed``, ``priority_changed``, ``resolved``, ``reopened``,
    ``closed``); ``value`` the new status or priority; ``human`` who replied."""

    at: datetime
    kind: str
    value: str = ""
    human: bool = True


@dataclass(frozen=True)
class RefClock:
    metric: str
    cycle: int
    started_at: datetime
    status: str  # running / paused / met / stopped
    met_at: datetime | None
    stopped_at: datetime | None
    due_at: datetime | None  # None while paused
    breached_at: datetime | None
    target_id: int
    policy_id: int
    remaining_seconds: float | None  # while paused


# What applies to a ticket: priority -> metric -> target (a missing metric has no target).
Targets = Mapping[str, Mapping[str, RefTarget]]


class _Timeline:
    """The ticket's status and priority after each instant at which something happened."""

    def __init__(self, opened_at: datetime, priority: str, facts: list[Fact]) -> None:
        self.opened_at = opened_at
        self.instants: list[datetime] = []
        self.states: list[tuple[str, str]] = []  # (status, priority) after that instant
        self.facts: dict[datetime, list[Fact]] = {}
        self.initial = ("new", priority)  # before any fact
        status = "new"
        for fact in facts:  # in the order they happened
            if fact.kind == "replied" and fact.human and status == "new":
                status = "open"
            elif fact.kind == "status_changed":
                status = fact.value
            elif fact.kind == "priority_changed":
                priority = fact.value
            elif fact.kind == "resolved":
                status = "resolved"
            elif fact.kind == "reopened":
                status = "open"
            elif fact.kind == "closed":
                status = "closed"
            self.facts.setdefault(fact.at, []).append(fact)
            if self.instants and self.instants[-1] == fact.at:
                self.states[-1] = (status, priority)
            else:
                self.instants.append(fact.at)
                self.states.append((status, priority))

    def at(self, t: datetime) -> tuple[str, str]:
        """(status, priority) after every fact at or before ``t``."""
        i = bisect_right(self.instants, t)
        return self.states[i - 1] if i else self.initial

    def before(self, t: datetime) -> tuple[str, str]:
        """(status, priority) during the minute before ``t`` (before the opening: new)."""
        if t <= self.opened_at:
            return self.initial
        return self.at(t - MINUTE)


@dataclass(eq=False)
class _Clock:
    metric: str
    cycle: int
    start: datetime
    target: RefTarget | None = None
    had_target: bool = False
    live: bool = True
    met: bool = False
    finished_at: datetime | None = None
    breached_at: datetime | None = None
    run: dict[int, int] = field(default_factory=dict)  # target id -> business minutes run

    def finish(self, t: datetime, *, met: bool) -> None:
        self.live, self.met, self.finished_at = False, met, t

    def retarget(self, target: RefTarget | None, t: datetime) -> None:
        if target is None and self.had_target:
            self.finish(t, met=False)  # no target applies any more: stopped, keeps its target
            return
        self.target = target
        self.had_target = self.had_target or target is not None

    def check_breach(self, t: datetime) -> None:
        target = self.target
        if self.live and self.breached_at is None and target is not None:
            self.breached_at = t if self.run.get(target.target_id, 0) >= target.minutes else None


def reference_clocks(
    *, opened_at: datetime, priority: str, facts: list[Fact], targets: Targets, now: datetime
) -> list[RefClock]:
    """Every clock of a ticket opened at ``opened_at`` with ``priority``, after ``facts`` (in
    the order they happened, on whole minutes, none after ``now``)."""
    for instant in (opened_at, now, *(f.at for f in facts)):
        assert instant.second == 0 and instant.microsecond == 0, "whole minutes only"
    timeline = _Timeline(opened_at, priority, facts)
    every_target: dict[str, dict[int, RefTarget]] = {}  # metric -> target id -> target
    for by_metric in targets.values():
        for metric, target in by_metric.items():
            every_target.setdefault(metric, {})[target.target_id] = target

    def target_for(metric: str, t: datetime) -> RefTarget | None:
        return targets.get(timeline.at(t)[1], {}).get(metric)

    first = _Clock(FIRST_RESPONSE, 0, opened_at)
    plan = _Clock(RESOLUTION_PLAN, 0, opened_at)
    resolution = _Clock(RESOLUTION, 0, opened_at)
    clocks = [first, plan, resolution]
    period, resolved_once = 0, False
    t = opened_at
    while t <= now:
        status_before, status = timeline.before(t)[0], timeline.at(t)[0]
        resolved_now = status_before not in FINISHED and status in FINISHED
        reopened_now = status_before in FINISHED and status not in FINISHED
        facts_now = timeline.facts.get(t, [])
        new_clocks = [first, plan, resolution] if t == opened_at else []
        if reopened_now:
            period += 1
            reopened = resolution.target  # the target the resolved clock shows
            if resolution.met and reopened is not None and not reopened.restart_on_reopen:
                # "continue": the reopen resumes the clock met under that target (the one
                # documented exception to "a finished clock is final").
                resolution.live, resolution.met, resolution.finished_at = True, False, None
            else:
                resolution = _Clock(RESOLUTION, period, t)
                clocks.append(resolution)
                new_clocks.append(resolution)
        for clock in new_clocks:  # a clock starts under the target in force at its start
            clock.retarget(target_for(clock.metric, t), t)

        # Facts at t that finish a clock, judged under the target in force until t.
        first_resolution = resolved_now and not resolved_once
        resolved_once = resolved_once or resolved_now
        if first.live:
            replies = [f for f in facts_now if f.kind == "replied"]
            counts = first.target is not None and first.target.automated_replies_count
            if any(f.human or counts for f in replies):
                first.finish(t, met=True)
            elif first_resolution:
                first.finish(t, met=False)
        if plan.live and (first_resolution or any(f.kind == "plan_sent" for f in facts_now)):
            plan.finish(t, met=True)
        if resolution.live and resolved_now:
            resolution.finish(t, met=True)

        for clock in (first, plan, resolution):
            if clock.live and clock not in new_clocks:
                clock.retarget(target_for(clock.metric, t), t)
            clock.check_breach(t)

        if t < now:  # the minute [t, t + 1): who runs under which target
            for clock in (first, plan, resolution):
                resumable = clock.metric == RESOLUTION and clock.met  # "continue" may resume it
                if clock.live or resumable:
                    for target in every_target.get(clock.metric, {}).values():
                        paused = status in target.pause_statuses or status in FINISHED
                        if target.calendar.is_working(t) and not paused:
                            clock.run[target.target_id] = clock.run.get(target.target_id, 0) + 1
        t += MINUTE

    return [_result(clock, timeline, now) for clock in clocks if clock.had_target and clock.target]


def _result(clock: _Clock, timeline: _Timeline, now: datetime) -> RefClock:
    target = clock.target
    assert target is not None
    status = "met" if clock.met else "stopped" if not clock.live else "running"
    due: datetime | None = None
    remaining: float | None = None
    if clock.live and (timeline.at(now)[0] in target.pause_statuses):
        status = "paused"
        left = target.minutes - clock.run.get(target.target_id, 0)
        remaining = float(max(0, left) * 60)
    else:
        due = _due(target, clock.start, clock.finished_at, timeline)
    return RefClock(
        metric=clock.metric,
        cycle=clock.cycle,
        started_at=clock.start,
        status=status,
        met_at=clock.finished_at if clock.met else None,
        stopped_at=clock.finished_at if status == "stopped" else None,
        due_at=due,
        breached_at=clock.breached_at,
        target_id=target.target_id,
        policy_id=target.policy_id,
        remaining_seconds=remaining,
    )


def _due(
    target: RefTarget, start: datetime, finish: datetime | None, timeline: _Timeline
) -> datetime:
    """The first boundary by which the clock has run the target's minutes.

    Pauses count only until the clock finished (after that the due time is what it would have
    been, as docs/sla-engine.md shows it); a running clock is assumed to stay as it is now.
    """
    run, t = 0, start
    while run < target.minutes:
        assert t - start < MAX_DUE_SEARCH, "no due time within 60 days"
        status = timeline.at(t)[0]
        paused = (finish is None or t < finish) and (
            status in target.pause_statuses or status in FINISHED
        )
        if target.calendar.is_working(t) and not paused:
            run += 1
        t += MINUTE
    return t
