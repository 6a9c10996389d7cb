"""Writes about time: syncing SLA clocks from events and policies, rebuilding, the tick.

Every entry point that changes a ticket goes through ``tickets.actions``, which calls
``sync_ticket_clocks`` in the same transaction. Policy, target and calendar edits call
``resync_open_clocks``. The minute beat calls ``reevaluate_due_clocks``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When

from policies.businesstime import Calendar as BusinessCalendar
from policies.clocks import ClockResult, TargetSpec, compute_clocks
from policies.models import (
    ACTIVE_CLOCK_STATUSES,
    BUCKET_RANK,
    AuditEntry,
    Bucket,
    Calendar,
    ClockStatus,
    Policy,
    ReopenBehaviour,
    SLAClock,
    TickWatermark,
)
from tickets.models import (
    OPEN_STATUSES,
    ActorKind,
    Customer,
    EventKind,
    Partner,
    Ticket,
    TicketEvent,
)

# Built business calendars, keyed by (id, updated_at): every process rebuilds a calendar at
# most once per edit (saving a calendar in the admin bumps updated_at).
_calendar_cache: dict[tuple[int, datetime], BusinessCalendar] = {}
_calendar_lock = threading.Lock()
ALWAYS = BusinessCalendar.always("UTC")


def business_calendar(calendar: Calendar) -> BusinessCalendar:
    key = (calendar.pk, calendar.updated_at)
    cached = _calendar_cache.get(key)
    if cached is None:
        cached = calendar.to_business_calendar()
        with _calendar_lock:
            if len(_calendar_cache) > 512:
                _calendar_cache.clear()
            _calendar_cache[key] = cached
    return cached


@dataclass
class TargetResolver:
    """Which targets apply to a ticket's attributes: the first matching active policy.

    Loads active policies, their targets and the calendars once; reuse one resolver across
    many tickets (rebuilds, imports) to keep queries per ticket constant.
    """

    policies: list[tuple[Policy, set[int]]] = field(default_factory=list)
    calendars: dict[int, BusinessCalendar] = field(default_factory=dict)
    customer_tiers: dict[int, str] = field(default_factory=dict)
    partners: dict[int, tuple[str, int | None]] = field(default_factory=dict)
    _cache: dict[Hashable, Mapping[str, TargetSpec]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> TargetResolver:
        resolver = cls()
        policies = list(
            Policy.objects.filter(active=True)
            .order_by("order", "pk")
            .prefetch_related("targets", "partners")
        )
        resolver.policies = [(p, {partner.pk for partner in p.partners.all()}) for p in policies]
        resolver.calendars = {c.pk: business_calendar(c) for c in Calendar.objects.all()}
        return resolver

    def fork(self) -> TargetResolver:
        """A resolver sharing the loaded policies and calendars, with fresh ticket caches."""
        return TargetResolver(policies=self.policies, calendars=self.calendars)

    def _customer_tier(self, customer_id: int | None) -> str | None:
        if customer_id is None:
            return None
        if customer_id not in self.customer_tiers:
            self.customer_tiers.update(
                Customer.objects.filter(pk=customer_id).values_list("pk", "tier")
            )
        return self.customer_tiers.get(customer_id)

    def _partner(self, partner_id: int) -> tuple[str, int | None]:
        if partner_id not in self.partners:
            for pk, tier, calendar_id in Partner.objects.filter(pk=partner_id).values_list(
                "pk", "tier", "default_calendar_id"
            ):
                self.partners[pk] = (tier, calendar_id)
        return self.partners.get(partner_id, ("", None))

    def prime(self, tickets: Iterable[Ticket]) -> None:
        """Fetch the customers and partners of many tickets in two queries."""
        tickets = list(tickets)
        customer_ids = {t.customer_id for t in tickets if t.customer_id} - set(self.customer_tiers)
        partner_ids = {t.partner_id for t in tickets} - set(self.partners)
        if customer_ids:
            self.customer_tiers.update(
                Customer.objects.filter(pk__in=customer_ids).values_list("pk", "tier")
            )
        if partner_ids:
            for pk, tier, calendar_id in Partner.objects.filter(pk__in=partner_ids).values_list(
                "pk", "tier", "default_calendar_id"
            ):
                self.partners[pk] = (tier, calendar_id)

    def __call__(self, key: Hashable) -> Mapping[str, TargetSpec]:
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        kind, priority, customer_id, partner_id = cast(tuple[str, str, int | None, int], key)
        customer_tier = self._customer_tier(customer_id)
        partner_tier, partner_calendar = self._partner(partner_id)
        specs: dict[str, TargetSpec] = {}
        for policy, partner_ids in self.policies:
            if policy.kinds and kind not in policy.kinds:
                continue
            if policy.priorities and priority not in policy.priorities:
                continue
            if policy.customer_tiers and customer_tier not in policy.customer_tiers:
                continue
            if policy.partner_tiers and partner_tier not in policy.partner_tiers:
                continue
            if partner_ids and partner_id not in partner_ids:
                continue
            for target in policy.targets.all():
                calendar_id = target.calendar_id or partner_calendar
                calendar = self.calendars.get(calendar_id) if calendar_id else None
                specs[target.metric] = TargetSpec(
                    metric=target.metric,
                    seconds=target.duration.total_seconds(),
                    calendar=calendar or ALWAYS,
                    pause_statuses=frozenset(target.pause_statuses or ()),
                    yellow_pct=target.yellow_pct,
                    orange_pct=target.orange_pct,
                    yellow_minutes_left=target.yellow_minutes_left,
                    orange_minutes_left=target.orange_minutes_left,
                    automated_replies_count=target.automated_replies_count,
                    restart_on_reopen=target.on_reopen == ReopenBehaviour.RESTART,
                    target_id=target.pk,
                    policy_id=policy.pk,
                )
            break
        self._cache[key] = specs
        return specs


_shared: tuple[tuple[Any, ...], TargetResolver] | None = None
_shared_lock = threading.Lock()


def rules_version() -> tuple[Any, ...]:
    """One cheap query that changes whenever a policy, target or calendar part changes."""
    tables = [Policy._meta.db_table, Calendar._meta.db_table]
    sql = "SELECT " + ", ".join(
        f"(SELECT MAX(updated_at) FROM {t}), (SELECT COUNT(*) FROM {t})" for t in tables
    )
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return tuple(cursor.fetchone() or ())


def current_resolver() -> TargetResolver:
    """A resolver for this process, reloaded only when the rules changed."""
    global _shared
    version = rules_version()
    shared = _shared
    if shared is None or shared[0] != version:
        shared = (version, TargetResolver.load())
        with _shared_lock:
            _shared = shared
    return shared[1].fork()


def _pauses_json(pauses: list[tuple[datetime, datetime | None]]) -> list[list[str | None]]:
    return [[s.isoformat(), e.isoformat() if e else None] for s, e in pauses]


CLOCK_FIELDS = [
    "policy_id",
    "target_id",
    "started_at",
    "pauses",
    "met_at",
    "stopped_at",
    "status",
    "due_at",
    "yellow_at",
    "orange_at",
    "breached_at",
    "bucket",
    "next_change_at",
    "remaining_seconds",
]


def clock_values(result: ClockResult) -> dict[str, Any]:
    return {
        "policy_id": result.policy_id,
        "target_id": result.target_id,
        "started_at": result.started_at,
        "pauses": _pauses_json(result.pauses),
        "met_at": result.met_at,
        "stopped_at": result.stopped_at,
        "status": result.status,
        "due_at": result.due_at,
        "yellow_at": result.yellow_at,
        "orange_at": result.orange_at,
        "breached_at": result.breached_at,
        "bucket": result.bucket,
        "next_change_at": result.next_change_at,
        "remaining_seconds": result.remaining_seconds,
    }


@dataclass
class SyncReport:
    created: int = 0
    updated: int = 0
    deleted: int = 0
    due_changes: list[tuple[str, int, datetime | None, datetime | None]] = field(
        default_factory=list
    )

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.deleted


def sync_ticket_clocks(
    *,
    ticket: Ticket,
    now: datetime,
    events: list[TicketEvent] | None = None,
    resolver: TargetResolver | None = None,
    existing: list[SLAClock] | None = None,
    cause: str = "",
    now_checked: bool = False,
) -> SyncReport:
    """Make the ticket's stored clocks equal the projection of its events at ``now``.

    When ``cause`` is given (a policy, target or calendar edit, or a change of priority or
    attributes), every due time that moves is recorded in the ticket's timeline with it.
    ``now`` goes through ``clock_now`` unless the caller did that in this transaction
    (``now_checked``).
    """
    from tickets.history import ticket_history

    if not now_checked:
        now = clock_now(now)
    if events is None:
        events = list(ticket.events.all())
    if resolver is None:
        resolver = current_resolver()
    if existing is None:
        existing = list(SLAClock.objects.filter(ticket=ticket))
    history = ticket_history(ticket, events)
    results = compute_clocks(history, resolver, now)
    stored = {(c.metric, c.cycle): c for c in existing}
    report = SyncReport()
    to_create: list[SLAClock] = []
    to_update: list[SLAClock] = []
    worse: list[tuple[SLAClock, str]] = []  # clocks whose bucket got worse: notifications
    for result in results:
        values = clock_values(result)
        clock = stored.pop((result.metric, result.cycle), None)
        if clock is None:
            clock = SLAClock(
                ticket_id=ticket.pk,
                metric=result.metric,
                cycle=result.cycle,
                updated_at=now,
                **values,
            )
            to_create.append(clock)
            if clock.bucket != Bucket.GREEN:
                worse.append((clock, Bucket.GREEN))
            continue
        if all(getattr(clock, name) == value for name, value in values.items()):
            continue
        if cause and clock.due_at != result.due_at and result.due_at is not None:
            report.due_changes.append((result.metric, result.cycle, clock.due_at, result.due_at))
        before = clock.bucket
        for name, value in values.items():
            setattr(clock, name, value)
        clock.updated_at = now
        to_update.append(clock)
        if BUCKET_RANK[clock.bucket] > BUCKET_RANK[before]:
            worse.append((clock, before))
    if to_create:
        SLAClock.objects.bulk_create(to_create)
    for clock in to_update:
        clock.save(update_fields=[*CLOCK_FIELDS, "updated_at"])
    if worse:
        from policies.notifications import on_sync

        on_sync(ticket=ticket, changes=worse, now=now)
    if stored:
        SLAClock.objects.filter(pk__in=[c.pk for c in stored.values()]).delete()
    report.created, report.updated, report.deleted = len(to_create), len(to_update), len(stored)
    if report.due_changes:
        TicketEvent.objects.bulk_create(
            TicketEvent(
                ticket_id=ticket.pk,
                kind=EventKind.SLA_CHANGED,
                at=now,
                actor_kind=ActorKind.SYSTEM,
                payload={
                    "metric": metric,
                    "cycle": cycle,
                    "old_due": old.isoformat() if old else None,
                    "new_due": new.isoformat() if new else None,
                    "cause": cause,
                },
            )
            for metric, cycle, old, new in report.due_changes
        )
    return report


def sync_many(tickets: Mapping[int, tuple[datetime, str]]) -> SyncReport:
    """Re-sync many tickets' clocks, ``{ticket id: (now, cause)}``, reading in a few queries.

    Tickets are read from the database, so a ticket whose creation was rolled back (a
    failed batch item) is simply absent.
    """
    total = SyncReport()
    batch = list(Ticket.objects.filter(pk__in=list(tickets)).order_by("pk"))
    if not batch:
        return total
    resolver = current_resolver()
    resolver.prime(batch)
    events: dict[int, list[TicketEvent]] = {t.pk: [] for t in batch}
    for event in TicketEvent.objects.filter(ticket__in=batch).order_by("at", "pk"):
        events[event.ticket_id].append(event)
    clocks: dict[int, list[SLAClock]] = {t.pk: [] for t in batch}
    for clock in SLAClock.objects.filter(ticket__in=batch):
        clocks[clock.ticket_id].append(clock)
    floor = clock_now(min(now for now, _ in tickets.values()))
    for ticket in batch:
        now, cause = tickets[ticket.pk]
        report = sync_ticket_clocks(
            ticket=ticket,
            now=max(now, floor),
            events=events[ticket.pk],
            resolver=resolver,
            existing=clocks[ticket.pk],
            cause=cause,
            now_checked=True,
        )
        total.created += report.created
        total.updated += report.updated
        total.deleted += report.deleted
    return total


def rebuild_clocks(
    *, now: datetime, ticket_ids: Iterable[int] | None = None, batch_size: int = 500
) -> SyncReport:
    """Recompute clocks from events for the given tickets (all tickets when None)."""
    tickets = Ticket.objects.order_by("pk")
    if ticket_ids is not None:
        tickets = tickets.filter(pk__in=list(ticket_ids))
    total = SyncReport()
    resolver = current_resolver()
    last_pk = 0
    while True:
        batch = list(tickets.filter(pk__gt=last_pk)[:batch_size])
        if not batch:
            break
        last_pk = batch[-1].pk
        resolver.prime(batch)
        events: dict[int, list[TicketEvent]] = {t.pk: [] for t in batch}
        for event in TicketEvent.objects.filter(ticket__in=batch).order_by("at", "pk"):
            events[event.ticket_id].append(event)
        clocks: dict[int, list[SLAClock]] = {t.pk: [] for t in batch}
        for clock in SLAClock.objects.filter(ticket__in=batch):
            clocks[clock.ticket_id].append(clock)
        with transaction.atomic():
            at = clock_now(now)
            for ticket in batch:
                report = sync_ticket_clocks(
                    ticket=ticket,
                    now=at,
                    events=events[ticket.pk],
                    resolver=resolver,
                    existing=clocks[ticket.pk],
                    now_checked=True,
                )
                total.created += report.created
                total.updated += report.updated
                total.deleted += report.deleted
    return total


def open_ticket_ids_for_calendar(calendar_id: int) -> list[int]:
    """Open tickets whose clocks may run on this calendar (directly or as partner default)."""
    uses_calendar = Q(clocks__target__calendar_id=calendar_id) | Q(
        clocks__target__calendar__isnull=True, partner__default_calendar_id=calendar_id
    )
    return list(
        Ticket.objects.filter(status__in=OPEN_STATUSES)
        .filter(uses_calendar)
        .values_list("pk", flat=True)
        .distinct()
    )


def resync_open_clocks(
    *, now: datetime, cause: str, ticket_ids: Iterable[int] | None = None, batch_size: int = 500
) -> int:
    """Re-sync the clocks of open tickets (all, or ``ticket_ids``) after a rule changed.

    Due times that move are written to each ticket's timeline with ``cause``.
    """
    tickets = Ticket.objects.filter(status__in=OPEN_STATUSES).order_by("pk")
    if ticket_ids is not None:
        tickets = tickets.filter(pk__in=list(ticket_ids))
    resolver = current_resolver()
    last_pk = 0
    count = 0
    while True:
        batch = list(tickets.filter(pk__gt=last_pk)[:batch_size])
        if not batch:
            return count
        last_pk = batch[-1].pk
        resolver.prime(batch)
        with transaction.atomic():
            at = clock_now(now)  # a long re-sync: each batch at least as of the last tick
            for ticket in batch:
                sync_ticket_clocks(
                    ticket=ticket, now=at, resolver=resolver, cause=cause, now_checked=True
                )
                count += 1


def record_audit(
    *,
    now: datetime,
    user: Any,
    obj: Any,
    action: str,
    changes: dict[str, Any],
    resynced: int = 0,
) -> AuditEntry:
    return AuditEntry.objects.create(
        at=now,
        user=user if getattr(user, "pk", None) else None,
        object_type=obj._meta.verbose_name,
        object_id=obj.pk,
        object_repr=str(obj)[:200],
        action=action,
        changes=changes,
        resynced_tickets=resynced,
    )


# PostgreSQL advisory lock between the tick (exclusive) and clock writers (shared).
TICK_ADVISORY_LOCK = 0x51AB0A4D


def clock_now(now: datetime) -> datetime:
    """The instant to compute clocks at in this transaction: ``now``, or the tick's watermark
    if that is later.

    Takes the tick's lock in shared mode for the rest of the transaction first (PostgreSQL;
    SQLite lets one writer at a time anyway), so no tick commits between this read and the
    writer's commit. So every clock a writer stores is right as of the watermark at least, and
    each change still to come lies after it, inside a later tick's window: the tick needs no
    look back over clocks it already moved, however late a request that read ``now`` early
    commits. Call it inside the writer's transaction.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [TICK_ADVISORY_LOCK])
    watermark = TickWatermark.objects.filter(pk=1).values_list("evaluated_until", flat=True).first()
    return max(now, watermark) if watermark is not None else now


