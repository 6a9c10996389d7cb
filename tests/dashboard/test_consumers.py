"""Live screens through a real Redis channel layer: auth, scope, snapshot, pushes, escaping."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async as sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from dashboard import publish as publish_module
from dashboard.actions import revoke_kiosk_link, rotate_kiosk_link
from dashboard.publish import publish
from dashboard.routing import websocket_urlpatterns
from tests.factories import make_member, make_ticket, make_user
from tickets.actions import record_event
from tickets.models import EventKind, Ticket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


@pytest_asyncio.fixture(autouse=True)
async def close_thread_connections() -> Any:
    """Close the DB connection of the thread that sync_to_async code ran in (pytest-django
    only closes the main thread's, and the test database must be dropped at the end)."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


def application(user: Any = None) -> Any:
    """The websocket router with a fixed user in scope (what AuthMiddlewareStack provides)."""
    from django.contrib.auth.models import AnonymousUser

    router = URLRouter(websocket_urlpatterns)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        scope = {**scope, "user": user or AnonymousUser()}
        return await router(scope, receive, send)

    return app


async def drain(screen: WebsocketCommunicator) -> str:
    """Everything the screen receives until it has been quiet for a second."""
    messages = []
    while not await screen.receive_nothing(timeout=1):
        messages.append(await screen.receive_from(timeout=5))
    return "".join(messages)


async def connect(path: str, user: Any = None) -> tuple[WebsocketCommunicator, bool]:
    communicator = WebsocketCommunicator(application(user), path)
    connected, _ = await communicator.connect(timeout=10)
    return communicator, connected


async def test_a_staff_screen_gets_a_snapshot_of_the_board(org: dict, live_redis: Any) -> None:
    staff = await sync_to_async(make_user)(is_staff=True)
    screen, connected = await connect("/ws/boards/everything/", staff)
    assert connected
    snapshot = await screen.receive_from(timeout=10)
    assert 'id="board-metrics"' in snapshot
    assert "North printer" in snapshot and "South VPN down" in snapshot
    await screen.disconnect()


async def test_an_anonymous_screen_without_a_kiosk_link_is_refused(
    org: dict, live_redis: Any
) -> None:
    screen, connected = await connect("/ws/boards/everything/")
    assert connected  # accepted only to close with a reason the page understands
    closed = await screen.receive_output(timeout=10)
    assert closed == {"type": "websocket.close", "code": 4403}


async def test_a_kiosk_link_works_until_it_is_revoked(org: dict, live_redis: Any) -> None:
    board = org["board"]
    token = await sync_to_async(rotate_kiosk_link)(board)
    screen, _ = await connect(f"/ws/boards/everything/?kiosk={token}")
    assert "North printer" in await screen.receive_from(timeout=10)
    await screen.disconnect()
    await sync_to_async(revoke_kiosk_link)(board)
    screen, _ = await connect(f"/ws/boards/everything/?kiosk={token}")
    assert (await screen.receive_output(timeout=10))["code"] == 4403


async def test_a_partner_users_screen_never_receives_another_partners_ticket(
    org: dict, live_redis: Any
) -> None:
    nina = await sync_to_async(make_user)(partner=org["north"])
    staff = await sync_to_async(make_user)(is_staff=True)
    partner_screen, _ = await connect("/ws/boards/everything/", nina)
    staff_screen, _ = await connect("/ws/boards/everything/", staff)
    snapshot = await partner_screen.receive_from(timeout=10)
    await staff_screen.receive_from(timeout=10)
    assert "North printer" in snapshot
    assert "South VPN down" not in snapshot
    # Another South ticket breaches; the staff screen hears of it, the partner screen doesn't.
    now = timezone.now()
    await sync_to_async(make_ticket)(
        now=now, opened_at=now - timedelta(hours=2), partner=org["south"], subject="South secret"
    )
    await sync_to_async(publish)(now=now)
    assert "South secret" in await drain(staff_screen)
    assert "South" not in await drain(partner_screen)
    await partner_screen.disconnect()
    await staff_screen.disconnect()


async def test_a_change_is_pushed_as_the_changed_fragments_only(org: dict, live_redis: Any) -> None:
    staff = await sync_to_async(make_user)(is_staff=True)
    screen, _ = await connect("/ws/boards/everything/", staff)
    await screen.receive_from(timeout=10)
    now = timezone.now()
    await sync_to_async(publish)(now=now)  # the first publish for a group sends everything
    await drain(screen)
    ticket = org["n"]
    await sync_to_async(record_event)(ticket=ticket, kind=EventKind.REPLIED, at=now, now=now)
    await sync_to_async(publish)(now=now)
    pushed = await drain(screen)
    assert pushed.count("<section") == pushed.count('id="board-') - pushed.count('id="board-h')
    # North's first response is met (late): it leaves the breached strip; the save list,
    # which it was never in, is not sent again.
    assert 'id="board-breached"' in pushed and "North printer" not in pushed
    assert 'id="board-at-risk"' not in pushed
    assert 'id="board-metrics"' in pushed
    assert 'id="board-priorities"' in pushed
    await screen.disconnect()


async def test_user_text_is_escaped_in_snapshots_and_pushes(org: dict, live_redis: Any) -> None:
    staff = await sync_to_async(make_user)(is_staff=True)
    screen, _ = await connect("/ws/boards/everything/", staff)
    await screen.receive_from(timeout=10)
    now = timezone.now()
    await sync_to_async(make_ticket)(
        now=now,
        opened_at=now - timedelta(hours=3),
        partner=org["north"],
        subject="<img src=x onerror=alert(1)>",
    )
    await sync_to_async(publish)(now=now)
    pushed = await drain(screen)
    assert "&lt;img src=x onerror=alert(1)&gt;" in pushed
    assert "<img" not in pushed
    await screen.disconnect()
    screen, _ = await connect("/ws/boards/everything/", staff)
    snapshot = await screen.receive_from(timeout=10)
    assert "<img" not in snapshot and "&lt;img src=x" in snapshot
    await screen.disconnect()


async def test_the_queue_socket_is_for_agents_only(org: dict, live_redis: Any) -> None:
    viewer = await sync_to_async(make_user)()
    screen, _ = await connect("/ws/queue/", viewer)
    assert (await screen.receive_output(timeout=10))["code"] == 4403
    agent = await sync_to_async(make_member)("Agents", partner=org["south"])
    screen, _ = await connect("/ws/queue/", agent)
    hello = await screen.receive_from(timeout=10)
    assert 'id="queue-changed"' in hello  # its list is the page's: refresh it after a reconnect
    # A change to each partner's ticket: the south agent's screen gets the south row only.
    now = timezone.now()
    for ticket in (org["n"], org["s"]):
        await sync_to_async(record_event)(
            ticket=ticket, kind=EventKind.NOTE, at=now, now=now, payload={"text": "x"}
        )
    await sync_to_async(publish)(now=now)
    pushed = await drain(screen)
    assert f'id="qrow-{org["s"].pk}"' in pushed and "South VPN down" in pushed
    assert "North printer" not in pushed and 'id="queue-changed"' in pushed
    await screen.disconnect()


async def test_an_unknown_board_is_refused(org: dict, live_redis: Any) -> None:
    staff = await sync_to_async(make_user)(is_staff=True)
    screen, _ = await connect("/ws/boards/nope/", staff)
    assert (await screen.receive_output(timeout=10))["code"] == 4403


async def test_revoking_a_kiosk_link_cuts_off_screens_already_open(
    org: dict, live_redis: Any, settings: Any
) -> None:
    settings.HEARTBEAT_SECONDS = 0.2
    board = org["board"]
    token = await sync_to_async(rotate_kiosk_link)(board)
    screen, _ = await connect(f"/ws/boards/everything/?kiosk={token}")
    await screen.receive_from(timeout=10)
    assert 'id="board-heartbeat"' in await screen.receive_from(timeout=10)  # still welcome
    await sync_to_async(revoke_kiosk_link)(board)
    while True:
        output = await screen.receive_output(timeout=10)
        if output["type"] == "websocket.close":
            break
    assert output["code"] == 4403


async def heartbeat_at(screen: WebsocketCommunicator) -> str:
    """The ``data-at`` of the next heartbeat the screen receives (pushes are skipped)."""
    while True:
        message = await screen.receive_from(timeout=10)
        if 'id="board-heartbeat"' in message:
            return message.split('data-at="', 1)[1].split('"', 1)[0]


async def test_one_heartbeat_per_group_reaches_every_screen_of_it(
    org: dict, live_redis: Any, settings: Any
) -> None:
    settings.HEARTBEAT_SECONDS = 0.2
    staff = await sync_to_async(make_user)(is_staff=True)
    screens = [(await connect("/ws/boards/everything/", staff))[0] for _ in range(3)]
    for screen in screens:
        await screen.receive_from(timeout=10)  # the snapshot
    # The same message (same instant) reaches all three: sent once to the group, not once
    # per screen. Later heartbeats are shared too.
    first = await heartbeat_at(screens[-1])  # the last to join: the others had joined too
    for screen in screens[:-1]:
        while (at := await heartbeat_at(screen)) < first:
            pass
        assert at == first
    # The heartbeat also keeps the group registered for the publisher (one ZADD per group).
    group = f"board-{org['board'].pk}-all"
    live_redis.zrem(publish_module.key("live"), group)
    await heartbeat_at(screens[0])
    assert live_redis.zscore(publish_module.key("live"), group) is not None
    for screen in screens:
        await screen.disconnect()


async def test_a_connecting_screen_gets_the_last_pushed_state_without_rendering(
    org: dict, live_redis: Any
) -> None:
    staff = await sync_to_async(make_user)(is_staff=True)
    first, _ = await connect("/ws/boards/everything/", staff)
    await first.receive_from(timeout=10)
    await sync_to_async(publish)(now=timezone.now())  # what the screens were sent is kept
    # A write that bypasses the actions is not counted as a change: the kept state is current
    # as far as slaboard knows, so the next screen gets it instead of a fresh render.
    await sync_to_async(Ticket.objects.filter(pk=org["n"].pk).update)(subject="Quiet rename")
    second, _ = await connect("/ws/boards/everything/", staff)
    snapshot = await second.receive_from(timeout=10)
    assert "North printer" in snapshot and "Quiet rename" not in snapshot
    # A counted change makes the kept state outdated: the next screen gets a fresh render.
    now = timezone.now()
    await sync_to_async(record_event)(ticket=org["s"], kind=EventKind.NOTE, at=now, now=now)
    third, _ = await connect("/ws/boards/everything/", staff)
    assert "Quiet rename" in await third.receive_from(timeout=10)
    for screen in (first, second, third):
        await screen.disconnect()


async def test_a_partner_screen_never_gets_another_scopes_kept_snapshot(
    org: dict, live_redis: Any
) -> None:
    nina = await sync_to_async(make_user)(partner=org["north"])
    sam = await sync_to_async(make_user)(partner=org["south"])
    staff = await sync_to_async(make_user)(is_staff=True)
    screens = []
    for user in (staff, sam):  # the groups that see South tickets are live and kept
        screen, _ = await connect("/ws/boards/everything/", user)
        await screen.receive_from(timeout=10)
        screens.append(screen)
    await sync_to_async(publish)(now=timezone.now())
    north_first, _ = await connect("/ws/boards/everything/", nina)
    snapshot = await north_first.receive_from(timeout=10)
    assert "North printer" in snapshot and "South" not in snapshot
    await sync_to_async(publish)(now=timezone.now())  # now North's own group is kept too
    north_second, _ = await connect("/ws/boards/everything/", nina)
    snapshot = await north_second.receive_from(timeout=10)
    assert "North printer" in snapshot and "South" not in snapshot
    kept = live_redis.hgetall(publish_module.key(f"snapshot:board-{org['board'].pk}-all"))
    assert b"South VPN down" in b"".join(kept.values())  # it was there to be leaked
    for screen in (*screens, north_first, north_second):
        await screen.disconnect()


async def test_a_ticket_page_is_live_and_scoped(org: dict, live_redis: Any) -> None:
    stranger = await sync_to_async(make_member)("Agents", partner=org["south"])
    screen, _ = await connect(f"/ws/tickets/{org['n'].pk}/", stranger)
    assert (await screen.receive_output(timeout=10))["code"] == 4403
    nina = await sync_to_async(make_member)("Agents", partner=org["north"])
    screen, _ = await connect(f"/ws/tickets/{org['n'].pk}/", nina)
    first = await screen.receive_from(timeout=10)
    assert 'id="ticket-clocks"' in first and "North printer" in first
    now = timezone.now()
    await sync_to_async(record_event)(
        ticket=org["n"], kind=EventKind.NOTE, at=now, now=now, payload={"text": "Toner <b>"}
    )
    await sync_to_async(publish)(now=now)
    pushed = await drain(screen)
    assert 'id="ticket-timeline"' in pushed and "Toner &lt;b&gt;" in pushed
    await screen.disconnect()
