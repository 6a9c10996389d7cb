"""The agent queue in real browsers: two agents race for one ticket; the claimer works it."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django.utils import timezone
from playwright.sync_api import BrowserContext, Page, expect

from dashboard.models import Board
from tests.browser.conftest import in_thread, push, wait_for_ws_messages
from tickets.actions import claim_ticket, record_event
from tickets.models import EventKind, Ticket, TicketEvent, User

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

OUTCOME = re.compile(r"is yours|claimed by")
MINE = re.compile(r"\bmine\b")


def open_queue(context: BrowserContext) -> Page:
    page = context.new_page()
    response = page.goto("/queue/")
    assert response is not None and response.status == 200
    expect(page.get_by_role("heading", name="Queue")).to_be_visible()
    wait_for_ws_messages(page, 1)  # connected: pushes reach this screen from now on
    return page


def test_two_agents_grab_the_same_ticket_one_wins(
    make_agent: Callable[[str], User],
    at_risk_ticket: Callable[..., Ticket],
    new_context: Callable[..., BrowserContext],
) -> None:
    ticket = at_risk_ticket("VPN tunnel to branch office down")
    agents = {name: make_agent(name) for name in ("alice", "bob")}
    pages = {name: open_queue(new_context(user)) for name, user in agents.items()}
    row_selector = f'tr[data-ticket="{ticket.pk}"]'
    for page in pages.values():
        row = page.locator(row_selector)
        expect(row.locator("td.claim")).to_have_text("unclaimed")
        expect(row.get_by_role("button", name="Grab")).to_be_visible()

    # Both click "Grab" at the same instant (the pages share the browser's clock).
    click_at = pages["alice"].evaluate("Date.now() + 300")
    for page in pages.values():
        page.evaluate(
            """([selector, at]) => setTimeout(
                () => document.querySelector(selector + " button.grab").click(),
                at - Date.now())""",
            [row_selector, click_at],
        )
    toasts = {}
    for name, page in pages.items():
        expect(page.locator("#toast")).to_have_text(OUTCOME)
        toasts[name] = page.locator("#toast").inner_text()
    winners = [name for name, text in toasts.items() if "is yours" in text]
    assert len(winners) == 1, toasts
    winner = winners[0]
    (loser,) = set(agents) - {winner}
    assert toasts[winner] == f"{ticket.external_id} is yours."
    assert toasts[loser] == f"Too late: {ticket.external_id} is claimed by {winner}."

    ticket.refresh_from_db()
    assert ticket.assignee == agents[winner]
    claims = TicketEvent.objects.filter(ticket=ticket, kind=EventKind.CLAIMED)
    assert [event.user_id for event in claims] == [agents[winner].pk]

    # The next push shows both agents who has it; only the holder may release it.
    assert push() >= 1
    for page in pages.values():
        row = page.locator(row_selector)
        expect(row.locator("td.claim")).to_have_text(winner)
        expect(row.get_by_role("button", name="Grab")).to_have_count(0)
    expect(pages[winner].locator(row_selector)).to_have_class(MINE)
    expect(
        pages[winner].locator(row_selector).get_by_role("button", name="Release")
    ).to_be_visible()
    expect(pages[loser].locator(row_selector)).not_to_have_class(MINE)
    expect(pages[loser].locator(row_selector).get_by_role("button", name="Release")).to_be_hidden()


def test_claimer_answers_on_the_ticket_page_and_screens_update(
    make_agent: Callable[[str], User],
    at_risk_ticket: Callable[..., Ticket],
    new_context: Callable[..., BrowserContext],
) -> None:
    ticket = at_risk_ticket("Login page times out on mobile")  # source "slaboard"
    assert ticket.source == "slaboard"
    Board.objects.create(name="Wall", slug="wall")
    context = new_context(make_agent("alice"))
    queue = open_queue(context)
    board = context.new_page()
    board.goto("/boards/wall/")
    wait_for_ws_messages(board, 1)

    row = queue.locator(f'tr[data-ticket="{ticket.pk}"]')
    expect(row.locator("td.sla")).to_contain_text("Respond")
    expect(row.get_by_role("link", name="Reply…")).to_be_hidden()  # not yours yet
    expect(board.locator("#board-at-risk")).to_contain_text("Login page times out on mobile")
    expect(board.locator("#board-at-risk .unclaimed")).to_be_visible()

    row.get_by_role("button", name="Grab").click()
    expect(queue.locator("#toast")).to_have_text(f"{ticket.external_id} is yours.")
    assert push() >= 2  # the queue and the board
    expect(row).to_have_class(MINE)
    expect(row.locator("td.claim")).to_have_text("alice")
    expect(board.locator("#board-at-risk .claimed")).to_have_text("alice")

    row.get_by_role("link", name="Reply…").click()  # the ticket page, at its reply box
    page = queue
    expect(page.get_by_role("heading", name=re.compile("Login page times out"))).to_be_visible()
    wait_for_ws_messages(page, 1)
    page.get_by_label("Reply to the customer").fill("We are rolling back the release.")
    page.get_by_role("button", name="Send reply").click()
    expect(page.locator("#toast")).to_have_text(f"Reply recorded on {ticket.external_id}.")
    expect(page.get_by_label("Reply to the customer")).to_have_value("")
    ticket.refresh_from_db()
    assert ticket.first_human_reply_at is not None
    replies = TicketEvent.objects.filter(ticket=ticket, kind=EventKind.REPLIED)
    assert [(e.user_id, e.actor_kind, e.payload.get("text")) for e in replies] == [
        (ticket.assignee_id, "human", "We are rolling back the release.")
    ]

    assert push() >= 2  # the ticket page and the board
    # The page is live: the reply is in its timeline, the first response met.
    expect(page.locator("#ticket-timeline")).to_contain_text("We are rolling back the release.")
    expect(page.locator("#ticket-clocks")).to_contain_text("Met at")
    expect(board.locator("#board-at-risk")).to_contain_text("Nothing in warning or danger")
    expect(board.locator('#board-metrics td[title="Respond: 0 danger"]')).to_be_visible()


def test_the_queue_keeps_focus_and_an_open_menu_through_a_push(
    make_agent: Callable[[str], User],
    at_risk_ticket: Callable[..., Ticket],
    new_context: Callable[..., BrowserContext],
) -> None:
    mine = at_risk_ticket("Printer fleet offline on floor 3")
    other = at_risk_ticket("Backups failed overnight")
    alice = make_agent("alice")
    in_thread(claim_ticket, ticket=mine, user=alice, now=timezone.now())
    page = open_queue(new_context(alice))
    mine_row = page.locator(f"#qrow-{mine.pk}")
    other_row = page.locator(f"#qrow-{other.pk}")
    status = mine_row.get_by_label(f"Set status of {mine.external_id}")
    status.focus()  # the agent is about to pick a status: the menu is open
    page.evaluate("document.activeElement.__held = 'the same element'")

    # Both tickets change elsewhere; a push brings both rows.
    now = timezone.now()
    for ticket in (mine, other):
        in_thread(
            record_event,
            ticket=ticket,
            kind=EventKind.PRIORITY_CHANGED,
            at=now,
            now=now,
            payload={"priority": "critical"},
        )
    assert push() >= 1
    expect(other_row.locator(".prio")).to_have_text("Critical")  # updated in place
    # The row in use waits: same element, still focused, nothing swapped under the agent.
    assert page.evaluate("document.activeElement.__held") == "the same element"
    expect(mine_row.locator(".prio")).to_have_text("High")
    expect(page.locator("#queue-list tbody tr")).to_have_count(2)

    page.locator("h1").click()  # the agent looks away: the held update lands
    expect(mine_row.locator(".prio")).to_have_text("Critical")
