from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from dashboard.models import Board
from policies.models import Metric
from tests.factories import make_always_calendar, make_partner, make_sla_policy, make_ticket
from tickets.models import Ticket


@pytest.fixture
def org(db: Any) -> dict[str, Any]:
    """Two partners, each with one ticket whose first response is already breached."""
    now = timezone.now()
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(minutes=15)}
    )
    north, south = make_partner(name="North Ops"), make_partner(name="South Ops")
    north_ticket = make_ticket(
        now=now, opened_at=now - timedelta(hours=1), partner=north, subject="North printer"
    )
    south_ticket = make_ticket(
        now=now, opened_at=now - timedelta(hours=1), partner=south, subject="South VPN down"
    )
    board = Board.objects.create(name="Everything", slug="everything")
    return {"north": north, "south": south, "board": board, "n": north_ticket, "s": south_ticket}


def ticket_row(ticket: Ticket) -> str:
    return ticket.subject
