"""The ingestion API (/api/v1/): integrations upsert tickets and append events.

Thin: every write goes through tickets.actions (the same functions as the admin, the queue and
imports), so clocks are re-synced and boards published. Schemas are typed (pydantic) and the
OpenAPI document is generated from them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Field, Query, Router, Schema
from ninja.responses import Status
from ninja.security import HttpBearer
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, field_validator

from policies.models import ACTIVE_CLOCK_STATUSES, Bucket, Metric
from tickets.actions import (
    NewEvent,
    TicketActionError,
    change_ticket,
    one_sync_per_ticket,
    open_ticket_with_events,
    record_events,
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
    hash_token,
)

log = logging.getLogger(__name__)
router = Router(tags=["tickets"])

MAX_BATCH_ITEMS = 5000
MAX_EVENTS_PER_CALL = 1000


class ApiError(Exception):
    """A 4xx answer naming the field and the problem."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


# --------------------------------------------------------------------------- auth


class TokenAuth(HttpBearer):
    """Bearer tokens from the admin; stored hashed; revocable; rate limited per token."""

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        api_token = (
            ApiToken.objects.select_related("partner")
            .filter(token_hash=hash_token(token), revoked_at__isnull=True)
            .first()
        )
        if api_token is None:
            return None
        now = timezone.now()
        if api_token.last_used_at is None or now - api_token.last_used_at > timedelta(minutes=1):
            ApiToken.objects.filter(pk=api_token.pk).update(last_used_at=now)
        _check_rate(api_token, now)
        return api_token


_rate_client: redis.Redis | None = None


def _check_rate(token: ApiToken, now: datetime) -> None:
    """A fixed one-minute window per token in Redis. Redis down: allow (and log)."""
    global _rate_client
    if _rate_client is None:
        _rate_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1)
    minute = int(now.timestamp() // 60)
    key = f"slaboard:rate:{token.pk}:{minute}"
    try:
        pipe = _rate_client.pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count = int(pipe.execute()[0])
    except redis.RedisError as error:
        log.warning("rate limit not checked (Redis unavailable): %s", error)
        return
    if count > token.requests_per_minute:
        raise RateLimited(retry_after=60 - int(now.timestamp()) % 60)


def _token(request: HttpRequest) -> ApiToken:
    token = request.auth  # type: ignore[attr-defined]
    assert isinstance(token, ApiToken)
    return token


# --------------------------------------------------------------------------- schemas

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]")


def _iso_only(value: Any) -> Any:
    """Refuse numbers (pydantic would read them as Unix timestamps): ISO 8601 text only."""
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("must be an ISO 8601 date-time with a time zone, e.g. 2026-11-23T09:30:00Z")


IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_only)]


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored (PostgreSQL refuses NUL and unpaired surrogates)."""
    if "\x00" in value:
        return "must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid Unicode text"
    return None


class In(BaseModel):
    """Request bodies: plain pydantic, unknown fields refused (a typo is an error, not a no-op)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def storable_text(cls, value: Any) -> Any:
        if isinstance(value, str) and (problem := text_problem(value)):
            raise ValueError(problem)
        return value


class ErrorOut(Schema):
    detail: str
    errors: list[dict[str, str]] = []


class TicketIn(In):
    """What an integration knows about a ticket. Absent optional fields are left unchanged."""

    partner: str | None = Field(
        None, description="Partner name. May be omitted when the token belongs to a partner."
    )
    customer: str | None = Field(
        None, max_length=200, description="Customer name (created if new)."
    )
    customer_tier: CustomerTier | None = Field(None, description="Sets the customer's tier.")
    kind: TicketKind | None = None
    priority: Priority | None = None
    status: TicketStatus | None = None
    subject: str | None = Field(None, min_length=1, max_length=500)
    team: str | None = Field(None, max_length=100)
    assignee: str | None = Field(None, description="Username of the assignee; empty to clear.")
    opened_at: IsoDateTime | None = Field(
        None, description="When the ticket was opened (required to create). Time zone required."
    )
    changed_at: IsoDateTime | None = Field(
        None, description="When these changes happened in the source (default: now)."
    )

    @field_validator("subject")
    @classmethod
    def subject_not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank")
        return value


class ClockOut(Schema):
    metric: Metric
    cycle: int
    status: str
    bucket: Bucket
    started_at: datetime
    due_at: datetime | None
    met_at: datetime | None
    breached_at: datetime | None
    next_change_at: datetime | None
    remaining_seconds: float | None


class TicketOut(Schema):
    id: int
    source: str
    external_id: str
    partner: str
    customer: str | None
    kind: TicketKind
    priority: Priority
    status: TicketStatus
    subject: str
    team: str
    assignee: str | None
    opened_at: datetime
    first_human_reply_at: datetime | None
    plan_sent_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    clocks: list[ClockOut]


EventKindIn = Literal[
    "replied",
    "plan_sent",
    "status_changed",
    "priority_changed",
    "assigned",
    "resolved",
    "reopened",
    "closed",
    "note",
]


