"""The ingestion service: upsert tickets by (source, external id), append events, replay
idempotent requests. Every write goes through ``tickets.actions``."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from ninja.responses import Status

from tickets.actions import (
    NewEvent,
    TicketActionError,
    change_ticket,
    open_ticket_with_events,
    record_events,
)
from tickets.api.auth import request_token
from tickets.api.errors import ApiError
from tickets.api.schemas import (
    EventIn,
    TicketIn,
    instant_problem,
    text_problem,
)
from tickets.models import (
    ActorKind,
    ApiToken,
    Customer,
    CustomerTier,
    EventKind,
    IdempotentRequest,
    Partner,
    Priority,
    Ticket,
    TicketEvent,
    TicketKind,
    TicketStatus,
    User,
)


def ticket_out(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.pk,
        "source": ticket.source,
        "external_id": ticket.external_id,
        "partner": ticket.partner.name,
        "customer": ticket.customer.name if ticket.customer else None,
        "kind": ticket.kind,
        "priority": ticket.priority,
        "status": ticket.status,
        "subject": ticket.subject,
        "team": ticket.team,
        "assignee": ticket.assignee.get_username() if ticket.assignee else None,
        "opened_at": ticket.opened_at,
        "first_human_reply_at": ticket.first_human_reply_at,
        "plan_sent_at": ticket.plan_sent_at,
        "resolved_at": ticket.resolved_at,
        "closed_at": ticket.closed_at,
        "updated_at": ticket.updated_at,
        "clocks": [
            {
                "metric": c.metric,
                "cycle": c.cycle,
                "status": c.status,
                "bucket": c.bucket,
                "started_at": c.started_at,
                "due_at": c.due_at,
                "met_at": c.met_at,
                "breached_at": c.breached_at,
                "next_change_at": c.next_change_at,
                "remaining_seconds": c.remaining_seconds,
            }
            for c in ticket.clocks.all()
        ],
    }


def scoped_tickets(token: ApiToken) -> Any:
    tickets = Ticket.objects.select_related("partner", "customer", "assignee")
    if token.partner_id is not None:
        tickets = tickets.filter(partner_id=token.partner_id)
    return tickets


def _partner(token: ApiToken, name: str | None) -> Partner:
    if token.partner is not None:
        if name is not None and name != token.partner.name:
            raise ApiError(403, "This token belongs to another partner.", "partner")
        return token.partner
    if name is None:
        raise ApiError(422, "partner is required to create a ticket.", "partner")
    partner = Partner.objects.filter(name=name).first()
    if partner is None:
        raise ApiError(422, f"Unknown partner {name!r}.", "partner")
    return partner


def _user(token: ApiToken, username: str | None, field: str) -> int | None:
    """The user to assign. A partner's token sees only that partner's users: any other name
    is unknown to it, so it can neither assign another partner's user nor learn which
    usernames exist elsewhere. (Whether the user fits the ticket is the actions' rule.)"""
    if not username:
        return None
    users = User.objects.filter(username=username)
    if token.partner_id is not None:
        users = users.filter(partner_id=token.partner_id)
    pk = users.values_list("pk", flat=True).first()
    if pk is None:
        raise ApiError(422, f"Unknown user {username!r}.", field)
    return pk


def _customer(token: ApiToken, name: str | None, tier: str | None) -> int | None:
    """The customer named, created if new (with ``tier``). Customers are shared by all
    partners and their tier is yours to set (it drives policies and boards): a partner's
    token may name and create customers, never change an existing one's tier — that is
    ignored, so the answer does not tell whether another partner serves that customer."""
    if name is None:
        return None
    customer, created = Customer.objects.get_or_create(
        name=name, defaults={"tier": tier or CustomerTier.BUSINESS}
    )
    if token.partner_id is not None:
        return customer.pk
    if tier and not created and customer.tier != tier:
        customer.tier = tier
        customer.save(update_fields=["tier", "updated_at"])
    return customer.pk


class Lookups:
    """One call's memory of tickets, partners, customers and users it has looked up.

    A batch names the same partner or customer in item after item; ``prefetch`` reads the
    tickets of all items in one query.
    """

    def __init__(self, token: ApiToken) -> None:
        self.token = token
        self.tickets: dict[tuple[str, str], Ticket | None] = {}
        self.partners: dict[str | None, Partner] = {}
        self.customers: dict[tuple[str | None, str | None], int | None] = {}
        self.users: dict[str, int | None] = {}

    def prefetch(self, keys: list[tuple[str, str]]) -> None:
        wanted = set(keys)
        self.tickets.update(dict.fromkeys(wanted))
        rows = Ticket.objects.select_related("partner", "customer", "assignee").filter(
            source__in={s for s, _ in wanted}, external_id__in={e for _, e in wanted}
        )
        for ticket in rows:
            if (ticket.source, ticket.external_id) in wanted:
                self.tickets[(ticket.source, ticket.external_id)] = ticket

    def existing(self, source: str, external_id: str) -> Ticket | None:
        """The ticket if this token may touch it, None if there is none; 403 otherwise."""
        key = (source, external_id)
        if key in self.tickets:  # prefetched, or created by an earlier item of this call
            ticket = self.tickets[key]
        else:
            ticket = (
                Ticket.objects.select_related("partner", "customer", "assignee")
                .filter(source=source, external_id=external_id)
                .first()
            )
        if ticket is None:
            return None
        self.tickets[key] = ticket
        if self.token.partner_id is not None and ticket.partner_id != self.token.partner_id:
            raise ApiError(403, "This token may not access that ticket (another partner's).")
        return ticket

    def find(self, source: str, external_id: str) -> Ticket:
        ticket = self.existing(source, external_id)
        if ticket is None:
            raise ApiError(404, f"No ticket {source}/{external_id}.")
        return ticket

    def partner(self, name: str | None) -> Partner:
        if name not in self.partners:
            self.partners[name] = _partner(self.token, name)
        return self.partners[name]

    def customer(self, name: str | None, tier: str | None) -> int | None:
        if (name, tier) not in self.customers:
            self.customers[(name, tier)] = _customer(self.token, name, tier)
        return self.customers[(name, tier)]

    def user(self, username: str | None, field: str) -> int | None:
        if not username:
            return None
        if username not in self.users:
            self.users[username] = _user(self.token, username, field)
        return self.users[username]


def upsert_ticket(
    token: ApiToken,
    source: str,
    external_id: str,
    data: TicketIn,
    now: datetime,
    events: list[EventIn] | None = None,
    lookups: Lookups | None = None,
) -> tuple[Ticket, bool, list[tuple[int, str, datetime, bool]]]:
    """Create the ticket, or record the events that change it to ``data``; then ``events``."""
    lookups = lookups or Lookups(token)
    new_events = _new_events(events or [], lookups)
    existing = lookups.existing(source, external_id)
    partner = lookups.partner(data.partner) if (existing is None or data.partner) else None
    customer_id = lookups.customer(data.customer, data.customer_tier)
    assignee_id = lookups.user(data.assignee, "assignee") if data.assignee is not None else None
    if existing is not None:
        changes: dict[str, Any] = {}
        for field in ("kind", "priority", "status", "subject", "team"):
            value = getattr(data, field)
            if value is not None:
                changes[field] = value
        if partner is not None:
            changes["partner_id"] = partner.pk
        if customer_id is not None:
            changes["customer_id"] = customer_id
        if data.assignee is not None:
            changes["assignee_id"] = assignee_id
        if changes:
            try:
                change_ticket(
                    ticket=existing,
                    changes=changes,
                    at=data.changed_at or now,
                    now=now,
                    actor_kind=ActorKind.AUTOMATION,
                )
            except TicketActionError as error:
                raise ApiError(422, str(error), error.field) from error
        return existing, False, _record(existing, new_events, now)
    if data.opened_at is None:
        raise ApiError(422, "opened_at is required to create a ticket.", "opened_at")
    if data.subject is None:
        raise ApiError(422, "subject is required to create a ticket.", "subject")
    assert partner is not None
    first: list[NewEvent] = []
    if data.status and data.status != TicketStatus.NEW:
        first.append(
            NewEvent(
                kind=EventKind.STATUS_CHANGED,
                at=data.changed_at or data.opened_at,
                actor_kind=ActorKind.AUTOMATION,
                payload={"status": data.status},
            )
        )
    try:
        ticket, recorded = open_ticket_with_events(
            partner_id=partner.pk,
            source=source,
            external_id=external_id,
            subject=data.subject,
            kind=data.kind or TicketKind.INCIDENT,
            priority=data.priority or Priority.MEDIUM,
            customer_id=customer_id,
            team=data.team or "",
            assignee_id=assignee_id,
            opened_at=data.opened_at,
            actor_kind=ActorKind.AUTOMATION,
            now=now,
            events=[*first, *new_events],
        )
    except TicketActionError as error:
        if error.index is None:
            raise ApiError(422, str(error), error.field) from error
        if error.index < len(first):
            raise ApiError(422, str(error), "changed_at") from error
        raise _event_error(error, error.index - len(first)) from error
    return ticket, True, _results(recorded[len(first) :])


def _new_events(events: list[EventIn], lookups: Lookups) -> list[NewEvent]:
    new: list[NewEvent] = []
    for index, event in enumerate(events):
        payload: dict[str, Any] = {}
        if event.kind == EventKind.STATUS_CHANGED:
            if event.status is None:
                raise ApiError(422, "status_changed needs status.", f"events[{index}].status")
            payload["status"] = event.status
        elif event.kind == EventKind.PRIORITY_CHANGED:
            if event.priority is None:
                raise ApiError(422, "priority_changed needs priority.", f"events[{index}].priority")
            payload["priority"] = event.priority
        elif event.kind == EventKind.ASSIGNED:
            payload["assignee_id"] = lookups.user(event.assignee, f"events[{index}].assignee")
        if event.text:
            payload["text"] = event.text
        new.append(
            NewEvent(
                kind=event.kind,
                at=event.at,
                actor_kind=event.actor_kind,
                payload=payload,
                external_id=event.external_id,
            )
        )
    return new


def _event_error(error: TicketActionError, index: int | None) -> ApiError:
    at = f"events[{index}]" if index is not None else "events"
    return ApiError(422, str(error), f"{at}.{error.field}" if error.field else at)


def _results(recorded: list[tuple[TicketEvent, bool]]) -> list[tuple[int, str, datetime, bool]]:
    return [(event.pk, event.kind, event.at, duplicate) for event, duplicate in recorded]


def _record(
    ticket: Ticket, events: list[NewEvent], now: datetime
) -> list[tuple[int, str, datetime, bool]]:
    if not events:
        return []
    try:
        return _results(record_events(ticket=ticket, events=events, now=now))
    except TicketActionError as error:
        raise _event_error(error, error.index) from error


def append_events(
    ticket: Ticket, events: list[EventIn], now: datetime, lookups: Lookups
) -> list[tuple[int, str, datetime, bool]]:
    """Apply events in the order given (each placed in time by its ``at``): all or none."""
    return _record(ticket, _new_events(events, lookups), now)


def fresh_ticket(ticket: Ticket) -> Ticket:
    return (
        Ticket.objects.select_related("partner", "customer", "assignee")
        .prefetch_related("clocks")
        .get(pk=ticket.pk)
    )


def idempotent(request: HttpRequest, run: Any) -> Any:
    """Replay the stored answer for a repeated Idempotency-Key; otherwise run and store it."""
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return Status(*run())
    if len(key) > 200:
        raise ApiError(400, "Idempotency-Key is longer than 200 characters.", "Idempotency-Key")
    token = request_token(request)
    fingerprint = hashlib.sha256(
        (request.method or "").encode() + b" " + request.path.encode() + b"\n" + request.body
    ).hexdigest()
    stored = IdempotentRequest.objects.filter(token=token, key=key).first()
    if stored is not None:
        if stored.fingerprint != fingerprint:
            raise ApiError(
                422, "This Idempotency-Key was used for a different request.", "Idempotency-Key"
            )
        return Status(stored.status_code, stored.response)
    status, body = run()
    serialisable = json.loads(json.dumps(body, default=_json_default))
    try:
        with transaction.atomic():
            IdempotentRequest.objects.create(
                token=token,
                key=key,
                fingerprint=fingerprint,
                status_code=status,
                response=serialisable,
            )
    except IntegrityError:  # a concurrent retry stored it first; both did the same
        pass
    return Status(status, serialisable)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value)!r}")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
        at, pk = datetime.fromisoformat(raw[0]), int(raw[1])
    except (ValueError, TypeError, IndexError, KeyError, json.JSONDecodeError) as error:
        raise ApiError(400, "cursor is not one this API gave out.", "cursor") from error
    if instant_problem(at) or not -(2**63) <= pk < 2**63:
        raise ApiError(400, "cursor is not one this API gave out.", "cursor")
    return at, pk


def encode_cursor(ticket: Ticket) -> str:
    raw = json.dumps([ticket.updated_at.isoformat(), ticket.pk])
    return base64.urlsafe_b64encode(raw.encode()).decode()


def check_ids(source: str, external_id: str) -> None:
    for field, value in (("source", source), ("external_id", external_id)):
        if problem := text_problem(value):
            raise ApiError(422, f"{field} {problem}.", field)
    if not source.strip() or len(source) > 50:
        raise ApiError(422, "source must be 1 to 50 characters.", "source")
    if not external_id.strip() or len(external_id) > 200:
        raise ApiError(422, "external_id must be 1 to 200 characters.", "external_id")
