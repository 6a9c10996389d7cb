from __future__ import annotations

from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from dashboard.access import Viewer
from dashboard.boards import board_state
from dashboard.models import Board
from policies.models import Calendar, Policy, SLAClock, Target
from slaboard.demo import DEMO_PASSWORD, seed_demo
from tickets.models import Customer, Partner, Ticket, TicketEvent, User

pytestmark = pytest.mark.django_db


def _counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Partner, Customer, Calendar, Policy, Target, User, Ticket, TicketEvent)
    }


def test_seeding_twice_adds_nothing_the_second_time(now: datetime) -> None:
    first = seed_demo(now=now, tickets=40)
    after_first = _counts()
    second = seed_demo(now=now + timedelta(hours=3), tickets=40)
    assert _counts() == after_first
    assert first.tickets == 40
    assert (second.tickets, second.partners, second.policies, second.events) == (0, 0, 0, 0)


@pytest.mark.slow
def test_the_demo_is_a_believable_organisation(now: datetime) -> None:
    seed_demo(now=now, tickets=120)
    assert len(set(Partner.objects.values_list("tier", flat=True))) >= 3
    assert len(set(Partner.objects.values_list("timezone", flat=True))) >= 4
    assert len(set(Customer.objects.values_list("tier", flat=True))) == 4
    paris = Calendar.objects.get(name="Paris business hours")
    assert paris.holidays.filter(date=f"{now.year}-12-25").exists()
    assert Calendar.objects.get(name="24×7").weekly_hours() == 168
    critical = Policy.objects.get(priorities=["critical"])
    durations = {t.metric: t.duration for t in critical.targets.all()}
    assert durations == {
        "first_response": timedelta(minutes=15),
        "resolution_plan": timedelta(hours=1),
        "resolution": timedelta(hours=4),
    }
    lead = Policy.objects.get(name="Lead response")
    assert lead.targets.get().duration == timedelta(minutes=5)
    assert 25 < Ticket.objects.open().count() < 100  # a backlog, not a pile-up
    opened = Ticket.objects.values_list("opened_at", flat=True)
    assert min(opened) < now - timedelta(days=1)
    assert all(t <= now for t in opened)
    assert TicketEvent.objects.count() > Ticket.objects.count()


def test_the_demo_tickets_agree_with_their_event_logs(now: datetime) -> None:
    from tickets.projection import PROJECTED_FIELDS, project_ticket

    seed_demo(now=now, tickets=60)
    for ticket in Ticket.objects.prefetch_related("events"):
        replayed = Ticket.objects.get(pk=ticket.pk)
        project_ticket(replayed, list(ticket.events.all()))
        for field in PROJECTED_FIELDS:
            assert getattr(replayed, field) == getattr(ticket, field), (ticket, field)


def test_the_demo_logins_work(now: datetime) -> None:
    seed_demo(now=now, tickets=0)
    client = Client()
    response = client.post("/admin/login/", {"username": "admin", "password": DEMO_PASSWORD})
    assert response.status_code == 302  # through the real, throttled login form
    assert client.get("/admin/tickets/ticket/").status_code == 200
    nina = User.objects.get(username="nina")
    assert nina.partner is not None and nina.partner.name == "Nordlicht IT"


def test_the_command_reports_what_it_created() -> None:
    out = StringIO()
    call_command("seed_demo", "--tickets", "5", stdout=out)
    assert "created 6 partners" in out.getvalue()
    assert "5 tickets" in out.getvalue()
    out = StringIO()
    call_command("seed_demo", "--tickets", "5", stdout=out)
    assert "0 tickets" in out.getvalue()


@pytest.mark.slow
def test_the_demo_shows_clocks_in_all_four_buckets(now: datetime) -> None:
    seed_demo(now=now, tickets=300)
    counts: dict[str, set[str]] = {}
    active = SLAClock.objects.filter(status__in=["running", "paused"])
    for metric, bucket in active.values_list("metric", "bucket").distinct():
        counts.setdefault(metric, set()).add(bucket)
    for metric in ("first_response", "resolution_plan", "resolution"):
        assert set(counts[metric]) == {"green", "yellow", "orange", "red"}, metric
    # A team that mostly meets its SLAs, with a few tickets to save and a few already lost.
    state = board_state(Board.objects.get(slug="all"), Viewer(), now)
    for period in ("today", "month"):
        assert 80 <= state[period]["percent"] <= 95, (period, state[period])
    assert 3 <= len(state["at_risk"]) <= 8
    assert any(row.ticket.assignee is None for row in state["at_risk"])
    assert any(row.ticket.assignee is not None for row in state["at_risk"])
    assert 0 < state["breached"]["tickets"] < state["open_count"] / 4
    assert state["rescues"]
