from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from tickets.models import Ticket


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    tickets = Ticket.objects.visible_to(request.user)
    context = {
        "open_count": tickets.open().count(),
        "total_count": tickets.count(),
    }
    return render(request, "dashboard/home.html", context)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")
