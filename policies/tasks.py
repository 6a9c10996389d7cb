"""Thin Celery wrappers around policies.actions."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from policies.actions import resync_open_clocks, run_tick


@shared_task(name="policies.resync_open_clocks", ignore_result=True)
def resync_open_clocks_task(ticket_ids: list[int] | None, cause: str) -> int:
    return resync_open_clocks(now=timezone.now(), cause=cause, ticket_ids=ticket_ids)


@shared_task(name="policies.tick", ignore_result=True)
def tick_task() -> int | None:
    """Every minute (beat): move SLA clocks whose colour changes now."""
    return run_tick(now=timezone.now(), redis_url=settings.REDIS_URL)
