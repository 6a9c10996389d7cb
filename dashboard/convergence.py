"""Screens equal the database again after an outage of Redis.

While Redis is away, the publishes that changes would schedule are lost (``mark_dirty`` logs
and returns: the writes commit regardless), pushes sent through the channel layer vanish, and a
publish that died half-way may leave its state key behind. Screens stay connected and, once
Redis is back, hear heartbeats again — a wall that says "live" while it shows the past.

So every web process that saw its heartbeat round fail and then succeed calls
``republish_after_outage`` for the groups its screens watch (``dashboard.consumers.Heartbeats``).
It forgets what was last sent to them (``sent:<group>``: the next publish sends every fragment,
not only those that differ from what the screens may never have received), counts the live
ticket pages' tickets as changed, clears a publish state left by a dead publish, and schedules
a publish at once (``mark_dirty``). Screens are equal to the database within one heartbeat
round (``HEARTBEAT_SECONDS / 2``) plus a publish of Redis returning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import redis

from dashboard.publish import key, mark_dirty, redis_client

log = logging.getLogger(__name__)


def republish_after_outage(groups: Iterable[str]) -> bool:
    """Make the next publish send everything to ``groups``, and schedule it now. Returns
    whether it could (Redis may have gone again); never raises."""
    groups = sorted(set(groups))
    tickets = [g.removeprefix("ticket-") for g in groups if g.startswith("ticket-")]
    try:
        pipe = redis_client().pipeline(transaction=False)
        for group in groups:
            pipe.delete(key("sent:" + group))
        if tickets:
            pipe.sadd(key("changed"), *tickets)
            pipe.expire(key("changed"), 3600)
        pipe.delete(key("publish:state"))  # a publish that died with Redis left it behind
        pipe.execute()
    except redis.RedisError as error:
        log.warning("could not ask for a full republish: %s", error)
        return False
    log.info("Redis is back: republishing %d screen group(s) in full", len(groups))
    mark_dirty()
    return True
