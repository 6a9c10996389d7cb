"""Thin Celery wrappers around policies.actions."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from policies.actions import resync_open_clocks


@shared_task(name="policies.resync_open_clocks", ignore_result=True)
def resync_open_clocks_task(ticket_ids: list[int] | None, cause: str) -> int:
    return resync_open_clocks(now=timezone.now(), cause=cause, ticket_ids=ticket_ids)
