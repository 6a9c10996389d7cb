"""Thin Celery wrappers around policies.actions and notification delivery."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from policies.actions import reevaluate_due_clocks, resync_open_clocks
from policies.notifications.deliver import deliver_due


@shared_task(name="policies.resync_open_clocks", ignore_result=True)
def resync_open_clocks_task(ticket_ids: list[int] | None, cause: str) -> int:
    return resync_open_clocks(now=timezone.now(), cause=cause, ticket_ids=ticket_ids)


@shared_task(name="policies.tick", ignore_result=True)
def tick_task() -> int:
    """Every minute (beat): move SLA clocks whose colour changes now."""
    return reevaluate_due_clocks(now=timezone.now())


@shared_task(name="policies.deliver_notifications", ignore_result=True)
def deliver_notifications_task(batch: int = 20, budget: int = 500) -> int:
    """Deliver due notifications (on commit of new ones, and every minute from beat).

    Retries are rows with a later ``next_attempt_at`` found by this sweep, not Celery ETA
    tasks: the database stays the only truth and the broker holds nothing long.
    """
    total = 0
    while total < budget:
        done = deliver_due(now=timezone.now(), limit=batch)
        total += done
        if done < batch:
            break
    return total
