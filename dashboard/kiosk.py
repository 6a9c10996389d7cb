"""Kiosk links without the secret in any server's log.

A kiosk link is ``/boards/<slug>/#kiosk=<secret>``: browsers never send the part after ``#``,
so neither slaboard's access log nor a proxy's ever sees the secret. The board page, opened
without a login, answers with a small page whose script (``static/slaboard/kiosk.js``) posts
the secret from the fragment to ``/boards/<slug>/kiosk``, which stores it in an HttpOnly
cookie for this board and redirects to the board — the page and its websocket then
authenticate with the cookie. Without a fragment the script goes to the login page.

Links of the old form (``?kiosk=<secret>``) still work: exchanged once for the cookie and
redirected to the clean address (rotate them to get links of the new form).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_POST

from dashboard.access import kiosk_cookie
from dashboard.models import Board

COOKIE_AGE = timedelta(days=400)  # the longest browsers keep a cookie: wall screens stay up
NOT_VALID = "This kiosk link is not valid (it may have been revoked)."


def granted(board: Board, secret: str) -> HttpResponse:
    """Redirect to the board with its kiosk secret in an HttpOnly cookie."""
    response = HttpResponseRedirect(board.get_absolute_url(), status=303)
    response.set_cookie(
        kiosk_cookie(board.pk),
        secret,
        max_age=int(COOKIE_AGE.total_seconds()),
        httponly=True,
        secure=settings.SESSION_COOKIE_SECURE,
        samesite="Lax",
    )
    response["Referrer-Policy"] = "no-referrer"
    return response


def start_page(request: HttpRequest, slug: str, *, stale: bool) -> HttpResponse:
    """For a visitor without login or cookie: read ``#kiosk=`` in the browser and exchange
    it, or go to the login page. ``stale``: the cookie held a revoked secret."""
    context = {
        "exchange_url": reverse("board_kiosk", args=[slug]),
        "login_url": redirect_to_login(request.get_full_path())["Location"],
        "problem": NOT_VALID if stale else "",
    }
    # The default referrer policy (same-origin): the secret is not in this page's address,
    # and "no-referrer" would make the browser post with "Origin: null", which CSRF refuses.
    return render(request, "dashboard/kiosk.html", context)


@require_POST
def exchange(request: HttpRequest, slug: str) -> HttpResponse:
    """The kiosk secret (from the link's fragment, posted by the start page) for a cookie."""
    board = Board.objects.filter(slug=slug).first()
    secret = request.POST.get("token", "")
    if board is None or not board.kiosk_matches(secret):
        raise PermissionDenied(NOT_VALID)
    return granted(board, secret)
