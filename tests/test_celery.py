from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import redis
from django.conf import settings

from slaboard.celery import BEAT_HEARTBEAT_KEY, app, beat_heartbeat_task


def test_every_beat_entry_expires_before_the_next_run() -> None:
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["options"]["expires"] < entry["schedule"], name
        assert entry["task"] in app.tasks, name


def test_the_beat_heartbeat_is_written_to_redis(redis_client: redis.Redis) -> None:
    before = datetime.now(tz=UTC)
    beat_heartbeat_task()
    stored = cast(bytes | None, redis_client.get(BEAT_HEARTBEAT_KEY))
    assert stored is not None
    assert datetime.fromisoformat(stored.decode()) >= before
    assert 0 < cast(int, redis_client.ttl(BEAT_HEARTBEAT_KEY)) <= 24 * 3600
