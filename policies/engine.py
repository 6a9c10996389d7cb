"""The SLA engine: which targets apply to a ticket, and its stored clocks made equal to the
projection of its events and the rules (``policies.clocks.compute_clocks``, pure).

Every write of ``SLAClock`` rows from a ticket's history goes through ``apply_plans`` — a
ticket's action (``sync_ticket_clocks``), an API batch (``sync_many``), re-syncs after a rule
edit, rebuilds and imports — and sends ``tickets.signals`` ``tickets_changed`` once per
transaction, so screens hear of every change whatever path made it. The minute tick moves
buckets along the stored instants (``policies.actions.tick``). Clock writers compute at
``clock_now(now)`` (see ``docs/sla-engine.md``, "Clock writers").
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from django.db import connection

from policies.businesstime import Calendar as BusinessCalendar
from policies.clocks import ClockResult, TargetSpec, compute_clocks
from policies.models import (
    BUCKET_RANK,
    Bucket,
    Calendar,
    ClockStatus,
    Policy,
    ReopenBehaviour,
    Rescue,
    SLAClock,
    TickWatermark,
)
from policies.notifications.detect import on_sync
from tickets.models import ActorKind, Customer, EventKind, Partner, Ticket, TicketEvent
from tickets.projection import ticket_history
from tickets.signals import tickets_changed_on_commit

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
            if not policy.applies_to(
                kind=kind,
                priority=priority,
                customer_tier=customer_tier,
                partner_tier=partner_tier,
                partner_id=partner_id,
                partner_ids=partner_ids,
            ):
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
    due_changes: list[tuple[int, str, int, datetime | None, datetime | None]] = field(
        default_factory=list
    )

    @property
    def changed(self) -> int:
        return self.created + self.updated + self.deleted

    def add(self, other: SyncReport) -> None:
        self.created += other.created
        self.updated += other.updated
        self.deleted += other.deleted
        self.due_changes += other.due_changes


@dataclass
class ClockPlan:
    """What writing one ticket's clocks takes: computed in memory, written by ``apply_plans``."""

    ticket: Ticket
    now: datetime
    cause: str = ""
    create: list[SLAClock] = field(default_factory=list)
    update: list[SLAClock] = field(default_factory=list)
    delete: list[SLAClock] = field(default_factory=list)
    # Clocks whose bucket got worse, with the bucket before: what notifications look at.
    worse: list[tuple[SLAClock, str]] = field(default_factory=list)
    # (metric, cycle, old due, new due) for each due time a rule or attribute change moved.
    due_changes: list[tuple[str, int, datetime | None, datetime | None]] = field(
        default_factory=list
    )
    # Clocks that turn met now after a claim made while they were orange or red.
    rescues: list[Rescue] = field(default_factory=list)


def plan_clocks(
    *,
    ticket: Ticket,
    events: Iterable[TicketEvent],
    existing: Iterable[SLAClock],
    resolver: TargetResolver,
    now: datetime,
    cause: str = "",
) -> ClockPlan:
    """The changes that make ``existing`` (the ticket's stored clocks) equal the projection of
    ``events`` at ``now``. No query beyond the resolver's lookups."""
    events = list(events)
    results = compute_clocks(ticket_history(ticket, events), resolver, now)
    stored = {(c.metric, c.cycle): c for c in existing}
    plan = ClockPlan(ticket=ticket, now=now, cause=cause)
    for result in results:
        values = clock_values(result)
        clock = stored.pop((result.metric, result.cycle), None)
        if result.status == ClockStatus.MET and (clock is None or clock.status != ClockStatus.MET):
            rescue = _rescue(ticket, events, result)
            if rescue is not None:
                plan.rescues.append(rescue)
        if clock is None:
            clock = SLAClock(
                ticket_id=ticket.pk,
                metric=result.metric,
                cycle=result.cycle,
                updated_at=now,
                **values,
            )
            plan.create.append(clock)
            if clock.bucket != Bucket.GREEN:
                plan.worse.append((clock, Bucket.GREEN))
            continue
        if all(getattr(clock, name) == value for name, value in values.items()):
            continue
        if cause and clock.due_at != result.due_at and result.due_at is not None:
            plan.due_changes.append((result.metric, result.cycle, clock.due_at, result.due_at))
        before = clock.bucket
        for name, value in values.items():
            setattr(clock, name, value)
        clock.updated_at = now
        plan.update.append(clock)
        if BUCKET_RANK[clock.bucket] > BUCKET_RANK[before]:
            plan.worse.append((clock, before))
    plan.delete = list(stored.values())
    return plan


RESCUABLE = frozenset({Bucket.ORANGE, Bucket.RED})


def _rescue(ticket: Ticket, events: list[TicketEvent], result: ClockResult) -> Rescue | None:
    """The rescue of a clock met just now, if whoever held the ticket when it was met had
    claimed it while this clock was orange or red (the claim recorded what it saw)."""
    assert result.met_at is not None
    claim: TicketEvent | None = None
    for event in sorted(events, key=lambda e: (e.at, e.pk or 0)):
        if event.at > result.met_at:
            break
        if event.kind == EventKind.CLAIMED:
            claim = event
        elif event.kind in (EventKind.RELEASED, EventKind.ASSIGNED):
            claim = None
    if claim is None or claim.user_id is None:
        return None
    seen = (claim.payload or {}).get("buckets", {}).get(f"{result.metric}:{result.cycle}")
    if seen not in RESCUABLE:
        return None
    return Rescue(
        ticket_id=ticket.pk,
        metric=result.metric,
        cycle=result.cycle,
        user_id=claim.user_id,
        claimed_at=claim.at,
        claimed_bucket=seen,
        met_at=result.met_at,
    )


