"""What boards show: the save list's order, time zones, compliance with no-verdict clocks,
rescues."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from dashboard.access import Viewer
from dashboard.boards import board_state, board_zone
from dashboard.models import Board
from policies.actions import reevaluate_due_clocks
from policies.models import Metric, Rescue
from tests.factories import make_always_calendar, make_member, make_partner, make_sla_policy
from tests.factories import make_ticket as open_one
from tickets.actions import act_on_ticket, claim_ticket, record_event

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)  # 23:00 in Auckland, 11:00 in Paris


@pytest.fixture
def policy(db: Any) -> Any:
    return make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(hours=1)}
    )


def test_the_save_list_puts_the_soonest_breach_first_and_leaves_breached_ones_out(
    policy: Any,
) -> None:
    partner = make_partner()
    breached = open_one(now=NOW, opened_at=NOW - timedelta(hours=3), partner=partner)
    orange = open_one(now=NOW, opened_at=NOW - timedelta(minutes=50), partner=partner)
    yellow = open_one(now=NOW, opened_at=NOW - timedelta(minutes=35), partner=partner)
    open_one(now=NOW, opened_at=NOW - timedelta(minutes=5), partner=partner)  # green
    reevaluate_due_clocks(now=NOW)
    state = board_state(Board.objects.create(name="All", slug="all"), Viewer(), NOW)
    assert [row.ticket for row in state["at_risk"]] == [orange, yellow]
    assert [row.bucket for row in state["at_risk"]] == ["orange", "yellow"]
    assert state["breached"]["tickets"] == 1 and state["breached"]["unclaimed"] == 1
    assert [row.ticket for row in state["breached"]["oldest"]] == [breached]


def test_a_boards_today_starts_at_midnight_in_its_own_time_zone(policy: Any) -> None:
    partner = make_partner(timezone="Pacific/Auckland")
    # Met at 12:00 UTC yesterday: 01:00 today in Auckland, yesterday in UTC.
    ticket = open_one(now=NOW, opened_at=NOW - timedelta(hours=22, minutes=30), partner=partner)
    holder = make_member("Agents")
    claim_ticket(ticket=ticket, user=holder, now=NOW - timedelta(hours=22))
    record_event(ticket=ticket, kind="replied", at=NOW - timedelta(hours=22), now=NOW, user=holder)
    everyone = Board.objects.create(name="All", slug="all")
    auckland = Board.objects.create(name="NZ", slug="nz")
    auckland.partners.add(partner)
    assert board_zone(everyone, Viewer()).key == "UTC"
    assert board_zone(auckland, Viewer()).key == "Pacific/Auckland"  # its one partner's
    assert board_state(everyone, Viewer(), NOW)["today"]["met"] == 0
    assert board_state(auckland, Viewer(), NOW)["today"]["met"] == 1
    auckland.display_timezone = "Europe/Paris"
    auckland.save()
    assert board_state(auckland, Viewer(), NOW)["today"]["met"] == 0
    assert board_zone(everyone, Viewer(partner.pk)).key == "Pacific/Auckland"  # their partner


def test_compliance_shows_the_clocks_that_ended_without_a_verdict(policy: Any) -> None:
    partner = make_partner()
    solved_silently = open_one(now=NOW, opened_at=NOW - timedelta(minutes=30), partner=partner)
    record_event(ticket=solved_silently, kind="resolved", at=NOW - timedelta(minutes=10), now=NOW)
    answered = open_one(now=NOW, opened_at=NOW - timedelta(minutes=30), partner=partner)
    record_event(ticket=answered, kind="replied", at=NOW - timedelta(minutes=20), now=NOW)
    board = Board.objects.create(name="All", slug="all")
    today = board_state(board, Viewer(), NOW)["today"]
    assert (today["met"], today["breached"], today["stopped"], today["percent"]) == (1, 0, 1, 100)


def test_a_grab_in_danger_followed_by_an_answer_in_time_is_a_rescue(policy: Any) -> None:
    partner = make_partner()
    bob = make_member("Agents", username="bob")
    danger = open_one(
        now=NOW, opened_at=NOW - timedelta(minutes=50), partner=partner, source="demo"
    )
    calm = open_one(now=NOW, opened_at=NOW - timedelta(minutes=5), partner=partner, source="demo")
    for ticket in (danger, calm):
        claim_ticket(ticket=ticket, user=bob, now=NOW)
        act_on_ticket(ticket=ticket, user=bob, action="reply", text="On it", now=NOW)
    [rescue] = Rescue.objects.all()
    assert (rescue.ticket, rescue.user, rescue.claimed_bucket) == (danger, bob, "orange")
    state = board_state(Board.objects.create(name="All", slug="all"), Viewer(), NOW)
    assert state["rescues"] == [("bob", 1)]
