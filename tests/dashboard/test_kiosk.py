"""Kiosk links keep their secret out of every log: it travels after "#" and lives in an
HttpOnly cookie; the page and its websocket authenticate with the cookie."""

from __future__ import annotations

from typing import Any

import pytest
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async as sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from dashboard.access import kiosk_cookie
from dashboard.actions import revoke_kiosk_link, rotate_kiosk_link
from dashboard.routing import websocket_urlpatterns
from tests.dashboard.test_socket_grants import close_code


def test_a_kiosk_link_carries_its_secret_after_the_hash(org: dict) -> None:
    token = rotate_kiosk_link(org["board"])
    assert org["board"].kiosk_url() == f"/boards/everything/#kiosk={token}"


def test_without_login_the_board_answers_a_page_that_reads_the_fragment(org: dict) -> None:
    rotate_kiosk_link(org["board"])
    page = Client().get("/boards/everything/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "slaboard/kiosk.js" in html and 'action="/boards/everything/kiosk"' in html
    assert "North printer" not in html and org["board"].kiosk_token not in html


def test_the_secret_is_exchanged_for_an_httponly_cookie_then_the_board_opens(org: dict) -> None:
    token = rotate_kiosk_link(org["board"])
    screen = Client(enforce_csrf_checks=True)
    form = screen.get("/boards/everything/")
    csrf = form.context["csrf_token"]
    exchanged = screen.post(
        "/boards/everything/kiosk", {"token": token, "csrfmiddlewaretoken": csrf}
    )
    assert exchanged.status_code == 303 and exchanged["Location"] == "/boards/everything/"
    cookie = exchanged.cookies[kiosk_cookie(org["board"].pk)]
    assert cookie.value == token and cookie["httponly"] and cookie["samesite"] == "Lax"
    board = screen.get("/boards/everything/")
    html = board.content.decode()
    assert board.status_code == 200 and "North printer" in html and "South VPN down" in html
    assert token not in html and 'ws-connect="/ws/boards/everything/"' in html


def test_a_wrong_secret_gets_no_cookie(org: dict) -> None:
    rotate_kiosk_link(org["board"])
    refused = Client().post("/boards/everything/kiosk", {"token": "guess"})
    assert refused.status_code == 403
    assert kiosk_cookie(org["board"].pk) not in refused.cookies
    assert Client().post("/boards/nope/kiosk", {"token": "guess"}).status_code == 403


def test_an_old_style_link_is_exchanged_once_for_the_cookie(org: dict) -> None:
    token = rotate_kiosk_link(org["board"])
    screen = Client()
    response = screen.get(f"/boards/everything/?kiosk={token}")
    assert response.status_code == 303 and response["Location"] == "/boards/everything/"
    assert "North printer" in screen.get("/boards/everything/").content.decode()


def test_a_revoked_secret_in_the_cookie_says_so_and_shows_nothing(org: dict) -> None:
    token = rotate_kiosk_link(org["board"])
    screen = Client()
    screen.get(f"/boards/everything/?kiosk={token}")
    revoke_kiosk_link(org["board"])
    html = screen.get("/boards/everything/").content.decode()
    assert "This kiosk link is not valid" in html and "North printer" not in html


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_the_kiosk_socket_authenticates_with_the_cookie_until_revoked(
    org: dict, live_redis: Any
) -> None:
    board = org["board"]
    token = await sync_to_async(rotate_kiosk_link)(board)
    cookie = f"{kiosk_cookie(board.pk)}={token}".encode()
    app = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
    screen = WebsocketCommunicator(app, "/ws/boards/everything/", headers=[(b"cookie", cookie)])
    assert (await screen.connect(timeout=10))[0]
    assert "North printer" in await screen.receive_from(timeout=10)
    await sync_to_async(revoke_kiosk_link)(board)
    assert await close_code(screen) == 4403
    from django.db import connections

    await sync_to_async(connections.close_all)()
