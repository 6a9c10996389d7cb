"""Notification rules, the outbox/log of messages, and acknowledgements of escalations."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from policies.models.calendars import Calendar
from policies.models.clocks import Bucket
from policies.models.rules import Metric, Policy
from tickets.models import Priority


class Trigger(models.TextChoices):
    """When a rule fires for a clock: the bucket it enters, or its escalation level."""

    YELLOW = "yellow", "Enters yellow (warning)"
    ORANGE = "orange", "Enters orange (danger) — escalation level 1"
    RED = "red", "Breached (red) — escalation level 2"
    OVERDUE = "overdue", "Still red N minutes after the breach, unless acknowledged — level 3"


#: Escalation level of each trigger (yellow is a warning, not an escalation).
TRIGGER_LEVELS: dict[str, int] = {
    Trigger.YELLOW: 0,
    Trigger.ORANGE: 1,
    Trigger.RED: 2,
    Trigger.OVERDUE: 3,
}
#: The bucket a clock enters when the trigger fires.
TRIGGER_BUCKETS: dict[str, str] = {
    Trigger.YELLOW: Bucket.YELLOW,
    Trigger.ORANGE: Bucket.ORANGE,
    Trigger.RED: Bucket.RED,
    Trigger.OVERDUE: Bucket.RED,
}
#: Triggers that make a clock "escalated" (the queue offers to acknowledge it).
ESCALATION_TRIGGERS = (Trigger.ORANGE, Trigger.RED, Trigger.OVERDUE)


class PayloadFormat(models.TextChoices):
    JSON = "json", "slaboard JSON (signed)"
    TEXT = "text", 'Slack / Teams compatible: {"text": "…"} (signed)'


def split_addresses(raw: str) -> list[str]:
    """Addresses written one per line or separated by commas or semicolons."""
    text = raw.replace(",", "\n").replace(";", "\n")
    return [line.strip() for line in text.splitlines() if line.strip()]


def validate_webhook_url(value: str) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValidationError(
            "Enter an http:// or https:// URL (e.g. https://hooks.slack.com/services/…).",
            code="invalid_webhook_url",
        )


def new_webhook_secret() -> str:
    import secrets

    return "whsec_" + secrets.token_urlsafe(32)


class NotificationRule(models.Model):
    """Who hears about which clocks, when, and how (``docs/notifications.md``).

    Filters are lists; an empty one means "any". A rule fires at most once per clock (per
    channel, plus numbered repeats for level 3): the ``Notification`` row it writes is unique.
    """

    name = models.CharField(max_length=200, unique=True)
    active = models.BooleanField(default=True)
    description = models.TextField(blank=True)
    trigger = models.CharField(max_length=20, choices=Trigger.choices, default=Trigger.RED)
    overdue_minutes = models.PositiveIntegerField(
        "minutes after the breach",
        null=True,
        blank=True,
        help_text="Level 3 only: fire this many minutes (real time) after the breach, unless "
        "the clock was acknowledged or met meanwhile.",
    )
    repeat_minutes = models.PositiveIntegerField(
        "repeat every (minutes)",
        null=True,
        blank=True,
        help_text="Level 3 only: send again this often until acknowledged (or met). Empty = once.",
    )
    # Filters (empty = any).
    metrics = models.JSONField(default=list, blank=True, help_text="Empty = any metric.")
    priorities = models.JSONField(default=list, blank=True, help_text="Empty = any priority.")
    policies = models.ManyToManyField(
        Policy, blank=True, related_name="notification_rules", help_text="Empty = any policy."
    )
    partners = models.ManyToManyField(
        "tickets.Partner",
        blank=True,
        related_name="notification_rules",
        help_text="Empty = any partner.",
    )
    # Email recipients.
    notify_assignee = models.BooleanField(
        "email the assignee", default=False, help_text="Nobody when the ticket is unassigned."
    )
    notify_partner_contacts = models.BooleanField(
        "email the partner's contacts",
        default=False,
        help_text="The partner's contact addresses (edited on the partner).",
    )
    notify_users = models.ManyToManyField(
        "tickets.User",
        blank=True,
        related_name="notification_rules",
        verbose_name="email these users",
        help_text="E.g. a manager or team lead (their account's email address).",
    )
    emails = models.TextField(
        "email these addresses",
        blank=True,
        help_text="Team or manager addresses, one per line or separated by commas.",
    )
    # Webhook.
    webhook_url = models.URLField(
        max_length=500,
        blank=True,
        validators=[validate_webhook_url],
        help_text="POST a signed JSON message here (http or https).",
    )
    webhook_secret = models.CharField(
        max_length=200,
        blank=True,
        help_text="Shared secret of the HMAC-SHA256 signature (X-Slaboard-Signature).",
    )
    webhook_format = models.CharField(
        max_length=10, choices=PayloadFormat.choices, default=PayloadFormat.JSON
    )
    quiet_hours = models.ForeignKey(
        Calendar,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="notification_rules",
        verbose_name="deliver only during",
        help_text="Quiet hours: outside this calendar's working time messages wait until it "
        "next opens (they are deferred, not dropped). Empty = any time.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(trigger__in=Trigger.values), name="rule_trigger_valid"
            ),
            models.CheckConstraint(
                condition=Q(trigger=Trigger.OVERDUE, overdue_minutes__gte=1)
                | (
                    ~Q(trigger=Trigger.OVERDUE)
                    & Q(overdue_minutes__isnull=True)
                    & Q(repeat_minutes__isnull=True)
                ),
                name="rule_overdue_minutes_only_for_level_3",
                violation_error_message="Minutes after the breach and repeats belong to level 3 "
                "(still red N minutes after the breach) only.",
            ),
            models.CheckConstraint(
                condition=Q(repeat_minutes__isnull=True) | Q(repeat_minutes__gte=1),
                name="rule_repeat_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.webhook_url and not self.webhook_secret:
            self.webhook_secret = new_webhook_secret()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        super().clean()
        from django.core.validators import validate_email

        errors: dict[str, str] = {}
        allowed = {"metrics": Metric.values, "priorities": Priority.values}
        for field, values in allowed.items():
            chosen = getattr(self, field)
            if not isinstance(chosen, list):
                errors[field] = "Must be a list of values."
                continue
            unknown = [v for v in chosen if v not in values]
            if unknown:
                errors[field] = (
                    f"Unknown value(s) {', '.join(map(str, unknown))}; choose from "
                    f"{', '.join(values)}."
                )
        if self.trigger == Trigger.OVERDUE:
            if not self.overdue_minutes:
                errors["overdue_minutes"] = (
                    "Level 3 needs the number of minutes after the breach (e.g. 30)."
                )
        else:
            if self.overdue_minutes is not None:
                errors["overdue_minutes"] = (
                    "Only level 3 (still red N minutes after the breach) waits after the "
                    "breach: clear this or choose level 3."
                )
            if self.repeat_minutes is not None:
                errors["repeat_minutes"] = (
                    "Only level 3 repeats until acknowledged: clear this or choose level 3."
                )
        if self.repeat_minutes is not None and self.repeat_minutes < 1:
            errors["repeat_minutes"] = "Repeat at least one minute apart."
        bad = []
        for address in self.email_list():
            try:
                validate_email(address)
            except ValidationError:
                bad.append(address)
        if bad:
            errors["emails"] = f"Not an email address: {', '.join(bad)}."
        if errors:
            raise ValidationError(errors)

    def email_list(self) -> list[str]:
        return split_addresses(self.emails)

    @property
    def level(self) -> int:
        return TRIGGER_LEVELS.get(self.trigger, 0)

    def wants_email(self, *, has_users: bool | None = None) -> bool:
        """Whether any email recipient is configured (``has_users``: the users M2M, if known)."""
        if has_users is None:
            has_users = self.pk is not None and self.notify_users.exists()
        return bool(
            self.notify_assignee or self.notify_partner_contacts or self.email_list() or has_users
        )


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DEFERRED = "deferred", "Deferred (quiet hours)"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"


#: Rows the delivery sweep picks when ``next_attempt_at`` has come (for ``sending`` rows that
#: is the end of the worker's lease: the worker died).
DUE_STATUSES = (
    NotificationStatus.PENDING,
    NotificationStatus.DEFERRED,
    NotificationStatus.SENDING,
)


class Notification(models.Model):
    """One message of one rule about one clock on one channel: the log and the outbox.

    The unique (rule, clock, trigger, repeat, channel) row is what makes "never twice" hold:
    the tick, a second beat, a re-sync and a replayed event all insert it with ON CONFLICT DO
    NOTHING; delivery claims it with a conditional update and a lease.
    The clock is named by (ticket, metric, cycle), not by the clock row, which a re-sync may
    delete and recreate.
    """

    rule = models.ForeignKey(
        NotificationRule,
        on_delete=models.PROTECT,
        related_name="notifications",
        db_index=False,  # the unique index starts with rule_id
    )
    ticket = models.ForeignKey(
        "tickets.Ticket", on_delete=models.CASCADE, related_name="notifications"
    )
    metric = models.CharField(max_length=30, choices=Metric.choices)
    cycle = models.PositiveSmallIntegerField(default=0)
    trigger = models.CharField(max_length=20, choices=Trigger.choices)
    sequence = models.PositiveSmallIntegerField(
        "repeat", default=0, help_text="0 = the first message; 1, 2, … = repeats of level 3."
    )
    channel = models.CharField(max_length=10, choices=Channel.choices)
    event_at = models.DateTimeField(help_text="When the clock crossed the threshold.")
    status = models.CharField(
        max_length=10, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        help_text="When it is due (pending), when quiet hours end (deferred), or when the "
        "sending worker's lease ends (sending)."
    )
    created_at = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    recipients = models.TextField(blank=True, help_text="Who it went to (host for webhooks).")
    last_error = models.TextField(blank=True)
    history = models.JSONField(
        default=list, blank=True, help_text="Each attempt: when, outcome, detail."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["rule", "ticket", "metric", "cycle", "trigger", "sequence", "channel"],
                name="notification_once",
            ),
            models.CheckConstraint(
                condition=Q(status__in=NotificationStatus.values), name="notification_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values), name="notification_channel_valid"
            ),
        ]
        indexes = [
            # The delivery sweep: due rows in the states it picks.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "deferred", "sending"]),
                name="notification_due",
            ),
        ]

    def __str__(self) -> str:
        repeat = f" repeat {self.sequence}" if self.sequence else ""
        return f"{self.get_trigger_display()}{repeat} by {self.get_channel_display()}"

    @property
    def level(self) -> int:
        return TRIGGER_LEVELS.get(self.trigger, 0)


class AckVia(models.TextChoices):
    LINK = "link", "Link in a message"
    QUEUE = "queue", "Agent queue"


class Acknowledgement(models.Model):
    """Someone took an escalated clock in hand: its level 3 and repeats stop."""

    ticket = models.ForeignKey(
        "tickets.Ticket",
        on_delete=models.CASCADE,
        related_name="acknowledgements",
        db_index=False,  # the unique index starts with ticket_id
    )
    metric = models.CharField(max_length=30, choices=Metric.choices)
    cycle = models.PositiveSmallIntegerField(default=0)
    user = models.ForeignKey(
        "tickets.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    at = models.DateTimeField()
    via = models.CharField(max_length=10, choices=AckVia.choices)

    class Meta:
        ordering = ["-at"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticket", "metric", "cycle"], name="acknowledgement_once_per_clock"
            )
        ]

    def __str__(self) -> str:
        who = self.user.get_username() if self.user else "someone"
        return f"acknowledged by {who} at {self.at:%Y-%m-%d %H:%M} UTC"
