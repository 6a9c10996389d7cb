"""Pages: home, boards, a board (login or kiosk link), the agent queue, and queue actions."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required, permission_required
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard import kiosk as kiosk_links
from dashboard.access import Viewer, board_viewer, kiosk_cookie, visible_boards
from dashboard.boards import board_state, queue_state
from dashboard.models import Board
from policies.engine import evaluated_until
from policies.models import Acknowledgement, AckVia, Metric, Notification, SLAClock
from policies.notifications.acks import acknowledge, can_acknowledge
from policies.notifications.messages import read_ack_token
from tickets.actions import (
    ClaimConflict,
    TicketActionError,
    claim_ticket,
    record_event,
    release_ticket,
)
from tickets.models import EventKind, Ticket, TicketStatus, User


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    tickets = Ticket.objects.visible_to(request.user)
    context = {
        "open_count": tickets.open().count(),
        "total_count": tickets.count(),
        "boards": visible_boards(request.user),
    }
    return render(request, "dashboard/home.html", context)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


@require_GET
@login_required
def boards(request: HttpRequest) -> HttpResponse:
    return render(request, "dashboard/boards.html", {"boards": visible_boards(request.user)})


@require_GET
def board(request: HttpRequest, slug: str) -> HttpResponse:
    """A wall board: for logged-in users (scoped to their partner) or via its kiosk link."""
    board = Board.objects.filter(slug=slug).first()
    if "kiosk" in request.GET:  # a link of the old form: exchanged once for the cookie
        if board is None or not board.kiosk_matches(request.GET["kiosk"]):
            raise PermissionDenied(kiosk_links.NOT_VALID)
        return kiosk_links.granted(board, request.GET["kiosk"])
    kiosk = request.COOKIES.get(kiosk_cookie(board.pk), "") if board is not None else ""
    viewer = board_viewer(board, request.user, kiosk) if board is not None else None
    if viewer is None:
        if not request.user.is_authenticated:  # a kiosk link's fragment, or the login
            return kiosk_links.start_page(request, slug, stale=bool(kiosk))
        raise Http404("No such board.")
    assert board is not None
    now = timezone.now()
    context = board_state(board, viewer, now, evaluated_until())
    context["ws_url"] = f"/ws/boards/{board.slug}/"  # a kiosk's socket sends the cookie
    context["heartbeat_seconds"] = settings.HEARTBEAT_SECONDS
    response = render(request, "dashboard/board.html", context)
    response["Referrer-Policy"] = "no-referrer"  # kiosk links carry a secret
    return response


@require_GET
@login_required
@permission_required("tickets.claim_ticket", raise_exception=True)
def queue(request: HttpRequest) -> HttpResponse:
    context = queue_state(Viewer.for_user(request.user), timezone.now())
    context["ws_url"] = "/ws/queue/"
    context["heartbeat_seconds"] = settings.HEARTBEAT_SECONDS
    return render(request, "dashboard/queue.html", context)


def _agent_ticket(request: HttpRequest, pk: int) -> tuple[User, Ticket]:
    user = request.user
    if not isinstance(user, User) or not user.has_perm("tickets.claim_ticket"):
        raise PermissionDenied
    ticket = get_object_or_404(Ticket.objects.visible_to(user), pk=pk)
    return user, ticket


def _result(request: HttpRequest, message: str, status: int = 200) -> HttpResponse:
    return render(request, "dashboard/fragments/toast.html", {"message": message}, status=status)


@require_POST
@login_required
def grab(request: HttpRequest, pk: int) -> HttpResponse:
    user, ticket = _agent_ticket(request, pk)
    try:
        claim_ticket(ticket=ticket, user=user, now=timezone.now())
    except ClaimConflict as conflict:
        return _result(
            request, f"Too late: {ticket.external_id} is claimed by {conflict.holder}.", 409
        )
    except TicketActionError as error:
        return _result(request, str(error), 409)
    return _result(request, f"{ticket.external_id} is yours.")


@require_POST
@login_required
def release(request: HttpRequest, pk: int) -> HttpResponse:
    user, ticket = _agent_ticket(request, pk)
    try:
        release_ticket(ticket=ticket, user=user, now=timezone.now())
    except ClaimConflict as conflict:
        return _result(request, f"Only {conflict.holder} can release {ticket.external_id}.", 403)
    except TicketActionError as error:
        return _result(request, str(error), 403)
    return _result(request, f"{ticket.external_id} released.")


ACTIONS: dict[str, tuple[str, str]] = {
    "reply": (EventKind.REPLIED, "Reply recorded"),
    "plan": (EventKind.PLAN_SENT, "Plan recorded"),
    "resolve": (EventKind.RESOLVED, "Resolved"),
    "status": (EventKind.STATUS_CHANGED, "Status changed"),
}


@require_POST
@login_required
def act(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Record a human reply, plan, status change or resolution on a ticket managed here."""
    user, ticket = _agent_ticket(request, pk)
    if action not in ACTIONS:
        raise Http404("Unknown action.")
    if ticket.source not in settings.SLABOARD_MANAGED_SOURCES:
        return _result(
            request,
            f"{ticket.external_id} is managed in {ticket.source}: answer it there.",
            409,
        )
    kind, done = ACTIONS[action]
    payload: dict[str, Any] = {}
    if action == "status":
        status = request.POST.get("status", "")
        if status not in TicketStatus.values:
            return _result(request, "Choose a status.", 400)
        payload["status"] = status
    now = timezone.now()
    try:
        record_event(ticket=ticket, kind=kind, at=now, now=now, user=user, payload=payload)
    except TicketActionError as error:
        return _result(request, str(error), 400)
    return _result(request, f"{done} on {ticket.external_id}.")


