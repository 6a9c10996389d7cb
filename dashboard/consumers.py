"""The live-screen websocket: authenticate, scope, snapshot, heartbeat, forward pushes."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from typing import Any
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from dashboard.access import (
    Viewer,
    board_viewer,
    is_signed_in,
    kiosk_cookie,
    queue_viewer,
    visible_tickets,
)
from dashboard.boards import (
    board_group,
    queue_group,
    render_board_fragments,
    render_ticket_fragments,
    ticket_group,
)
from dashboard.convergence import republish_after_outage
from dashboard.grants import Grant, revoked
from dashboard.models import Board
from dashboard.publish import (
    QUEUE_CHANGED,
    board_version,
    cached_snapshot,
    change_count,
    key,
    kiosk_digest,
    kiosk_group,
    redis_client,
    snapshot_from,
    store_snapshot,
)
from policies.engine import evaluated_until
from slaboard import metrics
from slaboard.health import check as health_check
from tickets.models import Ticket

log = logging.getLogger(__name__)

_redis_by_loop: dict[int, aioredis.Redis] = {}


def shared_redis() -> aioredis.Redis:
    """One Redis client per event loop (a server process has one), not one per screen."""
    loop = id(asyncio.get_running_loop())
    client = _redis_by_loop.get(loop)
    if client is None:
        if len(_redis_by_loop) > 8:  # loops come and go in tests; a server has one
            _redis_by_loop.clear()
        client = aioredis.Redis.from_url(settings.REDIS_URL, socket_timeout=2)
        _redis_by_loop[loop] = client
    return client


FORBIDDEN = 4403  # an application close code: the page stops retrying and says why
TRY_AGAIN_LATER = 1013


class Heartbeats:
    """The groups that have screens in this process, and their heartbeat.

    One per event loop (a server process has one). Every half heartbeat period it refreshes
    the groups' registration in ``live`` (one ``ZADD`` for all of them) and, for each group that
    nothing reached for about a period, claims the group's heartbeat in Redis (``SET NX``: one
    process of the deployment wins) and sends one ``heartbeat`` to the whole group. So a screen
    hears something at least every ~1.4 periods — a push or a heartbeat — while the cost is one
    message per group per period instead of one timer, send and ``ZADD`` per screen. The
    heartbeat travels through the channel layer like every push, so a screen whose pushes cannot
    arrive (Redis down) stops hearing it and shows it is stale.

    Every round it also checks the grants of all its sockets again (``dashboard.grants``: a
    few queries for all of them) and closes those whose user logged out, was deactivated,
    lost the permission, changed partner or whose session expired — within one heartbeat.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self.members: dict[str, set[str]] = {}
        self.grants: dict[str, tuple[Grant, Any]] = {}  # channel -> (grant, its consumer)
        self.revoking: set[asyncio.Task[None]] = set()
        self.task: asyncio.Task[None] | None = None
        # Ops (#16): a failed round followed by a good one means Redis was away: republish.
        self.redis_lost = False
        self.problems: list[str] = []  # the deployment's health, shown on boards
        self.problems_at = -math.inf

    def join(self, group: str, channel: str) -> None:
        if channel not in self.members.get(group, ()):
            metrics.SCREENS.labels(metrics.screen_kind(group)).inc()
        self.members.setdefault(group, set()).add(channel)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.run())

    def watch(self, channel: str, grant: Grant, consumer: Any) -> None:
        """Check this socket's grant every round; ``consumer.revoke()`` when it no longer holds."""
        self.grants[channel] = (grant, consumer)

    def leave(self, group: str, channel: str) -> None:
        self.grants.pop(channel, None)
        channels = self.members.get(group)
        if channels is not None:
            if channel in channels:
                metrics.SCREENS.labels(metrics.screen_kind(group)).dec()
            channels.discard(channel)
            if not channels:
                del self.members[group]
        if not self.members and self.task is not None:
            self.task.cancel()
            self.task = None

    async def run(self) -> None:
        while True:
            await asyncio.sleep(settings.HEARTBEAT_SECONDS / 2)
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # Redis down: screens notice the silence
                self.redis_lost = True
                log.warning("heartbeat not sent (Redis unavailable): %s", error)
            else:
                if self.redis_lost:  # pushes were lost meanwhile (dashboard.convergence)
                    self.redis_lost = not await asyncio.to_thread(
                        republish_after_outage, list(self.members)
                    )
            try:
                await self.revalidate()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # database down: nothing new can be rendered either
                log.warning("open sockets not re-checked (database unavailable): %s", error)

    async def health(self) -> list[str]:
        """What is wrong with the deployment (tick late, no worker, notifications stuck), in a
        few words for the boards; checked at most once per round per process."""
        now = time.monotonic()
        if now - self.problems_at >= settings.HEARTBEAT_SECONDS / 2:
            self.problems_at = now
            try:
                report = await database_sync_to_async(health_check)(
                    ["tick", "workers", "notifications"]
                )
                self.problems = report.problems()
            except Exception as error:  # never let the health line stop the heartbeat
                log.warning("health not checked: %s", error)
        return self.problems

    async def revalidate(self) -> None:
        """Close the sockets whose access changed since they connected."""
        if not self.grants:
            return
        grants = {channel: grant for channel, (grant, _) in self.grants.items()}
        gone = await database_sync_to_async(revoked)(grants, timezone.now())
        for channel in gone:
            entry = self.grants.pop(channel, None)
            if entry is not None:  # a task: a socket busy sending must not hold up the others
                task = asyncio.create_task(entry[1].revoke())
                self.revoking.add(task)
                task.add_done_callback(self.revoking.discard)

    async def beat(self) -> None:
        groups = sorted(self.members)
        if not groups:
            return
        period_ms = max(1, int(settings.HEARTBEAT_SECONDS * 900))
        client = shared_redis()
        pipe = client.pipeline(transaction=False)
        pipe.zadd(key("live"), dict.fromkeys(groups, time.time()))
        for group in groups:
            pipe.set(key("beat:" + group), "beat", nx=True, px=period_ms)
        claimed = (await pipe.execute())[1:]
        mine = [group for group, won in zip(groups, claimed, strict=True) if won]
        if not mine:
            return
        at = timezone.now().isoformat()
        problems = await self.health()
        html = render_to_string(
            "dashboard/fragments/heartbeat.html", {"at": at, "problems": problems}
        )
        for group in mine:
            await self.layer.group_send(group, {"type": "heartbeat", "at": at, "html": html})


