"""The ingestion API as an integration uses it: upsert, events, lists, batches, errors."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from policies.models import Metric
from tests.factories import make_always_calendar, make_partner, make_sla_policy, make_user
from tickets.models import ApiToken, EventKind, Partner, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_rate_counters(redis_client: Any) -> None:
    """Rate-limit windows live in Redis (emptied by redis_client)."""


@pytest.fixture
def partner() -> Partner:
    make_sla_policy(calendar=make_always_calendar())
    return make_partner(name="Acme")


@pytest.fixture
def token(partner: Partner) -> str:
    return ApiToken.issue(name="helpdesk")[1]


class Api:
    def __init__(self, token: str | None) -> None:
        self.client: Any = Client()  # WSGI extras (HTTP_*) are untyped kwargs
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def put(self, path: str, body: Any, **headers: str) -> Any:
        return self.client.put(
            f"/api/v1{path}", body, content_type="application/json", **self.headers, **headers
        )

    def post(self, path: str, body: Any, **headers: str) -> Any:
        return self.client.post(
            f"/api/v1{path}", body, content_type="application/json", **self.headers, **headers
        )

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"/api/v1{path}", params, **self.headers)


def ago(minutes: float) -> str:
    return (timezone.now() - timedelta(minutes=minutes)).isoformat()


def new_ticket(api: Api, external_id: str = "T-1", **fields: Any) -> Any:
    body = {"partner": "Acme", "subject": "Mail is down", "opened_at": ago(30), **fields}
    return api.put(f"/tickets/zendesk/{external_id}", body)


def test_a_ticket_is_created_then_updated_by_source_and_external_id(token: str) -> None:
    api = Api(token)
    created = new_ticket(api, priority="high", customer="Initech", customer_tier="enterprise")
    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["source"], body["external_id"], body["priority"]) == ("zendesk", "T-1", "high")
    assert {c["metric"] for c in body["clocks"]} == {
        "first_response",
        "resolution_plan",
        "resolution",
    }
    updated = api.put("/tickets/zendesk/T-1", {"priority": "critical", "status": "open"})
    assert updated.status_code == 200
    assert (updated.json()["priority"], updated.json()["status"]) == ("critical", "open")
    ticket = Ticket.objects.get(source="zendesk", external_id="T-1")
    kinds = list(ticket.events.values_list("kind", flat=True))
    assert kinds[:3] == ["created", "priority_changed", "status_changed"]
    assert ticket.customer is not None and ticket.customer.tier == "enterprise"


def test_events_update_the_ticket_and_its_clocks(token: str) -> None:
    api = Api(token)
    new_ticket(api)
    response = api.post(
        "/tickets/zendesk/T-1/events",
        {
            "events": [
                {"kind": "replied", "at": ago(25), "actor_kind": "auto_ack", "external_id": "e1"},
                {"kind": "replied", "at": ago(20), "external_id": "e2"},
                {"kind": "status_changed", "at": ago(10), "status": "waiting_on_customer"},
            ]
        },
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert [e["duplicate"] for e in body["events"]] == [False, False, False]
    assert body["ticket"]["status"] == "waiting_on_customer"
    assert body["ticket"]["first_human_reply_at"] is not None
    clocks = {c["metric"]: c for c in body["ticket"]["clocks"]}
    assert clocks["first_response"]["status"] == "met"
    assert clocks["resolution"]["status"] == "paused"


def test_a_retried_event_is_not_recorded_twice(token: str) -> None:
    api = Api(token)
    new_ticket(api)
    event = {"kind": "replied", "at": ago(5), "external_id": "zd-comment-9"}
    api.post("/tickets/zendesk/T-1/events", {"events": [event]})
    again = api.post("/tickets/zendesk/T-1/events", {"events": [event]})
    assert again.json()["events"][0]["duplicate"] is True
    assert Ticket.objects.get().events.filter(kind=EventKind.REPLIED).count() == 1


def test_an_event_delivered_late_is_placed_where_it_belongs(token: str) -> None:
    api = Api(token)
    new_ticket(api)
    api.post("/tickets/zendesk/T-1/events", {"events": [{"kind": "resolved", "at": ago(5)}]})
    late = api.post("/tickets/zendesk/T-1/events", {"events": [{"kind": "replied", "at": ago(20)}]})
    ticket = late.json()["ticket"]
    assert ticket["status"] == "resolved"
    first = next(c for c in ticket["clocks"] if c["metric"] == "first_response")
    assert first["status"] == "met"


def test_a_met_first_response_keeps_its_verdict_when_the_priority_is_raised_later(
    token: str,
) -> None:
    """Issue #10: replied between the Critical and the High due times, raised a minute later."""
    make_sla_policy(
        calendar=make_always_calendar(),
        priorities=["critical"],
        order=1,  # before the fixture's catch-all policy (1 h to respond)
        targets={Metric.FIRST_RESPONSE: timedelta(minutes=15)},
    )
    api = Api(token)
    opened = timezone.now().replace(microsecond=0) - timedelta(minutes=30)

    def after(minutes: int) -> str:
        return (opened + timedelta(minutes=minutes)).isoformat()

    new_ticket(api, priority="high", opened_at=after(0))
    api.post("/tickets/zendesk/T-1/events", {"events": [{"kind": "replied", "at": after(22)}]})
    raised = api.post(
        "/tickets/zendesk/T-1/events",
        {"events": [{"kind": "priority_changed", "at": after(23), "priority": "critical"}]},
    )

    assert raised.status_code == 200, raised.json()
    first = next(c for c in raised.json()["ticket"]["clocks"] if c["metric"] == "first_response")
    assert (first["status"], first["bucket"], first["breached_at"]) == ("met", "green", None)
    shown = [datetime.fromisoformat(first[name]) for name in ("met_at", "due_at")]
    assert shown == [opened + timedelta(minutes=22), opened + timedelta(minutes=60)]


