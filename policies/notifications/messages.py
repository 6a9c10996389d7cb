"""What a notification says: email and chat text, the webhook payload, acknowledge links."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core import signing
from django.template.loader import render_to_string
from django.urls import reverse

from policies.models import (
    Bucket,
    Metric,
    Notification,
    NotificationRule,
    PayloadFormat,
    SLAClock,
    Trigger,
)
from tickets.models import Ticket

ACK_SALT = "slaboard.notifications.acknowledge"


ACK_MAX_AGE = timedelta(days=7)


HEADLINES: dict[str, str] = {
    Trigger.YELLOW: "Warning",
    Trigger.ORANGE: "Danger",
    Trigger.RED: "Breached",
    Trigger.OVERDUE: "Still breached, not acknowledged",
}


def absolute(path: str) -> str:
    return f"{settings.SITE_URL.rstrip('/')}{path}"


def ack_token(notification_id: int) -> str:
    return signing.dumps(notification_id, salt=ACK_SALT)


def read_ack_token(token: str) -> int:
    """The notification id in an acknowledge link; raises ``signing.BadSignature`` (or
    ``SignatureExpired``) when it was tampered with or is older than ``ACK_MAX_AGE``."""
    value = signing.loads(token, salt=ACK_SALT, max_age=ACK_MAX_AGE)
    if not isinstance(value, int):
        raise signing.BadSignature("not an acknowledge link")
    return value


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _local(instant: datetime | None, zone: ZoneInfo) -> str:
    """An instant as the partner reads it: "Tue 17 Nov 2026, 11:00 (Europe/Paris)"."""
    if instant is None:
        return ""
    return f"{instant.astimezone(zone):%a %d %b %Y, %H:%M} ({zone.key})"


def _chat_escape(text: str) -> str:
    """Slack and Teams read <…> as links and &…; as entities: escape user text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def message_context(
    row: Notification,
    rule: NotificationRule,
    ticket: Ticket,
    clock: SLAClock | None,
    now: datetime,
) -> dict[str, Any]:
    zone = _zone(ticket.partner.timezone)
    due = clock.due_at if clock is not None else None
    breached = clock.breached_at if clock is not None else None
    metric = Metric(row.metric).label if row.metric in Metric.values else row.metric
    headline = HEADLINES.get(row.trigger, row.trigger)
    if row.trigger == Trigger.OVERDUE and rule.overdue_minutes:
        headline = f"Breached {rule.overdue_minutes} min ago, not acknowledged"
    return {
        "notification": row,
        "rule": rule,
        "ticket": ticket,
        "clock": clock,
        "reference": ticket.reference,
        "metric": metric,
        "headline": headline,
        "level": row.level,
        "repeat": row.sequence,
        "bucket": Bucket(clock.bucket).label if clock is not None else "",
        "zone": zone.key,
        "due_text": _local(due, zone),
        "breached_text": _local(breached, zone),
        "queue_url": absolute(reverse("queue")),
        "ticket_url": absolute(ticket.get_absolute_url()),
        "ack_url": absolute(reverse("acknowledge", args=[ack_token(row.pk)])),
        "chat_reference": _chat_escape(ticket.reference),
        "chat_assignee": _chat_escape(
            ticket.assignee.get_username() if ticket.assignee else "unassigned"
        ),
        "chat_subject": _chat_escape(ticket.subject),
        "chat_customer": _chat_escape(str(ticket.customer or "—")),
        "chat_partner": _chat_escape(str(ticket.partner)),
    }


def may_hear_of(user: Any, ticket: Ticket) -> bool:
    """Whether a user may be told about this ticket: active, and one of your own staff (no
    partner) or a user of the ticket's partner. Another partner's user never is, whatever a
    rule or an (older, cross-partner) assignment says."""
    return bool(user.is_active) and user.partner_id in (None, ticket.partner_id)


def email_recipients(rule: NotificationRule, ticket: Ticket) -> list[str]:
    """The rule's addresses for this ticket, each once (case-insensitively), in order. Users
    (the assignee, the rule's users) only if they may see the ticket (``may_hear_of``)."""
    addresses: list[str] = []
    assignee = ticket.assignee
    if rule.notify_assignee and assignee is not None and assignee.email:
        addresses += [assignee.email] if may_hear_of(assignee, ticket) else []
    if rule.notify_partner_contacts:
        addresses += ticket.partner.contact_email_list()
    addresses += [u.email for u in rule.notify_users.all() if u.email and may_hear_of(u, ticket)]
    addresses += rule.email_list()
    seen: set[str] = set()
    unique = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            unique.append(address)
    return unique


def _message_id(row: Notification) -> str:
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "slaboard.local"
    return f"<slaboard.notification.{row.pk}@{domain}>"


def webhook_payload(row: Notification, context: dict[str, Any], now: datetime) -> dict[str, Any]:
    text = render_to_string("notifications/chat.txt", context).strip()
    rule: NotificationRule = context["rule"]
    if rule.webhook_format == PayloadFormat.TEXT:
        return {"text": text}
    ticket: Ticket = context["ticket"]
    clock: SLAClock | None = context["clock"]
    return {
        "type": f"sla.{row.trigger}",
        "delivery": row.pk,
        "level": row.level,
        "repeat": row.sequence,
        "rule": {"id": rule.pk, "name": rule.name},
        "occurred_at": row.event_at.isoformat(),
        "sent_at": now.isoformat(),
        "ticket": {
            "id": ticket.pk,
            "source": ticket.source,
            "external_id": ticket.external_id,
            "subject": ticket.subject,
            "priority": ticket.priority,
            "status": ticket.status,
            "partner": ticket.partner.name,
            "customer": ticket.customer.name if ticket.customer else None,
            "assignee": ticket.assignee.get_username() if ticket.assignee else None,
            "team": ticket.team,
            "url": context["ticket_url"],
        },
        "clock": {
            "metric": row.metric,
            "cycle": row.cycle,
            "bucket": clock.bucket if clock else None,
            "status": clock.status if clock else None,
            "due_at": clock.due_at.isoformat() if clock and clock.due_at else None,
            "breached_at": clock.breached_at.isoformat() if clock and clock.breached_at else None,
        },
        "acknowledge_url": context["ack_url"],
        "text": text,
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` (the X-Slaboard-Signature)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()
