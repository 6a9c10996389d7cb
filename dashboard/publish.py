"""Publishing: after a change, re-render what screens show and push what changed.

``mark_dirty`` (called on commit by every action and by the tick) schedules one publish per
short window, so a burst of 10 000 changes becomes a few pushes. ``publish`` renders each
live board (per viewer scope) once, compares each fragment with what was last sent, and sends
only the changed fragments — absolute state, so a lost push heals with the next one — in one
batch through the channel layer.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime
from typing import Any, cast

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from dashboard.boards import (
    Viewer,
    render_board_fragments,
    render_queue_fragments,
)
from dashboard.models import Board

log = logging.getLogger(__name__)


def key(name: str) -> str:
    """A Redis key under the channel prefix, so two installs sharing one Redis keep apart:
    live (sorted set: group -> last heartbeat), sent:<group> (hash: fragment -> sha1 of the
    last push), publish:pending, publish:again, tick:last."""
    config = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    prefix = config.get("prefix", "slaboard")
    return f"{prefix}:{name}"


COALESCE_MS = 250
LIVE_FOR_SECONDS = 60

_client: redis.Redis | None = None
_last_scheduled = 0.0


def redis_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
    return _client


def mark_dirty() -> None:
    """Ask for a publish. Never raises: Redis loss may delay screens, never a write.

    Leading edge: the first change in a quiet period publishes at once. Changes while a
    publish is pending or just ran set a flag, and the publish task runs once more
    ``COALESCE_MS`` later — so a burst of 10 000 changes makes a few publishes, not 10 000.
    """
    global _last_scheduled
    monotonic = time.monotonic()
    if monotonic - _last_scheduled < COALESCE_MS / 1000 / 2:
        return
    _last_scheduled = monotonic
    try:
        client = redis_client()
        if client.set(key("publish:pending"), "1", nx=True, px=COALESCE_MS):
            from dashboard.tasks import publish_task

            publish_task.apply_async(expires=30)
        else:
            client.set(key("publish:again"), "1", ex=30)
    except Exception as error:  # broker or Redis down: screens catch up on the next tick
        log.warning("could not schedule a publish: %s", error)


def publish_and_follow_up(*, now: datetime) -> int:
    """What the publish task runs: publish, then once more if changes came meanwhile."""
    client = redis_client()
    client.delete(key("publish:again"))  # changes from here on are either rendered now or flagged
    sent = publish(now=now)
    if client.delete(key("publish:again")):
        from dashboard.tasks import publish_task

        client.set(key("publish:pending"), "1", px=COALESCE_MS * 2)
        publish_task.apply_async(countdown=COALESCE_MS / 1000, expires=30)
    return sent


def live_groups(now: datetime) -> list[str]:
    client = redis_client()
    since = now.timestamp() - LIVE_FOR_SECONDS
    client.zremrangebyscore(key("live"), "-inf", since)
    members = cast(list[bytes], client.zrangebyscore(key("live"), since, "+inf"))
    return sorted(member.decode() for member in members)


def render_group(
    group: str, now: datetime, boards: dict[int, Board], evaluated_at: datetime | None = None
) -> dict[str, str] | None:
    """The fragments a group's screens should show, or None if the board is gone."""
    kind, _, rest = group.partition("-")
    if kind == "queue":
        return render_queue_fragments(Viewer.from_key(rest), now)
    board_id, _, viewer_key = rest.partition("-")
    board = boards.get(int(board_id))
    if board is None:
        return None
    return render_board_fragments(board, Viewer.from_key(viewer_key), now, evaluated_at)


def publish(*, now: datetime) -> int:
    """Push changed fragments to every live group; return how many messages were sent."""
    groups = live_groups(now)
    if not groups:
        return 0
    boards = {b.pk: b for b in Board.objects.prefetch_related("partners")}
    client = redis_client()
    evaluated_at = last_tick()
    messages: list[tuple[str, str]] = []
    for group in groups:
        fragments = render_group(group, now, boards, evaluated_at)
        if fragments is None:
            continue
        stored = cast(dict[bytes, bytes], client.hgetall(key("sent:" + group)))
        sent = {k.decode(): v.decode() for k, v in stored.items()}
        changed: dict[str, str] = {}
        parts = []
        for name, html in fragments.items():
            digest = hashlib.sha1(html.encode(), usedforsecurity=False).hexdigest()
            if sent.get(name) != digest:
                changed[name] = digest
                parts.append(html)
        if changed:
            # One message per group: fan-out costs per delivered message, not per byte.
            messages.append((group, "".join(parts)))
            client.hset(key("sent:" + group), mapping=changed)
            client.expire(key("sent:" + group), 3600)
    if messages:
        send_batch(messages)
    return len(messages)


def send_batch(messages: list[tuple[str, str]]) -> None:
    """Send many (group, html) pushes in one event-loop entry (one connection, not one each)."""
    send_batch_events([(group, {"type": "board.update", "html": html}) for group, html in messages])


def record_tick(now: datetime) -> None:
    try:
        redis_client().set(key("tick:last"), now.isoformat(), ex=3600)
    except redis.RedisError as error:
        log.warning("could not record the tick time: %s", error)


def last_tick() -> Any:
    try:
        value = redis_client().get(key("tick:last"))
    except redis.RedisError:
        return None
    return datetime.fromisoformat(value.decode()) if isinstance(value, bytes) else None


def kiosk_group(board_id: int) -> str:
    return f"kiosk-{board_id}"


def kiosk_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest() if token else ""


def announce_kiosk_change(board_id: int, token: str) -> None:
    """Tell screens on a board's kiosk link that only ``token`` is valid now ("" = none)."""
    try:
        send_batch_events(
            [(kiosk_group(board_id), {"type": "kiosk.changed", "valid": kiosk_digest(token)})]
        )
    except Exception as error:  # Redis down: those screens are refused when they reconnect
        log.warning("could not announce a kiosk link change: %s", error)


def send_batch_events(events: list[tuple[str, dict[str, Any]]]) -> None:
    layer = get_channel_layer()
    assert layer is not None

    async def send_all() -> None:
        for group, event in events:
            await layer.group_send(group, event)

    async_to_sync(send_all)()
