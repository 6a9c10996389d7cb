"""Thin Celery wrappers around dashboard.publish."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from dashboard.publish import publish_and_follow_up


@shared_task(name="dashboard.publish", ignore_result=True)
def publish_task() -> int:
    return publish_and_follow_up(now=timezone.now())
