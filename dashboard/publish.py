"""Publishing: after a change, re-render what screens show and push what changed.

``mark_dirty`` (connected to ``tickets_changed``, which every write of tickets, clocks and
acknowledgements sends once per transaction after commit) counts the change and
schedules at most one publish at a time, so a burst of 10 000 changes becomes a few pushes.
``publish`` renders each live board (per viewer scope) once, compares each fragment with what
was last sent, and sends only the changed fragments — absolute state, so a lost push heals with
the next one — in one batch through the channel layer. It also keeps the whole rendered state
of each group in Redis (``snapshot:<group>``, stamped with the change count it includes), so a
connecting screen gets its snapshot without rendering the board again (``cached_snapshot``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings

from dashboard.access import Viewer
from dashboard.boards import (
    render_board_fragments,
    render_queue_rows,
    render_ticket_fragments,
    rows_for_tickets,
)
from dashboard.models import Board
from policies.engine import evaluated_until
from slaboard import metrics
from slaboard.celery import app as celery_app
from tickets.models import Ticket

log = logging.getLogger(__name__)


def key(name: str) -> str:
    """A Redis key under the channel prefix, so two installs sharing one Redis keep apart:
    live (sorted set: group -> last heartbeat), sent:<group> (hash: fragment -> sha1 of the
    last push), snapshot:<group> (hash: the group's fragments as last rendered, the change
    count and the board version they show), beat:<group> (a message reached the group
    recently: no heartbeat needed), dirty (change count), publish:state."""
    config = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    prefix = config.get("prefix", "slaboard")
    return f"{prefix}:{name}"


COALESCE_MS = 250  # after a publish, further changes wait this long and publish together
QUEUED_MS = 30_000  # a scheduled publish task expires after 30 s; so does its mark
LIVE_FOR_SECONDS = 60
SNAPSHOT_SECONDS = 3600

# publish:state is absent (idle: the next change publishes at once), "queued" (a publish task
# is scheduled: changes only count), "running" (likewise; it checks the count when done) or
# "cooldown" (a publish just ended: the next change schedules one for when the cooldown ends).
# Each transition is one Lua script, so no change can fall between "the publish looked" and
# "the next change schedules one" — every counted change is rendered by some later publish.
_MARK_DIRTY = """
redis.call('INCR', KEYS[1])
local t = redis.call('TIME')  -- ops #16: when the oldest unpublished change committed
redis.call('SET', KEYS[1] .. ':since', t[1] .. '.' .. string.format('%06d', tonumber(t[2])), 'NX')
if #ARGV > 1 then
  redis.call('SADD', KEYS[3], unpack(ARGV, 2))
  redis.call('EXPIRE', KEYS[3], 3600)
end
local state = redis.call('GET', KEYS[2])
if not state then
  redis.call('SET', KEYS[2], 'queued', 'PX', ARGV[1])
  return 0
end
if state == 'cooldown' then
  local left = redis.call('PTTL', KEYS[2])
  redis.call('SET', KEYS[2], 'queued', 'PX', ARGV[1])
  if left < 1 then left = 1 end
  return left
