"""Thin Celery wrappers around policies.actions and notification delivery."""

from __future__ import annotations

import logging
import time

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from policies.actions import reevaluate_due_clocks, resync_open_clocks
from policies.notifications.deliver import deliver_due
from policies.notifications.detect import enqueue_delivery
from slaboard import metrics
from slaboard.dbclock import CLOCK_SKEW_WARNING_SECONDS, clock_offset, database_now

log = logging.getLogger(__name__)


@shared_task(name="policies.resync_open_clocks", ignore_result=True)
def resync_open_clocks_task(ticket_ids: list[int] | None, cause: str) -> int:
    return resync_open_clocks(now=timezone.now(), cause=cause, ticket_ids=ticket_ids)


@shared_task(name="policies.tick", ignore_result=True)
def tick_task() -> int:
    """Every minute (beat): move SLA clocks whose colour changes now.

    Now is the database's clock, not this worker's: a worker whose clock runs ahead would
    move clocks early and push the watermark into the future (``slaboard.dbclock``). A worker
    clock far from the database's is reported, as it still stamps what this host records.
    """
    local = timezone.now()
    now = database_now()
    offset = clock_offset(now, local)
    if abs(offset) > CLOCK_SKEW_WARNING_SECONDS:
        log.warning(
            "this worker's clock is %.1f s %s the database's; the tick uses the database's",
            abs(offset),
            "ahead of" if offset > 0 else "behind",
        )
    with metrics.TICK_DURATION.time():
        moved = reevaluate_due_clocks(now=now)
    metrics.TICK_CLOCKS_MOVED.inc(moved)
    return moved


#: A delivery task takes no new row after this long, and hands the rest to a fresh task: a slow
#: receiver never holds a background slot for minutes (each send is bounded by its own timeout:
#: 5 s per webhook, 10 s per email), and other background work gets its turn in between.
DELIVERY_SECONDS = 20.0


@shared_task(
    name="policies.deliver_notifications",
    ignore_result=True,
    # A backstop far beyond DELIVERY_SECONDS plus one send: a send interrupted by the soft limit
    # is recorded as a retry; a killed worker's row is retried when its lease expires.
    soft_time_limit=120,
    time_limit=150,
)
def deliver_notifications_task(seconds: float = DELIVERY_SECONDS) -> int:
    """Deliver due notifications for up to ``seconds`` (on commit of new ones, and every
    minute from beat); if some are still due then, schedule another task to carry on.

    Retries are rows with a later ``next_attempt_at`` found by this sweep, not Celery ETA
    tasks: the database stays the only truth and the broker holds nothing long.
    """
    started = time.monotonic()
    total = 0
    concurrency = settings.NOTIFICATION_CONCURRENCY
    # Rows per call: `now` is read again, and the time checked, between calls.
    per_call = 1 if concurrency == 1 else 4 * concurrency
    while handled := deliver_due(now=timezone.now(), limit=per_call, concurrency=concurrency):
        total += handled
        if time.monotonic() - started >= seconds:
            enqueue_delivery()  # more may be due: a fresh task, queued behind other work
            break
    return total
