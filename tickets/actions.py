"""Writes about tickets. Every entry point (admin, API, agent screens, imports, demo) calls these.

A ticket is a projection of its events: ``record_event`` appends a fact and updates the
projection; an event older than the ticket's last one is applied in its place by replaying the
log (``project_ticket``), so out-of-order delivery gives the same ticket as in-order delivery.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from tickets.models import (
    ActorKind,
    EventKind,
    Priority,
    Ticket,
    TicketEvent,
    TicketStatus,
    User,
)

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


class TicketActionError(ValueError):
    """A request that cannot be applied, with a message for the person who made it."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _require_aware(value: datetime, field: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise TicketActionError(f"{field} must include a time zone (got {value!r}).", field=field)


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


def _validate_payload(kind: str, payload: dict[str, Any]) -> None:
    if kind not in EventKind.values:
        raise TicketActionError(f"Unknown event kind {kind!r}.", field="kind")
    if kind == EventKind.STATUS_CHANGED and payload.get("status") not in TicketStatus.values:
        raise TicketActionError(
            f"status must be one of {', '.join(TicketStatus.values)}.", field="status"
        )
    if kind == EventKind.PRIORITY_CHANGED and payload.get("priority") not in Priority.values:
        raise TicketActionError(
            f"priority must be one of {', '.join(Priority.values)}.", field="priority"
        )


@transaction.atomic
def open_ticket(
    *,
    partner_id: int,
    subject: str,
    opened_at: datetime,
    now: datetime,
    source: str = "slaboard",
    external_id: str = "",
    kind: str = "incident",
    priority: str = "medium",
    customer_id: int | None = None,
    team: str = "",
    assignee_id: int | None = None,
    actor_kind: str = ActorKind.HUMAN,
    user: User | None = None,
) -> Ticket:
    """Create a ticket and its CREATED event. ``now`` is when slaboard learned of it."""
    _require_aware(opened_at, "opened_at")
    if opened_at > now:
        raise TicketActionError("opened_at is in the future.", field="opened_at")
    if not subject.strip():
        raise TicketActionError("subject is empty.", field="subject")
    ticket = Ticket(
        source=source,
        external_id=external_id or "pending",
        partner_id=partner_id,
        customer_id=customer_id,
        kind=kind,
        priority=priority,
        subject=subject.strip(),
        team=team,
        assignee_id=assignee_id,
        opened_at=opened_at,
    )
    try:
        with transaction.atomic():
            ticket.save()
    except IntegrityError as exc:
        raise TicketActionError(
            f"A ticket with source {source!r} and external id {external_id!r} already exists.",
            field="external_id",
        ) from exc
    if not external_id:
        ticket.external_id = f"SLA-{ticket.pk}"
        ticket.save(update_fields=["external_id"])
    payload = {
        "kind": kind,
        "priority": priority,
        "partner_id": partner_id,
        "customer_id": customer_id,
        "subject": ticket.subject,
        "team": team,
        "assignee_id": assignee_id,
    }
    event = TicketEvent.objects.create(
        ticket=ticket,
        kind=EventKind.CREATED,
        at=opened_at,
        actor_kind=actor_kind,
        user=user,
        payload=payload,
    )
    apply_event(ticket, event)
    ticket.save()
    _sync_clocks(ticket, now=now)
    return ticket


@transaction.atomic
def record_event(
    *,
    ticket: Ticket,
    kind: str,
    at: datetime,
    now: datetime,
    actor_kind: str = ActorKind.HUMAN,
    user: User | None = None,
    payload: dict[str, Any] | None = None,
    external_id: str = "",
) -> TicketEvent:
    """Append one fact to a ticket's log and update its projection.

    A retried event (same ``external_id`` on the same ticket) returns the recorded one and
    changes nothing. An event older than the ticket's last one is placed where it belongs in
    time: the projection is replayed from the whole log.
    """
    _require_aware(at, "at")
    payload = dict(payload or {})
    _validate_payload(kind, payload)
    if actor_kind not in ActorKind.values:
        raise TicketActionError(f"Unknown actor kind {actor_kind!r}.", field="actor_kind")
    if at > now:
        raise TicketActionError("The event's time is in the future.", field="at")
    locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
    if at < locked.opened_at:
        raise TicketActionError("The event is older than the ticket's opening time.", field="at")
    if external_id:
        existing = TicketEvent.objects.filter(ticket=locked, external_id=external_id).first()
        if existing is not None:
            return existing
    event = TicketEvent.objects.create(
        ticket=locked,
        kind=kind,
        at=at,
        actor_kind=actor_kind,
        user=user,
        payload=payload,
        external_id=external_id,
    )
    if locked.last_event_at is None or at >= locked.last_event_at:
        apply_event(locked, event)
    else:
        project_ticket(locked, list(locked.events.all()))
    locked.save(update_fields=[*PROJECTED_FIELDS, "updated_at"])
    _refresh_from(ticket, locked)
    cause = ""
    if kind in (EventKind.PRIORITY_CHANGED, EventKind.ATTRIBUTES_CHANGED):
        details = ", ".join(f"{key.removesuffix('_id')} {value}" for key, value in payload.items())
        cause = f"{event.get_kind_display()}: {details}"
    _sync_clocks(locked, now=now, cause=cause)
    return event


