"""Use cases about time: re-sync after a rule edit, rebuild from events, the minute tick.

Ticket writes re-sync their own clocks (``tickets.actions`` → ``policies.engine``). Here are the
writes that start from the rules or the clock: an admin edit of a policy, target or calendar
(``rules_changed``: re-sync the open clocks it may affect and audit it), ``rebuild_clocks``,
and the minute beat's ``reevaluate_due_clocks``. Each sends ``tickets_changed`` once per
transaction (through ``policies.engine.apply_plans``, or here for the tick): how screens hear.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import Case, F, Q, Value, When

from policies.engine import (
    TICK_ADVISORY_LOCK,
    SyncReport,
    clock_now,
    current_resolver,
    sync_tickets,
)
from policies.models import AuditEntry, Bucket, ClockStatus, SLAClock, TickWatermark
from policies.notifications.detect import on_tick
from slaboard.celery import app as celery_app
from tickets.models import OPEN_STATUSES, Ticket
from tickets.signals import tickets_changed_on_commit


def rebuild_clocks(
    *, now: datetime, ticket_ids: Iterable[int] | None = None, batch_size: int = 500
) -> SyncReport:
    """Recompute clocks from events for the given tickets (all tickets when None), one
    transaction per batch."""
    tickets = Ticket.objects.order_by("pk")
    if ticket_ids is not None:
        tickets = tickets.filter(pk__in=list(ticket_ids))
    total = SyncReport()
    resolver = current_resolver()
    last_pk = 0
    while True:
        batch = list(tickets.filter(pk__gt=last_pk)[:batch_size])
        if not batch:
            return total
        last_pk = batch[-1].pk
        with transaction.atomic():
            total.add(sync_tickets(batch, now=clock_now(now), resolver=resolver))


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

    Due times that move are written to each ticket's timeline with ``cause``. One
    transaction per batch, each at least as of the last tick (``clock_now``).
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
        with transaction.atomic():
            sync_tickets(batch, now=clock_now(now), causes=cause, resolver=resolver)
        count += len(batch)


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
        try:  # by name: the task module is a later layer (policies.tasks)
            celery_app.send_task("policies.resync_open_clocks", args=[ticket_ids, cause])
        except Exception:  # the broker is down: do it here rather than lose it
            resync_open_clocks(now=now, cause=cause, ticket_ids=ticket_ids)

    transaction.on_commit(enqueue)
    return f"re-syncing the clocks of {count} open tickets in the background"


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


def rules_changed(
    *,
    obj: Any,
    changes: dict[str, Any],
    user: Any,
    now: datetime,
    action: str = "changed",
    calendar_id: int | None = None,
) -> str:
    """After a policy, target or calendar edit (``changes``: before → after): re-sync the open
    clocks it may affect (only those on ``calendar_id`` when given) and record who did what.
    Returns what happened, for the person who made the edit."""
    ticket_ids = open_ticket_ids_for_calendar(calendar_id) if calendar_id is not None else None
    cause = f"{obj._meta.verbose_name.capitalize()} '{obj}' {action} by {user}"
    how = schedule_resync(now=now, cause=cause, ticket_ids=ticket_ids)
    count = len(ticket_ids) if ticket_ids is not None else 0
    record_audit(now=now, user=user, obj=obj, action=action, changes=changes, resynced=count)
    return f"Audit recorded; {how}."


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


def reevaluate_due_clocks(*, now: datetime) -> int:
    """Move every running clock whose next colour change has come; return how many moved.

    One UPDATE over the clocks with an instant since the last tick (``TickWatermark``), in the
    transaction that moves the watermark to ``now``: the cost grows with the clocks that
    change, not with the open tickets. The tick takes the advisory lock exclusively (waiting
    for clock writers, see ``clock_now``) and the watermark row lock, so overlapping ticks —
    two beats, a redelivered task — run one after the other, and a tick with a ``now`` at or
    before the watermark changes nothing. A tick killed halfway is rolled back whole (its
    locks go with its connection) and redone by the next one; after downtime one run catches
    up. The columns written are not indexed, so the updates are HOT.
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
        moved = SLAClock.objects.filter(due_window(last, now)).update(
            bucket=new_bucket, next_change_at=next_change, breached_at=breached, updated_at=now
        )
        if moved:  # a clock a re-sync moved got its notifications in that transaction
            on_tick(lower=last, now=now)
        TickWatermark.objects.filter(pk=1).update(evaluated_until=now)
        # Screens show when clocks were last evaluated, so every tick that ran changed them.
        tickets_changed_on_commit()
    return moved
