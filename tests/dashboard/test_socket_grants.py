"""Sockets opened before a change of access: logged out, deactivated, moved to another
partner, permission lost, session expired — each closes within one heartbeat (real Redis
channel layer, real sessions through channels' AuthMiddlewareStack)."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async as sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from dashboard.routing import websocket_urlpatterns
from tests.factories import make_user
from tickets.models import User

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest_asyncio.fixture(autouse=True)
async def close_thread_connections() -> Any:
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


@pytest.fixture(autouse=True)
def quick_heartbeats(settings: Any) -> None:
    settings.HEARTBEAT_SECONDS = 0.2


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_agent(**fields: Any) -> User:
    user = make_user(**fields)
    user.user_permissions.add(Permission.objects.get(codename="claim_ticket"))
    return user


async def screen(path: str, client: Client) -> WebsocketCommunicator:
    """A screen of the browser that ``client`` is: its session cookie, the real auth stack."""
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    app = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
    communicator = WebsocketCommunicator(app, path, headers=[(b"cookie", cookie)])
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    first = await communicator.receive_output(timeout=10)
    assert first["type"] == "websocket.send", first  # the snapshot: access was granted
    return communicator


async def close_code(communicator: WebsocketCommunicator, within: float = 10) -> int | None:
    """The code the server closes the screen with, waiting ``within`` seconds at most (pushes
    and heartbeats skipped); None if it stays open that long."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            output = await communicator.receive_output(timeout=left)
        except TimeoutError:
            return None
        if output["type"] == "websocket.close":
            return int(output["code"])
    return None


async def still_hears(communicator: WebsocketCommunicator) -> bool:
    """The screen receives its next heartbeat (it was not closed)."""
    deadline = time.monotonic() + 10
    while (left := deadline - time.monotonic()) > 0:
        output = await communicator.receive_output(timeout=left)
        if output["type"] == "websocket.close":
            return False
        if 'id="board-heartbeat"' in output.get("text", ""):
            return True
    return False


async def test_logging_out_closes_the_sockets_that_session_opened(
    org: dict, live_redis: Any
) -> None:
    nina = await sync_to_async(make_agent)(username="nina", partner=org["north"])
    browser = await sync_to_async(logged_in)(nina)
    other_browser = await sync_to_async(logged_in)(nina)
    board, queue = (
        await screen("/ws/boards/everything/", browser),
        await screen("/ws/queue/", browser),
    )
    elsewhere = await screen("/ws/boards/everything/", other_browser)
    await sync_to_async(browser.logout)()
    assert await close_code(board) == 4403
    assert await close_code(queue) == 4403
    assert await still_hears(elsewhere)  # her other browser is still logged in
    await elsewhere.disconnect()


async def test_deactivating_a_user_closes_their_open_sockets(org: dict, live_redis: Any) -> None:
    nina = await sync_to_async(make_agent)(username="nina", partner=org["north"])
    staff = await sync_to_async(make_user)(username="alice", is_staff=True)
    board = await screen("/ws/boards/everything/", await sync_to_async(logged_in)(nina))
    bystander = await screen("/ws/boards/everything/", await sync_to_async(logged_in)(staff))
    await sync_to_async(User.objects.filter(pk=nina.pk).update)(is_active=False)
    assert await close_code(board) == 4403
    assert await still_hears(bystander)
    await bystander.disconnect()


async def test_a_user_moved_to_another_partner_stops_hearing_the_old_one(
    org: dict, live_redis: Any
) -> None:
    nina = await sync_to_async(make_agent)(username="nina", partner=org["north"])
    browser = await sync_to_async(logged_in)(nina)
    board, queue = (
        await screen("/ws/boards/everything/", browser),
        await screen("/ws/queue/", browser),
    )
    nina.partner = org["south"]
    await sync_to_async(nina.save)()
    assert await close_code(board) == 4403
    assert await close_code(queue) == 4403
    # Reconnecting gives the new partner's scope.
    again = await screen("/ws/boards/everything/", browser)
    await again.disconnect()


async def test_losing_the_queue_permission_closes_the_queue_socket_only(
    org: dict, live_redis: Any
) -> None:
    nina = await sync_to_async(make_agent)(username="nina", partner=org["north"])
    browser = await sync_to_async(logged_in)(nina)
    board, queue = (
        await screen("/ws/boards/everything/", browser),
        await screen("/ws/queue/", browser),
    )
    await sync_to_async(nina.user_permissions.clear)()
    assert await close_code(queue) == 4403
    assert await still_hears(board)  # watching boards needs no permission
    await board.disconnect()


async def test_an_expired_session_closes_its_sockets(org: dict, live_redis: Any) -> None:
    nina = await sync_to_async(make_user)(username="nina", partner=org["north"])
    browser = await sync_to_async(logged_in)(nina)
    board = await screen("/ws/boards/everything/", browser)
    expired = timezone.now() - timedelta(seconds=1)
    key = browser.cookies["sessionid"].value
    await sync_to_async(Session.objects.filter(session_key=key).update)(expire_date=expired)
    assert await close_code(board) == 4403


async def test_a_password_change_elsewhere_closes_the_sockets(org: dict, live_redis: Any) -> None:
    nina = await sync_to_async(make_user)(username="nina", partner=org["north"])
    board = await screen("/ws/boards/everything/", await sync_to_async(logged_in)(nina))
    nina.set_password("a brand new passphrase")
    await sync_to_async(nina.save)()
    assert await close_code(board) == 4403


async def test_a_board_made_private_to_another_partner_closes_the_screens_it_excludes(
    org: dict, live_redis: Any
) -> None:
    nina = await sync_to_async(make_user)(username="nina", partner=org["north"])
    staff = await sync_to_async(make_user)(username="alice", is_staff=True)
    hers = await screen("/ws/boards/everything/", await sync_to_async(logged_in)(nina))
    theirs = await screen("/ws/boards/everything/", await sync_to_async(logged_in)(staff))
    await sync_to_async(org["board"].partners.add)(org["south"])
    assert await close_code(hers) == 4403
    assert await still_hears(theirs)
    await theirs.disconnect()


async def test_another_partners_private_board_refuses_the_socket(
    org: dict, live_redis: Any
) -> None:
    await sync_to_async(org["board"].partners.add)(org["south"])
    nina = await sync_to_async(make_user)(username="nina", partner=org["north"])
    cookie = (await sync_to_async(logged_in)(nina)).cookies["sessionid"].value
    app = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
    communicator = WebsocketCommunicator(
        app, "/ws/boards/everything/", headers=[(b"cookie", f"sessionid={cookie}".encode())]
    )
    await communicator.connect(timeout=10)
    assert await close_code(communicator) == 4403
