"""What a notification says and to whom: only people who may see the ticket, chat markup
escaped in every field an integration or an admin typed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from policies.actions import reevaluate_due_clocks
from policies.models import Metric, Notification, Trigger
from policies.notifications.messages import email_recipients, message_context, webhook_payload
from tests.factories import (
    make_always_calendar,
    make_customer,
    make_partner,
    make_rule,
    make_sla_policy,
    make_ticket,
    make_user,
)
from tickets.models import Ticket, User

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 17, 9, 50, tzinfo=UTC)
BREACHED = T0 + timedelta(hours=1, seconds=30)


@pytest.fixture
def nordlicht_ticket() -> Ticket:
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(hours=1)}
    )
    return make_ticket(now=T0, opened_at=T0, partner=make_partner(name="Nordlicht IT"))


def test_notifications_never_email_another_partners_user(nordlicht_ticket: Ticket) -> None:
    andes = make_partner(name="Andes Soporte")
    diego = make_user(username="diego", partner=andes, email="diego@andes.example")
    nina = make_user(username="nina", partner=nordlicht_ticket.partner, email="nina@nl.example")
    lead = make_user(username="lead", email="lead@us.example")
    gone = make_user(username="gone", email="gone@us.example", is_active=False)
    # An assignment made before the rule was enforced everywhere (or straight in the database).
    Ticket.objects.filter(pk=nordlicht_ticket.pk).update(assignee=diego)
    rule = make_rule(notify_assignee=True, notify_users=[diego, nina, lead, gone])
    ticket = Ticket.objects.select_related("assignee", "partner").get(pk=nordlicht_ticket.pk)
    assert email_recipients(rule, ticket) == ["nina@nl.example", "lead@us.example"]


def test_the_assignee_is_emailed_when_the_ticket_is_theirs_to_see(
    nordlicht_ticket: Ticket,
) -> None:
    nina = make_user(username="nina", partner=nordlicht_ticket.partner, email="nina@nl.example")
    Ticket.objects.filter(pk=nordlicht_ticket.pk).update(assignee=nina)
    rule = make_rule(notify_assignee=True)
    ticket = Ticket.objects.select_related("assignee", "partner").get(pk=nordlicht_ticket.pk)
    assert email_recipients(rule, ticket) == ["nina@nl.example"]


def test_chat_text_escapes_every_field_an_integration_or_admin_typed(db: Any) -> None:
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(hours=1)}
    )
    partner = make_partner(name="<!everyone> & Co")
    make_user(username="agent<x>", partner=partner)  # usernames cannot hold <, but check anyway
    User.objects.filter(username="agent<x>").update(username="<!here>")
    ticket = make_ticket(
        now=T0,
        opened_at=T0,
        partner=partner,
        source="zendesk",
        external_id="<!channel>",
        subject="<https://evil.example|click> me",
        customer=make_customer(name="<@U024BE7LH>"),
        assignee_id=User.objects.get(username="<!here>").pk,
    )
    rule = make_rule(
        trigger=Trigger.RED, webhook_url="https://hooks.example/x", webhook_format="text"
    )
    reevaluate_due_clocks(now=BREACHED)
    row = Notification.objects.get(rule=rule)
    ticket = Ticket.objects.select_related("partner", "customer", "assignee").get(pk=ticket.pk)
    clock = ticket.clocks.get()
    text = webhook_payload(row, message_context(row, rule, ticket, clock, BREACHED), BREACHED)[
        "text"
    ]
    for raw in ("<!channel>", "<!everyone>", "<!here>", "<@U024BE7LH>", "<https://evil"):
        assert raw not in text
    assert "zendesk:&lt;!channel&gt;" in text
    assert "&lt;!everyone&gt; &amp; Co" in text
    assert "&lt;!here&gt;" in text and "&lt;@U024BE7LH&gt;" in text
    assert "&lt;https://evil.example|click&gt; me" in text
    # Only slaboard's own links are left as they are.
    assert text.count("<") == 0 and "Acknowledge: http://localhost:8000/ack/" in text
