"""Notification rules: which clocks they match, exactly one message per transition, level 3
escalation until acknowledged, quiet hours, the acknowledge link and queue button, the admin."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core import mail
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from policies.actions import rebuild_clocks, reevaluate_due_clocks
from policies.models import (
    Acknowledgement,
    Metric,
    Notification,
    NotificationRule,
    NotificationStatus,
    SLAClock,
    Trigger,
)
from policies.notifications import acks, detect, messages
from policies.notifications import rules as notification_rules
from policies.notifications.deliver import deliver_due
from policies.notifications.detect import on_tick
from tests.factories import (
    make_always_calendar,
    make_calendar,
    make_customer,
    make_partner,
    make_policy,
    make_rule,
    make_sla_policy,
    make_ticket,
    make_user,
)
from tickets.actions import one_sync_per_ticket, record_event
from tickets.models import EventKind, Ticket, User
from tickets.signals import PendingChange

pytestmark = pytest.mark.django_db

# A ticket opened at T0 with a 1 h first-response target on a 24×7 calendar:
# yellow at 50 % (10:20), orange at 75 % (10:35), due and red at 10:50 (UTC, a Tuesday).
T0 = datetime(2026, 11, 17, 9, 50, tzinfo=UTC)
YELLOW = T0 + timedelta(minutes=30)
ORANGE = T0 + timedelta(minutes=45)
DUE = T0 + timedelta(hours=1)
SECOND = timedelta(seconds=30)


@pytest.fixture
def world(db: Any) -> SimpleNamespace:
    policy = make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(hours=1)}
    )
    partner = make_partner(
        name="Nordlicht IT",
        timezone="Europe/Paris",
        contact_emails="ops@nordlicht.example, lead@nordlicht.example",
    )
    nina = make_user(username="nina", email="nina@nordlicht.example", partner=partner)
    nina.user_permissions.add(Permission.objects.get(codename="claim_ticket"))
    ticket = make_ticket(
        now=T0,
        opened_at=T0,
        partner=partner,
        customer=make_customer(name="Globex"),
        priority="high",
        subject="VPN tunnel down",
        assignee_id=nina.pk,
    )
    reevaluate_due_clocks(now=T0)  # the previous tick
    return SimpleNamespace(policy=policy, partner=partner, ticket=ticket, nina=nina)


def rows(**filters: Any) -> list[Notification]:
    return list(Notification.objects.filter(**filters).order_by("pk"))


def clock(ticket: Ticket) -> SLAClock:
    return SLAClock.objects.get(ticket=ticket, metric=Metric.FIRST_RESPONSE)


# --------------------------------------------------------------------------- matching


def test_a_clock_entering_orange_through_the_tick_emails_the_partner_contacts_once(
    world: SimpleNamespace,
) -> None:
    make_rule(name="Partner at orange", trigger=Trigger.ORANGE, notify_partner_contacts=True)
    assert reevaluate_due_clocks(now=ORANGE + SECOND) == 1
    assert deliver_due(now=ORANGE + SECOND) == 1
    [message] = mail.outbox
    assert message.to == ["ops@nordlicht.example", "lead@nordlicht.example"]
    reference = world.ticket.external_id
    assert message.subject == (
        f"[slaboard] Danger: First response on {reference} — VPN tunnel down (High)"
    )
    body = str(message.body)
    assert "escalation level 1" in body
    assert "Customer:  Globex" in body and "Partner:   Nordlicht IT" in body
    assert "Assignee:  nina" in body
    assert "Due:       Tue 17 Nov 2026, 11:50 (Europe/Paris)" in body  # the partner's time
    assert "http://localhost:8000/queue/" in body
    assert f"http://localhost:8000/tickets/{world.ticket.pk}/" in body
    assert re.search(r"http://localhost:8000/ack/[^/\s]+/", body)
    assert message.extra_headers["X-Slaboard-Delivery"] == str(rows()[0].pk)
    # A second beat with the same now, a later tick, more sweeps: nothing more.
    assert reevaluate_due_clocks(now=ORANGE + SECOND) == 0
    reevaluate_due_clocks(now=ORANGE + 2 * SECOND)
    assert deliver_due(now=ORANGE + timedelta(minutes=5)) == 0
    [row] = rows()
    assert (row.status, row.attempts, row.trigger, row.event_at) == ("sent", 1, "orange", ORANGE)
    assert row.recipients == "ops@nordlicht.example, lead@nordlicht.example"
    assert len(mail.outbox) == 1


def test_rules_match_by_metric_priority_partner_and_policy(world: SimpleNamespace) -> None:
    other_partner = make_partner()
    matching = [
        make_rule(trigger=Trigger.ORANGE),
        make_rule(trigger=Trigger.ORANGE, metrics=[Metric.FIRST_RESPONSE], priorities=["high"]),
        make_rule(trigger=Trigger.ORANGE, partners=[world.partner]),
        make_rule(trigger=Trigger.ORANGE, policies=[world.policy]),
    ]
    for rule in [
        make_rule(trigger=Trigger.ORANGE, metrics=[Metric.RESOLUTION]),
        make_rule(trigger=Trigger.ORANGE, priorities=["critical", "low"]),
        make_rule(trigger=Trigger.ORANGE, partners=[other_partner]),
        make_rule(trigger=Trigger.ORANGE, policies=[make_policy()]),
        make_rule(trigger=Trigger.ORANGE, active=False),
        make_rule(trigger=Trigger.RED),  # not red yet
    ]:
        assert rule.pk
    reevaluate_due_clocks(now=ORANGE + SECOND)
    assert {r.rule_id for r in rows()} == {r.pk for r in matching}


def test_a_rule_fires_for_the_transition_it_names(world: SimpleNamespace) -> None:
    yellow = make_rule(trigger=Trigger.YELLOW)
    orange = make_rule(trigger=Trigger.ORANGE)
    red = make_rule(trigger=Trigger.RED)
    reevaluate_due_clocks(now=YELLOW + SECOND)
    assert [r.rule_id for r in rows()] == [yellow.pk]
    reevaluate_due_clocks(now=ORANGE + SECOND)
    assert [r.rule_id for r in rows()] == [yellow.pk, orange.pk]
    reevaluate_due_clocks(now=DUE + SECOND)
    assert [(r.rule_id, r.event_at) for r in rows()] == [
        (yellow.pk, YELLOW),
        (orange.pk, ORANGE),
        (red.pk, DUE),
    ]


def test_email_and_webhook_are_two_rows_each_sent_once(world: SimpleNamespace) -> None:
    rule = make_rule(trigger=Trigger.RED, emails="noc@example.com", webhook_url="http://x.test/")
    assert rule.webhook_secret.startswith("whsec_")  # generated
    reevaluate_due_clocks(now=DUE + SECOND)
    assert sorted(r.channel for r in rows()) == ["email", "webhook"]


# --------------------------------------------------------------------------- never twice


def test_overlapping_tick_windows_insert_nothing_twice(world: SimpleNamespace) -> None:
    make_rule(trigger=Trigger.ORANGE)
    reevaluate_due_clocks(now=ORANGE + SECOND)
    assert len(rows()) == 1
    # What a second beat or the next tick's lookback would insert again:
    assert on_tick(lower=T0, now=ORANGE + SECOND) == 0
    assert on_tick(lower=ORANGE - SECOND, now=ORANGE + 2 * SECOND) == 0
    assert len(rows()) == 1


def test_a_resync_before_the_tick_notifies_and_the_tick_adds_nothing(
    world: SimpleNamespace,
) -> None:
    make_rule(trigger=Trigger.ORANGE)
    # An agent's note moves the clock to orange before the tick gets there.
    record_event(
        ticket=world.ticket,
        kind=EventKind.NOTE,
        at=ORANGE + SECOND,
        now=ORANGE + SECOND,
        payload={"text": "looking"},
    )
    assert clock(world.ticket).bucket == "orange"
    assert len(rows()) == 1
    reevaluate_due_clocks(now=ORANGE + 2 * SECOND)
    reevaluate_due_clocks(now=ORANGE + timedelta(minutes=1))
    assert len(rows()) == 1
    deliver_due(now=ORANGE + timedelta(minutes=1))
    deliver_due(now=ORANGE + timedelta(minutes=2))
    assert len(mail.outbox) == 1


def test_a_replayed_event_and_a_rebuild_notify_nothing_again(world: SimpleNamespace) -> None:
    make_rule(trigger=Trigger.RED)
    for now in (DUE + SECOND, DUE + 2 * SECOND):  # delivered, then replayed
        record_event(
            ticket=world.ticket,
            kind=EventKind.NOTE,
            at=DUE + SECOND,
            now=now,
            payload={"text": "x"},
            external_id="helpdesk-17",
        )
        assert len(rows()) == 1
    SLAClock.objects.update(bucket="orange")  # a stale projection, then a rebuild
    rebuild_clocks(now=DUE + 3 * SECOND)
    reevaluate_due_clocks(now=DUE + timedelta(minutes=1))
    assert len(rows()) == 1
    deliver_due(now=DUE + timedelta(minutes=1))
    assert len(mail.outbox) == 1


def test_a_breach_met_late_before_the_tick_still_reaches_people(world: SimpleNamespace) -> None:
    make_rule(trigger=Trigger.RED)
    warning = make_rule(trigger=Trigger.ORANGE)
    reevaluate_due_clocks(now=ORANGE + SECOND)
    record_event(
        ticket=world.ticket, kind=EventKind.REPLIED, at=DUE + SECOND, now=DUE + SECOND
    )  # replied 30 s late, before the tick saw the breach
    assert clock(world.ticket).status == "met" and clock(world.ticket).breached_at == DUE
    assert [r.trigger for r in rows()] == ["orange", "red"]
    deliver_due(now=DUE + SECOND)
    assert [m.subject.split(":")[0] for m in mail.outbox] == ["[slaboard] Breached"]
    orange = rows(rule=warning)[0]  # the warning came too late to help: skipped, with why
    assert orange.status == "skipped" and "met" in orange.last_error


def test_a_backfilled_history_does_not_announce_old_breaches(world: SimpleNamespace) -> None:
    make_rule(trigger=Trigger.RED)
    now = DUE + timedelta(days=2)
    with transaction.atomic(), one_sync_per_ticket():  # as the API's upsert with events
        old = make_ticket(now=now, opened_at=T0, partner=world.partner, subject="Last week")
        record_event(ticket=old, kind=EventKind.REPLIED, at=DUE + timedelta(hours=1), now=now)
    assert clock(old).breached_at == DUE and clock(old).status == "met"
    assert not rows(ticket=old)
    # A clock still running and breached is news however old the breach: it is announced.
    open_one = make_ticket(now=now, opened_at=T0, partner=world.partner, subject="Still open")
    assert [r.trigger for r in rows(ticket=open_one)] == ["red"]


def test_the_first_tick_ever_does_not_mail_old_breaches(db: Any) -> None:
    make_sla_policy(calendar=make_always_calendar())
    make_ticket(now=T0 - timedelta(days=2), opened_at=T0 - timedelta(days=2))
    make_rule(trigger=Trigger.RED)
    assert reevaluate_due_clocks(now=T0) > 0  # no watermark yet: everything moves
    assert not rows()


def test_the_tick_query_count_does_not_grow_with_open_tickets_or_rules(
    world: SimpleNamespace,
) -> None:
    make_rule(trigger=Trigger.RED, webhook_url="http://x.test/", partners=[world.partner])
    make_rule(trigger=Trigger.ORANGE)
    with CaptureQueriesContext(connection) as few:
        on_tick(lower=ORANGE - SECOND, now=ORANGE + SECOND)
    for _ in range(30):
        make_ticket(now=T0, opened_at=T0, partner=world.partner)
    with CaptureQueriesContext(connection) as many:
        assert on_tick(lower=ORANGE - SECOND, now=ORANGE + SECOND) == 30
    make_rule(trigger=Trigger.ORANGE, priorities=["medium"], webhook_url="http://y.test/")
    make_rule(trigger=Trigger.OVERDUE, overdue_minutes=30, emails="boss@example.com")
    with CaptureQueriesContext(connection) as more_rules:
        assert on_tick(lower=ORANGE - SECOND, now=ORANGE + SECOND) == 30  # the medium ones
    # The rules, their partners, policies and users, then one INSERT … SELECT for all of
    # their channels.
    assert len(few.captured_queries) == len(many.captured_queries) == 4 + 1
    assert len(more_rules.captured_queries) == 4 + 1


def test_the_ticks_one_insert_writes_what_each_rule_and_channel_calls_for(
    world: SimpleNamespace,
) -> None:
    """Every rule shape at once, checked row by row against ``rule_applies`` (on_sync's
    filter): the trigger's instant in the window, metric, priority, partner and policy
    filters, both channels, level 3's due time; clocks not running are left out."""
    other_partner, other_policy = make_partner(), make_policy()
    for k in range(1, 9):  # instants 4k minutes after the world ticket's
        make_ticket(
            now=T0 + timedelta(minutes=4 * k),
            opened_at=T0 + timedelta(minutes=4 * k),
            partner=world.partner if k % 2 else other_partner,
            priority=["critical", "high", "medium", "low"][k % 4],
        )
    clocks = list(SLAClock.objects.order_by("ticket_id"))
    assert len(clocks) == 9
    SLAClock.objects.filter(pk=clocks[2].pk).update(metric=Metric.RESOLUTION)
    SLAClock.objects.filter(pk=clocks[3].pk).update(policy=other_policy)
    SLAClock.objects.filter(pk=clocks[4].pk).update(policy=None)
    SLAClock.objects.filter(pk=clocks[5].pk).update(status="paused")
    SLAClock.objects.filter(pk=clocks[6].pk).update(cycle=1)
    rules = [
        make_rule(trigger=Trigger.YELLOW),
        make_rule(
            trigger=Trigger.ORANGE, metrics=[Metric.FIRST_RESPONSE], priorities=["critical", "high"]
        ),
        make_rule(
            trigger=Trigger.RED,
            partners=[world.partner],
            emails="noc@example.com",
            webhook_url="http://x.test/",
        ),
        make_rule(
            trigger=Trigger.OVERDUE,
            overdue_minutes=30,
            policies=[world.policy],
            notify_users=[world.nina],
        ),
        make_rule(trigger=Trigger.RED, metrics=[Metric.RESOLUTION], webhook_url="http://y.test/"),
        make_rule(
            trigger=Trigger.ORANGE,
            policies=[other_policy, world.policy],
            partners=[other_partner],
            priorities=["medium", "low"],
            notify_assignee=True,
        ),
        make_rule(trigger=Trigger.YELLOW, active=False),
    ]
    lower, now = T0 + timedelta(minutes=40), T0 + timedelta(minutes=80)
    expected: dict[tuple[Any, ...], tuple[datetime, datetime]] = {}
    for c in SLAClock.objects.select_related("ticket").filter(status="running"):
        for rule in notification_rules.active_rules():
            instant = getattr(c, detect.INSTANT_FIELDS[rule.trigger])
            applies = notification_rules.rule_applies(rule, ticket=c.ticket, clock=c)
            if not lower < instant <= now or not applies:
                continue
            due = now
            if rule.trigger == Trigger.OVERDUE:
                due = instant + timedelta(minutes=30)
            for channel in notification_rules.channels(rule):
                key = (rule.pk, c.ticket_id, c.metric, c.cycle, rule.trigger, channel)
                expected[key] = (instant, due)
    assert {r.trigger for r in rules if any(key[0] == r.pk for key in expected)} == {
        "yellow",
        "orange",
        "red",
        "overdue",
    }
    assert on_tick(lower=lower, now=now) == len(expected)
    found = {}
    for row in rows():
        assert (row.sequence, row.status, row.attempts, row.created_at) == (0, "pending", 0, now)
        assert (row.recipients, row.last_error, row.history) == ("", "", [])
        key = (row.rule_id, row.ticket_id, row.metric, row.cycle, row.trigger, row.channel)
        found[key] = (row.event_at, row.next_attempt_at)
    assert found == expected
    assert on_tick(lower=T0, now=now + timedelta(hours=1)) > 0  # later instants only
    assert on_tick(lower=lower, now=now) == 0