def test_a_bad_event_rejects_the_whole_call(token: str) -> None:
    api = Api(token)
    new_ticket(api)
    response = api.post(
        "/tickets/zendesk/T-1/events",
        {
            "events": [
                {"kind": "replied", "at": ago(5)},
                {"kind": "replied", "at": (timezone.now() + timedelta(hours=1)).isoformat()},
            ]
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "events[1].at", "message": "The event's time is in the future."}
    ]
    assert not Ticket.objects.get().events.filter(kind=EventKind.REPLIED).exists()


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"subject": "x", "partner": "Acme"}, "opened_at", "opened_at is required"),
        ({"opened_at": "2026-11-01T10:00:00", "subject": "x", "partner": "Acme"}, "opened_at", ""),
        ({"opened_at": "soon", "subject": "x", "partner": "Acme"}, "opened_at", ""),
        ({"opened_at": ago(5), "subject": "  ", "partner": "Acme"}, "subject", "blank"),
        ({"opened_at": ago(5), "subject": "x", "partner": "Nobody"}, "partner", "Unknown partner"),
        (
            {"opened_at": ago(5), "subject": "x", "partner": "Acme", "priority": "urgent"},
            "priority",
            "",
        ),
        (
            {"opened_at": ago(5), "subject": "x", "partner": "Acme", "assignee": "ghost"},
            "assignee",
            "Unknown user",
        ),
    ],
)
def test_bad_ticket_input_is_a_422_naming_the_field(
    token: str, body: dict[str, Any], field: str, message: str
) -> None:
    response = Api(token).put("/tickets/zendesk/T-9", body)
    assert response.status_code == 422, response.content
    errors = response.json()["errors"]
    assert any(e["field"] == field and message in e["message"] for e in errors), errors
    assert not Ticket.objects.exists()


