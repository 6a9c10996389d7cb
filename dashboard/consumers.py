"""The live-screen websocket: authenticate, scope, snapshot, heartbeat, forward pushes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import parse_qs

import redis.asyncio as aioredis
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from dashboard.boards import (
    Viewer,
    board_group,
    queue_group,
    render_board_fragments,
    render_queue_fragments,
)
from dashboard.models import Board
from dashboard.publish import key, kiosk_digest, kiosk_group, last_tick

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


class LiveConsumer(AsyncWebsocketConsumer):
    """One screen: a board (`/ws/boards/<slug>/`) or the agent queue (`/ws/queue/`)."""

    group: str | None = None
    beat_task: asyncio.Task[None] | None = None
    kiosk: tuple[int, str] | None = None  # (board id, token) when watching through a kiosk link

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
        access = await database_sync_to_async(self._access)(kwargs.get("slug"), user, kiosk)
        await self.accept()
        if access is None:
            await self.close(code=FORBIDDEN)
            return
        self.group, snapshot = access
        assert self.channel_layer is not None
        try:
            await self.channel_layer.group_add(self.group, self.channel_name)
        except Exception as error:  # Redis is down: no pushes could reach this screen
            log.warning("channel layer unavailable, refusing a screen for now: %s", error)
            self.group = None
            await self.close(code=TRY_AGAIN_LATER)
            return
        if self.kiosk is not None:  # hears of the link being rotated or revoked
            with contextlib.suppress(Exception):
                await self.channel_layer.group_add(kiosk_group(self.kiosk[0]), self.channel_name)
        await self._register()
        await self.send(text_data="".join(snapshot.values()))
        self.beat_task = asyncio.create_task(self._beat())

    def _access(self, slug: str | None, user: Any, kiosk: str) -> tuple[str, dict[str, str]] | None:
        """(group, snapshot fragments) if this socket may watch, else None."""
        now = timezone.now()
        authenticated = user is not None and user.is_authenticated and user.is_active
        if slug is None:  # the agent queue: logged-in agents only
            if not authenticated or not user.has_perm("tickets.claim_ticket"):
                return None
            viewer = Viewer.for_user(user)
            return queue_group(viewer), render_queue_fragments(viewer, now)
        board = Board.objects.filter(slug=slug).first()
        if board is None:
            return None
        if authenticated:
            viewer = Viewer.for_user(user)
        elif board.kiosk_matches(kiosk):
            viewer = Viewer()
            self.kiosk = (board.pk, kiosk)
        else:
            return None
        return board_group(board.pk, viewer), render_board_fragments(
            board, viewer, now, last_tick()
        )

    async def _register(self) -> None:
        """Tell the publisher this group has a live screen (refreshed with each heartbeat)."""
        assert self.group is not None
        try:
            await shared_redis().zadd(key("live"), {self.group: time.time()})
        except Exception as error:  # Redis down: the socket still gets its snapshot
            log.warning("could not register live group %s: %s", self.group, error)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(settings.HEARTBEAT_SECONDS)
            # The heartbeat travels through the channel layer like every push, so a screen
            # whose pushes cannot arrive (Redis down) stops hearing it and shows it is stale.
            assert self.channel_layer is not None
            try:
                await self.channel_layer.send(
                    self.channel_name, {"type": "heartbeat", "at": timezone.now().isoformat()}
                )
            except Exception as error:
                log.warning("heartbeat not sent (channel layer unavailable): %s", error)
            await self._register()

    async def disconnect(self, code: int) -> None:
        if self.beat_task is not None:
            self.beat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.beat_task
        if self.group is not None and self.channel_layer is not None:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.kiosk is not None and self.channel_layer is not None:
            with contextlib.suppress(Exception):
                await self.channel_layer.group_discard(
                    kiosk_group(self.kiosk[0]), self.channel_name
                )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Screens send nothing that matters; ignore it."""

    async def board_update(self, event: dict[str, Any]) -> None:
        await self.send(text_data=event["html"])

    async def kiosk_changed(self, event: dict[str, Any]) -> None:
        """The board's kiosk link was rotated or revoked: screens on the old link must go."""
        if self.kiosk is not None and kiosk_digest(self.kiosk[1]) != event["valid"]:
            await self.close(code=FORBIDDEN)

    async def heartbeat(self, event: dict[str, Any]) -> None:
        html = render_to_string("dashboard/fragments/heartbeat.html", {"at": event["at"]})
        await self.send(text_data=html)
