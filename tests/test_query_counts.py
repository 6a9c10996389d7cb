"""The read and write paths cost a fixed number of queries, whatever N is: N open tickets on a
board or in a queue, N live groups published, N events recorded at once, N tickets re-synced,
N items in an API batch. A query per row would pass every functional test and fall over at
scale; these tests catch it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dashboard import publish
from dashboard.access import Viewer
from dashboard.boards import board_group, queue_group, render_board_fragments
from dashboard.models import Board
from policies.actions import reevaluate_due_clocks
from policies.engine import sync_many
from policies.models import Metric
from tests.factories import (
    make_always_calendar,
    make_customer,
    make_member,
    make_partner,
    make_rule,
    make_sla_policy,
    make_ticket,
    make_user,
)
from tickets.actions import NewEvent, claim_ticket, record_events
from tickets.models import ApiToken, EventKind, Ticket

pytestmark = pytest.mark.django_db


def queries(run: Callable[[], Any]) -> int:
    with CaptureQueriesContext(connection) as captured:
        run()
    return len(captured.captured_queries)


@pytest.fixture
def world(db: Any) -> dict[str, Any]:
    """A policy, two partners, a board of everything, and a way to add N varied tickets."""
    make_sla_policy(
        calendar=make_always_calendar(),
        targets={
            Metric.FIRST_RESPONSE: timedelta(minutes=30),
            Metric.RESOLUTION_PLAN: timedelta(hours=2),
            Metric.RESOLUTION: timedelta(hours=8),
        },
    )
    make_rule()  # an active rule: the escalation lookups run too
    partners = [make_partner(), make_partner()]
    agent = make_member("Agents", partner=partners[0])
    now = timezone.now()

    def add(count: int) -> None:
        for i in range(count):
            ticket = make_ticket(
                now=now,
                opened_at=now - timedelta(minutes=5 + 7 * i),
                partner=partners[i % 2],
                customer=make_customer(),
                priority=["critical", "high", "medium", "low"][i % 4],
            )
            if i % 3 == 0:
                claim_ticket(ticket=ticket, user=make_user(partner=ticket.partner), now=now)
        reevaluate_due_clocks(now=now + timedelta(seconds=len(Ticket.objects.all())))

    return {
        "now": now,
        "add": add,
        "board": Board.objects.create(name="All", slug="all"),
        "partner": partners[0],
        "agent": agent,
    }


def test_a_board_renders_in_the_same_queries_for_5_or_40_open_tickets(world: dict) -> None:
    board, now = world["board"], world["now"]
    for viewer in (Viewer(), Viewer(world["partner"].pk)):
        world["add"](5)
        few = queries(lambda v=viewer: render_board_fragments(board, v, now))  # type: ignore[misc]
        world["add"](35)
        many = queries(lambda v=viewer: render_board_fragments(board, v, now))  # type: ignore[misc]
        assert many <= few  # fewer when the first buckets fill the at-risk list


@pytest.mark.parametrize("view", ["save", "breached", "mine", "waiting", "all"])
def test_the_queue_renders_in_the_same_queries_for_5_or_40_open_tickets(
    world: dict, view: str
) -> None:
    client = Client()
    client.force_login(world["agent"])
    world["add"](5)
    few = queries(lambda: client.get(f"/queue/?view={view}", HTTP_HX_REQUEST="true"))
    world["add"](35)
    many = queries(lambda: client.get(f"/queue/?view={view}", HTTP_HX_REQUEST="true"))
    assert many <= few


def test_a_ticket_page_costs_the_same_queries_for_a_short_or_long_history(
    world: dict,
) -> None:
    client = Client()
    client.force_login(world["agent"])
    world["add"](4)
    short, long = Ticket.objects.filter(partner=world["partner"]).order_by("pk")[:2]
    now = world["now"]
    notes = [NewEvent(kind=EventKind.NOTE, at=now, payload={"text": "n"}) for _ in range(40)]
    record_events(ticket=long, events=notes, now=now)
    few = queries(lambda: client.get(f"/tickets/{short.pk}/"))
    many = queries(lambda: client.get(f"/tickets/{long.pk}/"))
    assert many <= few


def test_the_board_page_costs_the_same_queries_for_5_or_40_open_tickets(world: dict) -> None:
    client = Client()
    client.force_login(make_user(is_staff=True))
    world["add"](5)
    few = queries(lambda: client.get("/boards/all/"))
    world["add"](35)
    many = queries(lambda: client.get("/boards/all/"))
    assert many <= few


def test_a_publish_costs_the_same_queries_per_group_whatever_the_tickets(
    world: dict, live_redis: Any
) -> None:
    board, now = world["board"], world["now"]
    groups = [
        board_group(board.pk, Viewer()),
        board_group(board.pk, Viewer(world["partner"].pk)),
        queue_group(Viewer(world["partner"].pk)),
    ]
    live_redis.zadd(publish.key("live"), dict.fromkeys(groups, now.timestamp()))
    world["add"](5)
    few = queries(lambda: publish.publish(now=now))
    world["add"](35)
    many = queries(lambda: publish.publish(now=now))
    assert many <= few


def test_recording_1_or_30_events_at_once_costs_the_same_queries(world: dict) -> None:
    now = world["now"]
    world["add"](3)
    first, second = Ticket.objects.order_by("pk")[:2]

    def replies(ticket: Ticket, count: int) -> Callable[[], Any]:
        events = [NewEvent(kind=EventKind.NOTE, at=now, payload={}) for _ in range(count)]
        return lambda: record_events(ticket=ticket, events=events, now=now)

    assert queries(replies(first, 1)) == queries(replies(second, 30))


def test_syncing_3_or_30_tickets_costs_the_same_queries(world: dict) -> None:
    later = world["now"] + timedelta(hours=3)  # every sync rewrites clocks: the costly case
    world["add"](30)
    ids = list(Ticket.objects.order_by("pk").values_list("pk", flat=True))
    few = queries(lambda: sync_many(dict.fromkeys(ids[:3], (later, "test"))))
    many = queries(lambda: sync_many(dict.fromkeys(ids[3:], (later, "test"))))
    assert few == many


def test_an_api_batch_costs_the_same_queries_however_many_events_an_item_carries(
    world: dict, redis_client: Any
) -> None:
    secret = ApiToken.issue(name="bench", partner=world["partner"])[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    now = world["now"]

    def batch(name: str, events: int) -> Callable[[], Any]:
        body = {
            "items": [
                {
                    "source": "crm",
                    "external_id": f"{name}-{i}",
                    "ticket": {
                        "subject": "Lead",
                        "opened_at": (now - timedelta(hours=1)).isoformat(),
                    },
                    "events": [
                        {
                            "kind": "note",
                            "at": (now - timedelta(minutes=50 - j)).isoformat(),
                            "text": "x",
                        }
                        for j in range(events)
                    ],
                }
                for i in range(4)
            ]
        }

        def run() -> None:
            response = client.post("/api/v1/batch", body, content_type="application/json")
            assert response.status_code == 200 and response.json()["failed"] == 0

        return run

    with transaction.atomic():
        batch("warm-up", 1)()  # the first call loads the rules into this process
        few = queries(batch("a", 1))
        many = queries(batch("b", 25))
    assert many == few
