"""Open sockets over time: what each was granted, and which grants no longer hold.

A socket is checked at connect (``dashboard.access``); this module checks it again later, so a
user who logs out, is deactivated, loses a permission, is moved to another partner or whose
session expires stops receiving that scope's pushes. ``revoked`` answers for every socket of a
server process in a few queries (users, sessions, boards: one each, whatever their number; the
queue permission is asked per agent with a queue open), and judges with the same rules as
connect — ``board_viewer`` and ``queue_viewer`` — so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import AnonymousUser
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils.crypto import constant_time_compare

from dashboard.access import board_viewer, is_signed_in, queue_viewer
from dashboard.boards import board_group, queue_group, ticket_group
from dashboard.models import Board
from tickets.models import Ticket, User


@dataclass(frozen=True)
class Grant:
    """What one socket was allowed to watch (``group``), and on whose authority: a user and
    the session that logged them in, or a board's kiosk secret."""

    group: str
    board_id: int | None = None  # None: the agent queue or a ticket page
    ticket_id: int | None = None  # a ticket page
    user_id: int | None = None  # None: a kiosk screen
    session_key: str | None = None  # None: no session to check (a user put in scope directly)
    kiosk: str = ""


def sessions(keys: set[str], now: datetime) -> dict[str, dict[str, Any]]:
    """The data of those sessions that still exist and have not expired, by key. With the
    database backends (Django's default), one query for all of them."""
    if not keys:
        return {}
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if issubclass(store, DatabaseSessionStore):
        rows = store.get_model_class().objects.filter(session_key__in=keys, expire_date__gt=now)
        decoder = store()
        return {row.session_key: decoder.decode(row.session_data) for row in rows}
    found = {}
    for key in keys:  # cache, file or cookie sessions: each loads itself (empty when gone)
        data = store(session_key=key).load()
        if data:
            found[key] = data
    return found


def _session_holds(data: dict[str, Any] | None, user: User) -> bool:
    """Whether the session still logs ``user`` in: the same user, and a password hash that
    still verifies (a password change elsewhere logs every session out, as on pages)."""
    if data is None or str(data.get(SESSION_KEY)) != str(user.pk):
        return False
    stored = data.get(HASH_SESSION_KEY) or ""
    if not stored:
        return False
    return constant_time_compare(stored, user.get_session_auth_hash()) or any(
        constant_time_compare(stored, fallback)
        for fallback in user.get_session_auth_fallback_hash()
    )


def _group_now(
    grant: Grant, user: Any, boards: Mapping[int, Board], partners: Mapping[int, int]
) -> str | None:
    """The group the socket would be given now, by the rules it was given one at connect."""
    if grant.ticket_id is not None:  # as ``visible_tickets``: their partner's, or any
        partner_id = partners.get(grant.ticket_id)
        if partner_id is None or not is_signed_in(user):
            return None
        if user.partner_id is not None and user.partner_id != partner_id:
            return None
        return ticket_group(grant.ticket_id)
    if grant.board_id is None:
        viewer = queue_viewer(user)
        return None if viewer is None else queue_group(viewer)
    board = boards.get(grant.board_id)
    if board is None:
        return None
    viewer = board_viewer(board, user, grant.kiosk)
    return None if viewer is None else board_group(board.pk, viewer)


def revoked(grants: Mapping[str, Grant], now: datetime) -> set[str]:
    """The sockets (keys of ``grants``) that may no longer watch what they were granted."""
    user_ids = {g.user_id for g in grants.values() if g.user_id is not None}
    users = {u.pk: u for u in User.objects.filter(pk__in=user_ids)} if user_ids else {}
    keys = {g.session_key for g in grants.values() if g.session_key}
    live_sessions = sessions(keys, now)
    board_ids = {g.board_id for g in grants.values() if g.board_id is not None}
    boards = (
        {b.pk: b for b in Board.objects.filter(pk__in=board_ids).prefetch_related("partners")}
        if board_ids
        else {}
    )
    ticket_ids = {g.ticket_id for g in grants.values() if g.ticket_id is not None}
    partners = (
        dict(Ticket.objects.filter(pk__in=ticket_ids).values_list("pk", "partner_id"))
        if ticket_ids
        else {}
    )
    gone = set()
    for socket, grant in grants.items():
        user: Any = AnonymousUser()
        if grant.user_id is not None:
            user = users.get(grant.user_id)
            if user is None or (
                grant.session_key is not None
                and not _session_holds(live_sessions.get(grant.session_key), user)
            ):
                gone.add(socket)
                continue
        if _group_now(grant, user, boards, partners) != grant.group:
            gone.add(socket)
    return gone
