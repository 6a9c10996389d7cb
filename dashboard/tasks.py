"""Thin Celery wrappers around dashboard.publish."""

from __future__ import annotations

from celery import shared_task
from django.utils import timezone

from dashboard.publish import PENDING_KEY, publish, redis_client


@shared_task(name="dashboard.publish", ignore_result=True)
def publish_task() -> int:
    redis_client().delete(PENDING_KEY)  # changes from now on schedule the next publish
    return publish(now=timezone.now())