end
return -1
"""
_PUBLISH_DONE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[2], 'cooldown', 'PX', ARGV[2])
  return 0
end
redis.call('SET', KEYS[2], 'queued', 'PX', ARGV[3])
return 1
"""
# The tickets changed since the last publish, taken by the publish that renders them.
_TAKE_CHANGED = """
local ids = redis.call('SMEMBERS', KEYS[1])
redis.call('DEL', KEYS[1])
return ids
"""
# Keep a group's snapshot only if it is at least as new as the one stored.
_STORE_SNAPSHOT = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
if stored > tonumber(ARGV[2]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'version', ARGV[2], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""

_client: redis.Redis | None = None


def redis_client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
    return _client


def mark_dirty(ticket_ids: Iterable[int] | None = None) -> None:
    """Count a committed change and make sure a publish will render it. Never raises: Redis
    loss may delay screens, never a write.

    ``ticket_ids`` (the tickets the change touched, if known) are kept in ``changed`` for the
    publish: their queue rows and ticket pages are rendered and pushed.

    Leading edge: the first change in a quiet period publishes at once. Changes while a
    publish is scheduled or running are only counted — that publish publishes once more
    ``COALESCE_MS`` later if the count moved — so a burst of 10 000 changes makes a few
    publishes, not 10 000.
    """
    try:
        ids = sorted(ticket_ids or ())
        answer = redis_client().eval(
            _MARK_DIRTY, 3, key("dirty"), key("publish:state"), key("changed"), QUEUED_MS, *ids
        )
        delay_ms = int(cast(int, answer))
    except Exception as error:  # Redis down: screens catch up after the next tick
        log.warning("could not schedule a publish: %s", error)
        return
    if delay_ms < 0:
        return
    try:
        _schedule_publish(countdown=delay_ms / 1000 if delay_ms else None)
    except Exception as error:  # broker down: let the next change try again
        log.warning("could not schedule a publish: %s", error)
        with contextlib.suppress(redis.RedisError):
            redis_client().delete(key("publish:state"))


def _schedule_publish(countdown: float | None) -> None:
    # By name: the task module (dashboard.tasks) is a later layer that imports this one.
    celery_app.send_task("dashboard.publish", countdown=countdown, expires=30)


def change_count() -> int:
    """How many changes were counted by ``mark_dirty`` so far (the snapshots' version)."""
    value = redis_client().get(key("dirty"))
    return int(cast(bytes, value)) if value else 0


def publish_and_follow_up(*, now: datetime) -> int:
    """What the publish task runs: publish, then once more if changes came meanwhile."""
    version, since = begin_timed_publish()
    try:
        with metrics.PUBLISH_DURATION.time():
            sent = publish(now=now, version=version)
    except Exception:
        redis_client().delete(key("publish:state"))  # the next change schedules a new attempt
        raise
    end_publish(version)
    if sent and since is not None:  # ops #16: commit → push, by Redis's clock
        seconds, micros = cast(tuple[int, int], redis_client().time())
        metrics.PUBLISH_LAG.observe(max(0.0, seconds + micros / 1e6 - since))
    return sent


def begin_timed_publish() -> tuple[int, float | None]:
    """``begin_publish``, and when the oldest change it renders committed (Redis's clock),
    taken in the same transaction as the change count."""
    pipe = redis_client().pipeline(transaction=True)
    pipe.set(key("publish:state"), "running", px=QUEUED_MS)
    pipe.get(key("dirty"))
    pipe.getdel(key("dirty:since"))
    _, count, since = pipe.execute()
    return (int(count) if count else 0), (float(since) if since else None)


def begin_publish() -> int:
    """Mark a publish as running; return the change count it will render (all committed)."""
    redis_client().set(key("publish:state"), "running", px=QUEUED_MS)
    return change_count()


def end_publish(version: int) -> bool:
    """After publishing ``version``: schedule one more publish if changes were counted since
    (return True), else start the cooldown. One script, so no change falls in between."""
    again = redis_client().eval(
        _PUBLISH_DONE, 2, key("dirty"), key("publish:state"), version, COALESCE_MS, QUEUED_MS
    )
    if again:
        _schedule_publish(countdown=COALESCE_MS / 1000)
    return bool(again)


def live_groups(now: datetime) -> list[str]:
    client = redis_client()
    since = now.timestamp() - LIVE_FOR_SECONDS
    client.zremrangebyscore(key("live"), "-inf", since)
    members = cast(list[bytes], client.zrangebyscore(key("live"), since, "+inf"))
    return sorted(member.decode() for member in members)


def group_board_id(group: str) -> int | None:
    """The board a group shows (``board-<id>-<viewer>``), None for other groups."""
    kind, _, rest = group.partition("-")
    return int(rest.partition("-")[0]) if kind == "board" else None


@lru_cache(maxsize=1)
def fragments_digest() -> str:
    """A digest of the fragment templates: a release that changes them does not serve the
    snapshots the previous release rendered (every process of one release agrees on it)."""
    digest = hashlib.sha1(usedforsecurity=False)
    folder = Path(settings.BASE_DIR) / "templates" / "dashboard" / "fragments"
    for path in sorted(folder.glob("*.html")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def board_version(board: Board | None) -> str:
    """What a snapshot must match besides the change count: the board's last edit, and the
    templates it was rendered with."""
    edited = board.updated_at.isoformat() if board is not None else ""
    return f"{edited}:{fragments_digest()}"


def render_group(
    group: str, now: datetime, boards: dict[int, Board], evaluated_at: datetime | None = None
) -> dict[str, str] | None:
    """The fragments a board group's screens should show, or None if the board is gone."""
    kind, _, rest = group.partition("-")
    if kind != "board":
        return None
    board_id, _, viewer_key = rest.partition("-")
    board = boards.get(int(board_id))
    if board is None:
        return None
    return render_board_fragments(board, Viewer.from_key(viewer_key), now, evaluated_at)


def take_changed() -> set[int]:
    """The tickets changed since the last publish (and forget them)."""
    ids = cast(list[bytes], redis_client().eval(_TAKE_CHANGED, 1, key("changed")))
    return {int(pk) for pk in ids}


QUEUE_CHANGED = '<span id="queue-changed" hidden data-version="{}"></span>'


def queue_messages(
    groups: list[str], changed: set[int], now: datetime, version: int
) -> list[tuple[str, str]]:
    """For each live queue group: the rows of its changed tickets (each replaces the row with
    the same id on screens that show it) and a marker that the list itself may have changed
    (a screen refreshes its view when the agent is not using it). Rows rendered once."""
    rows = rows_for_tickets(changed, now) if changed else []
    marker = QUEUE_CHANGED.format(version)
    messages = []
    for group in groups:
        viewer = Viewer.from_key(group.removeprefix("queue-"))
        mine = [r for r in rows if viewer.partner_id in (None, r.ticket.partner_id)]
        messages.append((group, render_queue_rows(mine, now) + marker))
    return messages


def ticket_messages(groups: list[str], changed: set[int], now: datetime) -> list[tuple[str, str]]:
    """For each live ticket page whose ticket changed: its fragments, rendered once."""
    wanted = {int(g.removeprefix("ticket-")): g for g in groups}
    ids = set(wanted) & changed
    if not ids:
        return []
    tickets = Ticket.objects.select_related("partner", "customer", "assignee").filter(pk__in=ids)
    return [(wanted[t.pk], "".join(render_ticket_fragments(t, now).values())) for t in tickets]


def publish(*, now: datetime, version: int | None = None) -> int:
    """Push what changed to every live group; return how many messages were sent.

    Boards: changed fragments (compared with what was last sent). Queues: the rows of the
    tickets changed since the last publish, and a marker that their lists may have changed.
    Ticket pages: their fragments when their ticket changed. ``version`` is the change count
    read before anything was rendered (read here if not given); it stamps the snapshots
    stored for connecting board screens.
    """
    client = redis_client()
    if version is None:
        version = change_count()
    changed = take_changed()
    try:
        return _publish(now, version, changed)
    except Exception:
        if changed:  # rendered by the next publish instead
            with contextlib.suppress(redis.RedisError):
                client.sadd(key("changed"), *changed)
        raise


def _publish(now: datetime, version: int, changed: set[int]) -> int:
    client = redis_client()
    groups = live_groups(now)
    if not groups:
        return 0
    board_groups = [g for g in groups if g.startswith("board-")]
    messages: list[tuple[str, str]] = []
    messages += queue_messages([g for g in groups if g.startswith("queue-")], changed, now, version)
    messages += ticket_messages([g for g in groups if g.startswith("ticket-")], changed, now)
    boards = {b.pk: b for b in Board.objects.prefetch_related("partners")}
    evaluated_at = evaluated_until()
    rendered: list[tuple[str, dict[str, str]]] = []
    for group in board_groups:
        fragments = render_group(group, now, boards, evaluated_at)
        if fragments is not None:
            rendered.append((group, fragments))
    reading = client.pipeline(transaction=False)
    for group, _ in rendered:
        reading.hgetall(key("sent:" + group))
    stored_digests = cast(list[dict[bytes, bytes]], reading.execute())
    writing = client.pipeline(transaction=False)
    beat_ms = max(1, int(settings.HEARTBEAT_SECONDS * 900))
    for (group, fragments), stored in zip(rendered, stored_digests, strict=True):
        sent = {k.decode(): v.decode() for k, v in stored.items()}
        changed_parts: dict[str, str] = {}
        parts = []
        for name, html in fragments.items():
            digest = hashlib.sha1(html.encode(), usedforsecurity=False).hexdigest()
            if sent.get(name) != digest:
                changed_parts[name] = digest
                parts.append(html)
        board_id = group_board_id(group)
        board = boards.get(board_id) if board_id is not None else None
        store_snapshot(writing, group, version, board_version(board), fragments)
        if changed_parts:
            # One message per group: fan-out costs per delivered message, not per byte.
            messages.append((group, "".join(parts)))
            writing.hset(key("sent:" + group), mapping=changed_parts)
            writing.expire(key("sent:" + group), SNAPSHOT_SECONDS)
    for group, _ in messages:
        # Screens just heard from us: the heartbeat can skip this group for a period.
        writing.set(key("beat:" + group), "push", px=beat_ms)
    writing.execute()
    if messages:
        send_batch(messages)
    return len(messages)


def store_snapshot(
    client: Any, group: str, version: int, board: str, fragments: dict[str, str]
) -> None:
    """Keep what a group's screens show (unless a newer snapshot is stored already)."""
    fields: list[str] = ["board", board, "names", ",".join(fragments)]
    for name, html in fragments.items():
        fields += ["html:" + name, html]
    client.eval(
        _STORE_SNAPSHOT,
        1,
        key("snapshot:" + group),
        SNAPSHOT_SECONDS,
        version,
        *fields,
    )


def snapshot_from(
    stored: dict[bytes, bytes], current_version: int, board: str
) -> dict[str, str] | None:
    """The fragments of a stored snapshot if it shows the current state, else None.

    Current means: it includes every counted change (a change is counted after it commits,
    and the count is read before rendering) and the board was not edited since.
    """
    if not stored or stored.get(b"version") != str(current_version).encode():
        return None
    if stored.get(b"board", b"").decode() != board:
        return None
    names = stored.get(b"names", b"").decode().split(",")
    fragments = {name: stored.get(f"html:{name}".encode()) for name in names if name}
    if not fragments or any(html is None for html in fragments.values()):
        return None
    return {name: cast(bytes, html).decode() for name, html in fragments.items()}


def cached_snapshot(group: str, board: str) -> dict[str, str] | None:
    """The group's last rendered fragments if they are still current, else None."""
    reading = redis_client().pipeline(transaction=True)
    reading.hgetall(key("snapshot:" + group))
    reading.get(key("dirty"))
    stored, count = reading.execute()
    return snapshot_from(stored, int(count) if count else 0, board)


def send_batch(messages: list[tuple[str, str]]) -> None:
    """Send many (group, html) pushes in one event-loop entry (one connection, not one each)."""
    send_batch_events([(group, {"type": "board.update", "html": html}) for group, html in messages])


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