def test_with_no_active_rule_the_tick_adds_one_query_only_when_clocks_moved(
    world: SimpleNamespace,
) -> None:
    make_rule(trigger=Trigger.RED, active=False)
    with CaptureQueriesContext(connection) as idle:
        assert reevaluate_due_clocks(now=T0 + timedelta(minutes=1)) == 0
    with CaptureQueriesContext(connection) as moving:
        assert reevaluate_due_clocks(now=YELLOW + SECOND) == 1
    assert len(moving.captured_queries) == len(idle.captured_queries) + 1
    assert not rows()


# --------------------------------------------------------------------------- escalation


def test_level_3_fires_n_minutes_after_the_breach_and_repeats_until_acknowledged(
    world: SimpleNamespace,
) -> None:
    manager = make_user(username="maria", email="maria@example.com")
    rule = make_rule(
        trigger=Trigger.OVERDUE, overdue_minutes=30, repeat_minutes=15, notify_users=[manager]
    )
    reevaluate_due_clocks(now=DUE + SECOND)
    [pending] = rows()
    assert (pending.status, pending.next_attempt_at) == ("pending", DUE + timedelta(minutes=30))
    assert deliver_due(now=DUE + timedelta(minutes=29)) == 0
    assert deliver_due(now=DUE + timedelta(minutes=30)) == 1
    [first] = mail.outbox
    assert first.to == ["maria@example.com"]
    assert "Breached 30 min ago, not acknowledged" in first.subject
    assert "escalation level 3" in first.body
    assert deliver_due(now=DUE + timedelta(minutes=44)) == 0
    assert deliver_due(now=DUE + timedelta(minutes=45)) == 1
    assert "(reminder 1)" in mail.outbox[1].subject
    acks.acknowledge(
        ticket=world.ticket,
        metric=Metric.FIRST_RESPONSE,
        cycle=0,
        user=world.nina,
        now=DUE + timedelta(minutes=50),
        via="link",
    )
    assert deliver_due(now=DUE + timedelta(hours=3)) == 0
    assert len(mail.outbox) == 2
    assert [(r.sequence, r.status) for r in rows(rule=rule)] == [
        (0, "sent"),
        (1, "sent"),
        (2, "skipped"),
    ]
    assert "acknowledged by nina" in rows(rule=rule)[2].last_error


