"""What a board and the agent queue show: state from the database, fragments from templates.

The page, an htmx request and a websocket push all render the same fragment templates
(``dashboard/fragments/*.html``) through ``render_board_fragments`` / ``render_queue_fragments``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet
from django.template.loader import render_to_string

from dashboard.access import Viewer
from dashboard.models import Board
from policies.models import (
    ACTIVE_CLOCK_STATUSES,
    ESCALATION_TRIGGERS,
    Acknowledgement,
    Bucket,
    ClockStatus,
    Metric,
    Notification,
    NotificationStatus,
    SLAClock,
)
from tickets.models import Priority, Ticket, TicketQuerySet, TicketStatus

BUCKETS = [Bucket.GREEN, Bucket.YELLOW, Bucket.ORANGE, Bucket.RED]
METRIC_LABELS: dict[str, str] = {
    Metric.FIRST_RESPONSE: "Respond",
    Metric.RESOLUTION_PLAN: "Plan",
    Metric.RESOLUTION: "Resolve",
}
AT_RISK_ROWS = 7
QUEUE_ROWS = 60
BOARD_FRAGMENTS = ["board-metrics", "board-priorities", "board-queue", "board-compliance"]


def board_group(board_id: int, viewer: Viewer) -> str:
    return f"board-{board_id}-{viewer.key}"


def queue_group(viewer: Viewer) -> str:
    return f"queue-{viewer.key}"


def board_tickets(board: Board, viewer: Viewer) -> TicketQuerySet:
    return cast(TicketQuerySet, viewer.scope(Ticket.objects.filter(board.ticket_filter())))


def display_zone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _at_risk(
    clocks: QuerySet[SLAClock], limit: int, *, include_green: bool
) -> list[dict[str, Any]]:
    """One row per ticket, its most urgent active clock first: red, orange, then soonest."""
    buckets = BUCKETS if include_green else [Bucket.YELLOW, Bucket.ORANGE, Bucket.RED]
    rows: list[dict[str, Any]] = []
    seen: set[int] = set()
    for bucket in (Bucket.RED, Bucket.ORANGE, Bucket.YELLOW, Bucket.GREEN):
        if bucket not in buckets or len(rows) >= limit:
            continue
        candidates = (
            clocks.filter(bucket=bucket)
            .select_related("ticket", "ticket__customer", "ticket__partner", "ticket__assignee")
            .order_by(F("due_at").asc(nulls_last=True), "pk")[: (limit - len(rows)) * 3]
        )
        for clock in candidates:
            if clock.ticket_id in seen:
                continue
            seen.add(clock.ticket_id)
            rows.append(_row(clock))
            if len(rows) >= limit:
                break
    _add_escalations(rows)
    return rows


def _add_escalations(rows: list[dict[str, Any]]) -> None:
    """Who acknowledged each row's clock, and whether it was escalated (notifications)."""
    found = escalations((r["clock"].ticket_id, r["clock"].metric, r["clock"].cycle) for r in rows)
    for row in rows:
        clock = row["clock"]
        row.update(found.get((clock.ticket_id, clock.metric, clock.cycle), {}))


def _row(clock: SLAClock) -> dict[str, Any]:
    ticket = clock.ticket
    return {
        "ticket": ticket,
        "clock": clock,
        "metric": METRIC_LABELS.get(clock.metric, clock.metric),
        "bucket": clock.bucket,
        "paused": clock.status == ClockStatus.PAUSED,
        "breached": clock.breached_at is not None,
        "remaining": timedelta(seconds=clock.remaining_seconds or 0),
        "managed": ticket.source in settings.SLABOARD_MANAGED_SOURCES,
    }


def _compliance(tickets: QuerySet[Ticket], since: datetime) -> dict[str, Any]:
    verdicts = SLAClock.objects.filter(ticket__in=tickets).filter(
        Q(status=ClockStatus.MET, met_at__gte=since) | Q(breached_at__gte=since)
    )
    totals = verdicts.aggregate(
        total=Count("pk"), breached=Count("pk", filter=Q(breached_at__isnull=False))
    )
    total, breached = totals["total"], totals["breached"]
    percent = None if not total else round(100 * (total - breached) / total, 1)
    return {"total": total, "breached": breached, "met": total - breached, "percent": percent}


