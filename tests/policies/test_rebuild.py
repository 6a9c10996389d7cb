"""Clocks are a projection: rebuilding them from events gives what incremental updates gave."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command

from policies.actions import rebuild_clocks, reevaluate_due_clocks
from policies.models import Metric, ReopenBehaviour, SLAClock, Target
from tests.factories import (
    make_always_calendar,
    make_calendar,
    make_customer,
    make_partner,
    make_sla_policy,
)
from tickets.actions import open_ticket, record_event
from tickets.models import ActorKind, EventKind

pytestmark = pytest.mark.django_db

START = datetime(2026, 10, 20, 6, 0, tzinfo=UTC)
FIELDS = [
    "ticket_id",
    "metric",
    "cycle",
    "policy_id",
    "target_id",
    "started_at",
    "pauses",
    "met_at",
    "stopped_at",
    "status",
    "due_at",
    "yellow_at",
    "orange_at",
    "breached_at",
    "bucket",
    "next_change_at",
    "remaining_seconds",
]

STATUSES = ["open", "waiting_on_customer", "waiting_on_third_party", "on_hold", "open"]


Delivery = tuple[datetime, str, dict[str, str], str]


def _random_history(rng: random.Random, opened: datetime) -> list[Delivery]:
    events: list[Delivery] = []
    t = opened
    for _ in range(rng.randint(0, 8)):
        t += timedelta(minutes=rng.expovariate(1 / 90))
        roll = rng.random()
        if roll < 0.25:
            actor = rng.choice(
                [ActorKind.HUMAN, ActorKind.HUMAN, ActorKind.BOT, ActorKind.AUTO_ACK]
            )
            events.append((t, EventKind.REPLIED, {}, actor))
        elif roll < 0.35:
            events.append((t, EventKind.PLAN_SENT, {}, ActorKind.HUMAN))
        elif roll < 0.6:
            events.append(
                (t, EventKind.STATUS_CHANGED, {"status": rng.choice(STATUSES)}, ActorKind.HUMAN)
            )
        elif roll < 0.72:
            priority = rng.choice(["critical", "high", "medium", "low"])
            events.append((t, EventKind.PRIORITY_CHANGED, {"priority": priority}, ActorKind.HUMAN))
        elif roll < 0.84:
            events.append((t, EventKind.RESOLVED, {}, ActorKind.HUMAN))
        elif roll < 0.92:
            events.append((t, EventKind.REOPENED, {}, ActorKind.HUMAN))
        else:
            events.append((t, EventKind.CLOSED, {}, ActorKind.AUTOMATION))
    return events


@pytest.mark.slow
def test_rebuilding_from_events_reproduces_incremental_updates_exactly() -> None:
    rng = random.Random(20261123)
    always = make_always_calendar()
    office = make_calendar(timezone="Europe/Paris")
    partners = [
        make_partner(default_calendar=office, tier="gold"),
        make_partner(default_calendar=always, tier="silver"),
        make_partner(default_calendar=None, tier="bronze"),
    ]
    customers = [make_customer(tier=tier) for tier in ("enterprise", "smb", "free")]
    make_sla_policy(
        calendar=always,
        priorities=["critical"],
        order=1,
        targets={
            Metric.FIRST_RESPONSE: timedelta(minutes=15),
            Metric.RESOLUTION_PLAN: timedelta(hours=1),
            Metric.RESOLUTION: timedelta(hours=4),
        },
    )
    make_sla_policy(calendar=None, priorities=["high", "medium"], order=2)
    low = make_sla_policy(
        calendar=None,
        priorities=["low"],
        customer_tiers=["enterprise", "smb"],
        order=3,
        targets={
            Metric.FIRST_RESPONSE: timedelta(hours=24),
            Metric.RESOLUTION: timedelta(hours=72),
        },
    )
    Target.objects.filter(policy=low, metric=Metric.RESOLUTION).update(
        on_reopen=ReopenBehaviour.CONTINUE, orange_minutes_left=120
    )

    # Deliver every ticket's events as a live system would: mostly in order, some late,
    # with minute ticks in between, then a final tick.
    deliveries: list[tuple[datetime, int, datetime, str, dict, str]] = []
    tickets = {}
    for number in range(2000):
        opened = START + timedelta(minutes=rng.uniform(0, 14 * 24 * 60))
        ticket = open_ticket(
            partner_id=rng.choice(partners).pk,
            customer_id=rng.choice(customers).pk,
            priority=rng.choice(["critical", "high", "medium", "low"]),
            subject=f"Generated {number}",
            opened_at=opened,
            now=opened,
            source="gen",
            external_id=str(number),
        )
        tickets[ticket.pk] = ticket
        for at, kind, payload, actor in _random_history(rng, opened):
            delay = timedelta(minutes=rng.expovariate(1 / 3) if rng.random() < 0.8 else 600)
            deliveries.append((at + delay, ticket.pk, at, kind, payload, actor))
    deliveries.sort(key=lambda d: d[0])
    end = START + timedelta(days=16)
    next_tick = START
    for arrival, pk, at, kind, payload, actor in deliveries:
        while next_tick <= arrival:
            reevaluate_due_clocks(now=next_tick)
            next_tick += timedelta(hours=1)
        record_event(
            ticket=tickets[pk], kind=kind, at=at, now=arrival, payload=payload, actor_kind=actor
        )
    reevaluate_due_clocks(now=end)
    incremental = list(SLAClock.objects.order_by("ticket_id", "metric", "cycle").values(*FIELDS))
    assert len(incremental) > 4000
    buckets = {row["bucket"] for row in incremental}
    assert buckets == {"green", "yellow", "orange", "red"}
    statuses = {row["status"] for row in incremental}
    assert statuses == {"running", "paused", "met", "stopped"}

    report = rebuild_clocks(now=end)

    rebuilt = list(SLAClock.objects.order_by("ticket_id", "metric", "cycle").values(*FIELDS))
    assert report.changed == 0
    assert rebuilt == incremental


def test_rebuilding_repairs_a_damaged_clock(now: datetime) -> None:
    make_sla_policy(calendar=make_always_calendar())
    ticket = open_ticket(
        partner_id=make_partner().pk, subject="x", opened_at=now - timedelta(hours=1), now=now
    )
    good = list(ticket.clocks.values(*FIELDS))
    SLAClock.objects.filter(ticket=ticket).update(bucket="red", due_at=now)
    SLAClock.objects.filter(ticket=ticket, metric=Metric.RESOLUTION).delete()
    out = StringIO()
    call_command("rebuild_clocks", "--ticket", str(ticket.pk), stdout=out)
    assert "1 created" in out.getvalue()
    assert list(ticket.clocks.values(*FIELDS)) != []
    repaired = {c["metric"]: c for c in ticket.clocks.values(*FIELDS)}
    for row in good:
        assert repaired[row["metric"]]["due_at"] == row["due_at"]
