"""The Celery application: worker and the single beat process load it from here."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slaboard.settings")

app = Celery("slaboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

BEAT_HEARTBEAT_KEY = "slaboard:beat:last"


@app.task(name="slaboard.celery.beat_heartbeat_task", ignore_result=True)
def beat_heartbeat_task() -> str:
    """Record that beat and a worker are alive (read by health checks and the boards)."""
    import redis
    from django.conf import settings

    now = datetime.now(tz=UTC)
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        client.set(BEAT_HEARTBEAT_KEY, now.isoformat(), ex=24 * 3600)
    finally:
        client.close()
    return now.isoformat()
