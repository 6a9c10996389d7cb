"""Pages: home, boards, a board (login or kiosk link), the agent queue, a ticket, and the
actions agents take. Thin: who may see what is ``dashboard.access``, what is shown is
``dashboard.boards``, every write is an action (``tickets.actions``)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from dashboard import kiosk as kiosk_links
from dashboard.access import (
    board_viewer,
    kiosk_cookie,
    may_take_over,
    may_work,
    queue_viewer,
    visible_boards,
    visible_tickets,
)
from dashboard.boards import board_state, queue_rows, ticket_state
from dashboard.models import Board
from policies.engine import evaluated_until
from policies.models import Acknowledgement, AckVia, Metric, Notification, SLAClock
from policies.notifications.acks import acknowledge, can_acknowledge
from policies.notifications.messages import read_ack_token
from tickets.actions import (
    ClaimConflict,
    TicketActionError,
    act_on_ticket,
    claim_ticket,
    reassign_ticket,
    release_ticket,
    take_over_ticket,
)
from tickets.models import Ticket, User


class LoginView(auth_views.LoginView):
    """The product's own sign-in (agents, managers, partner users); only admins need staff."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    template_name = "registration/logged_out.html"


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
    board = Board.objects.prefetch_related("partners").filter(slug=slug).first()
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


def _page_number(raw: str | None) -> int:
    try:
        return max(1, min(int(raw or "1"), 10_000))
    except ValueError:
        return 1


@require_GET
@login_required
def queue(request: HttpRequest) -> HttpResponse:
    """The agent queue: one view (save now, breached, mine, waiting, all), searched and paged.
    The page and an htmx request (the view tabs, search, paging, the idle refresh) render the
    same list partial."""
    viewer = queue_viewer(request.user)
    if viewer is None:
        raise PermissionDenied("The queue is for agents and managers.")
    context = queue_rows(
        viewer,
        request.user,
        timezone.now(),
        view=request.GET.get("view", "save"),
        q=request.GET.get("q", "")[:200],
        page=_page_number(request.GET.get("page")),
    )
    if getattr(request, "htmx", False):
        return render(request, "dashboard/fragments/queue-list.html", context)
    context["ws_url"] = "/ws/queue/"
    context["heartbeat_seconds"] = settings.HEARTBEAT_SECONDS
    context["may_take_over"] = may_take_over(request.user)
    return render(request, "dashboard/queue.html", context)


def _visible_ticket(request: HttpRequest, pk: int) -> Ticket:
    return get_object_or_404(
        visible_tickets(request.user).select_related("partner", "customer", "assignee"), pk=pk
    )


@require_GET
@login_required
def ticket(request: HttpRequest, pk: int) -> HttpResponse:
    """A ticket: its clocks, timeline and the actions the viewer may take. Live."""
    found = _visible_ticket(request, pk)
    context = ticket_state(found, timezone.now())
    context["ws_url"] = f"/ws/tickets/{found.pk}/"
    context["heartbeat_seconds"] = settings.HEARTBEAT_SECONDS
    context["may_work"] = may_work(request.user)
    context["may_take_over"] = may_take_over(request.user)
    context["may_acknowledge"] = can_acknowledge(request.user)
    context["agents"] = _assignable(found) if context["may_take_over"] else []
    return render(request, "dashboard/ticket.html", context)


def _assignable(ticket: Ticket) -> list[User]:
    """Who a manager may hand the ticket to: active agents (by role) of its partner or of your
    own staff."""
    agents = Q(groups__permissions__codename="claim_ticket") | Q(
        user_permissions__codename="claim_ticket"
    )
    users = (
        User.objects.filter(agents, is_active=True)
        .filter(Q(partner__isnull=True) | Q(partner_id=ticket.partner_id))
        .exclude(pk=ticket.assignee_id or 0)
        .distinct()
        .order_by("username")
    )
    return list(users[:200])


@require_GET
def short_link(request: HttpRequest, pk: int) -> HttpResponse:
    """What a phone opens from the wall's QR code: the ticket page, after signing in."""
    return HttpResponseRedirect(reverse("ticket", args=[pk]))


def _agent(request: HttpRequest, pk: int) -> tuple[User, Ticket]:
    user = request.user
    if not isinstance(user, User) or not may_work(user):
        raise PermissionDenied("Only agents and managers act on tickets.")
    return user, _visible_ticket(request, pk)


