from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from tests.factories import make_partner, make_ticket, make_user
from tickets.actions import TicketActionError, change_ticket, open_ticket, record_event
from tickets.models import ActorKind, EventKind, Priority, Ticket, TicketStatus

pytestmark = pytest.mark.django_db


def test_opening_a_ticket_records_its_created_event(now: datetime) -> None:
    ticket = make_ticket(now=now, priority="high", subject="  VPN down  ")
    event = ticket.events.get()
    assert event.kind == EventKind.CREATED
    assert event.at == ticket.opened_at
    assert event.payload["priority"] == "high"
    assert ticket.subject == "VPN down"
    assert ticket.status == TicketStatus.NEW


def test_a_ticket_managed_in_slaboard_is_numbered(now: datetime) -> None:
    ticket = make_ticket(now=now)
    assert ticket.external_id == f"SLA-{ticket.pk}"


def test_only_a_human_reply_counts_as_the_first_human_reply(now: datetime) -> None:
    ticket = make_ticket(now=now)
    bot_at = ticket.opened_at + timedelta(minutes=1)
    human_at = ticket.opened_at + timedelta(minutes=9)
    record_event(
        ticket=ticket, kind=EventKind.REPLIED, at=bot_at, now=now, actor_kind=ActorKind.AUTO_ACK
    )
    ticket.refresh_from_db()
    assert ticket.first_human_reply_at is None
    assert ticket.status == TicketStatus.NEW
    record_event(ticket=ticket, kind=EventKind.REPLIED, at=human_at, now=now)
    ticket.refresh_from_db()
    assert ticket.first_human_reply_at == human_at
    assert ticket.status == TicketStatus.OPEN


def test_an_event_delivered_late_is_applied_where_it_belongs(now: datetime) -> None:
    """Same events, two delivery orders, same ticket."""
    in_order = make_ticket(now=now)
    late = make_ticket(now=now, opened_at=in_order.opened_at)
    t0 = in_order.opened_at
    history = [
        (EventKind.REPLIED, t0 + timedelta(minutes=5), {}),
        (EventKind.STATUS_CHANGED, t0 + timedelta(minutes=10), {"status": "waiting_on_customer"}),
        (EventKind.STATUS_CHANGED, t0 + timedelta(minutes=20), {"status": "open"}),
        (EventKind.RESOLVED, t0 + timedelta(minutes=30), {}),
    ]
    for kind, at, payload in history:
        record_event(ticket=in_order, kind=kind, at=at, now=now, payload=payload)
    for kind, at, payload in [history[0], history[3], history[2], history[1]]:
        record_event(ticket=late, kind=kind, at=at, now=now, payload=payload)
    in_order.refresh_from_db()
    late.refresh_from_db()
    for field in ("status", "first_human_reply_at", "resolved_at", "last_event_at"):
        assert getattr(late, field) == getattr(in_order, field), field
    assert late.status == TicketStatus.RESOLVED


def test_a_retried_event_is_recorded_once(now: datetime) -> None:
    ticket = make_ticket(now=now)
    at = ticket.opened_at + timedelta(minutes=3)
    first = record_event(
        ticket=ticket, kind=EventKind.REPLIED, at=at, now=now, external_id="reply-1"
    )
    again = record_event(
        ticket=ticket, kind=EventKind.REPLIED, at=at, now=now, external_id="reply-1"
    )
    assert first.pk == again.pk
    assert ticket.events.filter(kind=EventKind.REPLIED).count() == 1


def test_an_event_in_the_future_is_refused(now: datetime) -> None:
    ticket = make_ticket(now=now)
    with pytest.raises(TicketActionError) as error:
        record_event(ticket=ticket, kind=EventKind.REPLIED, at=now + timedelta(minutes=1), now=now)
    assert error.value.field == "at"
    assert ticket.events.count() == 1


def test_an_event_before_the_ticket_opened_is_refused(now: datetime) -> None:
    ticket = make_ticket(now=now)
    with pytest.raises(TicketActionError, match="older than the ticket"):
        record_event(
            ticket=ticket,
            kind=EventKind.REPLIED,
            at=ticket.opened_at - timedelta(seconds=1),
            now=now,
        )


def test_a_naive_time_is_refused_with_the_field_named(now: datetime) -> None:
    ticket = make_ticket(now=now)
    with pytest.raises(TicketActionError) as error:
        record_event(ticket=ticket, kind=EventKind.REPLIED, at=datetime(2026, 11, 17), now=now)  # noqa: DTZ001
    assert error.value.field == "at"


def test_times_in_any_zone_are_stored_as_the_same_instant(now: datetime) -> None:
    paris = ZoneInfo("Europe/Paris")
    ticket = make_ticket(now=now, opened_at=datetime(2026, 11, 17, 9, 0, tzinfo=paris))
    ticket.refresh_from_db()
    assert ticket.opened_at == datetime(2026, 11, 17, 8, 0, tzinfo=ZoneInfo("UTC"))


def test_an_unknown_status_is_refused_and_nothing_is_written(now: datetime) -> None:
    ticket = make_ticket(now=now)
    with pytest.raises(TicketActionError) as error:
        record_event(
            ticket=ticket,
            kind=EventKind.STATUS_CHANGED,
            at=now,
            now=now,
            payload={"status": "sleeping"},
        )
    assert error.value.field == "status"
    assert ticket.events.count() == 1


def test_a_duplicate_ticket_is_refused_by_name(now: datetime) -> None:
    partner = make_partner()
    open_ticket(
        partner_id=partner.pk, subject="a", opened_at=now, now=now, source="psa", external_id="7"
    )
    with pytest.raises(TicketActionError) as error:
        open_ticket(
            partner_id=partner.pk,
            subject="b",
            opened_at=now,
            now=now,
            source="psa",
            external_id="7",
        )
    assert error.value.field == "external_id"
    assert Ticket.objects.filter(source="psa").count() == 1


def test_changing_a_ticket_records_one_event_per_kind_of_change(now: datetime) -> None:
    ticket = make_ticket(now=now, priority="medium")
    agent = make_user()
    change_ticket(
        ticket=ticket,
        changes={
            "priority": Priority.CRITICAL,
            "status": TicketStatus.WAITING_ON_CUSTOMER,
            "assignee_id": agent.pk,
            "subject": "Now on fire",
            "team": ticket.team,  # unchanged: no event
        },
        at=now,
        now=now,
        user=agent,
    )
    kinds = list(ticket.events.values_list("kind", flat=True))
    assert kinds == [
        EventKind.CREATED,
        EventKind.ATTRIBUTES_CHANGED,
        EventKind.PRIORITY_CHANGED,
        EventKind.ASSIGNED,
        EventKind.STATUS_CHANGED,
    ]
    ticket.refresh_from_db()
    assert (ticket.priority, ticket.status, ticket.assignee_id, ticket.subject) == (
        Priority.CRITICAL,
        TicketStatus.WAITING_ON_CUSTOMER,
        agent.pk,
        "Now on fire",
    )


def test_resolving_then_reopening_clears_the_resolution(now: datetime) -> None:
    ticket = make_ticket(now=now)
    t0 = ticket.opened_at
    record_event(ticket=ticket, kind=EventKind.RESOLVED, at=t0 + timedelta(minutes=5), now=now)
    ticket.refresh_from_db()
    assert ticket.resolved_at == t0 + timedelta(minutes=5)
    record_event(ticket=ticket, kind=EventKind.REOPENED, at=t0 + timedelta(minutes=9), now=now)
    ticket.refresh_from_db()
    assert ticket.resolved_at is None
    assert ticket.is_open
