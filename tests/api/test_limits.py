"""Odd times, big bodies and shared Redis: 4xx JSON answers, never a 500."""

from __future__ import annotations

import base64
import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from tests.api.test_api import Api
from tests.factories import make_always_calendar, make_partner, make_sla_policy
from tickets.api.auth import check_rate
from tickets.api.errors import RateLimited
from tickets.api.schemas import MAX_EVENTS_PER_CALL
from tickets.models import ApiToken, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_rate_counters(redis_client: Any) -> None:
    """Rate-limit windows live in Redis (emptied by redis_client)."""


@pytest.fixture
def api(db: Any) -> Api:
    make_sla_policy(calendar=make_always_calendar())
    make_partner(name="Acme")
    return Api(ApiToken.issue(name="helpdesk", requests_per_minute=100_000)[1])


def open_ticket(api: Api, opened_at: str, external_id: str = "T-1") -> Any:
    body = {"partner": "Acme", "subject": "Mail is down", "opened_at": opened_at}
    return api.put(f"/tickets/zendesk/{external_id}", body)


def error_of(response: Any) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("opened_at", "problem"),
    [
        ("2026-01-05T10:00:00+16:00", "beyond ±15:59"),
        ("2026-01-05T10:00:00-23:59", "beyond ±15:59"),
        ("0001-01-01T00:00:00+14:00", "out of range"),
        ("0001-01-01T00:00:00Z", "before 1970"),
        ("1969-12-31T23:59:59Z", "before 1970"),
        ("9999-12-31T23:00:00-05:00", "out of range"),
    ],
)
def test_an_opening_time_the_database_cannot_hold_is_a_422_naming_it(
    api: Api, opened_at: str, problem: str
) -> None:
    response = open_ticket(api, opened_at)
    assert response.status_code == 422
    [error] = error_of(response)["errors"]
    assert error["field"] == "opened_at" and problem in error["message"]
    assert not Ticket.objects.exists()


def test_the_largest_offset_postgresql_holds_is_accepted(api: Api) -> None:
    opened_at = (timezone.now() - timedelta(hours=1)).astimezone(UTC)
    east = opened_at.isoformat().replace("+00:00", "") + "+00:00"
    assert open_ticket(api, east).status_code == 201
    far_east = (opened_at + timedelta(hours=15, minutes=59)).replace(tzinfo=None).isoformat()
    assert open_ticket(api, far_east + "+15:59", "T-2").status_code == 201


def test_changes_events_and_filters_refuse_offsets_beyond_15_59(api: Api) -> None:
    assert open_ticket(api, (timezone.now() - timedelta(hours=1)).isoformat()).status_code == 201
    bad = "2026-01-05T10:00:00+16:00"
    changed = api.put("/tickets/zendesk/T-1", {"priority": "high", "changed_at": bad})
    assert changed.status_code == 422 and error_of(changed)["errors"][0]["field"] == "changed_at"
    event = api.post("/tickets/zendesk/T-1/events", {"events": [{"kind": "replied", "at": bad}]})
    assert event.status_code == 422
    assert error_of(event)["errors"][0]["field"] == "events.0.at"
    listed = api.get("/tickets", updated_since=bad)
    assert listed.status_code == 422
    assert error_of(listed)["errors"][0]["field"] == "updated_since"


def test_a_forged_cursor_with_an_odd_time_is_a_400(api: Api) -> None:
    for forged in (["2026-01-05T10:00:00+16:00", 1], ["0001-01-01T00:00:00", 1], {"a": 1}):
        cursor = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode()
        response = api.get("/tickets", cursor=cursor)
        assert response.status_code == 400, forged
        assert error_of(response)["errors"][0]["field"] == "cursor"


def test_the_largest_documented_events_call_is_accepted(api: Api) -> None:
    opened = timezone.now() - timedelta(hours=2)
    assert open_ticket(api, opened.isoformat()).status_code == 201
    events = [
        {
            "kind": "note",
            "at": (opened + timedelta(seconds=index)).isoformat(),
            "external_id": f"e{index}",
            "text": "x" * 5000,
        }
        for index in range(MAX_EVENTS_PER_CALL)
    ]
    body = {"events": events}
    assert len(json.dumps(body)) > 5_000_000  # twice Django's default 2.5 MB limit
    response = api.post("/tickets/zendesk/T-1/events", body)
    assert response.status_code == 200, response.content[:300]
    assert len(response.json()["events"]) == MAX_EVENTS_PER_CALL


def test_a_body_beyond_the_api_limit_is_a_413_in_json(api: Api, settings: Any) -> None:
    settings.DEBUG = False
    body = {"events": [{"kind": "note", "at": "2026-01-05T10:00:00Z", "text": "x" * 5000}]}
    body["events"] *= settings.API_MAX_BODY_BYTES // 5000 + 1
    response = api.post("/tickets/zendesk/T-1/events", body)
    assert response.status_code == 413
    assert "larger than" in error_of(response)["detail"]


def test_a_page_keeps_djangos_smaller_limit(db: Any, settings: Any) -> None:
    response = Client().post(
        "/admin/login/", "x" * (settings.PAGE_MAX_BODY_BYTES + 1), content_type="text/plain"
    )
    assert response.status_code == 413


def test_two_installs_on_one_redis_count_requests_apart(api: Api, settings: Any) -> None:
    token = ApiToken.issue(name="limited", requests_per_minute=2)[0]
    now = datetime(2026, 11, 17, 10, 0, 30, tzinfo=UTC)
    check_rate(token, now)
    check_rate(token, now)
    with pytest.raises(RateLimited):
        check_rate(token, now)
    other = copy.deepcopy(settings.CHANNEL_LAYERS)
    other["default"]["CONFIG"]["prefix"] = "another-install"
    settings.CHANNEL_LAYERS = other
    check_rate(token, now)  # the other install's first request this minute