def due_window(lower: datetime | None, now: datetime) -> Q:
    """Running clocks with an instant in ``(lower, now]`` whose next change has come.

    Served by the partial indexes on ``yellow_at``, ``orange_at`` and ``due_at`` (a bitmap
    OR); ``next_change_at <= now`` is checked on the row, so a clock a re-sync or an earlier
    tick already moved past ``now`` is left alone.
    """
    window = Q()
    for name in ("yellow_at", "orange_at", "due_at"):
        arm = Q(**{f"{name}__lte": now})
        if lower is not None:
            arm &= Q(**{f"{name}__gt": lower})
        window |= arm
    return Q(status=ClockStatus.RUNNING, next_change_at__lte=now) & window


def reevaluate_due_clocks(*, now: datetime, lookback: timedelta = timedelta(0)) -> int:
    """Move every running clock whose next colour change has come; return how many moved.

    One UPDATE over the clocks with an instant since the last tick (``TickWatermark``, minus
    ``lookback``), in the transaction that moves the watermark to ``now``: the cost grows with
    the clocks that change, not with the open tickets. The row lock on the watermark
    serialises overlapping ticks; a tick with a ``now`` at or before the watermark changes
    nothing; a tick killed halfway is rolled back whole and redone by the next one; after
    downtime one run catches up. The columns written are not indexed, so the updates are HOT.
    """
    red = Q(due_at__lte=now) | Q(breached_at__lte=now)
    new_bucket = Case(
        When(red, then=Value(Bucket.RED)),
        When(orange_at__lte=now, then=Value(Bucket.ORANGE)),
        When(yellow_at__lte=now, then=Value(Bucket.YELLOW)),
        default=Value(Bucket.GREEN),
    )
    next_change = Case(
        When(red, then=Value(None)),
        When(orange_at__lte=now, then=F("due_at")),
        When(yellow_at__lte=now, then=F("orange_at")),
        default=F("yellow_at"),
    )
    breached = Case(
        When(breached_at__isnull=False, then=F("breached_at")),
        When(due_at__lte=now, then=F("due_at")),
        default=Value(None),
    )
    with transaction.atomic():
        if connection.vendor == "postgresql":  # wait for clock writers (see clock_now)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [TICK_ADVISORY_LOCK])
        mark, _ = TickWatermark.objects.select_for_update().get_or_create(pk=1)
        last = mark.evaluated_until
        if last is not None and now <= last:
            return 0
        lower = None if last is None else last - lookback
        moved = SLAClock.objects.filter(due_window(lower, now)).update(
            bucket=new_bucket, next_change_at=next_change, breached_at=breached, updated_at=now
        )
        if moved:  # a clock a re-sync moved got its notifications in that transaction
            from policies.notifications import on_tick

            on_tick(lower=lower, now=now)
        TickWatermark.objects.filter(pk=1).update(evaluated_until=now)
    return moved


