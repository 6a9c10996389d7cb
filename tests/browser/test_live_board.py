"""A wall board in a real browser: pushes change it in place, subjects stay text, it heals
after a server restart, and kiosk links work until revoked."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, Dialog, Page, Request, expect

from dashboard.actions import revoke_kiosk_link, rotate_kiosk_link
from dashboard.models import Board
from tests.browser.conftest import (
    WS_COUNTER,
    ServerProcess,
    in_thread,
    logged_in_context,
    push,
    wait_for_ws_messages,
)
from tests.factories import make_user
from tickets.actions import claim_ticket, record_event
from tickets.models import EventKind, Ticket, User

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

NOTHING_AT_RISK = "Nothing in warning or danger"
STALE = re.compile(r"\bstale\b")  # body class: the screen greys out


def human_reply(ticket: Ticket) -> None:
    """An agent answers the ticket (elsewhere in the product): its first response is met."""
    now = timezone.now()
    in_thread(record_event, ticket=ticket, kind=EventKind.REPLIED, at=now, now=now)


def respond_cell(page: Page, count: int, bucket: str = "danger") -> Any:
    """The "Respond" row's cell for a bucket, as its tooltip reads (e.g. "Respond: 1 danger")."""
    return page.locator(f'#board-metrics td[title="Respond: {count} {bucket}"]')


def open_tickets(page: Page) -> Any:
    return page.locator("#board-compliance .stat", has_text="Open tickets").locator(".value")


def open_board(context: BrowserContext, url: str = "/boards/wall/") -> tuple[Page, list[str]]:
    """Open the board; return the page and the list of its main-frame navigations."""
    page = context.new_page()
    navigations: list[str] = []
    page.on(
        "framenavigated",
        lambda frame: navigations.append(frame.url) if frame == page.main_frame else None,
    )
    response = page.goto(url)
    assert response is not None and response.status == 200
    return page, navigations


@pytest.fixture
def board() -> Board:
    return Board.objects.create(name="Wall of fame", slug="wall")


@pytest.fixture
def viewer() -> User:
    return make_user(username="walter")


def test_push_updates_the_board_in_place(
    board: Board,
    viewer: User,
    at_risk_ticket: Callable[..., Ticket],
    new_context: Callable[..., BrowserContext],
) -> None:
    ticket = at_risk_ticket("Checkout returns 502 for EU customers")
    page, navigations = open_board(new_context(viewer))

    expect(page.get_by_role("heading", name="Wall of fame")).to_be_visible()
    at_risk = page.locator("#board-at-risk")
    expect(at_risk).to_contain_text("Checkout returns 502 for EU customers")
    expect(at_risk).to_contain_text(f"#{ticket.pk}")
    expect(respond_cell(page, 1)).to_be_visible()
    expect(open_tickets(page)).to_have_text("1")
    wait_for_ws_messages(page, 1)  # connected and registered: pushes reach it now
    page.evaluate("window.__sameDocument = 'still here'")

    human_reply(ticket)
    assert push() >= 1

    expect(at_risk).to_contain_text(NOTHING_AT_RISK)
    expect(at_risk).not_to_contain_text("Checkout returns 502")
    expect(respond_cell(page, 0)).to_be_visible()
    expect(open_tickets(page)).to_have_text("1")  # answered, still open
    assert page.evaluate("window.__sameDocument") == "still here"
    assert len(navigations) == 1, f"the page navigated again: {navigations}"