def _result(request: HttpRequest, message: str, status: int = 200) -> HttpResponse:
    return render(request, "dashboard/fragments/toast.html", {"message": message}, status=status)


@require_POST
@login_required
def grab(request: HttpRequest, pk: int) -> HttpResponse:
    user, found = _agent(request, pk)
    try:
        claim_ticket(ticket=found, user=user, now=timezone.now())
    except ClaimConflict as conflict:
        return _result(
            request, f"Too late: {found.reference} is claimed by {conflict.holder}.", 409
        )
    except TicketActionError as error:
        return _result(request, str(error), 409)
    return _result(request, f"{found.reference} is yours.")


@require_POST
@login_required
def release(request: HttpRequest, pk: int) -> HttpResponse:
    user, found = _agent(request, pk)
    try:
        release_ticket(ticket=found, user=user, now=timezone.now())
    except ClaimConflict as conflict:
        return _result(request, f"Only {conflict.holder} can release {found.reference}.", 403)
    except TicketActionError as error:
        return _result(request, str(error), 403)
    return _result(request, f"{found.reference} released.")


@require_POST
@login_required
def take_over(request: HttpRequest, pk: int) -> HttpResponse:
    user, found = _agent(request, pk)
    try:
        take_over_ticket(ticket=found, user=user, now=timezone.now())
    except TicketActionError as error:
        return _result(request, str(error), 403)
    return _result(request, f"You took over {found.reference}.")


@require_POST
@login_required
def reassign(request: HttpRequest, pk: int) -> HttpResponse:
    user, found = _agent(request, pk)
    to = User.objects.filter(username=request.POST.get("assignee", "")).first()
    if to is None:
        return _result(request, "Choose who gets the ticket.", 400)
    try:
        reassign_ticket(ticket=found, user=user, to=to, now=timezone.now())
    except TicketActionError as error:
        return _result(request, str(error), 403)
    return _result(request, f"{found.reference} is now {to.get_username()}'s.")


DONE = {
    "reply": "Reply recorded",
    "plan": "Plan recorded",
    "resolve": "Resolved",
    "status": "Status changed",
    "note": "Note added",
}


@require_POST
@login_required
def act(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    """Record a reply, plan (with their text), status, resolution or note on a ticket managed
    here, which the agent holds."""
    user, found = _agent(request, pk)
    if action not in DONE:
        raise Http404("Unknown action.")
    if found.source not in settings.SLABOARD_MANAGED_SOURCES:
        return _result(
            request, f"{found.reference} is managed in {found.source}: answer it there.", 409
        )
    try:
        act_on_ticket(
            ticket=found,
            user=user,
            action=action,
            now=timezone.now(),
            text=request.POST.get("text", ""),
            status=request.POST.get("status", ""),
        )
    except TicketActionError as error:
        status = 403 if error.field is None else 400
        return _result(request, str(error), status)
    return _result(request, f"{DONE[action]} on {found.reference}.")


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
    found = notification.ticket
    user = request.user
    if not can_acknowledge(user) or not visible_tickets(user).filter(pk=found.pk):
        raise PermissionDenied("You may not acknowledge this ticket's escalations.")
    metric, cycle = notification.metric, notification.cycle
    context: dict[str, Any] = {
        "notification": notification,
        "ticket": found,
        "metric": Metric(metric).label,
        "ack": Acknowledgement.objects.filter(ticket=found, metric=metric, cycle=cycle)
        .select_related("user")
        .first(),
        "done": False,
    }
    if request.method == "POST":
        assert isinstance(user, User)
        ack, created = acknowledge(
            ticket=found,
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
    """The Acknowledge button on an escalated clock (queue, ticket page)."""
    user = request.user
    if not isinstance(user, User) or not can_acknowledge(user):
        raise PermissionDenied
    clock = get_object_or_404(
        SLAClock.objects.select_related("ticket"), pk=pk, ticket__in=visible_tickets(user)
    )
    ack, created = acknowledge(
        ticket=clock.ticket,
        metric=clock.metric,
        cycle=clock.cycle,
        user=user,
        now=timezone.now(),
        via=AckVia.QUEUE,
    )
    what = f"{Metric(clock.metric).label} on {clock.ticket.reference}"
    if created:
        return _result(request, f"Acknowledged: {what}. Escalation stops.")
    who = ack.user.get_username() if ack.user else "someone"
    return _result(request, f"{what} was already acknowledged by {who}.")
