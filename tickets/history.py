"""Read a ticket's event log into the facts its SLA clocks depend on."""

from __future__ import annotations

from collections.abc import Iterable

from policies.clocks import TicketHistory
from tickets.actions import apply_event
from tickets.models import ActorKind, EventKind, Ticket, TicketEvent, TicketStatus

AttributeKey = tuple[str, str, int | None, int]  # kind, priority, customer_id, partner_id


def attribute_key(ticket: Ticket) -> AttributeKey:
    return (ticket.kind, ticket.priority, ticket.customer_id, ticket.partner_id)


def ticket_history(ticket: Ticket, events: Iterable[TicketEvent]) -> TicketHistory:
    """Replay the events (time order, ties by arrival) exactly as the projection does."""
    scratch = Ticket(
        pk=ticket.pk,
        kind=ticket.kind,
        priority=ticket.priority,
        partner_id=ticket.partner_id,
        customer_id=ticket.customer_id,
        opened_at=ticket.opened_at,
        status=TicketStatus.NEW,
    )
    ordered = sorted(events, key=lambda e: (e.at, e.pk or 0))
    history = TicketHistory(opened_at=ticket.opened_at, statuses=[], segments=[])
    for event in ordered:
        apply_event(scratch, event)
        at = max(event.at, ticket.opened_at)
        if not history.statuses or history.statuses[-1][1] != scratch.status:
            history.statuses.append((at, scratch.status))
        key = attribute_key(scratch)
        if not history.segments or history.segments[-1][1] != key:
            history.segments.append((at, key))
        if event.kind == EventKind.REPLIED:
            history.replies.append((event.at, event.actor_kind == ActorKind.HUMAN))
            if history.first_reply_at is None:
                history.first_reply_at = event.at
            if event.actor_kind == ActorKind.HUMAN and history.first_human_reply_at is None:
                history.first_human_reply_at = event.at
        elif event.kind == EventKind.PLAN_SENT and history.first_plan_at is None:
            history.first_plan_at = event.at
    if not history.statuses:
        history.statuses.append((ticket.opened_at, ticket.status))
        history.segments.append((ticket.opened_at, attribute_key(ticket)))
    return history
