from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from policies.models import SLAClock
from slaboard.demo import seed_demo
from slaboard.simulation import (
    PROFILE_PATH,
    Action,
    Simulator,
    load_profile,
)
from tickets.models import ActorKind, EventKind, Ticket, TicketEvent
from tickets.projection import PROJECTED_FIELDS, project_ticket

pytestmark = pytest.mark.django_db


def drive(simulator: Simulator, start: datetime, end: datetime) -> list[Action]:
    """Run the simulator through simulated time: jump to each planned instant, no sleeping."""
    simulator.start(start)
    actions: list[Action] = []
    clock = start
    while True:
        actions += simulator.run_due(clock)
        next_due = simulator.next_due()
        if next_due is None or next_due > end:
            return actions
        clock = max(clock, next_due)


@dataclass(frozen=True)
class Seen:
    """What a watcher could see of one simulated ticket (no database ids)."""

    facts: tuple[str | None, ...]
    times: tuple[datetime, ...]  # opened, then each event
    events: tuple[tuple[str, str], ...]


def story() -> list[Seen]:
    return [
        Seen(
            facts=(
                t.external_id,
                t.kind,
                t.priority,
                t.status,
                t.partner.name,
                t.customer.name if t.customer else None,
                t.subject,
            ),
            times=(t.opened_at, *(e.at for e in t.events.all())),
            events=tuple((e.kind, e.actor_kind) for e in t.events.all()),
        )
        for t in Ticket.objects.filter(source="sim")
        .select_related("partner", "customer")
        .prefetch_related("events")
        .order_by("opened_at", "external_id")
    ]


def test_the_committed_profile_is_sane() -> None:
    profile = load_profile()
    assert profile.problem == ""
    assert "ServiceNow" in profile.name
    assert "CC BY 4.0" in profile.attribution and "10.24432/C57S4H" in profile.attribution
    assert PROFILE_PATH.stat().st_size < 20_000  # a summary, not the log
    assert sum(profile.priorities.values()) == pytest.approx(1, abs=0.001)
    assert sum(profile.hour_of_week) == pytest.approx(1, abs=0.001)
    monday_10h, sunday_3h = profile.hour_of_week[10], profile.hour_of_week[6 * 24 + 3]
    assert monday_10h > 5 * sunday_3h  # the log's office hours show
    for delay in (
        profile.first_response,
        profile.response_to_resolution,
        profile.resolution,
        profile.waiting_on_customer,
        profile.reopen_after,
    ):
        assert list(delay.probabilities) == sorted(set(delay.probabilities))
        assert list(delay.minutes) == sorted(delay.minutes)
        assert len(delay.minutes) >= 21
    assert 1 <= profile.first_response.quantile(0.5) <= 60  # minutes
    assert 6 * 60 <= profile.resolution.quantile(0.5) <= 3 * 24 * 60
    assert profile.resolution.quantile(0.9) > profile.first_response.quantile(0.9)
    assert 0.1 < profile.share_waiting < 0.4
    assert 0 < profile.share_reopened < profile.share_waiting


def test_a_missing_or_broken_profile_falls_back_to_documented_defaults(tmp_path: Path) -> None:
    missing = load_profile(tmp_path / "nope.json")
    assert missing.name == "built-in defaults" and "not found" in missing.problem
    broken = tmp_path / "broken.json"
    data = json.loads(PROFILE_PATH.read_text())
    data["delays"]["first_response"]["minutes"].reverse()  # quantiles no longer increase
    broken.write_text(json.dumps(data))
    assert "not a valid profile" in load_profile(broken).problem
    broken.write_text("{not json")
    fallback = load_profile(broken)
    assert fallback.name == "built-in defaults"
    assert fallback.first_response.quantile(0.5) == load_profile().first_response.quantile(0.5)


def test_simulated_hours_create_tickets_and_events_through_the_actions(now: datetime) -> None:
    seed_demo(now=now - timedelta(days=1), tickets=0)
    end = now + timedelta(hours=3)
    actions = drive(Simulator(rng=random.Random(1), rate=0.2), now, end)

    tickets = list(Ticket.objects.filter(source="sim").prefetch_related("events"))
    assert 15 <= len(tickets) <= 60  # 0.2 a minute, more in office hours
    assert sorted(int(t.external_id.removeprefix("SIM-")) for t in tickets) == list(
        range(1, len(tickets) + 1)
    )
    assert {t.kind for t in tickets} >= {"incident", "service_request"}
    assert {t.priority for t in tickets} >= {"high", "medium", "low"}
    assert len({t.partner_id for t in tickets}) >= 4
    events = TicketEvent.objects.filter(ticket__source="sim")
    assert all(t.opened_at <= end for t in tickets)
    assert all(e.at <= end for e in events)  # nothing in the future
    replied = [t for t in tickets if t.first_human_reply_at is not None]
    assert len(replied) > len(tickets) / 2
    assert events.filter(kind=EventKind.REPLIED, actor_kind=ActorKind.HUMAN).exists()
    assert events.filter(kind=EventKind.REPLIED, actor_kind=ActorKind.AUTO_ACK).exists()
    # Agents grab a ticket before they answer it, through the claim action.
    for ticket in replied:
        claim = ticket.events.filter(kind=EventKind.CLAIMED).first()
        assert claim is not None and claim.user is not None and "buckets" in claim.payload
        reply = ticket.first_human_reply_at
        assert reply is not None and claim.at <= reply
    assert any(t.status == "resolved" for t in tickets)
    assert any(t.is_open for t in tickets)
    # Written through the actions: projections agree with the logs and clocks are kept.
    for ticket in tickets:
        replayed = Ticket.objects.get(pk=ticket.pk)
        project_ticket(replayed, list(ticket.events.all()))
        assert [getattr(replayed, f) for f in PROJECTED_FIELDS] == [
            getattr(ticket, f) for f in PROJECTED_FIELDS
        ]
    assert SLAClock.objects.filter(ticket__source="sim").count() >= len(tickets)
    # One log line per action.
    recorded = events.exclude(kind=EventKind.SLA_CHANGED).count()
    assert len([a for a in actions if a.kind != "skipped"]) == recorded
    assert any(a.message.startswith("new ") and "SIM-" in a.message for a in actions)
    assert any("human reply on SIM-" in a.message for a in actions)
    assert any("resolved after" in a.message for a in actions)