def test_level_3_is_not_sent_when_acknowledged_or_met_before_it_is_due(
    world: SimpleNamespace,
) -> None:
    make_rule(trigger=Trigger.OVERDUE, overdue_minutes=30, emails="boss@example.com")
    reevaluate_due_clocks(now=DUE + SECOND)
    acks.acknowledge(
        ticket=world.ticket,
        metric=Metric.FIRST_RESPONSE,
        cycle=0,
        user=world.nina,
        now=DUE + timedelta(minutes=5),
        via="queue",
    )
    assert deliver_due(now=DUE + timedelta(minutes=30)) == 0
    assert rows()[0].status == "skipped"
    # Another ticket, met (late) before its level 3 came due.
    other = make_ticket(now=T0, opened_at=T0, partner=world.partner, subject="Other")
    reevaluate_due_clocks(now=DUE + timedelta(minutes=1))
    record_event(
        ticket=other,
        kind=EventKind.REPLIED,
        at=DUE + timedelta(minutes=10),
        now=DUE + timedelta(minutes=10),
    )
    assert deliver_due(now=DUE + timedelta(minutes=40)) == 1
    assert not mail.outbox
    assert "met" in rows(ticket=other)[0].last_error


def test_level_3_for_a_clock_breached_by_a_resync_counts_from_the_breach(
    world: SimpleNamespace,
) -> None:
    make_rule(trigger=Trigger.OVERDUE, overdue_minutes=30, emails="boss@example.com")
    later = DUE + timedelta(minutes=10)
    record_event(ticket=world.ticket, kind=EventKind.NOTE, at=later, now=later, payload={})
    [row] = rows()
    assert row.event_at == DUE and row.next_attempt_at == DUE + timedelta(minutes=30)


