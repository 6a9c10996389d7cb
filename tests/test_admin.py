"""The admin as an operations admin uses it: every page renders, bad input says what to fix."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from policies.models import Calendar, Policy, Target, WorkingInterval
from tests.factories import (
    make_calendar,
    make_customer,
    make_partner,
    make_target,
    make_ticket,
    make_user,
)
from tickets.models import EventKind, Partner, Ticket

pytestmark = pytest.mark.django_db

MODELS = [
    "dashboard/board",
    "policies/auditentry",
    "tickets/apitoken",
    "tickets/partner",
    "tickets/customer",
    "tickets/user",
    "tickets/ticket",
    "policies/calendar",
    "policies/policy",
    "policies/notificationrule",
    "policies/notification",
    "policies/acknowledgement",
]


def _errors(response: Any) -> str:
    """The form errors of an admin page that did not save, for assertion messages."""
    context = response.context or {}
    errors = [str(context["adminform"].form.errors)] if "adminform" in context else []
    for inline in context.get("inline_admin_formsets", []):
        errors += [str(inline.formset.errors), str(inline.formset.non_form_errors())]
    return " ".join(errors)


@pytest.fixture
def admin(db: Any) -> Client:
    client = Client()
    client.force_login(make_user(username="root", is_staff=True, is_superuser=True))
    return client


@pytest.fixture
def some_of_everything() -> Ticket:
    calendar = make_calendar()
    partner = make_partner(default_calendar=calendar, tier="gold")
    make_target(calendar=calendar)
    return make_ticket(partner=partner, customer=make_customer())


@pytest.mark.parametrize("model", MODELS)
def test_each_changelist_renders_with_data(
    admin: Client, some_of_everything: Ticket, model: str
) -> None:
    response = admin.get(f"/admin/{model}/")
    assert response.status_code == 200


READ_ONLY = {"policies/auditentry", "policies/notification", "policies/acknowledgement"}


@pytest.mark.parametrize("model", [m for m in MODELS if m not in READ_ONLY])
def test_each_add_form_renders(admin: Client, model: str) -> None:
    response = admin.get(f"/admin/{model}/add/")
    assert response.status_code == 200


@pytest.mark.parametrize("model", MODELS)
def test_each_changelist_search_and_filter_works(
    admin: Client, some_of_everything: Ticket, model: str
) -> None:
    assert admin.get(f"/admin/{model}/", {"q": "zzz-no-match"}).status_code == 200


def test_the_policy_list_shows_readable_durations_and_conditions(admin: Client) -> None:
    target = make_target(duration=timedelta(days=1, hours=2))
    target.policy.priorities = ["critical"]
    target.policy.save()
    page = admin.get("/admin/policies/policy/").content.decode()
    assert "First response 1 d 2 h" in page
    assert "priority in critical" in page


def test_the_calendar_list_summarises_working_hours(admin: Client) -> None:
    make_calendar(name="Office")
    page = admin.get("/admin/policies/calendar/").content.decode()
    assert "Mon–Fri 09:00–17:00" in page
    assert "40 h" in page


def test_the_target_form_shows_durations_readably(admin: Client) -> None:
    target = make_target(duration=timedelta(hours=4))
    page = admin.get(f"/admin/policies/policy/{target.policy_id}/change/").content.decode()
    assert 'value="4 h"' in page


def _policy_post(**target: str) -> dict[str, str]:
    data = {
        "name": "Gold critical",
        "order": "10",
        "active": "on",
        "description": "",
        "priorities": ["critical"],
        "targets-TOTAL_FORMS": "1",
        "targets-INITIAL_FORMS": "0",
        "targets-MIN_NUM_FORMS": "0",
        "targets-MAX_NUM_FORMS": "1000",
        "targets-0-metric": "first_response",
        "targets-0-duration": "15 min",
        "targets-0-calendar": "",
        "targets-0-pause_statuses": ["waiting_on_customer"],
        "targets-0-yellow_pct": "50",
        "targets-0-orange_pct": "75",
        "targets-0-yellow_minutes_left": "",
        "targets-0-orange_minutes_left": "",
        "targets-0-on_reopen": "restart",
    }
    data.update({f"targets-0-{key}": value for key, value in target.items()})
    return data  # type: ignore[return-value]


def test_an_admin_creates_a_policy_with_a_target_in_readable_units(admin: Client) -> None:
    response = admin.post("/admin/policies/policy/add/", _policy_post(duration="1 d 2 h"))
    assert response.status_code == 302, _errors(response)
    target = Target.objects.get(policy__name="Gold critical")
    assert target.duration == timedelta(days=1, hours=2)
    assert target.policy.priorities == ["critical"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"duration": "4 parsecs"}, "Unknown unit &#x27;parsecs&#x27;"),
        ({"duration": "0 min"}, "The duration must be longer than zero."),
        ({"yellow_pct": "80", "orange_pct": "60"}, "must be more than yellow %"),
        (
            {"yellow_minutes_left": "2", "orange_minutes_left": "5"},
            "Yellow minutes-left must be more than orange minutes-left",
        ),
    ],
)
def test_an_invalid_target_shows_what_to_fix_and_saves_nothing(
    admin: Client, target: dict[str, str], message: str
) -> None:
    response = admin.post("/admin/policies/policy/add/", _policy_post(**target))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Policy.objects.exists()


def _calendar_post(intervals: list[tuple[str, str, str]]) -> dict[str, str]:
    data = {"name": "Support desk", "timezone": "Europe/Paris", "description": ""}
    for prefix in ("holidays", "overrides", "closures"):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": "0",
                f"{prefix}-INITIAL_FORMS": "0",
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
    data.update(
        {
            "intervals-TOTAL_FORMS": str(len(intervals)),
            "intervals-INITIAL_FORMS": "0",
            "intervals-MIN_NUM_FORMS": "0",
            "intervals-MAX_NUM_FORMS": "1000",
        }
    )
    for i, (weekday, start, end) in enumerate(intervals):
        data.update(
            {
                f"intervals-{i}-weekday": weekday,
                f"intervals-{i}-start": start,
                f"intervals-{i}-end": end,
            }
        )
    return data


def test_an_admin_creates_a_calendar_with_a_lunch_break_and_a_night_shift(admin: Client) -> None:
    response = admin.post(
        "/admin/policies/calendar/add/",
        _calendar_post([("0", "09:00", "12:00"), ("0", "13:00", "17:00"), ("4", "22:00", "06:00")]),
    )
    assert response.status_code == 302
    calendar = Calendar.objects.get(name="Support desk")
    assert calendar.intervals.count() == 3
    assert calendar.weekly_hours() == 15


def test_overlapping_intervals_are_refused_with_the_day_named(admin: Client) -> None:
    response = admin.post(
        "/admin/policies/calendar/add/",
        _calendar_post([("1", "09:00", "13:00"), ("1", "12:00", "17:00")]),
    )
    assert response.status_code == 200
    assert "Tuesday: 09:00–13:00 overlaps 12:00–17:00" in response.content.decode()
    assert not WorkingInterval.objects.exists()


def test_an_empty_interval_is_refused(admin: Client) -> None:
    response = admin.post(
        "/admin/policies/calendar/add/", _calendar_post([("1", "09:00", "09:00")])
    )
    assert response.status_code == 200
    assert "The interval is empty" in response.content.decode()
    assert not Calendar.objects.exists()


def test_a_partner_with_an_unknown_time_zone_is_refused(admin: Client) -> None:
    response = admin.post(
        "/admin/tickets/partner/add/",
        {"name": "Mars Ops", "tier": "gold", "timezone": "Mars/Base", "contact_emails": ""},
    )
    assert response.status_code == 200
    assert "Unknown time zone &#x27;Mars/Base&#x27;" in response.content.decode()
    assert not Partner.objects.exists()


def test_adding_a_ticket_in_the_admin_records_its_created_event(admin: Client) -> None:
    partner = make_partner()
    response = admin.post(
        "/admin/tickets/ticket/add/",
        {
            "subject": "Phones down",
            "partner": str(partner.pk),
            "customer": "",
            "kind": "incident",
            "priority": "critical",
            "team": "",
            "assignee": "",
            "source": "slaboard",
            "external_id": "",
            "opened_at_0": timezone.now().strftime("%Y-%m-%d"),
            "opened_at_1": "00:00:00",
        },
    )
    assert response.status_code == 302, _errors(response)
    ticket = Ticket.objects.get(subject="Phones down")
    assert ticket.external_id == f"SLA-{ticket.pk}"
    assert list(ticket.events.values_list("kind", flat=True)) == [EventKind.CREATED]


def test_editing_a_ticket_in_the_admin_records_events_and_shows_the_timeline(
    admin: Client,
) -> None:
    ticket = make_ticket(now=timezone.now(), opened_at=timezone.now() - timedelta(hours=2))
    url = reverse("admin:tickets_ticket_change", args=[ticket.pk])
    response = admin.post(
        url,
        {
            "subject": ticket.subject,
            "partner": str(ticket.partner_id),
            "customer": "",
            "kind": ticket.kind,
            "priority": "critical",
            "status": "waiting_on_customer",
            "team": "",
            "assignee": "",
            "events-TOTAL_FORMS": "1",
            "events-INITIAL_FORMS": "1",
            "events-MIN_NUM_FORMS": "0",
            "events-MAX_NUM_FORMS": "1000",
            "events-0-id": str(ticket.events.get().pk),
            "events-0-ticket": str(ticket.pk),
            "clocks-TOTAL_FORMS": "0",
            "clocks-INITIAL_FORMS": "0",
            "clocks-MIN_NUM_FORMS": "0",
            "clocks-MAX_NUM_FORMS": "1000",
        },
    )
    assert response.status_code == 302, _errors(response)
    kinds = list(ticket.events.values_list("kind", flat=True))
    assert kinds == [EventKind.CREATED, EventKind.PRIORITY_CHANGED, EventKind.STATUS_CHANGED]
    page = admin.get(url).content.decode()
    assert "timeline (append-only)" in page.lower()
    assert "Priority changed" in page
    assert "priority: Critical" in page
    assert "status: Waiting on customer" in page
    assert f"partner: {ticket.partner.name}" in page


def test_the_ticket_subject_is_escaped_in_the_admin(admin: Client) -> None:
    make_ticket(subject="<img src=x onerror=alert(1)>")
    page = admin.get("/admin/tickets/ticket/").content.decode()
    assert "<img src=x onerror" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_a_non_staff_user_cannot_open_the_admin(db: Any) -> None:
    client = Client()
    client.force_login(make_user(is_staff=False))
    response = client.get("/admin/tickets/ticket/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def test_an_admin_creates_a_board_and_its_kiosk_link(admin: Client) -> None:
    from dashboard.models import Board

    partner = make_partner(name="Nordlicht IT")
    response = admin.post(
        "/admin/dashboard/board/add/",
        {
            "name": "Nordic wall",
            "slug": "nordic",
            "partners": [str(partner.pk)],
            "priorities": ["critical", "high"],
            "teams": "Network, Service desk",
            "display_timezone": "Europe/Berlin",
        },
    )
    assert response.status_code == 302, _errors(response)
    board = Board.objects.get(slug="nordic")
    assert board.teams == ["Network", "Service desk"]
    assert board.display_timezone == "Europe/Berlin"
    assert board.priorities == ["critical", "high"]
    response = admin.post(
        "/admin/dashboard/board/",
        {"action": "create_kiosk_link", "_selected_action": [str(board.pk)]},
        follow=True,
    )
    board.refresh_from_db()
    assert board.kiosk_token and board.kiosk_url() in response.content.decode()
    admin.post(
        "/admin/dashboard/board/",
        {"action": "revoke_kiosk_link", "_selected_action": [str(board.pk)]},
    )
    board.refresh_from_db()
    assert board.kiosk_token == ""


def test_an_api_token_is_shown_once_and_stored_hashed(admin: Client) -> None:
    from tickets.models import ApiToken, hash_token

    response = admin.post(
        "/admin/tickets/apitoken/add/",
        {"name": "Zendesk", "partner": "", "requests_per_minute": "600"},
        follow=True,
    )
    page = response.content.decode()
    secret = page.split("API token for Zendesk: ")[1].split(" ")[0]
    token = ApiToken.objects.get(name="Zendesk")
    assert token.token_hash == hash_token(secret) and secret not in token.token_hash
    assert secret not in admin.get(f"/admin/tickets/apitoken/{token.pk}/change/").content.decode()
    admin.post(
        "/admin/tickets/apitoken/", {"action": "revoke", "_selected_action": [str(token.pk)]}
    )
    token.refresh_from_db()
    assert token.revoked_at is not None
