"""Acknowledging: who took an escalated clock in hand (its level 3 and repeats stop).
Boards and queues read it in ``dashboard.boards.escalations``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction

from policies.models import (
    Acknowledgement,
    Notification,
    NotificationStatus,
    Trigger,
)
from tickets.models import Ticket, User
from tickets.signals import tickets_changed_on_commit


def can_acknowledge(user: Any) -> bool:
    return bool(
        user.is_authenticated
        and (user.has_perm("tickets.claim_ticket") or user.has_perm("policies.add_acknowledgement"))
    )


def acknowledge(
    *, ticket: Ticket, metric: str, cycle: int, user: User, now: datetime, via: str
) -> tuple[Acknowledgement, bool]:
    """Record that ``user`` took this clock in hand; its pending level 3 messages (and so
    their repeats) are skipped. Returns the acknowledgement and whether it is new."""
    with transaction.atomic():
        ack, created = Acknowledgement.objects.get_or_create(
            ticket=ticket,
            metric=metric,
            cycle=cycle,
            defaults={"user": user, "at": now, "via": via},
        )
        if created:
            Notification.objects.filter(
                ticket=ticket,
                metric=metric,
                cycle=cycle,
                trigger=Trigger.OVERDUE,
                status__in=[NotificationStatus.PENDING, NotificationStatus.DEFERRED],
            ).update(status=NotificationStatus.SKIPPED, last_error=str(ack))
            tickets_changed_on_commit([ticket.pk])
    return ack, created