def clock_counts(queryset: Any = None) -> dict[str, dict[str, int]]:
    """{metric: {bucket: count}} over active clocks."""
    from django.db.models import Count

    clocks = queryset if queryset is not None else SLAClock.objects.all()
    counts: dict[str, dict[str, int]] = {}
    rows = (
        clocks.filter(status__in=ACTIVE_CLOCK_STATUSES)
        .values("metric", "bucket")
        .annotate(n=Count("pk"))
    )
    for row in rows:
        counts.setdefault(row["metric"], {})[row["bucket"]] = row["n"]
    return counts


# Re-syncs touching more open tickets than this run in the background (Celery).
INLINE_RESYNC_LIMIT = 500


def schedule_resync(*, now: datetime, cause: str, ticket_ids: list[int] | None) -> str:
    """Re-sync affected open clocks now (few) or in the background (many). Returns how."""
    tickets = Ticket.objects.filter(status__in=OPEN_STATUSES)
    if ticket_ids is not None:
        tickets = tickets.filter(pk__in=ticket_ids)
    count = tickets.count()
    if count <= INLINE_RESYNC_LIMIT:
        resync_open_clocks(now=now, cause=cause, ticket_ids=ticket_ids)
        return f"re-synced the clocks of {count} open ticket(s)"

    def enqueue() -> None:
        from policies.tasks import resync_open_clocks_task

        try:
            resync_open_clocks_task.delay(ticket_ids, cause)
        except Exception:  # the broker is down: do it here rather than lose it
            resync_open_clocks(now=now, cause=cause, ticket_ids=ticket_ids)

    transaction.on_commit(enqueue)
    return f"re-syncing the clocks of {count} open tickets in the background"


TICK_LOCK = "slaboard:tick:lock"  # shared by every beat of this database, on purpose


def run_tick(*, now: datetime, redis_url: str) -> int | None:
    """The minute beat's work: move due clocks, record the time, schedule publishing.

    Guarded by a Redis lock (token-checked release) so a second beat or an overlapping run
    does nothing; returns how many clocks moved, or None when another tick holds the lock.
    The conditional UPDATE makes even an unguarded second run harmless.
    """
    import redis

    from dashboard.publish import mark_dirty, record_tick

    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    lock = client.lock(TICK_LOCK, timeout=120, blocking=False)
    if not lock.acquire():
        client.close()
        return None
    try:
        moved = reevaluate_due_clocks(now=now)
        record_tick(now)
    finally:
        with contextlib.suppress(redis.RedisError):
            lock.release()
        client.close()
    mark_dirty()
    return moved
