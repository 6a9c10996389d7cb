"""Pages and queue actions: login, scope, escaping, permissions, CSRF, the claim race."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.utils import timezone

from dashboard.actions import rotate_kiosk_link
from tests.factories import make_ticket, make_user
from tickets.actions import ClaimConflict, claim_ticket
from tickets.models import EventKind, Ticket, User

pytestmark = pytest.mark.django_db


def agent(**fields: Any) -> User:
    user = make_user(**fields)
    user.user_permissions.add(Permission.objects.get(codename="claim_ticket"))
    return User.objects.get(pk=user.pk)  # fresh permission cache


def client_for(user: User, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def test_a_board_needs_a_login_or_a_kiosk_link(org: dict) -> None:
    response = Client().get("/boards/everything/")  # the page that reads #kiosk= or logs in
    assert response.status_code == 200 and "North printer" not in response.content.decode()
    assert 'data-login="/admin/login/?next=/boards/everything/"' in response.content.decode()
    assert Client().get("/boards/everything/?kiosk=wrong").status_code == 403
    token = rotate_kiosk_link(org["board"])
    page = Client().get(f"/boards/everything/?kiosk={token}", follow=True)
    assert page.status_code == 200
    assert "North printer" in page.content.decode()
    assert page["Referrer-Policy"] == "no-referrer"


def test_the_board_shows_counts_and_the_at_risk_queue(org: dict) -> None:
    page = client_for(make_user(is_staff=True)).get("/boards/everything/").content.decode()
    assert "North printer" in page and "South VPN down" in page
    assert 'id="board-metrics"' in page and 'ws-connect="/ws/boards/everything/"' in page
    assert "unclaimed" in page


def test_a_partner_user_sees_only_their_partners_tickets_on_boards_and_queue(org: dict) -> None:
    nina = agent(partner=org["north"])
    client = client_for(nina)
    board = client.get("/boards/everything/").content.decode()
    queue = client.get("/queue/").content.decode()
    for page in (board, queue):
        assert "North printer" in page
        assert "South VPN down" not in page


def test_a_partner_user_cannot_grab_another_partners_ticket(org: dict) -> None:
    nina = agent(partner=org["north"])
    response = client_for(nina).post(f"/tickets/{org['s'].pk}/grab")
    assert response.status_code == 404
    assert Ticket.objects.get(pk=org["s"].pk).assignee is None


def test_user_text_is_escaped_on_the_page(org: dict) -> None:
    now = timezone.now()
    make_ticket(
        now=now,
        opened_at=now - timedelta(hours=2),
        partner=org["north"],
        subject="<img src=x onerror=alert(1)>",
    )
    page = client_for(agent()).get("/queue/").content.decode()
    assert "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_the_queue_is_for_agents(org: dict) -> None:
    assert client_for(make_user()).get("/queue/").status_code == 403
    assert client_for(agent()).get("/queue/").status_code == 200


def test_grab_then_release(org: dict) -> None:
    alice = agent(username="alice")
    client = client_for(alice)
    ticket = org["n"]
    response = client.post(f"/tickets/{ticket.pk}/grab")
    assert response.status_code == 200 and "is yours" in response.content.decode()
    ticket.refresh_from_db()
    assert ticket.assignee == alice
    assert ticket.events.filter(kind=EventKind.CLAIMED, user=alice).count() == 1
    bob = agent(username="bob")
    taken = client_for(bob).post(f"/tickets/{ticket.pk}/grab")
    assert taken.status_code == 409 and "claimed by alice" in taken.content.decode()
    refused = client_for(bob).post(f"/tickets/{ticket.pk}/release")
    assert refused.status_code == 403 and "Only alice can release" in refused.content.decode()
    assert client.post(f"/tickets/{ticket.pk}/release").status_code == 200
    ticket.refresh_from_db()
    assert ticket.assignee is None


def test_queue_actions_need_the_csrf_token(org: dict) -> None:
    client = client_for(agent(), csrf=True)
    assert client.post(f"/tickets/{org['n'].pk}/grab").status_code == 403
    page = client.get("/queue/").content.decode()
    token = page.split('"X-CSRFToken": "')[1].split('"')[0]
    response = client.post(f"/tickets/{org['n'].pk}/grab", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200


def test_actions_are_checked_on_the_server_not_by_hiding_buttons(org: dict) -> None:
    viewer = make_user()  # no claim permission
    assert client_for(viewer).post(f"/tickets/{org['n'].pk}/grab").status_code == 403
    assert client_for(viewer).post(f"/tickets/{org['n'].pk}/reply").status_code == 403
    assert client_for(agent()).get(f"/tickets/{org['n'].pk}/grab").status_code == 405


def test_an_agent_records_a_reply_plan_status_and_resolution(org: dict) -> None:
    ticket = org["n"]
    client = client_for(agent())
    assert client.post(f"/tickets/{ticket.pk}/reply").status_code == 200
    assert client.post(f"/tickets/{ticket.pk}/plan").status_code == 200
    bad = client.post(f"/tickets/{ticket.pk}/status", {"status": "sleeping"})
    assert bad.status_code == 400 and "Choose a status" in bad.content.decode()
    assert client.post(f"/tickets/{ticket.pk}/status", {"status": "waiting_on_customer"})
    assert client.post(f"/tickets/{ticket.pk}/resolve").status_code == 200
    ticket.refresh_from_db()
    assert ticket.first_human_reply_at is not None and ticket.plan_sent_at is not None
    assert ticket.status == "resolved"
    kinds = list(ticket.events.values_list("kind", flat=True))
    assert kinds[-4:] == ["replied", "plan_sent", "status_changed", "resolved"]
    clock = ticket.clocks.get(metric="first_response")
    assert clock.status == "met"


def test_tickets_from_other_systems_are_answered_there(org: dict) -> None:
    now = timezone.now()
    external = make_ticket(
        now=now, opened_at=now - timedelta(minutes=5), source="zendesk", external_id="77"
    )
    response = client_for(agent()).post(f"/tickets/{external.pk}/reply")
    assert response.status_code == 409 and "managed in zendesk" in response.content.decode()
    assert not external.events.filter(kind=EventKind.REPLIED).exists()


@pytest.mark.django_db(transaction=True)
def test_of_two_simultaneous_grabs_exactly_one_wins(org: dict) -> None:
    ticket = org["n"]
    agents = [agent(username="ann"), agent(username="ben")]
    barrier = threading.Barrier(2)
    results: dict[str, str] = {}

    def grab(user: User) -> None:
        try:
            barrier.wait(timeout=10)
            claim_ticket(ticket=Ticket.objects.get(pk=ticket.pk), user=user, now=timezone.now())
            results[user.username] = "won"
        except ClaimConflict as conflict:
            results[user.username] = f"lost to {conflict.holder}"
        finally:
            connection.close()

    threads = [threading.Thread(target=grab, args=(user,)) for user in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(results.values())[1].startswith("won")
    winner = next(name for name, result in results.items() if result == "won")
    loser = next(name for name in results if name != winner)
    assert results[loser] == f"lost to {winner}"
    ticket.refresh_from_db()
    assert ticket.assignee is not None and ticket.assignee.username == winner
    assert ticket.events.filter(kind=EventKind.CLAIMED).count() == 1


def test_a_breached_clock_waiting_on_the_customer_shows_breached_not_time_left(org: dict) -> None:
    from tickets.actions import record_event

    now = timezone.now()
    record_event(
        ticket=org["n"],
        kind=EventKind.STATUS_CHANGED,
        at=now,
        now=now,
        payload={"status": "waiting_on_customer"},
    )
    client = client_for(agent(is_staff=True))
    for page in (client.get("/boards/everything/"), client.get("/queue/")):
        html = page.content.decode()
        assert "‖ paused, breached" in html or "‖ breached" in html
        assert " left</span>" not in html
        # Running breached clocks (with a due time) come before paused ones, on every database.
        assert html.index("South VPN down") < html.index("North printer")
