"""Request and response bodies: typed (pydantic), unknown fields refused. The OpenAPI
document is generated from them."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    field_validator,
)

from policies.models import Bucket, Metric
from tickets.models import (
    ActorKind,
    CustomerTier,
    Priority,
    TicketKind,
    TicketStatus,
)

MAX_BATCH_ITEMS = 5000
MAX_EVENTS_PER_CALL = 1000


_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]")


def _iso_only(value: Any) -> Any:
    """Refuse numbers (pydantic would read them as Unix timestamps): ISO 8601 text only."""
    if isinstance(value, datetime) or (isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("must be an ISO 8601 date-time with a time zone, e.g. 2026-11-23T09:30:00Z")


#: PostgreSQL stores offsets up to ±15:59 (pydantic reads up to ±23:59).
MAX_UTC_OFFSET = timedelta(hours=16)
#: The earliest instant the API takes: ticket systems did not exist before it.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def instant_problem(value: datetime) -> str | None:
    """Why an aware instant cannot be stored or compared (None: it can). Offsets beyond
    ±15:59 and instants before 1970 or past year 9999 in UTC would reach the database (and
    a 500) otherwise."""
    offset = value.utcoffset()
    if offset is None:
        return "must include a time zone"
    if abs(offset) >= MAX_UTC_OFFSET:
        return "has a UTC offset beyond ±15:59"
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        return "is out of range"
    if utc < EARLIEST:
        return "must not be before 1970-01-01T00:00:00Z"
    return None


def _storable(value: datetime) -> datetime:
    if problem := instant_problem(value):
        raise ValueError(problem)
    return value


IsoDateTime = Annotated[AwareDatetime, BeforeValidator(_iso_only), AfterValidator(_storable)]


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
