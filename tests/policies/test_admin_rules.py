"""Editing rules in the admin re-syncs the open clocks they affect, with an audit trail."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dashboard import publish
from policies import actions
from policies.models import AuditEntry, Calendar, Holiday, Metric, Policy, SLAClock
from policies.tasks import resync_open_clocks_task
from tests.factories import (
    make_always_calendar,
    make_calendar,
    make_partner,
    make_sla_policy,
    make_ticket,
    make_user,
)
from tickets.models import EventKind

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(db: Any) -> Client:
    client = Client()
    client.force_login(make_user(username="ops", is_staff=True, is_superuser=True))
    return client


def _policy_form(policy: Policy, **target_changes: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": policy.name,
        "order": str(policy.order),
        "active": "on",
        "description": policy.description,
        "priorities": policy.priorities,
    }
    targets = list(policy.targets.all())
    data.update(
        {
            "targets-TOTAL_FORMS": str(len(targets)),
            "targets-INITIAL_FORMS": str(len(targets)),
            "targets-MIN_NUM_FORMS": "0",
            "targets-MAX_NUM_FORMS": "1000",
        }
    )
    for i, target in enumerate(targets):
        row = {
            "id": str(target.pk),
            "policy": str(policy.pk),
            "metric": target.metric,
            "duration": f"{int(target.duration.total_seconds() // 60)} min",
            "calendar": str(target.calendar_id or ""),
            "pause_statuses": target.pause_statuses,
            "yellow_pct": str(target.yellow_pct),
            "orange_pct": str(target.orange_pct),
            "yellow_minutes_left": "",
            "orange_minutes_left": "",
            "on_reopen": target.on_reopen,
        }
        row.update(target_changes.get(target.metric, {}))
        data.update({f"targets-{i}-{key}": value for key, value in row.items()})
    return data


def test_changing_a_target_resyncs_open_clocks_and_audits_it(admin: Client) -> None:
    now = timezone.now()
    policy = make_sla_policy(calendar=make_always_calendar(), priorities=["high"])
    ticket = make_ticket(now=now, opened_at=now - timedelta(minutes=10), priority="high")
    old_due = SLAClock.objects.get(ticket=ticket, metric=Metric.FIRST_RESPONSE).due_at
    assert old_due is not None
    response = admin.post(
        reverse("admin:policies_policy_change", args=[policy.pk]),
        _policy_form(policy, first_response={"duration": "30 min"}),
    )
    assert response.status_code == 302
    clock = SLAClock.objects.get(ticket=ticket, metric=Metric.FIRST_RESPONSE)
    assert clock.due_at == old_due - timedelta(minutes=30)
    note = ticket.events.get(kind=EventKind.SLA_CHANGED)
    assert note.payload["metric"] == "first_response"
    assert f"Policy '{policy.name}' changed by ops" in note.payload["cause"]
    audit = AuditEntry.objects.get()
    assert audit.user is not None and audit.user.username == "ops"
    assert audit.changes["target first_response duration"] == ["1 h", "30 min"]
    # The timeline shows the change and its cause.
    page = admin.get(reverse("admin:tickets_ticket_change", args=[ticket.pk])).content.decode()
    assert "SLA due time changed" in page
    assert "changed by ops" in page


def test_saving_a_policy_without_changes_audits_nothing(admin: Client) -> None:
    policy = make_sla_policy(calendar=make_always_calendar())
    response = admin.post(
        reverse("admin:policies_policy_change", args=[policy.pk]), _policy_form(policy)
    )
    assert response.status_code == 302
    assert not AuditEntry.objects.exists()


def test_a_target_on_a_calendar_without_working_time_is_refused(admin: Client) -> None:
    never = make_calendar(business_hours=False, name="Never open")
    policy = make_sla_policy(calendar=make_always_calendar())
    response = admin.post(
        reverse("admin:policies_policy_change", args=[policy.pk]),
        _policy_form(policy, resolution={"calendar": str(never.pk)}),
    )
    assert response.status_code == 200
    assert "has no working time, so this target could never fall due" in response.content.decode()


def test_the_policy_page_previews_due_times(admin: Client) -> None:
    policy = make_sla_policy(calendar=make_always_calendar(timezone="Europe/Paris"))
    page = admin.get(reverse("admin:policies_policy_change", args=[policy.pk])).content.decode()
    assert "due times for a ticket opened now" in page.lower()
    assert "Europe/Paris (1 h on" in page


def test_adding_a_holiday_resyncs_tickets_on_that_calendar(admin: Client) -> None:
    now = timezone.now()
    office = make_calendar(timezone="UTC")
    make_sla_policy(calendar=None, targets={Metric.RESOLUTION: timedelta(days=10)})
    on_office = make_ticket(now=now, opened_at=now, partner=make_partner(default_calendar=office))
    elsewhere = make_ticket(
        now=now, opened_at=now, partner=make_partner(default_calendar=make_always_calendar())
    )
    before = {t.pk: t.clocks.get().due_at for t in (on_office, elsewhere)}
    # A holiday on a working day within the next ten business days pushes due by 8 h.
    day = now.date() + timedelta(days=1)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    form = {
        "name": office.name,
        "timezone": office.timezone,
        "description": "",
        **_inline_management("intervals", office.intervals.all(), ["weekday", "start", "end"]),
        **_inline_management("holidays", [], []),
        "holidays-TOTAL_FORMS": "1",
        "holidays-0-date": day.isoformat(),
        "holidays-0-name": "Company day",
        **_inline_management("overrides", [], []),
        **_inline_management("closures", [], []),
    }
    response = admin.post(reverse("admin:policies_calendar_change", args=[office.pk]), form)
    assert response.status_code == 302, response.content.decode()[-3000:]
    moved = on_office.clocks.get().due_at
    assert moved is not None and moved > before[on_office.pk]  # type: ignore[operator]
    note = on_office.events.get(kind=EventKind.SLA_CHANGED)
    assert f"Calendar '{office.name}' changed by ops" in note.payload["cause"]
    assert elsewhere.clocks.get().due_at == before[elsewhere.pk]
    audit = AuditEntry.objects.get(object_type="calendar")
    assert audit.resynced_tickets == 1
    assert audit.changes["holidays"] == [[], [day.isoformat()]]


def _inline_management(prefix: str, rows: Any, fields: list[str]) -> dict[str, str]:
    rows = list(rows)
    data = {
        f"{prefix}-TOTAL_FORMS": str(len(rows)),
        f"{prefix}-INITIAL_FORMS": str(len(rows)),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }
    for i, row in enumerate(rows):
        data[f"{prefix}-{i}-id"] = str(row.pk)
        data[f"{prefix}-{i}-calendar"] = str(row.calendar_id)
        for field in fields:
            value = getattr(row, field)
            data[f"{prefix}-{i}-{field}"] = value.strftime("%H:%M") if field != "weekday" else value
    return data


def test_removing_all_working_time_from_a_calendar_in_use_is_refused(admin: Client) -> None:
    office = make_calendar(timezone="UTC")
    make_sla_policy(calendar=office)
    form = {
        "name": office.name,
        "timezone": "UTC",
        "description": "",
        **_inline_management("intervals", office.intervals.all(), ["weekday", "start", "end"]),
        **_inline_management("holidays", [], []),
        **_inline_management("overrides", [], []),
        **_inline_management("closures", [], []),
    }
    for i in range(office.intervals.count()):
        form[f"intervals-{i}-DELETE"] = "on"
    response = admin.post(reverse("admin:policies_calendar_change", args=[office.pk]), form)
    assert response.status_code == 200
    assert "used by SLA targets, so it needs some working time" in response.content.decode()
    assert office.intervals.count() == 5


def test_public_holidays_are_imported_once(admin: Client) -> None:
    calendar = make_calendar(timezone="Europe/Paris")
    url = reverse("admin:policies_calendar_import_holidays", args=[calendar.pk])
    assert "Import public holidays" in admin.get(url).content.decode()
    form = {"country": "FR", "subdivision": "", "first_year": "2026", "last_year": "2027"}
    response = admin.post(url, form, follow=True)
    assert "Imported 22 public holidays of FR for 2026–2027 (0 were already there)." in (
        response.content.decode()
    )
    assert Holiday.objects.filter(calendar=calendar, date="2026-07-14").exists()
    response = admin.post(url, form, follow=True)
    assert "Imported 0 public holidays" in response.content.decode()
    assert calendar.holidays.count() == 22


def test_a_subdivision_import_uses_regional_holidays(admin: Client) -> None:
    calendar = make_calendar(timezone="Europe/Berlin")
    url = reverse("admin:policies_calendar_import_holidays", args=[calendar.pk])
    admin.post(
        url, {"country": "DE", "subdivision": "BY", "first_year": "2026", "last_year": "2026"}
    )
    assert calendar.holidays.filter(date="2026-01-06").exists()  # Epiphany: Bavaria only


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"country": "FR", "subdivision": "XX"}, "&#x27;XX&#x27; is not a subdivision of FR"),
        ({"country": "FR", "first_year": "2027", "last_year": "2026"}, "must not be before"),
        ({"country": "FR", "first_year": "2000", "last_year": "2020"}, "at most 10 years"),
        ({"country": "ZZ"}, "Select a valid choice"),
    ],
)
def test_a_bad_holiday_import_says_what_to_fix(
    admin: Client, form: dict[str, str], message: str
) -> None:
    calendar = make_calendar()
    data = {"subdivision": "", "first_year": "2026", "last_year": "2026", **form}
    url = reverse("admin:policies_calendar_import_holidays", args=[calendar.pk])
    response = admin.post(url, data)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not calendar.holidays.exists()


def test_a_large_resync_is_queued_for_the_worker(
    admin: Client,
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.Redis,
    django_capture_on_commit_callbacks: Any,
) -> None:
    monkeypatch.setattr(actions, "INLINE_RESYNC_LIMIT", 0)
    now = timezone.now()
    policy = make_sla_policy(calendar=make_always_calendar())
    ticket = make_ticket(now=now, opened_at=now - timedelta(minutes=10))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            reverse("admin:policies_policy_change", args=[policy.pk]),
            _policy_form(policy, first_response={"duration": "20 min"}),
            follow=True,
        )
    assert "in the background" in response.content.decode()
    assert redis_client.llen("background") == 1  # the task waits in the broker for a worker
    clock = SLAClock.objects.get(ticket=ticket, metric=Metric.FIRST_RESPONSE)
    assert clock.due_at == ticket.opened_at + timedelta(hours=1)  # not yet
    resync_open_clocks_task(None, "test")  # what the worker runs
    clock.refresh_from_db()
    assert clock.due_at == ticket.opened_at + timedelta(minutes=20)
    assert Calendar.objects.count() == 1


def test_a_policy_edit_in_the_admin_refreshes_the_boards_when_it_commits(
    admin: Client, live_redis: redis.Redis, django_capture_on_commit_callbacks: Any
) -> None:
    """The re-sync writes clocks; the clock writer tells the screens (one publish scheduled
    per transaction), without the admin or the re-sync knowing about screens."""
    now = timezone.now()
    policy = make_sla_policy(calendar=make_always_calendar())
    make_ticket(now=now, opened_at=now - timedelta(minutes=50))
    connection.run_on_commit.clear()  # the set-up's hooks (a test transaction never commits)
    before = publish.change_count()
    with django_capture_on_commit_callbacks(execute=True):
        admin.post(
            reverse("admin:policies_policy_change", args=[policy.pk]),
            _policy_form(policy, first_response={"duration": "20 min"}),
        )
    assert publish.change_count() == before + 1
    assert live_redis.llen("realtime") == 1  # the publish task waits for a worker