def _sync_clocks(ticket: Ticket, *, now: datetime, cause: str = "") -> None:
    from dashboard.publish import mark_dirty  # later layers; imported here to avoid cycles
    from policies.actions import sync_ticket_clocks

    sync_ticket_clocks(ticket=ticket, now=now, cause=cause)
    transaction.on_commit(mark_dirty)


def _refresh_from(target: Ticket, source: Ticket) -> None:
    for field in [*PROJECTED_FIELDS, "opened_at", "updated_at"]:
        setattr(target, field, getattr(source, field))


@transaction.atomic
def change_ticket(
    *,
    ticket: Ticket,
    changes: dict[str, Any],
    at: datetime,
    now: datetime,
    actor_kind: str = ActorKind.HUMAN,
    user: User | None = None,
) -> list[TicketEvent]:
    """Record the events that turn the ticket's current fields into ``changes``.

    ``changes`` may hold priority, status, assignee_id and the attribute fields (kind,
    customer_id, partner_id, subject, team); fields equal to the current value are ignored.
    """
    events: list[TicketEvent] = []
    current = Ticket.objects.get(pk=ticket.pk)
    unknown = set(changes) - {"priority", "status", "assignee_id", *ATTRIBUTE_FIELDS}
    if unknown:
        field = sorted(unknown)[0]
        raise TicketActionError(f"{field} cannot be changed this way.", field=field)
    attributes = {
        key: value
        for key, value in changes.items()
        if key in ATTRIBUTE_FIELDS and getattr(current, ATTRIBUTE_FIELDS[key]) != value
    }
    if attributes:
        events.append(
            record_event(
                ticket=ticket,
                kind=EventKind.ATTRIBUTES_CHANGED,
                at=at,
                now=now,
                actor_kind=actor_kind,
                user=user,
                payload=attributes,
            )
        )
    if "priority" in changes and changes["priority"] != current.priority:
        events.append(
            record_event(
                ticket=ticket,
                kind=EventKind.PRIORITY_CHANGED,
                at=at,
                now=now,
                actor_kind=actor_kind,
                user=user,
                payload={"priority": changes["priority"]},
            )
        )
    if "assignee_id" in changes and changes["assignee_id"] != current.assignee_id:
        events.append(
            record_event(
                ticket=ticket,
                kind=EventKind.ASSIGNED,
                at=at,
                now=now,
                actor_kind=actor_kind,
                user=user,
                payload={"assignee_id": changes["assignee_id"]},
            )
        )
    if "status" in changes and changes["status"] != current.status:
        events.append(
            record_event(
                ticket=ticket,
                kind=EventKind.STATUS_CHANGED,
                at=at,
                now=now,
                actor_kind=actor_kind,
                user=user,
                payload={"status": changes["status"]},
            )
        )
    return events


class ClaimConflict(TicketActionError):
    """Someone else holds the ticket."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"Already claimed by {holder}.", field="assignee")
        self.holder = holder


def claim_ticket(*, ticket: Ticket, user: User, now: datetime) -> Ticket:
    """Give the ticket to ``user`` if nobody has it: of two simultaneous grabs, one wins.

    The winner is decided by a conditional UPDATE (assignee still empty), so the database
    settles the race; the loser gets ``ClaimConflict`` naming the holder.
    """
    with transaction.atomic():
        scoped = Ticket.objects.visible_to(user).open()
        won = scoped.filter(pk=ticket.pk, assignee__isnull=True).update(assignee=user)
        if not won:
            current = Ticket.objects.select_related("assignee").filter(pk=ticket.pk).first()
            if current is None or not scoped.filter(pk=ticket.pk).exists():
                raise TicketActionError("This ticket is not open or not yours to take.")
            if current.assignee_id == user.pk:
                return current  # a double click: already yours
            holder = current.assignee.get_username() if current.assignee else "someone"
            raise ClaimConflict(holder)
        record_event(ticket=ticket, kind=EventKind.CLAIMED, at=now, now=now, user=user, payload={})
    ticket.refresh_from_db()
    return ticket


def release_ticket(*, ticket: Ticket, user: User, now: datetime) -> Ticket:
    """Give a claimed ticket back. Only its holder (or staff who may change tickets) may."""
    with transaction.atomic():
        current = Ticket.objects.visible_to(user).select_for_update().filter(pk=ticket.pk).first()
        if current is None:
            raise TicketActionError("This ticket is not yours to release.")
        if current.assignee_id is None:
            return current
        if current.assignee_id != user.pk and not user.has_perm("tickets.change_ticket"):
            holder = current.assignee.get_username() if current.assignee else "someone"
            raise ClaimConflict(holder)
        record_event(
            ticket=current, kind=EventKind.RELEASED, at=now, now=now, user=user, payload={}
        )
    ticket.refresh_from_db()
    return ticket