def test_the_same_seed_tells_the_same_story(now: datetime) -> None:
    seed_demo(now=now - timedelta(days=1), tickets=0)
    end = now + timedelta(minutes=20)
    stories = []
    for _ in range(2):
        savepoint = transaction.savepoint()
        drive(Simulator(rng=random.Random(42), rate=1), now, end)
        stories.append(story())
        transaction.savepoint_rollback(savepoint)
    assert stories[0] == stories[1]
    assert len(stories[0]) > 5


def test_the_team_keeps_pace_with_the_targets_so_most_clocks_are_met(now: datetime) -> None:
    """Replies and resolutions come at a pace set by each ticket's targets, in real time, so a
    demo shows a team that mostly meets its SLAs: a few at risk, the odd breach."""
    seed_demo(now=now - timedelta(days=1), tickets=0)
    end = now + timedelta(hours=4)
    drive(Simulator(rng=random.Random(7), rate=0.3), now, end)
    finished = SLAClock.objects.filter(ticket__source="sim", status__in=["met", "stopped"])
    met = finished.filter(status="met", breached_at__isnull=True).count()
    breached = SLAClock.objects.filter(ticket__source="sim", breached_at__isnull=False).count()
    assert met + breached > 50
    assert 0.8 <= met / (met + breached) <= 0.99


def test_a_restart_picks_up_open_tickets_and_continues_the_numbering(now: datetime) -> None:
    seed_demo(now=now, tickets=10)
    first_end = now + timedelta(minutes=1)
    drive(Simulator(rng=random.Random(3), rate=4), now, first_end)
    first_run = Ticket.objects.filter(source="sim").count()
    assert first_run > 0
    restart = now + timedelta(minutes=10)
    drive(Simulator(rng=random.Random(4), rate=4), restart, restart + timedelta(minutes=1))
    numbers = sorted(
        int(n.removeprefix("SIM-"))
        for n in Ticket.objects.filter(source="sim").values_list("external_id", flat=True)
    )
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) > first_run
    # Tickets nobody was planning for got replies or resolutions after the restart.
    picked_up = TicketEvent.objects.filter(
        at__gte=restart,
        kind__in=[EventKind.REPLIED, EventKind.RESOLVED],
        ticket__opened_at__lt=restart,
    )
    assert picked_up.filter(ticket__source="demo").exists()


def test_the_open_ticket_count_stays_bounded_over_two_simulated_days(now: datetime) -> None:
    seed_demo(now=now, tickets=10)
    # 2 new tickets a minute (12 a simulated day), keeping about 6 open.
    simulator = Simulator(rng=random.Random(9), rate=2, target_open=6)
    simulator.start(now)
    end = now + timedelta(minutes=12)  # two simulated days at the default speed
    at_start = simulator.open_count()  # the seed's backlog, above the target
    clock, highest = now, 0
    while (next_due := simulator.next_due()) is not None and next_due <= end:
        clock = max(clock, next_due)
        for action in simulator.run_due(clock):
            if action.kind == EventKind.CREATED:
                highest = max(highest, simulator.open_count())
    created = Ticket.objects.filter(source="sim").count()
    assert created >= 10
    assert Ticket.objects.open().filter(source__in=["demo", "sim"]).count() <= 6 + 3
    assert highest <= at_start + 2  # it comes down, though 10+ tickets arrived
    assert Ticket.objects.filter(source="demo", status="resolved").count() >= 5


def test_the_command_runs_a_few_steps_and_says_what_it_did() -> None:
    seed_demo(now=timezone.now(), tickets=0)
    out = StringIO()
    call_command("simulate", "--steps", "20", "--seed", "4", stdout=out, stderr=StringIO())
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("simulate: seed 4, speed 240×")
    assert "ServiceNow" in lines[0]
    actions = lines[1:-1]
    assert len(actions) == 20
    assert any("new " in line and "SIM-1 " in line for line in actions)
    assert "stopped after 20 actions" in lines[-1]
    assert Ticket.objects.filter(source="sim").exists()
    assert not TicketEvent.objects.filter(at__gt=timezone.now()).exists()


def test_the_command_without_an_organisation_says_to_seed_the_demo() -> None:
    with pytest.raises(CommandError, match="manage.py seed_demo"):
        call_command("simulate", "--steps", "1", stdout=StringIO())
