"""The admin is your own staff's: a partner's user never gets in, and would see only their
partner's rows if they did."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.test import Client, RequestFactory
from django.utils import timezone

from policies.models import Acknowledgement, Metric, Notification
from policies.notifications.acks import acknowledge
from tests.factories import (
    make_always_calendar,
    make_customer,
    make_partner,
    make_sla_policy,
    make_ticket,
    make_user,
)
from tickets.models import ApiToken, Customer, Partner, Ticket, User

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_partners() -> dict[str, Any]:
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(minutes=15)}
    )
    now = timezone.now()
    north, south = make_partner(name="North"), make_partner(name="South")
    tickets = {
        partner.name: make_ticket(
            now=now,
            opened_at=now - timedelta(hours=1),
            partner=partner,
            customer=make_customer(name=f"{partner.name} customer"),
            subject=f"{partner.name} ticket",
        )
        for partner in (north, south)
    }
    return {"north": north, "south": south, "tickets": tickets}


def partner_staff(partner: Partner, *perms: str) -> User:
    """A partner's user made staff straight in the database (older accounts, the old demo)."""
    user = make_user(username="nina", partner=partner, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    return user


def test_a_partner_user_cannot_be_made_staff_or_superuser() -> None:
    partner = make_partner()
    for flags in ({"is_staff": True}, {"is_superuser": True}):
        user = User(username="nina", partner=partner, **flags)
        user.set_password("a long enough passphrase")
        with pytest.raises(ValidationError) as refused:
            user.full_clean()
        assert "cannot be staff" in str(refused.value.message_dict["partner"])
    User(username="alice", is_staff=True, password="x" * 20).full_clean()


def test_the_user_admin_refuses_to_make_a_partner_user_staff(two_partners: dict) -> None:
    root = make_user(username="root", is_staff=True, is_superuser=True)
    nina = make_user(username="nina", partner=two_partners["north"])
    client = Client()
    client.force_login(root)
    form = client.get(f"/admin/tickets/user/{nina.pk}/change/").context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "password"}
    data.update(
        partner=two_partners["north"].pk,
        is_staff="on",
        date_joined_0=nina.date_joined.date().isoformat(),
        date_joined_1="10:00:00",
        groups=[],
        user_permissions=[],
    )
    data.pop("last_login", None)
    response = client.post(f"/admin/tickets/user/{nina.pk}/change/", data)
    assert response.status_code == 200
    assert "cannot be staff" in response.content.decode()
    nina.refresh_from_db()
    assert not nina.is_staff


def test_a_partner_user_who_is_staff_is_still_refused_by_the_admin(two_partners: dict) -> None:
    client = Client()
    client.force_login(partner_staff(two_partners["north"], "view_ticket"))
    for path in ("/admin/", "/admin/tickets/ticket/", "/admin/tickets/customer/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_every_admin_list_of_partner_data_shows_a_partner_user_only_theirs(
    two_partners: dict,
) -> None:
    north, south = two_partners["north"], two_partners["south"]
    nina = partner_staff(north)
    make_user(username="diego", partner=south)
    ApiToken.issue(name="north token", partner=north)
    ApiToken.issue(name="south token", partner=south)
    now, alice = timezone.now(), make_user(username="alice")
    for ticket in two_partners["tickets"].values():
        clock = ticket.clocks.get()
        acknowledge(
            ticket=ticket, metric=clock.metric, cycle=clock.cycle, user=alice, now=now, via="queue"
        )
    request = RequestFactory().get("/admin/")
    request.user = nina
    scoped = {
        Ticket: {"North ticket"},
        Customer: {"North customer"},
        Partner: {"North"},
        User: {"nina"},  # not diego, nor alice
        ApiToken: {"north token"},
    }
    for model, expected in scoped.items():
        rows = admin.site._registry[model].get_queryset(request)
        names = {
            getattr(row, "subject", None) or getattr(row, "username", None) or row.name
            for row in rows
        }
        assert names == expected, model
    acks = admin.site._registry[Acknowledgement].get_queryset(request)
    assert {a.ticket.subject for a in acks} == {"North ticket"}
    assert (
        admin.site._registry[Notification]
        .get_queryset(request)
        .filter(ticket__partner=south)
        .count()
        == 0
    )
    # Your own staff see everything.
    request.user = make_user(username="root", is_staff=True, is_superuser=True)
    assert admin.site._registry[Acknowledgement].get_queryset(request).count() == 2
    assert admin.site._registry[Ticket].get_queryset(request).count() == 2