def test_a_malformed_json_body_is_a_4xx(token: str) -> None:
    response = Api(token).client.put(
        "/api/v1/tickets/zendesk/T-1",
        "{not json",
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert 400 <= response.status_code < 500
    assert "detail" in response.json()


def test_requests_need_a_valid_unrevoked_token(partner: Partner) -> None:
    assert Api(None).get("/tickets").status_code == 401
    assert Api("slb_nonsense").get("/tickets").status_code == 401
    token, secret = ApiToken.issue(name="old")
    assert Api(secret).get("/tickets").status_code == 200
    token.revoked_at = timezone.now()
    token.save()
    response = Api(secret).get("/tickets")
    assert response.status_code == 401
    assert response.json()["detail"] == "Missing, unknown or revoked API token."


def test_tokens_are_stored_hashed_and_record_their_last_use(partner: Partner) -> None:
    token, secret = ApiToken.issue(name="crm")
    assert secret not in (token.token_hash, token.prefix) and secret.startswith(token.prefix)
    Api(secret).get("/tickets")
    token.refresh_from_db()
    assert token.last_used_at is not None


def test_a_partner_token_only_touches_its_partners_tickets(partner: Partner, token: str) -> None:
    other = make_partner(name="Globex Ops")
    scoped = ApiToken.issue(name="globex portal", partner=other)[1]
    new_ticket(Api(token), "T-1")
    api = Api(scoped)
    assert api.get("/tickets/zendesk/T-1").status_code == 403
    assert api.put("/tickets/zendesk/T-1", {"priority": "low"}).status_code == 403
    events = {"events": [{"kind": "replied", "at": ago(1)}]}
    assert api.post("/tickets/zendesk/T-1/events", events).status_code == 403
    own = api.put("/tickets/zendesk/G-1", {"subject": "Ours", "opened_at": ago(5)})
    assert own.status_code == 201 and own.json()["partner"] == "Globex Ops"
    stolen = api.put(
        "/tickets/zendesk/G-2", {"subject": "x", "opened_at": ago(5), "partner": "Acme"}
    )
    assert stolen.status_code == 403
    assert [t["external_id"] for t in api.get("/tickets").json()["items"]] == ["G-1"]
    assert Ticket.objects.get(external_id="T-1").priority == "medium"


def test_the_list_filters_and_pages_with_a_cursor(token: str) -> None:
    api = Api(token)
    for number in range(5):
        new_ticket(api, f"T-{number}", priority="high" if number % 2 else "low")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/tickets", **params).json()
        seen += [t["external_id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"T-{n}" for n in range(5)] and len(seen) == 5
    high = api.get("/tickets", priority="high").json()["items"]
    assert sorted(t["external_id"] for t in high) == ["T-1", "T-3"]
    red = api.get("/tickets", bucket="red", metric="first_response").json()["items"]
    assert red == []  # opened 30 min ago on a 1 h target
    assert api.get("/tickets", cursor="garbage").status_code == 400
    assert api.get("/tickets", limit=0).status_code == 422
    misspelt = api.get("/tickets", priorty="high")
    assert misspelt.status_code == 422 and misspelt.json()["errors"][0]["field"] == "priorty"


def test_a_batch_is_applied_in_order_and_atomic_per_ticket(token: str) -> None:
    api = Api(token)
    items = [
        {
            "source": "psa",
            "external_id": "A",
            "ticket": {"partner": "Acme", "subject": "One", "opened_at": ago(60)},
            "events": [{"kind": "replied", "at": ago(50)}],
        },
        {
            "source": "psa",
            "external_id": "B",
            "ticket": {"partner": "Acme", "subject": "Two", "opened_at": ago(60)},
            "events": [
                {"kind": "replied", "at": ago(40)},
                {"kind": "status_changed", "at": ago(30)},  # no status: the item fails whole
            ],
        },
        {"source": "psa", "external_id": "A", "events": [{"kind": "resolved", "at": ago(10)}]},
    ]
    response = api.post("/batch", {"items": items})
    assert response.status_code == 200
    body = response.json()
    assert (body["ok"], body["failed"]) == (2, 1)
    assert body["items"][1]["errors"] == [
        {"field": "items[1].events[1].status", "message": "status_changed needs status."}
    ]
    assert not Ticket.objects.filter(external_id="B").exists()  # no half-written ticket
    assert Ticket.objects.get(external_id="A").status == "resolved"


def test_a_batch_gives_the_same_tickets_and_clocks_as_one_call_per_event(token: str) -> None:
    api = Api(token)
    history = [
        {"kind": "replied", "at": ago(50), "actor_kind": "automation"},
        {"kind": "replied", "at": ago(45), "external_id": "r1"},
        {"kind": "status_changed", "at": ago(40), "status": "waiting_on_customer"},
        {"kind": "status_changed", "at": ago(20), "status": "open"},
        {"kind": "priority_changed", "at": ago(15), "priority": "high"},
        {"kind": "replied", "at": ago(48), "external_id": "late"},  # out of order
        {"kind": "replied", "at": ago(45), "external_id": "r1"},  # a retry
    ]
    opened = ago(60)
    for event in history:
        new_ticket(api, "one-by-one", opened_at=opened)
        api.post("/tickets/zendesk/one-by-one/events", {"events": [event]})
    item = {
        "source": "zendesk",
        "external_id": "batched",
        "ticket": {"partner": "Acme", "subject": "Mail is down", "opened_at": opened},
        "events": history,
    }
    body = api.post("/batch", {"items": [item]}).json()
    assert body["items"][0] | {"ticket_id": 0} == {
        "index": 0,
        "ok": True,
        "status": 200,
        "created": True,
        "ticket_id": 0,
        "events": 6,
        "duplicates": 1,
        "errors": [],
    }

    def shown(external_id: str) -> dict[str, Any]:
        ticket = api.get(f"/tickets/zendesk/{external_id}").json()
        return {k: v for k, v in ticket.items() if k not in {"id", "external_id", "updated_at"}}

    assert shown("batched") == shown("one-by-one")


def test_a_failed_batch_item_leaves_the_ticket_and_its_clocks_as_before(token: str) -> None:
    api = Api(token)
    new_ticket(api, "A")
    items = [
        {"source": "zendesk", "external_id": "A", "events": [{"kind": "plan_sent", "at": ago(20)}]},
        {
            "source": "zendesk",
            "external_id": "A",
            "events": [
                {"kind": "replied", "at": ago(10)},
                {"kind": "status_changed", "at": ago(5)},
            ],
        },
    ]
    body = api.post("/batch", {"items": items}).json()
    assert (body["ok"], body["failed"]) == (1, 1)
    clocks = {c["metric"]: c for c in api.get("/tickets/zendesk/A").json()["clocks"]}
    assert clocks["resolution_plan"]["status"] == "met"
    assert clocks["first_response"]["status"] == "running"  # the failed item's reply is gone


def test_a_retried_request_with_an_idempotency_key_changes_nothing(token: str) -> None:
    api = Api(token)
    first = new_ticket(api)
    body = {"events": [{"kind": "replied", "at": ago(5)}]}
    one = api.post("/tickets/zendesk/T-1/events", body, HTTP_IDEMPOTENCY_KEY="k-1")
    two = api.post("/tickets/zendesk/T-1/events", body, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201
    assert one.status_code == two.status_code == 200
    assert one.json() == two.json()
    assert Ticket.objects.get().events.filter(kind=EventKind.REPLIED).count() == 1
    other = {"events": [{"kind": "plan_sent", "at": ago(4)}]}
    reused = api.post("/tickets/zendesk/T-1/events", other, HTTP_IDEMPOTENCY_KEY="k-1")
    assert reused.status_code == 422
    assert reused.json()["errors"][0]["field"] == "Idempotency-Key"


def test_too_many_requests_get_a_429_with_retry_after(partner: Partner) -> None:
    secret = ApiToken.issue(name="chatty", requests_per_minute=2)[1]
    api = Api(secret)
    assert [api.get("/tickets").status_code for _ in range(3)] == [200, 200, 429]
    limited = api.get("/tickets")
    assert limited.status_code == 429
    assert 0 < int(limited["Retry-After"]) <= 60
    assert "Too many requests" in limited.json()["detail"]


def test_the_api_docs_need_a_staff_login(db: Any) -> None:
    assert Client().get("/api/v1/docs").status_code == 302
    client = Client()
    client.force_login(make_user(is_staff=True))
    assert client.get("/api/v1/docs").status_code == 200
    schema = client.get("/api/v1/openapi.json").json()
    assert "/api/v1/tickets/{source}/{external_id}" in schema["paths"]


def test_text_the_database_cannot_store_is_a_422_not_a_500(token: str) -> None:
    api = Api(token)
    response = new_ticket(api, subject="nul \x00 byte")
    assert response.status_code == 422
    assert response.json()["errors"][0] == {
        "field": "subject",
        "message": "Value error, must not contain NUL characters",
    }
    assert api.get("/tickets/zendesk/a%00b").status_code == 422
    assert not Ticket.objects.exists()


def test_an_unknown_field_is_refused_by_name(token: str) -> None:
    response = Api(token).put(
        "/tickets/zendesk/T-1",
        {"partner": "Acme", "subject": "x", "opened_at": ago(1), "prioriti": "high"},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "prioriti"