# --------------------------------------------------------------------------- quiet hours


def test_quiet_hours_defer_delivery_to_the_calendars_next_opening(world: SimpleNamespace) -> None:
    office = make_calendar(timezone="Europe/Paris")  # Mon–Fri 09:00–17:00 Paris
    partner = make_partner(contact_emails="night@example.com")
    make_rule(trigger=Trigger.RED, quiet_hours=office, partners=[partner])
    evening = datetime(2026, 11, 17, 19, 0, tzinfo=UTC)  # 20:00 in Paris
    opened = evening - timedelta(hours=1)
    late = make_ticket(now=opened, opened_at=opened, partner=partner)
    reevaluate_due_clocks(now=evening - timedelta(minutes=2))
    reevaluate_due_clocks(now=evening + SECOND)
    assert deliver_due(now=evening + SECOND) == 0
    [row] = rows(ticket=late)
    next_morning = datetime(2026, 11, 18, 8, 0, tzinfo=UTC)  # 09:00 in Paris
    assert (row.status, row.next_attempt_at, row.attempts) == ("deferred", next_morning, 0)
    assert deliver_due(now=next_morning - SECOND) == 0
    assert not mail.outbox
    assert deliver_due(now=next_morning) == 1
    assert len(mail.outbox) == 1
    assert rows(ticket=late)[0].status == "sent"