def board_state(
    board: Board, viewer: Viewer, now: datetime, evaluated_at: datetime | None = None
) -> dict[str, Any]:
    tickets = board_tickets(board, viewer)
    open_tickets = tickets.open()
    clocks = SLAClock.objects.filter(status__in=ACTIVE_CLOCK_STATUSES, ticket__in=open_tickets)
    by_metric: dict[str, dict[str, int]] = {m: dict.fromkeys(BUCKETS, 0) for m in METRIC_LABELS}
    for row in clocks.values("metric", "bucket").annotate(n=Count("pk")):
        by_metric.setdefault(row["metric"], dict.fromkeys(BUCKETS, 0))[row["bucket"]] = row["n"]
    by_priority: dict[str, dict[str, int]] = {p: dict.fromkeys(BUCKETS, 0) for p in Priority.values}
    for row in clocks.values("ticket__priority", "bucket").annotate(n=Count("pk")):
        by_priority[row["ticket__priority"]][row["bucket"]] = row["n"]
    local_now = now.astimezone(display_zone())
    today = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    return {
        "board": board,
        "now": now,
        "evaluated_at": evaluated_at or now,
        "metrics": [
            {"key": key, "label": label, "counts": [(b, by_metric[key][b]) for b in BUCKETS]}
            for key, label in METRIC_LABELS.items()
        ],
        "priorities": [
            {"key": p, "label": label, "counts": [(b, by_priority[p][b]) for b in BUCKETS]}
            for p, label in Priority.choices
        ],
        "at_risk": _at_risk(clocks, AT_RISK_ROWS, include_green=False),
        "today": _compliance(tickets, today),
        "month": _compliance(tickets, month),
        "open_count": open_tickets.count(),
    }


def render_board_fragments(
    board: Board, viewer: Viewer, now: datetime, evaluated_at: datetime | None = None
) -> dict[str, str]:
    """{fragment id: html} — rendered once per board and viewer, pushed to every screen."""
    context = board_state(board, viewer, now, evaluated_at)
    return {
        name: render_to_string(f"dashboard/fragments/{name}.html", context)
        for name in BOARD_FRAGMENTS
    }


def queue_state(viewer: Viewer, now: datetime) -> dict[str, Any]:
    open_tickets = viewer.scope(Ticket.objects.open())
    clocks = SLAClock.objects.filter(status__in=ACTIVE_CLOCK_STATUSES, ticket__in=open_tickets)
    return {
        "now": now,
        "statuses": [
            (value, label)
            for value, label in TicketStatus.choices
            if value not in (TicketStatus.RESOLVED, TicketStatus.CLOSED)
        ],
        "rows": _at_risk(clocks, QUEUE_ROWS, include_green=True),
        "open_count": open_tickets.count(),
    }


def render_queue_fragments(viewer: Viewer, now: datetime) -> dict[str, str]:
    return {
        "queue-list": render_to_string(
            "dashboard/fragments/queue-list.html", queue_state(viewer, now)
        )
    }


def escalations(keys: Iterable[tuple[int, str, int]]) -> dict[tuple[int, str, int], Any]:
    """For (ticket, metric, cycle) keys: {"ack": Acknowledgement | None, "escalated": bool}.

    Two queries however many keys (the board's and queue's rows)."""
    keys = set(keys)
    if not keys:
        return {}
    ticket_ids = {k[0] for k in keys}
    acks = {
        (a.ticket_id, a.metric, a.cycle): a
        for a in Acknowledgement.objects.filter(ticket_id__in=ticket_ids).select_related("user")
    }
    escalated = set(
        Notification.objects.filter(ticket_id__in=ticket_ids, trigger__in=ESCALATION_TRIGGERS)
        .exclude(status=NotificationStatus.SKIPPED)
        .values_list("ticket_id", "metric", "cycle")
        .distinct()
    )
    return {k: {"ack": acks.get(k), "escalated": k in escalated} for k in keys}
