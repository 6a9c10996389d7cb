"""SLA clock math: a ticket's history + its targets -> the state of each clock. Pure, no Django.

A clock is a projection. Given what happened to a ticket (``TicketHistory``, read from its
events by ``policies.actions``), the targets that apply to each version of its attributes
(``resolve``), and ``now``, :func:`compute_clocks` returns every clock's inputs and computed
instants. Incremental updates and rebuilds call the same function, so they agree by
construction.

Rules (see docs/sla-engine.md for the reasoning):

* A clock starts when the ticket opens (a resolution clock restarts at a reopen when its
  target says ``restart``). It runs in business time on its target's calendar; intervals in
  the target's pause statuses are removed as closures, so pauses extend ``due_at`` by exactly
  the paused business time.
* First response is met by the first human reply (any reply when the target allows automated
  ones); the resolution plan by the first plan sent or by the resolution itself; resolution by
  resolving or closing. Resolving before a first response *stops* the first-response clock
  without a verdict (breached if it was already past due).
* Met at or before ``due_at`` is met; a clock unmet at ``due_at`` is breached from that
  instant, stays red until met, and keeps ``breached_at`` forever after.
* A change of kind, priority, customer or partner re-matches the targets; each version's
  due time is computed from the clock's original start with the pauses so far, so elapsed
  and paused time are kept. A breach under an earlier version stays a breach.
* Buckets: yellow from ``yellow_pct`` of the target elapsed or ``yellow_minutes_left``
  business minutes before due, whichever comes first; orange likewise; red at due.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from policies.businesstime import Calendar, CalendarError

FIRST_RESPONSE = "first_response"
RESOLUTION_PLAN = "resolution_plan"
RESOLUTION = "resolution"
METRICS = (FIRST_RESPONSE, RESOLUTION_PLAN, RESOLUTION)
FINISHED_STATUSES = frozenset({"resolved", "closed"})

GREEN, YELLOW, ORANGE, RED = "green", "yellow", "orange", "red"
RUNNING, PAUSED, MET, STOPPED = "running", "paused", "met", "stopped"


@dataclass(frozen=True)
class TargetSpec:
    """What a target asks, with its calendar already resolved."""

    metric: str
    seconds: float
    calendar: Calendar
    pause_statuses: frozenset[str] = frozenset({"waiting_on_customer"})
    yellow_pct: int = 50
    orange_pct: int = 75
    yellow_minutes_left: int | None = None
    orange_minutes_left: int | None = None
    automated_replies_count: bool = False
    restart_on_reopen: bool = True
    target_id: int | None = None
    policy_id: int | None = None


@dataclass
class TicketHistory:
    """The facts about one ticket that clocks depend on, in time order."""

    opened_at: datetime
    # (from, status) — the ticket's status from that instant on; the first is at opened_at.
    statuses: list[tuple[datetime, str]]
    # (from, key) — the matching attributes from that instant on (hashable, for resolve()).
    segments: list[tuple[datetime, Hashable]]
    first_human_reply_at: datetime | None = None
    first_reply_at: datetime | None = None
    first_plan_at: datetime | None = None


@dataclass
class ClockResult:
    metric: str
    cycle: int
    target_id: int | None
    policy_id: int | None
    started_at: datetime
    pauses: list[tuple[datetime, datetime | None]]
    met_at: datetime | None
    stopped_at: datetime | None
    status: str
    due_at: datetime | None
    yellow_at: datetime | None
    orange_at: datetime | None
    breached_at: datetime | None
    bucket: str
    next_change_at: datetime | None
    remaining_seconds: float | None
    extras: dict[str, object] = field(default_factory=dict)


Resolve = Callable[[Hashable], Mapping[str, TargetSpec]]


def bucket_at(
    now: datetime,
    *,
    yellow_at: datetime | None,
    orange_at: datetime | None,
    due_at: datetime | None,
    breached_at: datetime | None = None,
) -> str:
    """The colour of a running clock at ``now`` from its precomputed instants."""
    if breached_at is not None and breached_at <= now:
        return RED
    if due_at is not None and now >= due_at:
        return RED
    if orange_at is not None and now >= orange_at:
        return ORANGE
    if yellow_at is not None and now >= yellow_at:
        return YELLOW
    return GREEN


def next_change_after(
    now: datetime,
    *,
    yellow_at: datetime | None,
    orange_at: datetime | None,
    due_at: datetime | None,
    breached_at: datetime | None = None,
) -> datetime | None:
    """The first instant after ``now`` at which the colour changes (None once red)."""
    if breached_at is not None and breached_at <= now:
        return None
    for instant in (yellow_at, orange_at, due_at):
        if instant is not None and instant > now:
            return instant
    return None


def thresholds(
    spec: TargetSpec, calendar: Calendar, start: datetime
) -> tuple[datetime, datetime, datetime]:
    """(yellow_at, orange_at, due_at) for a clock started at ``start`` on ``calendar``."""
    due = calendar.add(start, spec.seconds)
    yellow = calendar.add(start, spec.seconds * spec.yellow_pct / 100)
    orange = calendar.add(start, spec.seconds * spec.orange_pct / 100)
    if spec.orange_minutes_left is not None:
        orange = min(orange, calendar.add(due, -60 * spec.orange_minutes_left))
    if spec.yellow_minutes_left is not None:
        yellow = min(yellow, calendar.add(due, -60 * spec.yellow_minutes_left))
    yellow = min(yellow, orange)
    return yellow, orange, due


def _status_spans(
    statuses: Sequence[tuple[datetime, str]],
) -> list[tuple[datetime, datetime | None, str]]:
    spans: list[tuple[datetime, datetime | None, str]] = []
    for i, (start, status) in enumerate(statuses):
        end = statuses[i + 1][0] if i + 1 < len(statuses) else None
        if end is not None and end <= start:
            continue
        spans.append((start, end, status))
    return spans


def _cycles(history: TicketHistory) -> list[tuple[datetime, datetime | None]]:
    """Open periods of the ticket: from opening (or a reopen) to the next resolution."""
    cycles: list[tuple[datetime, datetime | None]] = []
    start: datetime | None = history.opened_at
    for at, status in history.statuses:
        if status in FINISHED_STATUSES and start is not None:
            cycles.append((start, at))
            start = None
        elif status not in FINISHED_STATUSES and start is None:
            start = at
    if start is not None:
        cycles.append((start, None))
    return cycles


def _pauses(
    spans: Sequence[tuple[datetime, datetime | None, str]],
    statuses: frozenset[str],
    start: datetime,
    end: datetime | None,
) -> list[tuple[datetime, datetime | None]]:
    """Intervals in ``statuses`` clipped to [start, end); the last may be open (None)."""
    result: list[tuple[datetime, datetime | None]] = []
    for s, e, status in spans:
        if status not in statuses:
            continue
        lo = max(s, start)
        hi: datetime | None
        if e is None:
            hi = end
        elif end is None:
            hi = e
        else:
            hi = min(e, end)
        if hi is not None and hi <= lo:
            continue
        if result and result[-1][1] == lo:  # merge adjacent pause statuses
            result[-1] = (result[-1][0], hi)
        else:
            result.append((lo, hi))
    return result


def _versions(
    history: TicketHistory, resolve: Resolve, metric: str, start: datetime
) -> list[tuple[datetime, TargetSpec | None]]:
    """The target for ``metric`` over time, from ``start`` on (consecutive duplicates merged)."""
    versions: list[tuple[datetime, TargetSpec | None]] = []
    for at, key in history.segments:
        spec = resolve(key).get(metric)
        at = max(at, start)
        if versions and versions[-1][0] == at:
            versions[-1] = (at, spec)
        elif not versions or versions[-1][1] != spec:
            versions.append((at, spec))
    if versions and versions[0][0] > start:
        versions[0] = (start, versions[0][1])
    return versions


def _clock(**kwargs: object) -> ClockResult | None:
    """A clock, or None when its calendar cannot place it (no working time at all)."""
    try:
        return _clock_unsafe(**kwargs)  # type: ignore[arg-type]
    except CalendarError:
        return None


def _clock_unsafe(
    *,
    metric: str,
    cycle: int,
    start: datetime,
    finish: datetime | None,
    finish_is_met: bool,
    versions: list[tuple[datetime, TargetSpec | None]],
    spans: list[tuple[datetime, datetime | None, str]],
    extra_pause: frozenset[str],
    now: datetime,
) -> ClockResult | None:
    """One clock from its start, its finish (met or stopped) and its target versions."""
    if not any(spec is not None for _, spec in versions):
        return None
    # A version without a target for this metric stops the clock there (policy no longer
    # applies); the last version with a target is the one the clock shows.
    stop_by_policy: datetime | None = None
    last_index = max(i for i, (_, spec) in enumerate(versions) if spec is not None)
    if last_index + 1 < len(versions):
        stop_by_policy = versions[last_index + 1][0]
        if finish is None or stop_by_policy < finish:
            finish, finish_is_met = stop_by_policy, False
    final = versions[last_index][1]
    assert final is not None

    def pauses_for(spec: TargetSpec) -> list[tuple[datetime, datetime | None]]:
        return _pauses(spans, spec.pause_statuses | extra_pause, start, finish)

    def closed_calendar(spec: TargetSpec) -> tuple[Calendar, datetime | None]:
        pauses = pauses_for(spec)
        open_since = pauses[-1][0] if pauses and pauses[-1][1] is None else None
        closed = [(s, e) for s, e in pauses if e is not None]
        calendar = spec.calendar.with_closures(closed) if closed else spec.calendar
        return calendar, open_since

    # Sticky breaches: any version whose due time fell inside it, before the finish.
    breached_at: datetime | None = None
    for i, (seg_start, spec) in enumerate(versions):
        if spec is None:
            continue
        seg_end = versions[i + 1][0] if i + 1 < len(versions) else None
        calendar, open_since = closed_calendar(spec)
        due = calendar.add(start, spec.seconds)
        if open_since is not None and due > open_since:
            continue  # paused before it fell due: the clock is frozen
        # Met or stopped exactly at due is on time; a change of target exactly at due
        # hands over to the new target.
        limits = [t for t in (seg_end, finish) if t is not None]
        reached = due <= now and (not limits or due < min(limits))
        if reached:
            breached_at = max(due, seg_start)
            break

    calendar, open_since = closed_calendar(final)
    yellow, orange, due = thresholds(final, calendar, start)
    result = ClockResult(
        metric=metric,
        cycle=cycle,
        target_id=final.target_id,
        policy_id=final.policy_id,
        started_at=start,
        pauses=pauses_for(final),
        met_at=None,
        stopped_at=None,
        status=RUNNING,
        due_at=due,
        yellow_at=yellow,
        orange_at=orange,
        breached_at=breached_at,
        bucket=GREEN,
        next_change_at=None,
        remaining_seconds=None,
    )
    instants = {"yellow_at": yellow, "orange_at": orange, "due_at": due, "breached_at": breached_at}
    if finish is not None:
        result.status = MET if finish_is_met else STOPPED
        result.met_at = finish if finish_is_met else None
        result.stopped_at = None if finish_is_met else finish
        result.bucket = bucket_at(finish, **instants)
        if breached_at is None and result.bucket == RED:  # met exactly at due: on time
            result.bucket = ORANGE if finish >= orange else YELLOW if finish >= yellow else GREEN
    elif open_since is not None and open_since <= now:
        result.status = PAUSED
        result.bucket = bucket_at(open_since, **instants)
        result.remaining_seconds = max(0.0, calendar.between(open_since, due))
        result.due_at = result.yellow_at = result.orange_at = None  # frozen until resumed
    else:
        result.bucket = bucket_at(now, **instants)
        result.next_change_at = next_change_after(now, **instants)
    return result


def compute_clocks(history: TicketHistory, resolve: Resolve, now: datetime) -> list[ClockResult]:
    """Every SLA clock of one ticket at ``now``."""
    spans = _status_spans(history.statuses)
    cycles = _cycles(history)
    first_finish = cycles[0][1] if cycles else None
    results: list[ClockResult] = []

    versions = _versions(history, resolve, FIRST_RESPONSE, history.opened_at)
    spec = next((s for _, s in reversed(versions) if s is not None), None)
    if spec is not None:
        reply = history.first_reply_at if spec.automated_replies_count else None
        reply = reply or history.first_human_reply_at
        finish: datetime | None
        if reply is not None and (first_finish is None or reply <= first_finish):
            finish, met = reply, True
        else:
            finish, met = first_finish, False
        clock = _clock(
            metric=FIRST_RESPONSE,
            cycle=0,
            start=history.opened_at,
            finish=finish,
            finish_is_met=met,
            versions=versions,
            spans=spans,
            extra_pause=frozenset(),
            now=now,
        )
        if clock is not None:
            results.append(clock)

    versions = _versions(history, resolve, RESOLUTION_PLAN, history.opened_at)
    if any(s is not None for _, s in versions):
        candidates = [t for t in (history.first_plan_at, first_finish) if t is not None]
        clock = _clock(
            metric=RESOLUTION_PLAN,
            cycle=0,
            start=history.opened_at,
            finish=min(candidates) if candidates else None,
            finish_is_met=True,
            versions=versions,
            spans=spans,
            extra_pause=frozenset(),
            now=now,
        )
        if clock is not None:
            results.append(clock)

    versions = _versions(history, resolve, RESOLUTION, history.opened_at)
    spec = next((s for _, s in reversed(versions) if s is not None), None)
    if spec is not None and cycles:
        if spec.restart_on_reopen:
            for number, (start, end) in enumerate(cycles):
                clock = _clock(
                    metric=RESOLUTION,
                    cycle=number,
                    start=start,
                    finish=end,
                    finish_is_met=True,
                    versions=_versions(history, resolve, RESOLUTION, start),
                    spans=spans,
                    extra_pause=frozenset(),
                    now=now,
                )
                if clock is not None:
                    results.append(clock)
        else:
            # One clock from the opening; time spent resolved (before a reopen) is paused.
            last_end = cycles[-1][1]
            clock = _clock(
                metric=RESOLUTION,
                cycle=0,
                start=history.opened_at,
                finish=last_end,
                finish_is_met=True,
                versions=versions,
                spans=spans,
                extra_pause=FINISHED_STATUSES,
                now=now,
            )
            if clock is not None:
                results.append(clock)
    return results
