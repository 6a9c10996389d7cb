"""The JSON API at /api/v1/ (django-ninja: typed schemas → OpenAPI, Swagger UI served locally)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from dashboard.access import is_own_staff
from slaboard.middleware import log_unavailable, unavailable_response
from tickets.api.auth import TokenAuth
from tickets.api.endpoints import router
from tickets.api.errors import ApiError, RateLimited, error_response


def own_staff_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The docs and the OpenAPI document are for your own staff (who issue the tokens);
    a partner's user gets 403, anyone else the login page."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_own_staff(request.user):
            raise PermissionDenied("The API documentation is for slaboard's own staff.")
        return view(request, *args, **kwargs)

    return wrapped


api = NinjaAPI(
    title="slaboard API",
    version="1",
    description=(
        "Push tickets and their events into slaboard. Authenticate with "
        "`Authorization: Bearer <token>` (tokens are created in the admin). Send "
        "`Idempotency-Key` on writes to make retries safe. Errors are JSON: "
        '`{"detail": …, "errors": [{"field": …, "message": …}]}`.'
    ),
    auth=TokenAuth(),
    urls_namespace="api",
    docs_decorator=own_staff_only,
)
api.add_router("/", router)


@api.exception_handler(ApiError)
def on_api_error(request: HttpRequest, error: ApiError) -> HttpResponse:
    return error_response(api, request, error)


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, error: ValidationError) -> HttpResponse:
    errors = []
    for item in error.errors:
        location = [str(part) for part in item.get("loc", ()) if part not in ("body", "query")]
        field = ".".join(location).replace("data.", "").replace("filters.", "") or "body"
        errors.append({"field": field, "message": str(item.get("msg", "invalid"))})
    detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors) or "Invalid request."
    return api.create_response(request, {"detail": detail, "errors": errors}, status=422)


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, error: AuthenticationError) -> HttpResponse:
    response = api.create_response(
        request,
        {"detail": "Missing, unknown or revoked API token.", "errors": []},
        status=401,
    )
    response["WWW-Authenticate"] = "Bearer"
    return response


@api.exception_handler(RateLimited)
def on_rate_limited(request: HttpRequest, error: RateLimited) -> HttpResponse:
    response = api.create_response(
        request,
        {"detail": f"Too many requests: retry in {error.retry_after} s.", "errors": []},
        status=429,
    )
    response["Retry-After"] = str(error.retry_after)
    return response


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, error: HttpError) -> HttpResponse:
    return api.create_response(
        request, {"detail": str(error), "errors": []}, status=error.status_code
    )


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def on_database_unavailable(request: HttpRequest, error: DatabaseError) -> HttpResponse:
    """PostgreSQL down, restarting or saturated: 503 JSON with Retry-After (never a 500).

    The same errors as slaboard.middleware.DATABASE_UNAVAILABLE, answered the same way.
    """
    log_unavailable(request, error)
    return unavailable_response(request, error)