@require_http_methods(["GET", "POST"])
@login_required
def acknowledge_link(request: HttpRequest, token: str) -> HttpResponse:
    """The link in a notification: GET shows what will be acknowledged, POST (CSRF) does it."""
    try:
        notification_id = read_ack_token(token)
    except signing.SignatureExpired:
        problem = "This acknowledge link has expired. Acknowledge from the queue instead."
        return render(request, "dashboard/acknowledge.html", {"problem": problem}, status=410)
    except signing.BadSignature:
        problem = "This acknowledge link is not valid (it may have been cut short)."
        return render(request, "dashboard/acknowledge.html", {"problem": problem}, status=400)
    notification = get_object_or_404(
        Notification.objects.select_related("ticket__partner", "ticket__customer", "rule"),
        pk=notification_id,
    )
    ticket = notification.ticket
    user = request.user
    if not can_acknowledge(user) or not Ticket.objects.visible_to(user).filter(pk=ticket.pk):
        raise PermissionDenied("You may not acknowledge this ticket's escalations.")
    metric, cycle = notification.metric, notification.cycle
    context: dict[str, Any] = {
        "notification": notification,
        "ticket": ticket,
        "metric": Metric(metric).label,
        "ack": Acknowledgement.objects.filter(ticket=ticket, metric=metric, cycle=cycle)
        .select_related("user")
        .first(),
        "done": False,
    }
    if request.method == "POST":
        assert isinstance(user, User)
        ack, created = acknowledge(
            ticket=ticket,
            metric=metric,
            cycle=cycle,
            user=user,
            now=timezone.now(),
            via=AckVia.LINK,
        )
        context.update(ack=ack, done=created)
    return render(request, "dashboard/acknowledge.html", context)


@require_POST
@login_required
def acknowledge_clock(request: HttpRequest, pk: int) -> HttpResponse:
    """The queue's Acknowledge button on an escalated clock."""
    user = request.user
    if not isinstance(user, User) or not can_acknowledge(user):
        raise PermissionDenied
    clock = get_object_or_404(
        SLAClock.objects.select_related("ticket"), pk=pk, ticket__in=Ticket.objects.visible_to(user)
    )
    ack, created = acknowledge(
        ticket=clock.ticket,
        metric=clock.metric,
        cycle=clock.cycle,
        user=user,
        now=timezone.now(),
        via=AckVia.QUEUE,
    )
    what = f"{Metric(clock.metric).label} on {clock.ticket.external_id}"
    if created:
        return _result(request, f"Acknowledged: {what}. Escalation stops.")
    who = ack.user.get_username() if ack.user else "someone"
    return _result(request, f"{what} was already acknowledged by {who}.")