# --------------------------------------------------------------------------- acknowledging


def _escalate(world: SimpleNamespace) -> str:
    """Breach the ticket with a level 2 and a level 3 rule; return the level 2 email's ack path."""
    make_rule(trigger=Trigger.RED, notify_assignee=True)
    make_rule(trigger=Trigger.OVERDUE, overdue_minutes=30, emails="boss@example.com")
    reevaluate_due_clocks(now=DUE + SECOND)
    deliver_due(now=DUE + SECOND)
    [message] = mail.outbox
    assert message.to == ["nina@nordlicht.example"]
    match = re.search(r"http://localhost:8000(/ack/[^/\s]+/)", str(message.body))
    assert match
    return match.group(1)


def test_the_acknowledge_link_needs_a_login_and_a_post(world: SimpleNamespace) -> None:
    path = _escalate(world)
    anonymous = Client().get(path)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/login/") and "next=/ack/" in anonymous[
        "Location"
    ].replace("%2F", "/")
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.nina)
    page = client.get(path)
    assert page.status_code == 200
    assert "VPN tunnel down" in page.content.decode() and '<form method="post">' in (
        page.content.decode()
    )
    assert not Acknowledgement.objects.exists()  # a GET changes nothing
    assert client.post(path).status_code == 403  # no CSRF token
    token = client.cookies["csrftoken"].value
    done = client.post(path, {"csrfmiddlewaretoken": token})
    assert done.status_code == 200 and "Acknowledged by you" in done.content.decode()
    ack = Acknowledgement.objects.get()
    assert (ack.user, ack.via, ack.metric) == (world.nina, "link", Metric.FIRST_RESPONSE)
    level_3 = rows(trigger=Trigger.OVERDUE)[0]
    assert level_3.status == "skipped"
    assert deliver_due(now=DUE + timedelta(hours=1)) == 0
    again = client.get(path).content.decode()
    assert "Already acknowledged by nina" in again