def test_subjects_are_text_on_load_and_after_a_push(
    board: Board,
    make_agent: Callable[[str], User],
    at_risk_ticket: Callable[..., Ticket],
    new_context: Callable[..., BrowserContext],
) -> None:
    subject = "<img src=x onerror=alert(1)>"
    ticket = at_risk_ticket(subject, priority="high")
    context = new_context(make_agent("agatha"))
    dialogs: list[str] = []
    image_requests: list[str] = []

    def on_dialog(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    def on_request(request: Request) -> None:
        if request.url.endswith("/x"):
            image_requests.append(request.url)

    context.on("dialog", on_dialog)  # registered before any page loads
    context.on("request", on_request)
    board_page, _ = open_board(context)
    queue_page = context.new_page()
    queue_page.goto("/queue/")

    board_subject = board_page.locator("#board-at-risk .subject")
    queue_subject = queue_page.locator("#queue-list .subject")
    for subject_element in (board_subject, queue_subject):
        expect(subject_element).to_have_text(subject)
    expect(board_page.locator("#board-at-risk img:not(.qr)")).to_have_count(0)
    expect(queue_page.locator("#queue-list img")).to_have_count(0)
    wait_for_ws_messages(board_page, 1)
    wait_for_ws_messages(queue_page, 1)

    # A push re-renders both fragments: the new priority shows, the subject is still text.
    now = timezone.now()
    in_thread(
        record_event,
        ticket=ticket,
        kind=EventKind.PRIORITY_CHANGED,
        at=now,
        now=now,
        payload={"priority": "critical"},
    )
    assert push() >= 2
    expect(board_page.locator("#board-at-risk .prio")).to_have_text("Critical")
    expect(queue_page.locator("#queue-list .prio")).to_have_text("Critical")
    for subject_element in (board_subject, queue_subject):
        expect(subject_element).to_have_text(subject)
    expect(board_page.locator("#board-at-risk img:not(.qr)")).to_have_count(0)
    expect(queue_page.locator("#queue-list img")).to_have_count(0)
    assert dialogs == []
    assert image_requests == []


def test_board_recovers_by_itself_after_a_server_restart(
    board: Board,
    viewer: User,
    server: ServerProcess,
    at_risk_ticket: Callable[..., Ticket],
    new_context: Callable[..., BrowserContext],
) -> None:
    ticket = at_risk_ticket("Database replica lagging behind primary")
    page, navigations = open_board(new_context(viewer))
    at_risk = page.locator("#board-at-risk")
    conn = page.locator("#conn")
    expect(at_risk).to_contain_text("Database replica lagging")
    wait_for_ws_messages(page, 1)
    expect(conn).to_have_text("● Live")
    page.evaluate("window.__sameDocument = 'still here'")

    server.stop()
    expect(conn).to_contain_text("Reconnecting", timeout=15_000)
    expect(conn).to_contain_text("stale since")
    expect(page.locator("body")).to_have_class(STALE)

    human_reply(ticket)  # answered while the server is down
    server.start()  # same port

    expect(conn).to_have_text("● Live", timeout=30_000)
    expect(at_risk).to_contain_text(NOTHING_AT_RISK)  # the snapshot on reconnect
    expect(page.locator("body")).not_to_have_class(STALE)

    # Pushes reach the screen through the new server process too.
    in_thread(at_risk_ticket, "VPN tunnel to branch office down")
    assert push() >= 1
    expect(at_risk).to_contain_text("VPN tunnel to branch office down")
    assert page.evaluate("window.__sameDocument") == "still here"
    assert len(navigations) == 1, f"the page reloaded instead of reconnecting: {navigations}"


def test_kiosk_link_works_without_login_until_revoked(
    board: Board,
    at_risk_ticket: Callable[..., Ticket],
    new_context: Callable[..., BrowserContext],
) -> None:
    ticket = at_risk_ticket("Payment webhook signatures rejected")
    rotate_kiosk_link(board)
    kiosk_url = board.kiosk_url()
    context = new_context()  # a wall screen: nobody logged in

    page, _ = open_board(context, kiosk_url)
    expect(page.get_by_role("heading", name="Wall of fame")).to_be_visible()
    expect(page.locator("#board-at-risk")).to_contain_text("Payment webhook signatures rejected")
    wait_for_ws_messages(page, 1)  # the kiosk socket was accepted too
    human_reply(ticket)
    assert push() >= 1
    expect(page.locator("#board-at-risk")).to_contain_text(NOTHING_AT_RISK)

    # The secret stayed out of the address bar (and never reached the server in a URL).
    assert "kiosk" not in page.url
    # Another browser without the token is asked to log in.
    anonymous = new_context().new_page()
    anonymous.goto(board.get_absolute_url())
    expect(anonymous).to_have_url(re.compile(r"/login/\?next="))
    expect(anonymous.locator("#id_username")).to_be_visible()

    revoke_kiosk_link(board)
    refused = context.new_page()
    refused.goto(kiosk_url)
    expect(refused.locator("body")).to_contain_text("This kiosk link is not valid")
    expect(refused.locator("body")).not_to_contain_text("Wall of fame")


def test_board_shows_stale_while_redis_is_down_and_recovers_when_it_returns(
    board: Board,
    viewer: User,
    private_redis: Any,
    server_on_private_redis: ServerProcess,
    at_risk_ticket: Callable[..., Ticket],
    playwright_browser: Browser,
) -> None:
    ticket = at_risk_ticket("Backups failed overnight")
    context = logged_in_context(playwright_browser, server_on_private_redis, viewer)
    page, navigations = open_board(context)
    conn = page.locator("#conn")
    at_risk = page.locator("#board-at-risk")
    expect(at_risk).to_contain_text("Backups failed overnight")
    wait_for_ws_messages(page, 1)
    expect(conn).to_have_text("● Live")

    private_redis.stop()  # pushes and heartbeats travel through Redis: both stop
    expect(conn).to_contain_text("stale since", timeout=30_000)
    human_reply(ticket)  # the database keeps working: nothing is lost

    private_redis.start()  # same port, empty: screens re-register and resubscribe
    expect(conn).to_have_text("● Live", timeout=30_000)
    expect(at_risk).to_contain_text(NOTHING_AT_RISK)
    in_thread(at_risk_ticket, "Wi-Fi drops every few minutes in warehouse")
    assert push() >= 1
    expect(at_risk).to_contain_text("Wi-Fi drops every few minutes in warehouse")
    assert len(navigations) == 1, f"the page reloaded instead of reconnecting: {navigations}"
    context.close()


def test_the_save_list_shows_a_saveable_ticket_and_the_breached_ones_apart(
    board: Board,
    viewer: User,
    at_risk_ticket: Callable[..., Ticket],
    sla_partner: Any,
    new_context: Callable[..., BrowserContext],
) -> None:
    from datetime import timedelta

    from tests.factories import make_ticket

    now = timezone.now()
    for minutes in (540, 600, 660):  # every clock already breached (resolve in 8 h)
        make_ticket(
            now=now,
            partner=sla_partner,
            subject=f"Old breach {minutes}",
            opened_at=now - timedelta(minutes=minutes),
        )
    saveable = at_risk_ticket("Checkout returns 502 for EU customers")  # orange, 10 min left
    page, _ = open_board(new_context(viewer))
    save_list = page.locator("#board-at-risk .risk")
    expect(save_list).to_have_count(1)
    expect(save_list.first).to_contain_text("Checkout returns 502 for EU customers")
    expect(save_list.first).to_have_class(re.compile(r"\bb-orange\b"))
    expect(save_list.first.locator(".countdown")).to_have_text(re.compile(r"^\d+:\d\d$"))
    expect(save_list.first.locator(".unclaimed")).to_be_visible()
    expect(save_list.first.locator(".code")).to_have_text(f"#{saveable.pk}")
    strip = page.locator("#board-breached")
    expect(strip.locator(".big")).to_have_text("3")
    expect(strip).to_contain_text("3 unclaimed")
    # Oldest first.
    expect(strip.locator(".late-list li").first).to_contain_text("Old breach 660")


def test_a_claim_shows_on_a_4k_wall_with_the_claimers_name_in_full(
    board: Board,
    make_agent: Callable[[str], User],
    at_risk_ticket: Callable[..., Ticket],
    playwright_browser: Browser,
    server: ServerProcess,
) -> None:
    ticket = at_risk_ticket("Payment webhook signatures rejected by the gateway of the bank")
    agent = make_agent("maximiliane")  # a long name
    wall = playwright_browser.new_context(
        base_url=server.base_url, viewport={"width": 3840, "height": 2160}
    )
    try:
        wall.add_init_script(WS_COUNTER)
        token = rotate_kiosk_link(board)
        page = wall.new_page()
        page.goto(f"/boards/wall/?kiosk={token}")
        wait_for_ws_messages(page, 1)
        row = page.locator("#board-at-risk .risk").first
        expect(row.locator(".unclaimed")).to_be_visible()
        in_thread(claim_ticket, ticket=ticket, user=agent, now=timezone.now())
        assert push() >= 1
        name = row.locator(".claimed")
        expect(name).to_have_text("maximiliane")
        expect(name).to_be_in_viewport()
        # Shown in full: nothing of the name is cut off (the subject gives way instead).
        assert name.evaluate("el => el.scrollWidth <= el.clientWidth")
        box = name.bounding_box()
        assert box is not None and box["height"] >= 40  # legible across a room at 4K
        expect(row.locator("img.qr")).to_be_visible()
    finally:
        wall.close()
