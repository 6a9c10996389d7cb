"""SLA clock math: a ticket's history + its targets -> the state of each clock. Pure, no Django.

A clock is a projection. Given what happened to a ticket (``TicketHistory``, read from its
events by ``policies.actions``), the targets that apply to each version of its attributes
(``resolve``), and ``now``, :func:`compute_clocks` returns every clock's inputs and computed
instants. Incremental updates and rebuilds call the same function, so they agree by
construction.

Rules (see docs/sla-engine.md for the reasoning):

* A clock starts when the ticket opens (a resolution clock restarts at a reopen, unless the
  clock reopened was met under a target that says ``continue``). It runs in business time on
  its target's calendar; intervals in the target's pause statuses are removed as closures, so
  pauses extend ``due_at`` by exactly the paused business time.
* First response is met by the first human reply (any reply when the target in force allows
  automated ones); the resolution plan by the first plan sent or by the resolution itself;
  resolution by resolving or closing. Resolving before a first response *stops* the
  first-response clock without a verdict (breached if it was already past due).
* Met at or before ``due_at`` is met; a clock unmet at ``due_at`` is breached from that
  instant, stays red until met, and keeps ``breached_at`` forever after.
* A change of kind, priority, customer or partner re-matches the targets; each version's
  due time is computed from the clock's original start with the pauses so far, so elapsed
  and paused time are kept. A breach under an earlier version stays a breach. A version with
  no target stops the clock.
* A finished clock is final: only the versions that begin *before* a clock is met or stopped
  govern it, and it shows the target in force when it finished. A change at or after that
  instant changes nothing (the one exception: a reopen resumes a ``continue`` clock).
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
    # (at, by a human) for every reply, in time order: what first-response clocks read.
    replies: list[tuple[datetime, bool]] = field(default_factory=list)


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


Version = tuple[datetime, TargetSpec | None]  # (from, the target for one metric from then on)
Gap = tuple[datetime, datetime]  # a continued resolution clock's time resolved: (resolved, reopen)


def _versions(
    history: TicketHistory, resolve: Resolve, metric: str, start: datetime
) -> list[Version]:
    """The target for ``metric`` over time, from ``start`` on (consecutive duplicates merged)."""
    versions: list[Version] = []
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


def _after_gaps(at: datetime, gaps: Sequence[Gap]) -> datetime:
    """``at``, or the reopen that ends the gap it falls in (the clock did not run in a gap)."""
    for resolved, reopened in gaps:
        if resolved <= at < reopened:
            return reopened
    return at


def _in_force(
    versions: Sequence[Version], finish: datetime | None, gaps: Sequence[Gap]
) -> list[Version]:
    """The versions that govern a clock which finishes at ``finish`` (None: still running).

    Only the versions that begin *before* the finish: a change at or after the instant the clock
    was met or stopped comes too late to touch it. The version at the clock's start always
    counts (a clock that finishes as it starts keeps it). A version that begins in a gap takes
    effect at the reopen that resumed the clock.
    """
    result: list[Version] = []
    for begin, spec in versions:
        begin = _after_gaps(begin, gaps)
        if result and finish is not None and begin >= finish:
            break
        if result and result[-1][0] == begin:
            result[-1] = (begin, spec)
            if len(result) > 1 and result[-2][1] == spec:
                result.pop()
        elif not result or result[-1][1] != spec:
            result.append((begin, spec))
    return result


def _in_force_before(versions: Sequence[Version], at: datetime) -> TargetSpec | None:
    """The target in force just before ``at`` (the first one when ``at`` is the start)."""
    spec = versions[0][1]
    for begin, later in versions[1:]:
        if begin >= at:
            break
        spec = later
    return spec


Made = tuple[ClockResult, TargetSpec]  # a clock and the target it shows


def _clock(**kwargs: object) -> Made | None:
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
    versions: list[Version],
    spans: list[tuple[datetime, datetime | None, str]],
    gaps: Sequence[Gap],
    now: datetime,
) -> Made | None:
    """One clock from its start, its finish (met or stopped) and its target versions.

    ``gaps``: for a resolution clock continued over reopens, the times it spent resolved; they
    count as paused, and the clock is not running in them.
    """
    versions = _in_force(versions, finish, gaps)
    first = next((i for i, (_, spec) in enumerate(versions) if spec is not None), None)
    if first is None:
        return None  # no target applied before the clock finished: there is no clock
    # Once a target applied, a version without one (the policy no longer applies) stops the
    # clock there; it keeps the target it had.
    stop = next((i for i in range(first + 1, len(versions)) if versions[i][1] is None), None)
    if stop is not None:
        finish, finish_is_met = versions[stop][0], False
        versions = versions[:stop]
    final = versions[-1][1]
    assert final is not None
    extra_pause = FINISHED_STATUSES if gaps else frozenset()

    def pauses_for(spec: TargetSpec) -> list[tuple[datetime, datetime | None]]:
        return _pauses(spans, spec.pause_statuses | extra_pause, start, finish)

    def closed_calendar(spec: TargetSpec) -> tuple[Calendar, datetime | None]:
        pauses = pauses_for(spec)
        open_since = pauses[-1][0] if pauses and pauses[-1][1] is None else None
        closed = [(s, e) for s, e in pauses if e is not None]
        calendar = spec.calendar.with_closures(closed) if closed else spec.calendar
        return calendar, open_since

    # Sticky breaches: the first version whose due time came while it was in force and the
    # clock ran (before the finish). Red from the due time, or from the change that brought an
    # already-past target; a continued clock is not running while resolved: from the reopen.
    breached_at: datetime | None = None
    for i, (seg_start, spec) in enumerate(versions):
        if spec is None:
            continue
        seg_end = versions[i + 1][0] if i + 1 < len(versions) else None
        calendar, open_since = closed_calendar(spec)
        due = calendar.add(start, spec.seconds)
        if open_since is not None and due > open_since:
            continue  # paused before it fell due: the clock is frozen
        red_from = _after_gaps(max(due, seg_start), gaps)
        # Met or stopped exactly at due is on time; a change of target exactly at due
        # hands over to the new target.
        limits = [t for t in (seg_end, finish) if t is not None]
        if red_from <= now and (not limits or red_from < min(limits)):
            breached_at = red_from
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
    return result, final


def _first_response_finish(
    history: TicketHistory, versions: Sequence[Version], first_finish: datetime | None
) -> tuple[datetime | None, bool]:
    """(finish, met): the first reply that counts under the target in force when it came, if
    it came by the first resolution; otherwise that resolution, which stops the clock."""
    for at, human in history.replies:
        if first_finish is not None and at > first_finish:
            break
        if human:
            return at, True
        spec = _in_force_before(versions, at)
        if spec is not None and spec.automated_replies_count:
            return at, True
    return first_finish, False


def _resolution_clocks(
    history: TicketHistory,
    resolve: Resolve,
    cycles: Sequence[tuple[datetime, datetime | None]],
    spans: list[tuple[datetime, datetime | None, str]],
    now: datetime,
) -> list[ClockResult]:
    """A resolution clock per open period (``cycle`` = the period that started it), except that
    a reopen continues the clock it reopens when that clock was met under a target that says
    "continue"; the time spent resolved is then a gap, paused."""
    results: list[ClockResult] = []

    def make(cycle: int, start: datetime, end: datetime | None, gaps: list[Gap]) -> Made | None:
        return _clock(
            metric=RESOLUTION,
            cycle=cycle,
            start=start,
            finish=end,
            finish_is_met=True,
            versions=_versions(history, resolve, RESOLUTION, start),
            spans=spans,
            gaps=gaps,
            now=now,
        )

    cycle, start, end = 0, cycles[0][0], cycles[0][1]
    gaps: list[Gap] = []
    for number, (reopened, resolved) in enumerate(cycles[1:], start=1):
        assert end is not None  # every period but the last ends with a resolution
        made = make(cycle, start, end, gaps)
        if made is not None and made[0].status == MET and not made[1].restart_on_reopen:
            gaps, end = [*gaps, (end, reopened)], resolved
            continue
        if made is not None:
            results.append(made[0])
        cycle, start, end, gaps = number, reopened, resolved, []
    made = make(cycle, start, end, gaps)
    if made is not None:
        results.append(made[0])
    return results


def compute_clocks(history: TicketHistory, resolve: Resolve, now: datetime) -> list[ClockResult]:
    """Every SLA clock of one ticket at ``now``."""
    spans = _status_spans(history.statuses)
    cycles = _cycles(history)
    first_finish = cycles[0][1] if cycles else None
    results: list[ClockResult] = []

    versions = _versions(history, resolve, FIRST_RESPONSE, history.opened_at)
    if any(spec is not None for _, spec in versions):
        finish, met = _first_response_finish(history, versions, first_finish)
        made = _clock(
            metric=FIRST_RESPONSE,
            cycle=0,
            start=history.opened_at,
            finish=finish,
            finish_is_met=met,
            versions=versions,
            spans=spans,
            gaps=(),
            now=now,
        )
        if made is not None:
            results.append(made[0])

    versions = _versions(history, resolve, RESOLUTION_PLAN, history.opened_at)
    if any(spec is not None for _, spec in versions):
        candidates = [t for t in (history.first_plan_at, first_finish) if t is not None]
        made = _clock(
            metric=RESOLUTION_PLAN,
            cycle=0,
            start=history.opened_at,
            finish=min(candidates) if candidates else None,
            finish_is_met=True,
            versions=versions,
            spans=spans,
            gaps=(),
            now=now,
        )
        if made is not None:
            results.append(made[0])

    if cycles:
        results.extend(_resolution_clocks(history, resolve, cycles, spans, now))
    return results
