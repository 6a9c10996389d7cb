"""What a board, the agent queue and a ticket page show: state from the database, fragments
from templates.

The page, an htmx request and a websocket push all render the same fragment templates
(``dashboard/fragments/*.html``) through ``render_board_fragments``, ``queue_rows`` /
``render_queue_rows`` and ``render_ticket_fragments``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo

import segno
from django.conf import settings
from django.db.models import Case, Count, IntegerField, Q, QuerySet, Value, When
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
    Rescue,
    SLAClock,
)
from tickets.models import Partner, Priority, Ticket, TicketQuerySet, TicketStatus

BUCKETS = [Bucket.GREEN, Bucket.YELLOW, Bucket.ORANGE, Bucket.RED]
METRIC_LABELS: dict[str, str] = {
    Metric.FIRST_RESPONSE: "Respond",
    Metric.RESOLUTION_PLAN: "Plan",
    Metric.RESOLUTION: "Resolve",
}
AT_RISK_ROWS = 8
BREACHED_SHOWN = 6
QUEUE_PAGE = 25
BOARD_FRAGMENTS = [
    "board-metrics",
    "board-priorities",
    "board-at-risk",
    "board-breached",
    "board-compliance",
]
TICKET_FRAGMENTS = ["ticket-head", "ticket-clocks", "ticket-timeline"]


def board_group(board_id: int, viewer: Viewer) -> str:
    return f"board-{board_id}-{viewer.key}"


def queue_group(viewer: Viewer) -> str:
    return f"queue-{viewer.key}"


def ticket_group(ticket_id: int) -> str:
    return f"ticket-{ticket_id}"


def board_tickets(board: Board, viewer: Viewer) -> TicketQuerySet:
    partner_ids = {p.pk for p in board.partners.all()}
    return cast(
        TicketQuerySet, viewer.scope(Ticket.objects.filter(board.ticket_filter(partner_ids)))
    )


def display_zone() -> ZoneInfo:
    """The site's display zone (``TIME_ZONE``)."""
    return ZoneInfo(settings.TIME_ZONE)


def board_zone(board: Board, viewer: Viewer) -> ZoneInfo:
    """Where the board's "today" starts and its times are shown: the board's own zone, else
    the zone of the one partner it shows, else the viewer's partner's, else the site's."""
    name = board.display_timezone
    if not name:
        partners = list(board.partners.all())
        if len(partners) == 1:
            name = partners[0].timezone
        elif viewer.partner_id is not None:
            name = (
                Partner.objects.filter(pk=viewer.partner_id)
                .values_list("timezone", flat=True)
                .first()
            ) or ""
    try:
        return ZoneInfo(name) if name else display_zone()
    except (KeyError, ValueError):
        return display_zone()


def short_url(ticket_id: int) -> str:
    """The address a phone opens from the wall (``/t/<id>`` redirects to the ticket page)."""
    return f"{settings.SITE_URL.rstrip('/')}/t/{ticket_id}"


@lru_cache(maxsize=4096)
def qr_data_uri(url: str) -> str:
    """An SVG QR code of ``url`` as a data URI (light modules transparent: the dark theme's
    panel shows through; rendered once per address and process)."""
    code = segno.make(url, error="m")
    return cast(str, code.svg_data_uri(scale=1, border=2, dark="#0d1117", light="#e6edf3"))


# --------------------------------------------------------------------------- rows


@dataclass
class Row:
    """One ticket on a board list or in the queue, with the clock that matters most now."""

    ticket: Ticket
    clock: SLAClock
    metric: str
    bucket: str
    paused: bool
    breached: bool
    remaining: timedelta
    managed: bool
    ack: Acknowledgement | None = None  # who acknowledged the headline clock's escalation
    escalated: bool = False
    late: timedelta | None = None  # breached rows: how long ago

    @property
    def code(self) -> str:
        return f"#{self.ticket.pk}"

    @property
    def url(self) -> str:
        return short_url(self.ticket.pk)

    @property
    def qr(self) -> str:
        return qr_data_uri(self.url)


