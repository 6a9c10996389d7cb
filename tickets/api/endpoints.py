"""The /api/v1/ endpoints: thin, each one runs the ingestion service in a transaction."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone
from ninja import Query, Router

from policies.models import ACTIVE_CLOCK_STATUSES
from tickets.actions import one_sync_per_ticket
from tickets.api.auth import request_token
from tickets.api.errors import ApiError
from tickets.api.ingest import (
    Lookups,
    append_events,
    check_ids,
    decode_cursor,
    encode_cursor,
    fresh_ticket,
    idempotent,
    scoped_tickets,
    ticket_out,
    upsert_ticket,
)
from tickets.api.schemas import (
    BatchIn,
    BatchOut,
    ErrorOut,
    EventsIn,
    EventsOut,
    TicketFilters,
    TicketIn,
    TicketOut,
    TicketPage,
)

router = Router(tags=["tickets"])

COMMON = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut, 429: ErrorOut}


@router.put(
    "/tickets/{source}/{external_id}",
    response={200: TicketOut, 201: TicketOut, **COMMON},
    summary="Create or update a ticket by (source, external id)",
)
def put_ticket(
    request: HttpRequest, source: str, external_id: str, data: TicketIn
) -> tuple[int, Any]:
    check_ids(source, external_id)

    def run() -> tuple[int, Any]:
        now = timezone.now()
        with transaction.atomic(), one_sync_per_ticket():
            ticket, created, _ = upsert_ticket(
                request_token(request), source, external_id, data, now
            )
        return (201 if created else 200), ticket_out(fresh_ticket(ticket))

    return idempotent(request, run)


@router.get(
    "/tickets/{source}/{external_id}",
    response={200: TicketOut, **COMMON},
    summary="Read one ticket with its SLA clocks",
)
def get_ticket(request: HttpRequest, source: str, external_id: str) -> Any:
    check_ids(source, external_id)
    return ticket_out(fresh_ticket(Lookups(request_token(request)).find(source, external_id)))


@router.get("/tickets", response={200: TicketPage, **COMMON}, summary="List tickets (cursor pages)")
def list_tickets(request: HttpRequest, filters: Query[TicketFilters]) -> Any:
    unknown = sorted(set(request.GET) - set(TicketFilters.model_fields))
    if unknown:  # a misspelt filter must not silently return everything
        raise ApiError(422, f"Unknown query parameter {unknown[0]!r}.", unknown[0] or "query")
    tickets = scoped_tickets(request_token(request)).prefetch_related("clocks")
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
        at, pk = decode_cursor(filters.cursor)
        tickets = tickets.filter(Q(updated_at__gt=at) | Q(updated_at=at, pk__gt=pk))
    page = list(tickets.order_by("updated_at", "pk")[: filters.limit + 1])
    more = len(page) > filters.limit
    page = page[: filters.limit]
    return {
        "items": [ticket_out(t) for t in page],
        "next_cursor": encode_cursor(page[-1]) if more and page else None,
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
    check_ids(source, external_id)

    def run() -> tuple[int, Any]:
        now = timezone.now()
        with transaction.atomic(), one_sync_per_ticket():
            lookups = Lookups(request_token(request))
            ticket = lookups.find(source, external_id)
            results = append_events(ticket, data.events, now, lookups)
        return 200, {
            "ticket": ticket_out(fresh_ticket(ticket)),
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
        token = request_token(request)
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
                    check_ids(item.source, item.external_id)
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
