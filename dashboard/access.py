"""Who may see what: the viewer scope of a screen, and who may watch a board or the queue.

One home for these rules: the pages (``dashboard.views``) and the websocket
(``dashboard.consumers``) both ask here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Q, QuerySet

from dashboard.models import Board
from tickets.models import Ticket, TicketQuerySet


@dataclass(frozen=True)
class Viewer:
    """Whose eyes: everyone's tickets (staff, kiosk) or one partner's."""

    partner_id: int | None = None

    @property
    def key(self) -> str:
        return "all" if self.partner_id is None else f"p{self.partner_id}"

    @classmethod
    def from_key(cls, key: str) -> Viewer:
        return cls(None if key == "all" else int(key.removeprefix("p")))

    @classmethod
    def for_user(cls, user: Any) -> Viewer:
        return cls(getattr(user, "partner_id", None))

    def scope(self, tickets: QuerySet[Ticket]) -> QuerySet[Ticket]:
        return tickets if self.partner_id is None else tickets.filter(partner_id=self.partner_id)


def kiosk_cookie(board_id: int) -> str:
    """The cookie that holds a board's kiosk secret in a kiosk browser (``dashboard.kiosk``)."""
    return f"slaboard_kiosk_{board_id}"


def is_signed_in(user: Any) -> bool:
    return user is not None and user.is_authenticated and user.is_active


def is_own_staff(user: Any) -> bool:
    """Your own staff: signed in, staff, and not a partner's user."""
    return is_signed_in(user) and user.is_staff and user.partner_id is None


def visible_boards(user: Any) -> QuerySet[Board]:
    """The boards a signed-in user may see (and see listed): your own people see every
    board; a partner's user the boards for all partners (no partner chosen) and those that
    include their partner — not another partner's board, not even its name."""
    if not is_signed_in(user):
        return Board.objects.none()
    if user.partner_id is None:
        return Board.objects.all()
    return Board.objects.filter(Q(partners__isnull=True) | Q(partners=user.partner_id)).distinct()


def user_may_watch(board: Board, user: Any) -> bool:
    if not is_signed_in(user):
        return False
    if user.partner_id is None:
        return True
    partner_ids = {p.pk for p in board.partners.all()}  # prefetched by callers with many
    return not partner_ids or user.partner_id in partner_ids


def board_viewer(board: Board, user: Any, kiosk: str) -> Viewer | None:
    """Who watches ``board``: a signed-in user who may see it (``visible_boards``) in their
    own scope, or anyone holding the board's current kiosk secret (everything the board
    shows, read-only); None: nobody."""
    if user_may_watch(board, user):
        return Viewer.for_user(user)
    if board.kiosk_matches(kiosk):
        return Viewer()
    return None


def queue_viewer(user: Any) -> Viewer | None:
    """The agent queue: signed-in users who may take tickets, in their own scope."""
    if is_signed_in(user) and user.has_perm("tickets.claim_ticket"):
        return Viewer.for_user(user)
    return None


def visible_tickets(user: Any) -> TicketQuerySet:
    """The tickets a user may open (the ticket page, its live updates): their scope."""
    if not is_signed_in(user):
        return Ticket.objects.none()
    return Ticket.objects.visible_to(user)


def may_work(user: Any) -> bool:
    """Agents and managers take tickets and record what they do on them."""
    return is_signed_in(user) and user.has_perm("tickets.claim_ticket")


def may_take_over(user: Any) -> bool:
    """Managers take over and reassign claimed tickets."""
    return is_signed_in(user) and user.has_perm("tickets.take_over_ticket")


def may_see_reports(user: Any) -> bool:
    return is_signed_in(user) and user.has_perm("dashboard.view_reports")