class EventIn(In):
    kind: EventKindIn
    at: IsoDateTime = Field(description="When it happened in the source. Time zone required.")
    actor_kind: ActorKind = ActorKind.HUMAN
    external_id: str = Field(
        "", max_length=200, description="The event's id in the source: retries are ignored."
    )
    status: TicketStatus | None = Field(None, description="For status_changed.")
    priority: Priority | None = Field(None, description="For priority_changed.")
    assignee: str | None = Field(None, description="For assigned: a username, or null.")
    text: str | None = Field(None, max_length=5000, description="Optional note text.")


class EventsIn(In):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS_PER_CALL)


class EventOut(Schema):
    id: int
    kind: str
    at: datetime
    duplicate: bool


class EventsOut(Schema):
    ticket: TicketOut
    events: list[EventOut]


class TicketPage(Schema):
    items: list[TicketOut]
    next_cursor: str | None


class BatchItemIn(In):
    source: str = Field(min_length=1, max_length=50)
    external_id: str = Field(min_length=1, max_length=200)
    ticket: TicketIn | None = None
    events: list[EventIn] = Field(default_factory=list, max_length=MAX_EVENTS_PER_CALL)


class BatchIn(In):
    items: list[BatchItemIn] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


class BatchItemOut(Schema):
    index: int
    ok: bool
    status: int
    ticket_id: int | None = None
    created: bool = False
    events: int = 0
    duplicates: int = 0
    errors: list[dict[str, str]] = []


class BatchOut(Schema):
    ok: int
    failed: int
    items: list[BatchItemOut]


# --------------------------------------------------------------------------- helpers


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


def _scoped(token: ApiToken) -> Any:
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


def _user(username: str | None, field: str) -> int | None:
    if not username:
        return None
    pk = User.objects.filter(username=username).values_list("pk", flat=True).first()
    if pk is None:
        raise ApiError(422, f"Unknown user {username!r}.", field)
    return pk


def _customer(name: str | None, tier: str | None) -> int | None:
    if name is None:
        return None
    customer, created = Customer.objects.get_or_create(
        name=name, defaults={"tier": tier or CustomerTier.BUSINESS}
    )
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
            self.customers[(name, tier)] = _customer(name, tier)
        return self.customers[(name, tier)]

    def user(self, username: str | None, field: str) -> int | None:
        if not username:
            return None
        if username not in self.users:
            self.users[username] = _user(username, field)
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


def _fresh(ticket: Ticket) -> Ticket:
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
    token = _token(request)
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


# --------------------------------------------------------------------------- endpoints

# Every operation may answer these (auth, validation, rate limiting) besides its own.
COMMON = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut, 429: ErrorOut}


@router.put(
    "/tickets/{source}/{external_id}",
    response={200: TicketOut, 201: TicketOut, **COMMON},
    summary="Create or update a ticket by (source, external id)",
)
def put_ticket(
    request: HttpRequest, source: str, external_id: str, data: TicketIn
) -> tuple[int, Any]:
    _check_ids(source, external_id)

    def run() -> tuple[int, Any]:
        now = timezone.now()
        with transaction.atomic(), one_sync_per_ticket():
            ticket, created, _ = upsert_ticket(_token(request), source, external_id, data, now)
        return (201 if created else 200), ticket_out(_fresh(ticket))

    return idempotent(request, run)


@router.get(
    "/tickets/{source}/{external_id}",
    response={200: TicketOut, **COMMON},
    summary="Read one ticket with its SLA clocks",
)
def get_ticket(request: HttpRequest, source: str, external_id: str) -> Any:
    _check_ids(source, external_id)
    return ticket_out(_fresh(Lookups(_token(request)).find(source, external_id)))


class TicketFilters(Schema):
    bucket: Bucket | None = Field(None, description="Tickets with an active clock in this bucket.")
    metric: Metric | None = Field(None, description="With bucket: only this metric's clocks.")
    partner: str | None = None
    priority: Priority | None = None
    status: TicketStatus | None = None
    updated_since: IsoDateTime | None = None
    cursor: str | None = None
    limit: int = Field(100, ge=1, le=500)

    @field_validator("partner", "cursor", mode="after")
    @classmethod
    def storable_text(cls, value: Any) -> Any:
        return In.storable_text(value)


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor.encode()).decode())
        return datetime.fromisoformat(raw[0]), int(raw[1])
    except (ValueError, TypeError, IndexError, json.JSONDecodeError) as error:
        raise ApiError(400, "cursor is not one this API gave out.", "cursor") from error


def _encode_cursor(ticket: Ticket) -> str:
    raw = json.dumps([ticket.updated_at.isoformat(), ticket.pk])
    return base64.urlsafe_b64encode(raw.encode()).decode()


