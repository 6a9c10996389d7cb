"""Workers' heartbeat: when each queue last finished a task, by Redis's clock.

Every Celery task that finishes records, at most every ``RECORD_EVERY`` seconds per process and
queue, the time (Redis ``TIME``, one clock for every host) in the hash
``<CHANNEL_PREFIX>:workers:<queue>`` under the worker's name. Beat sends each queue a task
every minute (the tick to ``realtime``, the delivery sweep to ``background``), so a queue not
heard from for a few minutes has no worker consuming it — or no beat. The readiness check and
the boards say so (``slaboard.health``). Cheap: one Redis call per process per queue per 5 s.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, cast

import redis
from django.conf import settings

log = logging.getLogger(__name__)

RECORD_EVERY = 5.0
KEEP_SECONDS = 86400

_RECORD = """
local t = redis.call('TIME')
redis.call('HSET', KEYS[1], ARGV[1], t[1] .. '.' .. string.format('%06d', tonumber(t[2])))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

_client: redis.Redis | None = None
_last: dict[str, float] = {}
_lock = threading.Lock()


def key(queue: str) -> str:
    config = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    return f"{config.get('prefix', 'slaboard')}:workers:{queue}"


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
    return _client


def queues() -> list[str]:
    """The queues a deployment must consume: every routed one and the default."""
    routed = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    return sorted(routed | {settings.CELERY_TASK_DEFAULT_QUEUE})


def record(queue: str, worker: str) -> None:
    """A task of ``queue`` finished on ``worker``. Never raises (Redis may be away)."""
    now = time.monotonic()
    with _lock:
        if now - _last.get(queue, -RECORD_EVERY) < RECORD_EVERY:
            return
        _last[queue] = now
    try:
        client().eval(_RECORD, 1, key(queue), worker, KEEP_SECONDS)
    except redis.RedisError as error:
        log.debug("worker heartbeat not recorded: %s", error)


def last_seen(redis_client: redis.Redis) -> dict[str, tuple[str, float] | None]:
    """For each queue: (the worker heard from last, seconds ago by Redis's clock), or None."""
    reading = redis_client.pipeline(transaction=False)
    reading.time()
    for queue in queues():
        reading.hgetall(key(queue))
    answers = reading.execute()
    seconds, micros = answers[0]
    now = seconds + micros / 1e6
    seen: dict[str, tuple[str, float] | None] = {}
    for queue, entries in zip(queues(), answers[1:], strict=True):
        if not entries:
            seen[queue] = None
            continue
        worker, at = max(((w.decode(), float(t)) for w, t in entries.items()), key=lambda e: e[1])
        seen[queue] = (worker, max(0.0, now - at))
    return seen
