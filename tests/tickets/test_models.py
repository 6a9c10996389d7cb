from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tests.factories import make_customer, make_partner, make_ticket, make_user
from tickets.models import Customer, Partner, Ticket, TicketEvent

pytestmark = pytest.mark.django_db


def test_the_database_refuses_two_tickets_with_the_same_source_and_external_id() -> None:
    ticket = make_ticket(source="zendesk", external_id="42")
    with pytest.raises(IntegrityError), transaction.atomic():
        Ticket.objects.create(
            source="zendesk",
            external_id="42",
            partner=ticket.partner,
            subject="copy",
            opened_at=ticket.opened_at,
        )


def test_the_same_external_id_from_another_source_is_another_ticket() -> None:
    first = make_ticket(source="zendesk", external_id="42")
    second = make_ticket(source="jira", external_id="42")
    assert first.pk != second.pk


def test_validation_names_the_duplicate_source_and_external_id() -> None:
    ticket = make_ticket(source="zendesk", external_id="42")
    copy = Ticket(
        source="zendesk",
        external_id="42",
        partner=ticket.partner,
        subject="copy",
        opened_at=ticket.opened_at,
    )
    with pytest.raises(ValidationError) as error:
        copy.full_clean()
    assert "Source and External id already exists" in str(error.value)


def test_the_database_refuses_a_reply_before_the_ticket_was_opened() -> None:
    ticket = make_ticket()
    with pytest.raises(IntegrityError), transaction.atomic():
        Ticket.objects.filter(pk=ticket.pk).update(
            first_human_reply_at=ticket.opened_at - timedelta(minutes=1)
        )


def test_validation_explains_an_instant_before_opening(now: datetime) -> None:
    ticket = make_ticket()
    ticket.resolved_at = ticket.opened_at - timedelta(seconds=1)
    with pytest.raises(ValidationError) as error:
        ticket.full_clean()
    assert error.value.message_dict["resolved_at"] == [
        "Resolved at cannot be before the ticket was opened."
    ]


def test_the_database_refuses_an_unknown_priority() -> None:
    ticket = make_ticket()
    with pytest.raises(IntegrityError), transaction.atomic():
        Ticket.objects.filter(pk=ticket.pk).update(priority="urgent-ish")


def test_a_partner_with_an_unknown_time_zone_is_rejected_with_a_clear_message() -> None:
    partner = Partner(name="Mars Ops", timezone="Mars/Olympus_Mons")
    with pytest.raises(ValidationError) as error:
        partner.full_clean()
    assert "Unknown time zone 'Mars/Olympus_Mons'" in error.value.message_dict["timezone"][0]


def test_partner_contact_addresses_are_checked() -> None:
    partner = Partner(name="Ops", contact_emails="ops@example.com, not-an-address")
    with pytest.raises(ValidationError) as error:
        partner.full_clean()
    assert error.value.message_dict["contact_emails"] == ["Not an email address: not-an-address."]
    partner.contact_emails = "ops@example.com\nboss@example.com"
    partner.full_clean()
    assert partner.contact_email_list() == ["ops@example.com", "boss@example.com"]


def test_an_assignee_from_another_partner_is_rejected() -> None:
    ticket = make_ticket()
    outsider = make_user(partner=make_partner())
    ticket.assignee = outsider
    with pytest.raises(ValidationError) as error:
        ticket.full_clean()
    assert error.value.message_dict["assignee"] == ["The assignee belongs to another partner."]


def test_events_are_append_only() -> None:
    ticket = make_ticket()
    event = ticket.events.get()
    event.payload = {"tampered": True}
    with pytest.raises(ValueError, match="append-only"):
        event.save()
    with pytest.raises(ValueError, match="append-only"):
        event.delete()
    assert TicketEvent.objects.get(pk=event.pk).payload != {"tampered": True}


def test_a_partner_user_sees_only_that_partners_tickets() -> None:
    mine, theirs = make_partner(), make_partner()
    own = make_ticket(partner=mine)
    make_ticket(partner=theirs)
    partner_user = make_user(partner=mine)
    staff = make_user()
    assert list(Ticket.objects.visible_to(partner_user)) == [own]
    assert Ticket.objects.visible_to(staff).count() == 2


def test_a_partner_in_use_cannot_be_deleted() -> None:
    ticket = make_ticket()
    with pytest.raises(Exception, match="protected"), transaction.atomic():
        ticket.partner.delete()
    assert Partner.objects.filter(pk=ticket.partner_id).exists()


def test_customer_names_are_unique() -> None:
    make_customer(name="Initech")
    with pytest.raises(IntegrityError), transaction.atomic():
        Customer.objects.create(name="Initech")