def apply_plans(plans: Iterable[ClockPlan], *, notify: bool = True) -> SyncReport:
    """Write planned clock changes of many tickets in a few statements, in the caller's
    transaction: one INSERT for new clocks, one UPDATE for changed ones (per 500), one DELETE,
    one INSERT of "SLA due time changed" timeline events. Notification rows for clocks that
    got worse (``notify``; imports of history pass False), and ``tickets_changed`` after commit
    when anything changed."""
    plans = list(plans)
    report = SyncReport()
    create = [clock for plan in plans for clock in plan.create]
    if create:
        SLAClock.objects.bulk_create(create, batch_size=2000)
    update = [clock for plan in plans for clock in plan.update]
    if update:
        SLAClock.objects.bulk_update(update, [*CLOCK_FIELDS, "updated_at"], batch_size=500)
    if notify:
        on_sync((plan.ticket, plan.worse, plan.now) for plan in plans)
    delete = [clock.pk for plan in plans for clock in plan.delete]
    if delete:
        SLAClock.objects.filter(pk__in=delete).delete()
    annotations = [
        TicketEvent(
            ticket_id=plan.ticket.pk,
            kind=EventKind.SLA_CHANGED,
            at=plan.now,
            actor_kind=ActorKind.SYSTEM,
            payload={
                "metric": metric,
                "cycle": cycle,
                "old_due": old.isoformat() if old else None,
                "new_due": new.isoformat() if new else None,
                "cause": plan.cause,
            },
        )
        for plan in plans
        for metric, cycle, old, new in plan.due_changes
    ]
    if annotations:
        TicketEvent.objects.bulk_create(annotations, batch_size=2000)
    rescues = [rescue for plan in plans for rescue in plan.rescues]
    if rescues:
        Rescue.objects.bulk_create(rescues, ignore_conflicts=True)
    report.created, report.updated, report.deleted = len(create), len(update), len(delete)
    report.due_changes = [
        (plan.ticket.pk, *change) for plan in plans for change in plan.due_changes
    ]
    if report.changed:
        tickets_changed_on_commit(
            plan.ticket.pk for plan in plans if plan.create or plan.update or plan.delete
        )
    return report


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
    (``now_checked``). Call it inside a transaction.
    """
    if not now_checked:
        now = clock_now(now)
    plan = plan_clocks(
        ticket=ticket,
        events=ticket.events.all() if events is None else events,
        existing=SLAClock.objects.filter(ticket=ticket) if existing is None else existing,
        resolver=resolver or current_resolver(),
        now=now,
        cause=cause,
    )
    return apply_plans([plan])


def sync_many(tickets: Mapping[int, tuple[datetime, str]]) -> SyncReport:
    """Re-sync many tickets' clocks, ``{ticket id: (now, cause)}``, in a few queries.

    Tickets are read from the database, so a ticket whose creation was rolled back (a
    failed batch item) is simply absent. Call it inside a transaction.
    """
    batch = list(Ticket.objects.filter(pk__in=list(tickets)).order_by("pk"))
    if not batch:
        return SyncReport()
    floor = clock_now(min(now for now, _ in tickets.values()))
    causes = {pk: cause for pk, (_, cause) in tickets.items()}
    nows = {pk: max(now, floor) for pk, (now, _) in tickets.items()}
    return sync_tickets(batch, now=nows, causes=causes)


def sync_tickets(
    batch: list[Ticket],
    *,
    now: Mapping[int, datetime] | datetime,
    causes: Mapping[int, str] | str = "",
    resolver: TargetResolver | None = None,
    notify: bool = True,
) -> SyncReport:
    """Re-sync a batch of tickets (already read, ``now`` already through ``clock_now``):
    their events and clocks read in two queries, their writes in a few statements."""
    resolver = resolver or current_resolver()
    resolver.prime(batch)
    events: dict[int, list[TicketEvent]] = {t.pk: [] for t in batch}
    for event in TicketEvent.objects.filter(ticket__in=batch).order_by("at", "pk"):
        events[event.ticket_id].append(event)
    clocks: dict[int, list[SLAClock]] = {t.pk: [] for t in batch}
    for clock in SLAClock.objects.filter(ticket__in=batch):
        clocks[clock.ticket_id].append(clock)
    plans = [
        plan_clocks(
            ticket=ticket,
            events=events[ticket.pk],
            existing=clocks[ticket.pk],
            resolver=resolver,
            now=now if isinstance(now, datetime) else now[ticket.pk],
            cause=causes if isinstance(causes, str) else causes.get(ticket.pk, ""),
        )
        for ticket in batch
    ]
    return apply_plans(plans, notify=notify)


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


def evaluated_until() -> datetime | None:
    """Up to when the minute tick has moved the clocks (what screens call "evaluated")."""
    return TickWatermark.objects.filter(pk=1).values_list("evaluated_until", flat=True).first()
