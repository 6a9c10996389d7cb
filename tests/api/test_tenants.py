"""A partner's API token stays within its partner: users, customers, tickets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from tests.api.test_api import Api
from tests.factories import (
    make_always_calendar,
    make_customer,
    make_partner,
    make_sla_policy,
    make_user,
)
from tickets.models import ApiToken, Customer, Partner, Ticket

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def clean_rate_counters(redis_client: Any) -> None:
    """Rate-limit windows live in Redis (emptied by redis_client)."""


@pytest.fixture
def org() -> dict[str, Partner]:
    make_sla_policy(calendar=make_always_calendar())
    nordlicht, andes = make_partner(name="Nordlicht IT"), make_partner(name="Andes Soporte")
    make_user(username="nina", partner=nordlicht, email="nina@nordlicht.example")
    make_user(username="diego", partner=andes, email="diego@andes.example")
    make_user(username="root", is_staff=True, is_superuser=True)
    return {"nordlicht": nordlicht, "andes": andes}


@pytest.fixture
def nordlicht_api(org: dict[str, Partner]) -> Api:
    return Api(ApiToken.issue(name="Nordlicht PSA", partner=org["nordlicht"])[1])


@pytest.fixture
def global_api(org: dict[str, Partner]) -> Api:
    return Api(ApiToken.issue(name="Our helpdesk")[1])


def opened(api: Api, external_id: str = "N-1", **fields: Any) -> Any:
    at = (timezone.now() - timedelta(minutes=30)).isoformat()
    response = api.put(f"/tickets/psa/{external_id}", {"subject": "VPN", "opened_at": at, **fields})
    assert response.status_code == 201, response.json()
    return response


def test_a_partner_token_cannot_assign_another_partners_user(nordlicht_api: Api) -> None:
    opened(nordlicht_api)
    response = nordlicht_api.put("/tickets/psa/N-1", {"assignee": "diego"})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "assignee", "message": "Unknown user 'diego'."}]
    assert Ticket.objects.get(external_id="N-1").assignee is None


def test_a_partner_token_cannot_open_a_ticket_assigned_to_another_partners_user(
    nordlicht_api: Api,
) -> None:
    at = (timezone.now() - timedelta(minutes=30)).isoformat()
    body = {"subject": "VPN", "opened_at": at, "assignee": "diego"}
    assert nordlicht_api.put("/tickets/psa/N-2", body).status_code == 422
    assert not Ticket.objects.filter(external_id="N-2").exists()


def test_a_partner_token_cannot_tell_which_usernames_exist_elsewhere(nordlicht_api: Api) -> None:
    opened(nordlicht_api)
    answers = [
        nordlicht_api.put("/tickets/psa/N-1", {"assignee": name}).json()["errors"][0]["message"]
        for name in ("root", "diego", "nobody-at-all")
    ]
    assert answers == [
        "Unknown user 'root'.",
        "Unknown user 'diego'.",
        "Unknown user 'nobody-at-all'.",
    ]


def test_a_partner_token_assigns_its_own_partners_user(nordlicht_api: Api) -> None:
    opened(nordlicht_api)
    response = nordlicht_api.put("/tickets/psa/N-1", {"assignee": "nina"})
    assert response.status_code == 200 and response.json()["assignee"] == "nina"


def test_an_assigned_event_cannot_name_another_partners_user(nordlicht_api: Api) -> None:
    opened(nordlicht_api)
    now = timezone.now().isoformat()
    event = {"kind": "assigned", "assignee": "diego", "at": now}
    response = nordlicht_api.post("/tickets/psa/N-1/events", {"events": [event]})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "events[0].assignee"
    assert Ticket.objects.get(external_id="N-1").assignee is None


def test_a_token_without_partner_obeys_the_same_rule_as_the_admin(global_api: Api) -> None:
    opened(global_api, partner="Nordlicht IT")
    response = global_api.put("/tickets/psa/N-1", {"assignee": "diego"})
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "assignee", "message": "The assignee belongs to another partner."}
    ]
    batch = global_api.post(
        "/batch",
        {"items": [{"source": "psa", "external_id": "N-1", "ticket": {"assignee": "diego"}}]},
    )
    assert batch.json()["items"][0]["status"] == 422
    assert Ticket.objects.get(external_id="N-1").assignee is None
    # Your own staff (no partner) may take any partner's ticket.
    assert global_api.put("/tickets/psa/N-1", {"assignee": "root"}).status_code == 200


def test_a_ticket_cannot_move_to_another_partner_with_its_assignee(global_api: Api) -> None:
    opened(global_api, partner="Nordlicht IT", assignee="nina")
    response = global_api.put("/tickets/psa/N-1", {"partner": "Andes Soporte"})
    assert response.status_code == 422
    ticket = Ticket.objects.select_related("partner").get(external_id="N-1")
    assert ticket.partner.name == "Nordlicht IT"


def test_a_partner_token_never_changes_a_customers_tier(
    nordlicht_api: Api, org: dict[str, Partner]
) -> None:
    make_customer(name="Initech", tier="enterprise")
    response = opened(nordlicht_api, customer="Initech", customer_tier="free")
    assert response.json()["customer"] == "Initech"
    update = nordlicht_api.put("/tickets/psa/N-1", {"customer": "Initech", "customer_tier": "smb"})
    assert update.status_code == 200
    assert Customer.objects.get(name="Initech").tier == "enterprise"


def test_a_partner_token_creates_a_new_customer_with_its_tier(nordlicht_api: Api) -> None:
    opened(nordlicht_api, customer="Umbrella", customer_tier="smb")
    assert Customer.objects.get(name="Umbrella").tier == "smb"


def test_a_token_without_partner_still_sets_a_customers_tier(global_api: Api) -> None:
    make_customer(name="Initech", tier="enterprise")
    opened(global_api, partner="Andes Soporte", customer="Initech", customer_tier="free")
    assert Customer.objects.get(name="Initech").tier == "free"