def _row(clock: SLAClock) -> Row:
    ticket = clock.ticket
    return Row(
        ticket=ticket,
        clock=clock,
        metric=METRIC_LABELS.get(clock.metric, clock.metric),
        bucket=clock.bucket,
        paused=clock.status == ClockStatus.PAUSED,
        breached=clock.breached_at is not None,
        remaining=timedelta(seconds=clock.remaining_seconds or 0),
        managed=ticket.source in settings.SLABOARD_MANAGED_SOURCES,
    )


ROW_RELATED = ("ticket", "ticket__customer", "ticket__partner", "ticket__assignee")


def _first_per_ticket(clocks: Iterable[SLAClock], limit: int, skip: int = 0) -> list[Row]:
    """One row per ticket, in the order of the clocks (its first clock is its headline)."""
    rows: list[Row] = []
    seen: set[int] = set()
    for clock in clocks:
        if clock.ticket_id in seen:
            continue
        seen.add(clock.ticket_id)
        if len(seen) <= skip:
            continue
        rows.append(_row(clock))
        if len(rows) >= limit:
            break
    return rows


def saveable(clocks: QuerySet[SLAClock], now: datetime) -> QuerySet[SLAClock]:
    """Running clocks not yet breached, soonest breach first: what can still be saved."""
    return clocks.filter(
        status=ClockStatus.RUNNING, breached_at__isnull=True, due_at__gt=now
    ).order_by("due_at", "pk")


def breached(clocks: QuerySet[SLAClock], now: datetime) -> QuerySet[SLAClock]:
    """Active clocks past due, oldest breach first (the tick may not have marked them yet)."""
    return clocks.filter(
        Q(breached_at__isnull=False) | Q(status=ClockStatus.RUNNING, due_at__lte=now)
    ).order_by("breached_at", "due_at", "pk")


def _at_risk(clocks: QuerySet[SLAClock], now: datetime, limit: int) -> list[Row]:
    """Saveable clocks in yellow or orange, most urgent first (by time to breach)."""
    risky = saveable(clocks, now).filter(bucket__in=[Bucket.YELLOW, Bucket.ORANGE])
    rows = _first_per_ticket(risky.select_related(*ROW_RELATED)[: limit * 3], limit)
    _add_escalations(rows)
    return rows


def _breached_strip(clocks: QuerySet[SLAClock], now: datetime) -> dict[str, Any]:
    late = breached(clocks, now)
    totals = late.aggregate(
        tickets=Count("ticket", distinct=True),
        unclaimed=Count("ticket", distinct=True, filter=Q(ticket__assignee__isnull=True)),
    )
    oldest = _first_per_ticket(
        late.filter(ticket__assignee__isnull=True).select_related(*ROW_RELATED)[
            : BREACHED_SHOWN * 3
        ],
        BREACHED_SHOWN,
    )
    _add_escalations(oldest)
    for row in oldest:
        since = row.clock.breached_at or row.clock.due_at
        row.late = now - since if since else timedelta(0)
    return {"tickets": totals["tickets"], "unclaimed": totals["unclaimed"], "oldest": oldest}


def _add_escalations(rows: Sequence[Row]) -> None:
    found = escalations((r.clock.ticket_id, r.clock.metric, r.clock.cycle) for r in rows)
    for row in rows:
        clock = row.clock
        info = found.get((clock.ticket_id, clock.metric, clock.cycle), {})
        row.ack, row.escalated = info.get("ack"), bool(info.get("escalated"))


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


# --------------------------------------------------------------------------- the wall board


