"""API errors: 4xx JSON answers that name the field."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse


class ApiError(Exception):
    """A 4xx answer naming the field and the problem."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("rate limited")
        self.retry_after = retry_after


def error_response(api: Any, request: HttpRequest, error: ApiError) -> HttpResponse:
    errors = [{"field": error.field, "message": error.message}] if error.field else []
    return api.create_response(
        request, {"detail": error.message, "errors": errors}, status=error.status
    )