_heartbeats_by_loop: dict[int, Heartbeats] = {}


def heartbeats(layer: Any) -> Heartbeats:
    loop = id(asyncio.get_running_loop())
    registry = _heartbeats_by_loop.get(loop)
    if registry is None or registry.layer is not layer:
        if registry is not None and registry.task is not None:
            registry.task.cancel()  # the channel layer was replaced (tests do that)
        if len(_heartbeats_by_loop) > 8:  # loops come and go in tests; a server has one
            _heartbeats_by_loop.clear()
        registry = _heartbeats_by_loop[loop] = Heartbeats(layer)
    return registry


class LiveConsumer(AsyncWebsocketConsumer):
    """One screen: a board (`/ws/boards/<slug>/`) or the agent queue (`/ws/queue/`)."""

    group: str | None = None
    kiosk: tuple[int, str] | None = None  # (board id, token) when watching through a kiosk link
    board: Board | None = None
    ticket_id: int | None = None
    viewer: Viewer | None = None
    beating: Heartbeats | None = None
    grant: Grant | None = None
    revoking: bool = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """channels' ``AsyncConsumer.__call__`` with a cheaper loop than its
        ``await_many_dispatch``, which for every message delivered sets up an ``asyncio.wait``
        over two fresh tasks and creates a new task: at 1 000 screens that was a large share of
        the cost of a push. Here one long-lived task per source (the websocket, the channel
        layer) awaits messages and dispatches them one at a time (a lock keeps channels'
        ordering: a push is never handled while ``connect`` is still sending the snapshot)."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.base_send = send
        sources = [receive]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.append(self.channel_receive)
        self.one_at_a_time = one_at_a_time = asyncio.Lock()

        async def pump(source: Any) -> None:
            while True:
                message = await source()
                async with one_at_a_time:
                    await self.dispatch(message)

        pumps = [asyncio.ensure_future(pump(source)) for source in sources]
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # StopConsumer (the socket closed) or a handler's error
        except StopConsumer:
            pass
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Like channels' dispatch without its per-message ``close_old_connections`` hop to the
        database thread: no handler here touches the database except through
        ``database_sync_to_async`` (which manages connections itself), and that hop for every
        push to every screen dominated the cost of a push to 1 000 screens."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self) -> None:
        kwargs = self.scope["url_route"]["kwargs"]
        query = parse_qs(self.scope.get("query_string", b"").decode())
        kiosk = (query.get("kiosk") or [""])[0]
        user = self.scope.get("user")
        cookies = self.scope.get("cookies") or {}
        group = await database_sync_to_async(self._access)(
            kwargs.get("slug"), kwargs.get("pk"), user, kiosk, cookies
        )
        await self.accept()
        if group is None:
            await self.close(code=FORBIDDEN)
            return
        assert self.channel_layer is not None
        await self._register(group)
        try:
            # Joined before the snapshot is read: a push from here on reaches this screen.
            await self.channel_layer.group_add(group, self.channel_name)
        except Exception as error:  # Redis is down: no pushes could reach this screen
            log.warning("channel layer unavailable, refusing a screen for now: %s", error)
            await self.close(code=TRY_AGAIN_LATER)
            return
        self.group = group
        if self.kiosk is not None:  # hears of the link being rotated or revoked
            with contextlib.suppress(Exception):
                await self.channel_layer.group_add(kiosk_group(self.kiosk[0]), self.channel_name)
        if self.board is not None:
            fragments = await self._cached_snapshot()
            if fragments is None:
                fragments = await database_sync_to_async(self._render_snapshot)()
            snapshot = "".join(fragments.values())
        elif self.ticket_id is not None:  # the page may be older than this socket
            snapshot = await database_sync_to_async(self._render_ticket)()
        else:  # a queue: its list is the page's; after a reconnect it refreshes
            snapshot = QUEUE_CHANGED.format("connect")
        await self.send(text_data=snapshot)
        self.beating = heartbeats(self.channel_layer)
        self.beating.join(group, self.channel_name)
        if self.grant is not None:
            self.beating.watch(self.channel_name, self.grant, self)

    def _access(
        self,
        slug: str | None,
        pk: int | None,
        user: Any,
        kiosk: str,
        cookies: dict[str, str],
    ) -> str | None:
        """The group this socket may watch, or None. Sets ``viewer`` (and ``board`` or
        ``ticket_id``) and the ``grant`` that ``Heartbeats`` checks again every round."""
        if pk is not None:  # a ticket page
            if not visible_tickets(user).filter(pk=int(pk)).exists():
                return None
            self.ticket_id = int(pk)
            group = ticket_group(self.ticket_id)
            self.grant = self._grant(group, None, user, "", ticket_id=self.ticket_id)
            return group
        if slug is None:  # the agent queue
            self.viewer = queue_viewer(user)
            if self.viewer is None:
                return None
            group = queue_group(self.viewer)
            self.grant = self._grant(group, None, user, "")
            return group
        board = Board.objects.prefetch_related("partners").filter(slug=slug).first()
        if board is None:
            return None
        # The kiosk secret: the board's cookie (``dashboard.kiosk``), or ``?kiosk=`` from a
        # page opened before kiosk links moved it into a cookie.
        kiosk = kiosk or cookies.get(kiosk_cookie(board.pk), "")
        viewer = board_viewer(board, user, kiosk)
        if viewer is None:
            return None
        by_kiosk = board_viewer(board, user, "") is None  # the link, not the user, lets it in
        if by_kiosk:
            self.kiosk = (board.pk, kiosk)
        self.board, self.viewer = board, viewer
        group = board_group(board.pk, viewer)
        self.grant = self._grant(group, board.pk, None if by_kiosk else user, kiosk)
        return group

    def _grant(
        self,
        group: str,
        board_id: int | None,
        user: Any,
        kiosk: str,
        ticket_id: int | None = None,
    ) -> Grant:
        if user is None or not is_signed_in(user):
            return Grant(group=group, board_id=board_id, kiosk=kiosk)
        session = self.scope.get("session")
        return Grant(
            group=group,
            board_id=board_id,
            ticket_id=ticket_id,
            user_id=user.pk,
            session_key=getattr(session, "session_key", None) if session is not None else None,
        )

    async def _cached_snapshot(self) -> dict[str, str] | None:
        """What the group's screens were last sent, if still current (the group is exactly
        this socket's scope, so the snapshot is too). None: render instead."""
        assert self.group is not None
        try:
            pipe = shared_redis().pipeline(transaction=True)
            pipe.hgetall(key("snapshot:" + self.group))
            pipe.get(key("dirty"))
            stored, count = await pipe.execute()
        except Exception as error:  # Redis down: render instead
            log.warning("snapshot cache unavailable: %s", error)
            return None
        return snapshot_from(stored, int(count) if count else 0, board_version(self.board))

    def _render_ticket(self) -> str:
        assert self.ticket_id is not None
        ticket = (
            Ticket.objects.select_related("partner", "customer", "assignee")
            .filter(pk=self.ticket_id)
            .first()
        )
        if ticket is None:
            return ""
        return "".join(render_ticket_fragments(ticket, timezone.now()).values())

    def _render_snapshot(self) -> dict[str, str]:
        """Render the group's fragments (and keep them for the next screens to connect)."""
        assert self.group is not None and self.viewer is not None
        version = board_version(self.board)
        try:  # a screen connecting just before us may have rendered it meanwhile
            fragments = cached_snapshot(self.group, version)
            if fragments is not None:
                return fragments
            count: int | None = change_count()  # read before rendering, as publish does
        except Exception as error:
            log.warning("snapshot cache unavailable: %s", error)
            count = None
        now = timezone.now()
        assert self.board is not None
        fragments = render_board_fragments(self.board, self.viewer, now, evaluated_until())
        if count is not None:
            with contextlib.suppress(Exception):
                store_snapshot(redis_client(), self.group, count, version, fragments)
        return fragments

    async def _register(self, group: str) -> None:
        """Tell the publisher this group has a live screen (the heartbeat refreshes it)."""
        try:
            await shared_redis().zadd(key("live"), {group: time.time()})
        except Exception as error:  # Redis down: group_add fails next and says so
            log.warning("could not register live group %s: %s", group, error)

    async def revoke(self) -> None:
        """The grant no longer holds (see ``Heartbeats.revalidate``): leave the groups at once,
        so no further push reaches this screen, and close with 4403."""
        async with self.one_at_a_time:  # never in the middle of a snapshot or a push
            if self.revoking:
                return
            self.revoking = True
            self._stop_beating()
            await self._leave_groups()
            await self.close(code=FORBIDDEN)

    async def _leave_groups(self) -> None:
        if self.group is not None and self.channel_layer is not None:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.kiosk is not None and self.channel_layer is not None:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(
                    kiosk_group(self.kiosk[0]), self.channel_name
                )

    async def disconnect(self, code: int) -> None:
        self._stop_beating()
        await self._leave_groups()

    def _stop_beating(self) -> None:
        if self.beating is not None and self.group is not None:
            self.beating.leave(self.group, self.channel_name)
            self.beating = None

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Screens send nothing that matters; ignore it."""

    async def board_update(self, event: dict[str, Any]) -> None:
        if not self.revoking:  # one already on its way when the grant was revoked
            await self.send(text_data=event["html"])

    async def kiosk_changed(self, event: dict[str, Any]) -> None:
        """The board's kiosk link was rotated or revoked: screens on the old link must go."""
        if self.kiosk is not None and kiosk_digest(self.kiosk[1]) != event["valid"]:
            self._stop_beating()
            await self.close(code=FORBIDDEN)

    async def heartbeat(self, event: dict[str, Any]) -> None:
        """Rendered once by the sender; ``at`` alone from a process of an older release."""
        if self.revoking:
            return
        html = event.get("html") or render_to_string(
            "dashboard/fragments/heartbeat.html", {"at": event["at"]}
        )
        await self.send(text_data=html)
