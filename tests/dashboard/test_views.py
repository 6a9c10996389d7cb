"""Pages and agent actions: sign-in, roles, scope, escaping, CSRF, the claim race, the claim
rule, the queue's views, the ticket page."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from dashboard.actions import rotate_kiosk_link
from dashboard.models import Board
from tests.factories import make_member, make_ticket, make_user
from tickets.actions import ClaimConflict, claim_ticket, record_event
from tickets.models import EventKind, Ticket, User

pytestmark = pytest.mark.django_db


def agent(**fields: Any) -> User:
    return make_member("Agents", **fields)


def manager(**fields: Any) -> User:
    return make_member("Managers", **fields)


def client_for(user: User, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def test_a_board_needs_a_login_or_a_kiosk_link(org: dict) -> None:
    response = Client().get("/boards/everything/")  # the page that reads #kiosk= or logs in
    assert response.status_code == 200 and "North printer" not in response.content.decode()
    assert 'data-login="/login/?next=/boards/everything/"' in response.content.decode()
    assert Client().get("/boards/everything/?kiosk=wrong").status_code == 403
    token = rotate_kiosk_link(org["board"])
    page = Client().get(f"/boards/everything/?kiosk={token}", follow=True)
    assert page.status_code == 200
    assert "North printer" in page.content.decode()
    assert page["Referrer-Policy"] == "no-referrer"


def test_agents_sign_in_on_the_products_own_page_without_staff_status(org: dict) -> None:
    agent(username="ann", password="correct horse battery staple")
    client = Client()
    page = client.get("/login/?next=/queue/")
    assert page.status_code == 200 and 'name="password"' in page.content.decode()
    signed_in = client.post(
        "/login/",
        {"username": "ann", "password": "correct horse battery staple", "next": "/queue/"},
    )
    assert signed_in.status_code == 302 and signed_in["Location"] == "/queue/"
    assert client.get("/queue/").status_code == 200
    assert client.get("/admin/").status_code == 302  # the admin is for admins (staff)
    wrong = Client().post("/login/", {"username": "ann", "password": "nope"})
    assert wrong.status_code == 200 and "Please enter a correct" in wrong.content.decode()
    assert client.post("/logout/").status_code == 200
    assert client.get("/queue/").status_code == 302


def test_navigation_shows_only_what_the_user_may_use(org: dict) -> None:
    page = client_for(agent(partner=org["north"])).get("/").content.decode()
    assert 'href="/queue/"' in page and 'href="/admin/"' not in page
    viewer = client_for(make_user()).get("/").content.decode()  # signed in, no role
    assert 'href="/queue/"' not in viewer and 'href="/boards/"' in viewer
    admin = client_for(make_member("Admins", is_staff=True)).get("/").content.decode()
    assert 'href="/admin/"' in admin


def test_the_board_shows_counts_the_save_list_and_the_breached_strip(org: dict) -> None:
    now = timezone.now()
    saveable = make_ticket(
        now=now, opened_at=now - timedelta(minutes=12), partner=org["north"], subject="Disk 91%"
    )
    page = client_for(make_user()).get("/boards/everything/").content.decode()
    save_list = page[page.index('id="board-at-risk"') : page.index('id="board-breached"')]
    strip = page[page.index('id="board-breached"') :]
    assert "Disk 91%" in save_list and f"#{saveable.pk}" in save_list
    assert "North printer" not in save_list  # already breached: not in the save list
    assert "North printer" in strip and "South VPN down" in strip
    assert "2 unclaimed" in strip
    assert 'ws-connect="/ws/boards/everything/"' in page


def test_a_partner_user_sees_only_their_partners_tickets_and_boards(org: dict) -> None:
    nina = agent(partner=org["north"])
    client = client_for(nina)
    board = client.get("/boards/everything/").content.decode()
    queue = client.get("/queue/?view=all").content.decode()
    for page in (board, queue):
        assert "North printer" in page
        assert "South VPN down" not in page
    assert client.get(f"/tickets/{org['s'].pk}/").status_code == 404
    assert client.get(f"/tickets/{org['n'].pk}/").status_code == 200
    south_only = Board.objects.create(name="South private", slug="south")
    south_only.partners.add(org["south"])
    assert client.get("/boards/south/").status_code == 404
    assert "South private" not in client.get("/boards/").content.decode()


def test_a_partner_user_cannot_grab_another_partners_ticket(org: dict) -> None:
    nina = agent(partner=org["north"])
    response = client_for(nina).post(f"/tickets/{org['s'].pk}/grab")
    assert response.status_code == 404
    assert Ticket.objects.get(pk=org["s"].pk).assignee is None


def test_user_text_is_escaped_on_the_page(org: dict) -> None:
    now = timezone.now()
    hostile = make_ticket(
        now=now,
        opened_at=now - timedelta(hours=2),
        partner=org["north"],
        subject="<img src=x onerror=alert(1)>",
    )
    client = client_for(agent())
    for path in ("/queue/?view=all", f"/tickets/{hostile.pk}/", "/boards/everything/"):
        page = client.get(path).content.decode()
        assert "<img src=x" not in page, path
        assert "&lt;img src=x onerror=alert(1)&gt;" in page, path


def test_the_queue_is_for_agents_and_managers(org: dict) -> None:
    assert client_for(make_user()).get("/queue/").status_code == 403
    assert client_for(agent()).get("/queue/").status_code == 200
    assert client_for(manager()).get("/queue/").status_code == 200


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
    viewer = make_user()  # no role
    assert client_for(viewer).post(f"/tickets/{org['n'].pk}/grab").status_code == 403
    assert client_for(viewer).post(f"/tickets/{org['n'].pk}/reply").status_code == 403
    assert client_for(agent()).get(f"/tickets/{org['n'].pk}/grab").status_code == 405


def test_an_agent_records_a_reply_plan_status_and_resolution_on_a_ticket_they_hold(
    org: dict,
) -> None:
    ticket = org["n"]
    holder = agent()
    client = client_for(holder)
    client.post(f"/tickets/{ticket.pk}/grab")
    empty = client.post(f"/tickets/{ticket.pk}/reply", {"text": "  "})
    assert empty.status_code == 400 and "Write the reply first" in empty.content.decode()
    assert client.post(f"/tickets/{ticket.pk}/reply", {"text": "On it"}).status_code == 200
    assert client.post(f"/tickets/{ticket.pk}/plan", {"text": "Swap the fuser"}).status_code == 200
    bad = client.post(f"/tickets/{ticket.pk}/status", {"status": "sleeping"})
    assert bad.status_code == 400 and "Choose a status" in bad.content.decode()
    assert client.post(f"/tickets/{ticket.pk}/status", {"status": "waiting_on_customer"})
    assert client.post(f"/tickets/{ticket.pk}/resolve").status_code == 200
    ticket.refresh_from_db()
    assert ticket.first_human_reply_at is not None and ticket.plan_sent_at is not None
    assert ticket.status == "resolved"
    kinds = list(ticket.events.values_list("kind", flat=True))
    assert kinds[-4:] == ["replied", "plan_sent", "status_changed", "resolved"]
    reply = ticket.events.get(kind="replied")
    assert reply.payload["text"] == "On it" and reply.user == holder
    assert ticket.clocks.get(metric="first_response").status == "met"
    page = client.get(f"/tickets/{ticket.pk}/").content.decode()
    assert "On it" in page and "Swap the fuser" in page


def test_another_agents_reply_and_resolve_are_refused_with_a_clear_message(org: dict) -> None:
    ticket = org["n"]
    client_for(agent(username="alice")).post(f"/tickets/{ticket.pk}/grab")
    bob = client_for(agent(username="bob"))
    for action, data in (("reply", {"text": "me too"}), ("resolve", {}), ("plan", {"text": "x"})):
        refused = bob.post(f"/tickets/{ticket.pk}/{action}", data)
        assert refused.status_code == 403, action
        assert "alice&#x27;s: only alice acts on it" in refused.content.decode()
    ticket.refresh_from_db()
    assert ticket.status == "new" and ticket.first_human_reply_at is None


def test_an_unclaimed_ticket_is_grabbed_before_anyone_acts_on_it(org: dict) -> None:
    refused = client_for(agent()).post(f"/tickets/{org['n'].pk}/reply", {"text": "hi"})
    assert refused.status_code == 403 and "Grab" in refused.content.decode()
    assert not org["n"].events.filter(kind="replied").exists()


def test_a_manager_takes_over_or_reassigns_but_an_agent_may_not(org: dict) -> None:
    ticket = org["n"]
    client_for(agent(username="alice")).post(f"/tickets/{ticket.pk}/grab")
    bob = agent(username="bob")
    refused = client_for(bob).post(f"/tickets/{ticket.pk}/take-over")
    assert refused.status_code == 403 and "Only a manager" in refused.content.decode()
    boss = client_for(manager(username="mia"))
    assert boss.post(f"/tickets/{ticket.pk}/take-over").status_code == 200
    ticket.refresh_from_db()
    assert ticket.assignee is not None and ticket.assignee.username == "mia"
    assert boss.post(f"/tickets/{ticket.pk}/reply", {"text": "Sorted"}).status_code == 200
    given = boss.post(f"/tickets/{ticket.pk}/reassign", {"assignee": "bob"})
    assert given.status_code == 200 and "now bob&#x27;s" in given.content.decode()
    ticket.refresh_from_db()
    assert ticket.assignee == bob
    outsider = agent(username="sam", partner=org["south"])
    wrong = boss.post(f"/tickets/{ticket.pk}/reassign", {"assignee": outsider.username})
    assert wrong.status_code == 403 and "another partner" in wrong.content.decode()
    ticket.refresh_from_db()
    assert ticket.assignee == bob


def test_tickets_from_other_systems_are_answered_there(org: dict) -> None:
    now = timezone.now()
    external = make_ticket(
        now=now, opened_at=now - timedelta(minutes=5), source="zendesk", external_id="77"
    )
    holder = agent()
    claim_ticket(ticket=external, user=holder, now=now)
    response = client_for(holder).post(f"/tickets/{external.pk}/reply", {"text": "hi"})
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


def _rows(html: str) -> list[str]:
    """The ticket ids of the queue rows, in order."""
    return [part.split('"')[0] for part in html.split('id="qrow-')[1:]]


def test_the_queue_views_serve_the_save(org: dict) -> None:
    now = timezone.now()
    north = org["north"]
    soon = make_ticket(now=now, opened_at=now - timedelta(minutes=14), partner=north)
    later = make_ticket(now=now, opened_at=now - timedelta(minutes=2), partner=north)
    waiting = make_ticket(now=now, opened_at=now - timedelta(minutes=5), partner=north)
    me = agent(username="ann")
    claim_ticket(ticket=waiting, user=me, now=now)
    record_event(
        ticket=waiting,
        kind=EventKind.STATUS_CHANGED,
        at=now,
        now=now,
        payload={"status": "waiting_on_customer"},
    )
    client = client_for(me)
    save = _rows(client.get("/queue/").content.decode())
    assert save[:2] == [str(soon.pk), str(later.pk)]  # soonest breach first
    assert str(org["n"].pk) not in save and str(waiting.pk) not in save
    breached = _rows(client.get("/queue/?view=breached").content.decode())
    assert set(breached) == {str(org["n"].pk), str(org["s"].pk)}
    assert _rows(client.get("/queue/?view=mine").content.decode()) == [str(waiting.pk)]
    assert _rows(client.get("/queue/?view=waiting").content.decode()) == [str(waiting.pk)]
    found = client.get("/queue/?view=all&q=VPN").content.decode()
    assert _rows(found) == [str(org["s"].pk)]
    by_reference = client.get(f"/queue/?view=all&q={org['n'].external_id}").content.decode()
    assert _rows(by_reference) == [str(org["n"].pk)]
    fragment = client.get("/queue/?view=breached", HTTP_HX_REQUEST="true").content.decode()
    assert fragment.startswith('<section id="queue-list"') and "<html" not in fragment


def test_the_queue_pages_through_many_tickets(org: dict) -> None:
    now = timezone.now()
    for n in range(30):  # all within their 15 min first response
        make_ticket(now=now, opened_at=now - timedelta(seconds=20 * n), partner=org["north"])
    client = client_for(agent())
    first = _rows(client.get("/queue/").content.decode())
    second = _rows(client.get("/queue/?page=2").content.decode())
    assert len(first) == 25 and len(second) == 5 and not set(first) & set(second)
    assert "page 1 of 2" in client.get("/queue/").content.decode()
    assert client.get("/queue/?page=x&view=nonsense").status_code == 200


def test_a_breached_clock_waiting_on_the_customer_shows_breached_not_time_left(org: dict) -> None:
    now = timezone.now()
    record_event(
        ticket=org["n"],
        kind=EventKind.STATUS_CHANGED,
        at=now,
        now=now,
        payload={"status": "waiting_on_customer"},
    )
    client = client_for(agent())
    html = client.get("/queue/?view=all").content.decode()
    assert "‖ breached" in html and " left</span>" not in html
    # Running breached clocks come before paused ones, on every database.
    assert html.index("South VPN down") < html.index("North printer")
    waiting = client.get("/queue/?view=waiting").content.decode()
    assert "North printer" in waiting and "South VPN down" not in waiting


def test_the_ticket_page_shows_clocks_timeline_and_actions(org: dict) -> None:
    ticket = org["n"]
    holder = agent(username="ann", partner=org["north"])
    page = client_for(holder).get(f"/tickets/{ticket.pk}/").content.decode()
    assert ticket.subject in page and "North Ops" in page
    assert "Breached" in page and "Respond" in page  # the first-response clock
    assert "Created" in page  # the timeline
    assert f'hx-post="/tickets/{ticket.pk}/grab"' in page
    assert f'ws-connect="/ws/tickets/{ticket.pk}/"' in page
    assert Client().get(f"/tickets/{ticket.pk}/").status_code == 302  # sign in first


def test_the_short_code_on_the_wall_opens_the_ticket_page(org: dict) -> None:
    response = Client().get(f"/t/{org['n'].pk}")
    assert response.status_code == 302 and response["Location"] == f"/tickets/{org['n'].pk}/"
    signed_in = client_for(agent()).get(f"/t/{org['n'].pk}", follow=True)
    assert signed_in.status_code == 200 and "North printer" in signed_in.content.decode()