@router.get("/tickets", response={200: TicketPage, **COMMON}, summary="List tickets (cursor pages)")
def list_tickets(request: HttpRequest, filters: Query[TicketFilters]) -> Any:
    unknown = sorted(set(request.GET) - set(TicketFilters.model_fields))
    if unknown:  # a misspelt filter must not silently return everything
        raise ApiError(422, f"Unknown query parameter {unknown[0]!r}.", unknown[0] or "query")
    tickets = _scoped(_token(request)).prefetch_related("clocks")
    if filters.partner:
        tickets = tickets.filter(partner__name=filters.partner)
    if filters.priority:
        tickets = tickets.filter(priority=filters.priority)
    if filters.status:
        tickets = tickets.filter(status=filters.status)
    if filters.updated_since:
        tickets = tickets.filter(updated_at__gte=filters.updated_since)
    if filters.bucket or filters.metric:
        clock = Q(clocks__status__in=ACTIVE_CLOCK_STATUSES)
        if filters.bucket:
            clock &= Q(clocks__bucket=filters.bucket)
        if filters.metric:
            clock &= Q(clocks__metric=filters.metric)
        tickets = tickets.filter(clock).distinct()
    if filters.cursor:
        at, pk = _decode_cursor(filters.cursor)
        tickets = tickets.filter(Q(updated_at__gt=at) | Q(updated_at=at, pk__gt=pk))
    page = list(tickets.order_by("updated_at", "pk")[: filters.limit + 1])
    more = len(page) > filters.limit
    page = page[: filters.limit]
    return {
        "items": [ticket_out(t) for t in page],
        "next_cursor": _encode_cursor(page[-1]) if more and page else None,
    }


@router.post(
    "/tickets/{source}/{external_id}/events",
    response={200: EventsOut, **COMMON},
    summary="Append events to a ticket (all or none)",
)
def post_events(
    request: HttpRequest,
    source: str,
    external_id: str,
    data: EventsIn,
) -> tuple[int, Any]:
    _check_ids(source, external_id)

    def run() -> tuple[int, Any]:
        now = timezone.now()
        with transaction.atomic(), one_sync_per_ticket():
            lookups = Lookups(_token(request))
            ticket = lookups.find(source, external_id)
            results = append_events(ticket, data.events, now, lookups)
        return 200, {
            "ticket": ticket_out(_fresh(ticket)),
            "events": [
                {"id": pk, "kind": kind, "at": at, "duplicate": dup}
                for pk, kind, at, dup in results
            ],
        }

    return idempotent(request, run)


@router.post(
    "/batch",
    response={200: BatchOut, **COMMON},
    summary="Upsert many tickets and append their events; atomic per ticket",
)
def post_batch(request: HttpRequest, data: BatchIn) -> tuple[int, Any]:
    def run() -> tuple[int, Any]:
        token = _token(request)
        now = timezone.now()
        items = []
        # One transaction for the call, a savepoint per item (atomic per ticket), and each
        # touched ticket's clocks re-synced once at the end, in a few queries for all.
        lookups = Lookups(token)
        lookups.prefetch([(item.source, item.external_id) for item in data.items])
        with transaction.atomic(), one_sync_per_ticket() as sync:
            for index, item in enumerate(data.items):
                result: dict[str, Any] = {"index": index, "ok": True, "status": 200}
                try:
                    _check_ids(item.source, item.external_id)
                    with sync.item():
                        if item.ticket is not None:
                            ticket, created, applied = upsert_ticket(
                                token,
                                item.source,
                                item.external_id,
                                item.ticket,
                                now,
                                item.events,
                                lookups,
                            )
                            result["created"] = created
                        else:
                            ticket = lookups.find(item.source, item.external_id)
                            applied = append_events(ticket, item.events, now, lookups)
                    lookups.tickets[(item.source, item.external_id)] = ticket
                    result["ticket_id"] = ticket.pk
                    result["events"] = sum(1 for *_, dup in applied if not dup)
                    result["duplicates"] = sum(1 for *_, dup in applied if dup)
                except ApiError as error:
                    result.update(
                        ok=False,
                        status=error.status,
                        errors=[
                            {
                                "field": f"items[{index}].{error.field or ''}".rstrip("."),
                                "message": error.message,
                            }
                        ],
                    )
                items.append(result)
        failed = sum(1 for r in items if not r["ok"])
        return 200, {"ok": len(items) - failed, "failed": failed, "items": items}

    return idempotent(request, run)


def _check_ids(source: str, external_id: str) -> None:
    for field, value in (("source", source), ("external_id", external_id)):
        if problem := text_problem(value):
            raise ApiError(422, f"{field} {problem}.", field)
    if not source.strip() or len(source) > 50:
        raise ApiError(422, "source must be 1 to 50 characters.", "source")
    if not external_id.strip() or len(external_id) > 200:
        raise ApiError(422, "external_id must be 1 to 200 characters.", "external_id")


def error_response(api: Any, request: HttpRequest, error: ApiError) -> HttpResponse:
    errors = [{"field": error.field, "message": error.message}] if error.field else []
    return api.create_response(
        request, {"detail": error.message, "errors": errors}, status=error.status
    )