def test_a_bad_or_expired_link_and_a_stranger_are_refused(
    world: SimpleNamespace, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _escalate(world)
    client = Client()
    client.force_login(world.nina)
    assert client.get(path[:-5] + "xx/").status_code == 400
    with monkeypatch.context() as patch:
        patch.setattr(messages, "ACK_MAX_AGE", timedelta(seconds=-1))  # long ago
        assert client.get(path).status_code == 410
    stranger = make_user(partner=make_partner())
    stranger.user_permissions.add(Permission.objects.get(codename="claim_ticket"))
    other = Client()
    other.force_login(User.objects.get(pk=stranger.pk))
    assert other.get(path).status_code == 403
    no_permission = Client()
    no_permission.force_login(make_user())
    assert no_permission.post(path).status_code == 403
    assert not Acknowledgement.objects.exists()


def test_the_queue_offers_acknowledge_on_escalated_clocks_and_shows_who_did(
    world: SimpleNamespace, django_capture_on_commit_callbacks: Any
) -> None:
    _escalate(world)
    client = Client(enforce_csrf_checks=False)
    client.force_login(world.nina)
    page = client.get("/queue/?view=all").content.decode()
    target = clock(world.ticket)
    url = reverse("acknowledge_clock", args=[target.pk])
    assert f'hx-post="{url}"' in page and ">Acknowledge</button>" in page
    # The set-up's writes left their hooks pending (a test transaction never commits), and
    # one transaction marks the boards dirty once: start from a clean slate.
    connection.run_on_commit.clear()
    with django_capture_on_commit_callbacks() as callbacks:
        toast = client.post(url)
    assert toast.status_code == 200 and "Acknowledged" in toast.content.decode()
    assert any(isinstance(hook, PendingChange) for hook in callbacks)  # boards update
    page = client.get("/queue/?view=all").content.decode()
    assert "✓ acked by nina" in page and f'hx-post="{url}"' not in page
    again = client.post(url).content.decode()
    assert "already acknowledged by nina" in again
    # The ticket page shows it too (the wall's breached strip lists the unclaimed ones).
    assert "✓ acked by nina" in client.get(f"/tickets/{world.ticket.pk}/").content.decode()


def test_the_queue_button_is_permission_checked_on_the_server(world: SimpleNamespace) -> None:
    _escalate(world)
    url = reverse("acknowledge_clock", args=[clock(world.ticket).pk])
    no_permission = Client()
    no_permission.force_login(make_user(partner=world.partner))
    assert no_permission.post(url).status_code == 403
    stranger = make_user(partner=make_partner())
    stranger.user_permissions.add(Permission.objects.get(codename="claim_ticket"))
    other = Client()
    other.force_login(User.objects.get(pk=stranger.pk))
    assert other.post(url).status_code == 404  # not in their scope
    client = Client()
    client.force_login(world.nina)
    assert client.get(url).status_code == 405
    assert not Acknowledgement.objects.exists()


# --------------------------------------------------------------------------- admin


@pytest.fixture
def admin_client(db: Any) -> Client:
    client = Client()
    client.force_login(make_user(username="ops", is_staff=True, is_superuser=True))
    return client


def _rule_form(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Escalate to the manager",
        "active": "on",
        "description": "",
        "trigger": Trigger.RED,
        "overdue_minutes": "",
        "repeat_minutes": "",
        "quiet_hours": "",
        "metrics": [],
        "priorities": [],
        "emails": "",
        "webhook_url": "",
        "webhook_format": "json",
        "webhook_secret": "",
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "Nobody would hear of it"),
        ({"emails": "boss@example.com", "trigger": Trigger.OVERDUE}, "Level 3 needs the number"),
        ({"emails": "boss@example.com", "repeat_minutes": "15"}, "Only level 3 repeats"),
        ({"emails": "boss@example.com", "overdue_minutes": "15"}, "Only level 3 (still red"),
        ({"emails": "boss, x@example.com"}, "Not an email address: boss."),
        ({"webhook_url": "ftp://hooks.example.com/x"}, "Enter an http:// or https:// URL"),
        ({"emails": "a@example.com", "webhook_secret": "short"}, "at least 16 characters"),
    ],
)
def test_the_rule_form_says_what_to_fix(
    admin_client: Client, changes: dict[str, Any], message: str
) -> None:
    response = admin_client.post(
        reverse("admin:policies_notificationrule_add"), _rule_form(**changes)
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not NotificationRule.objects.exists()


def test_the_rule_form_refuses_quiet_hours_with_no_working_time(admin_client: Client) -> None:
    empty = make_calendar(business_hours=False, name="Never")
    response = admin_client.post(
        reverse("admin:policies_notificationrule_add"),
        _rule_form(emails="a@example.com", quiet_hours=str(empty.pk)),
    )
    assert "has no working time" in response.content.decode()


def test_a_webhook_rule_gets_a_secret_shown_once(admin_client: Client) -> None:
    response = admin_client.post(
        reverse("admin:policies_notificationrule_add"),
        _rule_form(
            trigger=Trigger.OVERDUE,
            overdue_minutes="30",
            repeat_minutes="30",
            webhook_url="https://hooks.example.com/services/T0/B0/xyz",
            webhook_format="text",
            metrics=[Metric.FIRST_RESPONSE],
            priorities=["critical"],
        ),
        follow=True,
    )
    rule = NotificationRule.objects.get()
    assert rule.webhook_secret.startswith("whsec_")
    assert rule.webhook_secret in response.content.decode()  # shown once …
    change = admin_client.get(reverse("admin:policies_notificationrule_change", args=[rule.pk]))
    page = change.content.decode()
    assert rule.webhook_secret not in page and rule.webhook_secret[:10] + "…" in page  # … hidden
    listing = admin_client.get(reverse("admin:policies_notificationrule_changelist"))
    assert "Level 3: red for 30 min" in listing.content.decode()
    # Saving again with the secret field empty keeps it.
    admin_client.post(
        reverse("admin:policies_notificationrule_change", args=[rule.pk]),
        _rule_form(
            trigger=Trigger.OVERDUE,
            overdue_minutes="30",
            webhook_url="https://hooks.example.com/services/T0/B0/xyz",
        ),
    )
    assert NotificationRule.objects.get().webhook_secret == rule.webhook_secret


def test_the_notification_log_is_read_only_with_filters_and_a_retry_action(
    world: SimpleNamespace, admin_client: Client
) -> None:
    make_rule(trigger=Trigger.RED, webhook_url="http://127.0.0.1:9/")  # nothing listens
    reevaluate_due_clocks(now=DUE + SECOND)
    Notification.objects.update(status=NotificationStatus.FAILED, last_error="HTTP 404")
    changelist = reverse("admin:policies_notification_changelist")
    for query in ("", "?status__exact=failed", "?channel__exact=webhook", "?q=VPN"):
        response = admin_client.get(changelist + query)
        assert response.status_code == 200
        assert "HTTP 404" in response.content.decode()
    row = rows()[0]
    detail = admin_client.get(reverse("admin:policies_notification_change", args=[row.pk]))
    assert detail.status_code == 200 and 'name="status"' not in detail.content.decode()
    assert admin_client.get(reverse("admin:policies_notification_add")).status_code == 403
    admin_client.post(
        changelist, {"action": "retry_now", "_selected_action": [str(row.pk)]}, follow=True
    )
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 0)
    assert admin_client.get(reverse("admin:policies_acknowledgement_changelist")).status_code == 200


def test_the_demo_seeds_an_escalation_chain_for_critical_tickets(now: datetime) -> None:
    from slaboard.demo import seed_demo

    seed_demo(now=now, tickets=5)
    rules = {r.trigger: r for r in NotificationRule.objects.all()}
    assert set(rules) == {Trigger.ORANGE, Trigger.RED, Trigger.OVERDUE}
    assert rules[Trigger.OVERDUE].overdue_minutes == 30
    assert [u.username for u in rules[Trigger.OVERDUE].notify_users.all()] == ["admin"]
    assert not Notification.objects.exists()  # the demo's past breaches are not announced
    seed_demo(now=now, tickets=5)
    assert NotificationRule.objects.count() == 3
