"""Project middleware: one log line per request with its id; a database that does not answer
is a 503 with Retry-After, not a 500."""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from slaboard import metrics
from slaboard.logs import request_id

log = logging.getLogger("slaboard.database")
access_log = logging.getLogger("slaboard.request")

#: An id sent by a proxy in X-Request-ID is kept if it looks like one; otherwise we make one.
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")


class RequestLogMiddleware:
    """Give each request an id (X-Request-ID in and out) and write its one access line.

    The id is on every log line written while the request is handled (``slaboard.logs``).
    The line: ``GET /path 200 12 ms``, with method, path, status and duration_ms as fields
    for the JSON format. It replaces the servers' own access logs (settings.LOGGING).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        given = request.headers.get("X-Request-ID", "")
        rid = given if REQUEST_ID.match(given) else secrets.token_hex(8)
        token = request_id.set(rid)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = rid
            duration = (time.perf_counter() - started) * 1000
            status = response.status_code
            metrics.observe_request(request.path, request.method or "", status, duration / 1000)
            access_log.log(
                # A 503 is load shed or a database away, reported once by the middleware below.
                logging.WARNING if status >= 500 and status != 503 else logging.INFO,
                "%s %s %s %.0f ms",
                request.method,
                request.get_full_path(),
                status,
                duration,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(duration, 1),
                },
            )
            return response
        finally:
            request_id.reset(token)


#: What PostgreSQL being down, restarting, refusing connections ("too many clients already")
#: or the connection pool timing out looks like through Django and psycopg: all raise
#: ``django.db.OperationalError`` (psycopg's ``OperationalError`` and psycopg_pool's
#: ``PoolTimeout`` wrapped), or ``InterfaceError`` for a connection that broke under a query.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
#: Seconds a client should wait before trying again (the Retry-After header).
RETRY_AFTER_SECONDS = 5
#: At most one log line per this many seconds per process while the database is away.
LOG_EVERY_SECONDS = 10.0


def wants_json(request: HttpRequest) -> bool:
    """API calls and clients that ask for JSON rather than a page."""
    if request.path.startswith("/api/"):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def describe(error: BaseException) -> str:
    """What went wrong, for the client (the log line has the technical reason)."""
    cause = error.__cause__ or error
    if type(cause).__name__ in {"PoolTimeout", "TooManyRequests"}:
        # The pool times out both when its connections are all busy and when it cannot open
        # one (the server is down); its counters cannot tell the two apart reliably.
        return "No database connection is free (busy or unavailable)"
    if "too many clients" in str(cause):
        return "The database is busy"
    return "The database is unavailable"


def unavailable_response(request: HttpRequest, error: BaseException) -> HttpResponse:
    """The 503 for a request that needed the database: JSON for the API, a page for people.

    The page is rendered without the request's context processors: they would ask the
    database for the user again.
    """
    detail = f"{describe(error)}; retry in {RETRY_AFTER_SECONDS} s."
    response: HttpResponse
    if wants_json(request):
        response = JsonResponse({"detail": detail, "errors": []}, status=503)
    else:
        page = render_to_string("503.html", {"detail": detail, "retry_after": RETRY_AFTER_SECONDS})
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


class _Throttle:
    """Say it once, then at most every ``LOG_EVERY_SECONDS`` with how many were not said."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last = -LOG_EVERY_SECONDS
        self.hidden = 0

    def __call__(self, request: HttpRequest, error: BaseException) -> None:
        with self.lock:
            now = time.monotonic()
            if now - self.last < LOG_EVERY_SECONDS:
                self.hidden += 1
                return
            hidden, self.hidden, self.last = self.hidden, 0, now
        more = f" (and {hidden} more since the last line)" if hidden else ""
        reason = " ".join(str(error).split())[:300]
        log.warning(
            "database unavailable, answering 503 to %s %s%s: %s: %s",
            request.method,
            request.path,
            more,
            type(error).__name__,
            reason,
        )


log_unavailable = _Throttle()


class DatabaseUnavailableMiddleware:
    """Turn a database that cannot be reached into 503 + Retry-After (JSON or a styled page).

    ``process_exception`` sees what a view or a template response raises, which is where
    slaboard's pages and the API touch the database (sessions and users load lazily in the
    view). The API's own exception handler (slaboard/api.py) answers the same way.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DATABASE_UNAVAILABLE):
            return None
        log_unavailable(request, exception)
        return unavailable_response(request, exception)
