"""Request hardening that sits in front of every view: body size limits.

The API takes bodies up to ``API_MAX_BODY_BYTES`` (``docs/api.md``: room for its largest
documented calls); every other page keeps Django's default 2.5 MB. Larger bodies are answered
413 before anything reads them — as the API's JSON error on ``/api/``, so an integration
always gets JSON, and without the traceback (DEBUG) or bare 400 (production) that Django's
own ``RequestDataTooBig`` gives.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/"


class BodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        api = request.path.startswith(API_PREFIX)
        limit = settings.API_MAX_BODY_BYTES if api else settings.PAGE_MAX_BODY_BYTES
        if length > limit:
            megabytes = f"{limit / 1_000_000:g} MB"
            if api:
                return JsonResponse(
                    {
                        "detail": f"The request body is larger than {megabytes}: "
                        "send fewer events or items per call.",
                        "errors": [],
                    },
                    status=413,
                )
            return HttpResponse(
                f"Request body larger than {megabytes}.", status=413, content_type="text/plain"
            )
        return self.get_response(request)