def _compliance(tickets: QuerySet[Ticket], since: datetime) -> dict[str, Any]:
    """Verdicts reached since ``since``: met on time, breached, and clocks that ended with no
    verdict (stopped, e.g. resolved before any human reply) — shown, never dropped."""
    clocks = SLAClock.objects.filter(ticket__in=tickets)
    verdicts = clocks.filter(
        Q(status=ClockStatus.MET, met_at__gte=since) | Q(breached_at__gte=since)
    )
    totals = verdicts.aggregate(
        total=Count("pk"), breached=Count("pk", filter=Q(breached_at__isnull=False))
    )
    stopped = clocks.filter(
        status=ClockStatus.STOPPED, breached_at__isnull=True, stopped_at__gte=since
    ).count()
    total, late = totals["total"], totals["breached"]
    percent = None if not total else round(100 * (total - late) / total, 1)
    return {
        "total": total,
        "breached": late,
        "met": total - late,
        "percent": percent,
        "stopped": stopped,
    }


def _rescues(tickets: QuerySet[Ticket], since: datetime) -> list[tuple[str, int]]:
    """Today's rescues per agent, most first."""
    rows = (
        Rescue.objects.filter(ticket__in=tickets, met_at__gte=since, user__isnull=False)
        .values_list("user__username", flat=True)
        .order_by()
    )
    return Counter(rows).most_common(4)


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
    zone = board_zone(board, viewer)
    local_now = now.astimezone(zone)
    today = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    return {
        "board": board,
        "viewer": viewer,
        "now": now,
        "zone": zone.key,
        "evaluated_at": evaluated_at or now,
        "metrics": [
            {"key": key, "label": label, "counts": [(b, by_metric[key][b]) for b in BUCKETS]}
            for key, label in METRIC_LABELS.items()
        ],
        "priorities": [
            {"key": p, "label": label, "counts": [(b, by_priority[p][b]) for b in BUCKETS]}
            for p, label in Priority.choices
        ],
        "at_risk": _at_risk(clocks, now, AT_RISK_ROWS),
        "breached": _breached_strip(clocks, now),
        "today": _compliance(tickets, today),
        "month": _compliance(tickets, month),
        "rescues": _rescues(tickets, today),
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


# --------------------------------------------------------------------------- the agent queue

QUEUE_VIEWS: dict[str, str] = {
    "save": "Save now",
    "breached": "Breached",
    "mine": "Mine",
    "waiting": "Waiting",
    "all": "All open",
}


def _search(tickets: QuerySet[Ticket], q: str) -> QuerySet[Ticket]:
    q = q.strip()
    if not q:
        return tickets
    reference = q.lstrip("#")
    condition = (
        Q(external_id__icontains=q) | Q(subject__icontains=q) | Q(customer__name__icontains=q)
    )
    if reference.isdigit():
        condition |= Q(pk=int(reference))
    source, _, external = q.partition(":")
    if external:
        condition |= Q(source=source, external_id__icontains=external)
    return tickets.filter(condition)


def headline(clocks: QuerySet[SLAClock], now: datetime) -> QuerySet[SLAClock]:
    """Active clocks in the order that picks each ticket's headline clock first: saveable
    ones by time to breach, then breached ones (oldest breach first), then paused ones."""
    return clocks.annotate(
        rank=Case(
            When(status=ClockStatus.RUNNING, breached_at__isnull=True, due_at__gt=now, then=0),
            When(status=ClockStatus.RUNNING, then=1),
            default=Value(2),
            output_field=IntegerField(),
        )
    ).order_by("rank", "due_at", "breached_at", "remaining_seconds", "pk")


def queue_rows(
    viewer: Viewer,
    user: Any,
    now: datetime,
    *,
    view: str = "save",
    q: str = "",
    page: int = 1,
) -> dict[str, Any]:
    """One page of a queue view: each row a ticket with its most urgent clock."""
    if view not in QUEUE_VIEWS:
        view = "save"
    page = max(1, page)
    tickets = _search(viewer.scope(Ticket.objects.open()), q)
    clocks = SLAClock.objects.filter(status__in=ACTIVE_CLOCK_STATUSES, ticket__in=tickets)
    if view == "save":
        ordered = saveable(clocks, now)
    elif view == "breached":
        ordered = breached(clocks, now)
    elif view == "waiting":
        ordered = clocks.filter(status=ClockStatus.PAUSED).order_by("remaining_seconds", "pk")
    elif view == "mine":
        mine = clocks.filter(ticket__assignee_id=getattr(user, "pk", None))
        ordered = headline(mine, now)
    else:
        ordered = headline(clocks, now)
    total = ordered.values("ticket_id").distinct().count()
    skip = (page - 1) * QUEUE_PAGE
    window = ordered.select_related(*ROW_RELATED)[: (skip + QUEUE_PAGE) * 3]
    rows = _first_per_ticket(window, QUEUE_PAGE, skip=skip)
    _add_escalations(rows)
    pages = max(1, -(-total // QUEUE_PAGE))
    return {
        "rows": rows,
        "view": view,
        "views": list(QUEUE_VIEWS.items()),
        "q": q,
        "page": page,
        "pages": pages,
        "total": total,
        "statuses": STATUS_CHOICES,
        "now": now,
    }


STATUS_CHOICES = [
    (value, label)
    for value, label in TicketStatus.choices
    if value not in (TicketStatus.RESOLVED, TicketStatus.CLOSED)
]


def rows_for_tickets(ticket_ids: Iterable[int], now: datetime) -> list[Row]:
    """The current row of each ticket (its headline clock), for live row updates."""
    ids = set(ticket_ids)
    if not ids:
        return []
    clocks = headline(
        SLAClock.objects.filter(status__in=ACTIVE_CLOCK_STATUSES, ticket_id__in=ids), now
    ).select_related(*ROW_RELATED)
    rows = _first_per_ticket(clocks, len(ids))
    _add_escalations(rows)
    return rows


def render_queue_rows(rows: Sequence[Row], now: datetime) -> str:
    """Rows as pushed to queues: each replaces the row with the same id where it is shown."""
    return "".join(
        render_to_string(
            "dashboard/fragments/queue-row.html",
            {"row": row, "statuses": STATUS_CHOICES, "now": now, "oob": True},
        )
        for row in rows
    )


# --------------------------------------------------------------------------- the ticket page


def ticket_state(ticket: Ticket, now: datetime) -> dict[str, Any]:
    clocks = list(ticket.clocks.select_related("policy", "target").order_by("metric", "cycle"))
    clocks.sort(key=lambda c: (list(METRIC_LABELS).index(c.metric), c.cycle))
    events = list(ticket.events.select_related("user").order_by("at", "pk"))
    notifications = list(ticket.notifications.select_related("rule").order_by("created_at", "pk"))
    acks = list(ticket.acknowledgements.select_related("user"))
    timeline: list[dict[str, Any]] = [{"at": e.at, "event": e} for e in events]
    timeline += [{"at": n.sent_at or n.created_at, "notification": n} for n in notifications]
    timeline += [{"at": a.at, "ack": a} for a in acks]
    timeline.sort(key=lambda item: item["at"])
    found = escalations((ticket.pk, c.metric, c.cycle) for c in clocks)
    return {
        "ticket": ticket,
        "clocks": [
            {
                "clock": c,
                "label": METRIC_LABELS.get(c.metric, c.metric),
                "remaining": timedelta(seconds=c.remaining_seconds or 0),
                **found.get((ticket.pk, c.metric, c.cycle), {}),
            }
            for c in clocks
        ],
        "timeline": timeline,
        "managed": ticket.source in settings.SLABOARD_MANAGED_SOURCES,
        "statuses": STATUS_CHOICES,
        "now": now,
    }


def render_ticket_fragments(ticket: Ticket, now: datetime) -> dict[str, str]:
    context = ticket_state(ticket, now)
    return {
        name: render_to_string(f"dashboard/fragments/{name}.html", context)
        for name in TICKET_FRAGMENTS
    }
