"""A ticket as a projection of its events: fold the log into the ticket row and into the facts
its SLA clocks depend on. No queries; the actions load the events and save the result.

Every reader of a ticket's log goes through these functions (``record_events``, imports,
clock syncs, rebuilds), so the projection and the clocks replay events the same way: time
order, ties by arrival.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from policies.clocks import TicketHistory
from tickets.models import ActorKind, EventKind, Ticket, TicketEvent, TicketStatus

# Fields an ATTRIBUTES_CHANGED event may carry, and the model attribute each one sets.
ATTRIBUTE_FIELDS = {
    "kind": "kind",
    "customer_id": "customer_id",
    "partner_id": "partner_id",
    "subject": "subject",
    "team": "team",
}
CREATED_FIELDS = {
    "kind": "kind",
    "priority": "priority",
    "status": "status",
    "partner_id": "partner_id",
    "customer_id": "customer_id",
    "subject": "subject",
    "team": "team",
    "assignee_id": "assignee_id",
}
PROJECTED_FIELDS = [
    "kind",
    "priority",
    "status",
    "partner_id",
    "customer_id",
    "assignee_id",
    "subject",
    "team",
    "first_human_reply_at",
    "plan_sent_at",
    "resolved_at",
    "closed_at",
    "last_event_at",
]


def apply_event(ticket: Ticket, event: TicketEvent) -> None:
    """Fold one event into the ticket projection (in memory, no query)."""
    payload = event.payload or {}
    at = event.at
    kind = event.kind
    if kind == EventKind.SLA_CHANGED:
        return  # slaboard's own annotation of a due-time change, not a fact about the ticket
    if kind == EventKind.CREATED:
        for key, attr in CREATED_FIELDS.items():
            if key in payload:
                setattr(ticket, attr, payload[key])
        ticket.opened_at = at
    elif kind == EventKind.REPLIED:
        if event.actor_kind == ActorKind.HUMAN:
            if ticket.first_human_reply_at is None or at < ticket.first_human_reply_at:
                ticket.first_human_reply_at = at
            if ticket.status == TicketStatus.NEW:
                ticket.status = TicketStatus.OPEN
    elif kind == EventKind.PLAN_SENT:
        if ticket.plan_sent_at is None or at < ticket.plan_sent_at:
            ticket.plan_sent_at = at
    elif kind == EventKind.STATUS_CHANGED:
        _set_status(ticket, payload["status"], at)
    elif kind == EventKind.PRIORITY_CHANGED:
        ticket.priority = payload["priority"]
    elif kind == EventKind.ATTRIBUTES_CHANGED:
        for key, attr in ATTRIBUTE_FIELDS.items():
            if key in payload:
                setattr(ticket, attr, payload[key])
    elif kind == EventKind.ASSIGNED:
        ticket.assignee_id = payload.get("assignee_id")
    elif kind == EventKind.CLAIMED:
        ticket.assignee_id = event.user_id
    elif kind == EventKind.RELEASED:
        ticket.assignee_id = None
    elif kind == EventKind.RESOLVED:
        _set_status(ticket, TicketStatus.RESOLVED, at)
    elif kind == EventKind.REOPENED:
        _set_status(ticket, TicketStatus.OPEN, at)
    elif kind == EventKind.CLOSED:
        _set_status(ticket, TicketStatus.CLOSED, at)
    if ticket.last_event_at is None or at > ticket.last_event_at:
        ticket.last_event_at = at


def _set_status(ticket: Ticket, status: str, at: datetime) -> None:
    if status == TicketStatus.RESOLVED:
        if ticket.status != TicketStatus.RESOLVED or ticket.resolved_at is None:
            ticket.resolved_at = at
        ticket.closed_at = None
    elif status == TicketStatus.CLOSED:
        if ticket.resolved_at is None:
            ticket.resolved_at = at
        ticket.closed_at = at
    else:
        ticket.resolved_at = None
        ticket.closed_at = None
    ticket.status = status


def project_ticket(ticket: Ticket, events: list[TicketEvent]) -> None:
    """Rebuild the projection from the whole log, in time order (ties by arrival)."""
    ticket.first_human_reply_at = None
    ticket.plan_sent_at = None
    ticket.resolved_at = None
    ticket.closed_at = None
    ticket.last_event_at = None
    ticket.assignee_id = None
    ticket.status = TicketStatus.NEW
    for event in sorted(events, key=lambda e: (e.at, e.pk or 0)):
        apply_event(ticket, event)


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
