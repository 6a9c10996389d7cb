"""The facts: partners, customers, users, tickets and their append-only events."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.urls import reverse

from policies.timezones import is_valid_timezone


def validate_timezone(value: str) -> None:
    if not is_valid_timezone(value):
        raise ValidationError(
            "Unknown time zone %(value)r: use an IANA name such as Europe/Paris or "
            "America/New_York.",
            params={"value": value},
            code="invalid_timezone",
        )


class PartnerTier(models.TextChoices):
    PLATINUM = "platinum", "Platinum"
    GOLD = "gold", "Gold"
    SILVER = "silver", "Silver"
    BRONZE = "bronze", "Bronze"


class CustomerTier(models.TextChoices):
    ENTERPRISE = "enterprise", "Enterprise"
    BUSINESS = "business", "Business"
    SMB = "smb", "SMB"
    FREE = "free", "Free"


class TicketKind(models.TextChoices):
    INCIDENT = "incident", "Incident"
    SERVICE_REQUEST = "service_request", "Service request"
    LEAD = "lead", "Lead"
    INQUIRY = "inquiry", "Inquiry"


class Priority(models.TextChoices):
    CRITICAL = "critical", "Critical"
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"


class TicketStatus(models.TextChoices):
    NEW = "new", "New"
    OPEN = "open", "Open"
    WAITING_ON_CUSTOMER = "waiting_on_customer", "Waiting on customer"
    WAITING_ON_THIRD_PARTY = "waiting_on_third_party", "Waiting on third party"
    ON_HOLD = "on_hold", "On hold"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


OPEN_STATUSES = frozenset(
    {
        TicketStatus.NEW,
        TicketStatus.OPEN,
        TicketStatus.WAITING_ON_CUSTOMER,
        TicketStatus.WAITING_ON_THIRD_PARTY,
        TicketStatus.ON_HOLD,
    }
)


class ActorKind(models.TextChoices):
    HUMAN = "human", "Human agent"
    AUTOMATION = "automation", "Automation"
    BOT = "bot", "Bot"
    AUTO_ACK = "auto_ack", "Auto-acknowledgement"
    SYSTEM = "system", "slaboard"


class EventKind(models.TextChoices):
    CREATED = "created", "Created"
    REPLIED = "replied", "Replied"
    PLAN_SENT = "plan_sent", "Plan sent"
    STATUS_CHANGED = "status_changed", "Status changed"
    PRIORITY_CHANGED = "priority_changed", "Priority changed"
    ATTRIBUTES_CHANGED = "attributes_changed", "Kind, customer or partner changed"
    ASSIGNED = "assigned", "Assigned"
    CLAIMED = "claimed", "Claimed"
    RELEASED = "released", "Released"
    RESOLVED = "resolved", "Resolved"
    REOPENED = "reopened", "Reopened"
    CLOSED = "closed", "Closed"
    NOTE = "note", "Note"
    SLA_CHANGED = "sla_changed", "SLA due time changed"


class Partner(models.Model):
    """An organisation that owes responses: an MSP, a distributor, an internal team."""

    name = models.CharField(max_length=200, unique=True)
    tier = models.CharField(max_length=20, choices=PartnerTier.choices, default=PartnerTier.SILVER)
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text="IANA time zone, e.g. Europe/Paris. Used to show local times.",
    )
    default_calendar = models.ForeignKey(
        "policies.Calendar",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="partners",
        help_text="Business hours for targets that use the partner's calendar. Empty means 24×7.",
    )
    contact_emails = models.TextField(
        blank=True, help_text="Addresses to notify, one per line or separated by commas."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        bad = [a for a in self.contact_email_list() if "@" not in a]
        if bad:
            raise ValidationError(
                {"contact_emails": f"Not an email address: {', '.join(bad)}."}, code="invalid"
            )

    def contact_email_list(self) -> list[str]:
        raw = self.contact_emails.replace(",", "\n").replace(";", "\n")
        return [line.strip() for line in raw.splitlines() if line.strip()]


class Customer(models.Model):
    """Who raised the ticket."""

    name = models.CharField(max_length=200, unique=True)
    tier = models.CharField(
        max_length=20, choices=CustomerTier.choices, default=CustomerTier.BUSINESS
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class User(AbstractUser):
    """A slaboard user. A partner user only ever sees that partner's tickets."""

    partner = models.ForeignKey(
        Partner,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="users",
        help_text="Set for a partner's staff: they see only this partner's tickets. "
        "Empty for your own staff, who see everything their permissions allow.",
    )

    def clean(self) -> None:
        super().clean()
        if self.partner_id is not None and (self.is_staff or self.is_superuser):
            raise ValidationError(
                {
                    "partner": "A partner's user cannot be staff or a superuser: the admin "
                    "shows every partner's data. Partner users work in slaboard's own pages; "
                    "empty the partner to make this one of your own staff."
                },
                code="partner_staff",
            )


class TicketQuerySet(models.QuerySet["Ticket"]):
    def open(self) -> TicketQuerySet:
        return self.filter(status__in=OPEN_STATUSES)

    def visible_to(self, user: Any) -> TicketQuerySet:
        """Scope: a partner's users see only their partner's tickets."""
        if not user.is_authenticated:
            return self.none()
        if user.partner_id is not None:
            return self.filter(partner_id=user.partner_id)
        return self


class Ticket(models.Model):
    """A projection of its events: every field below follows from the event log."""

    kind = models.CharField(max_length=20, choices=TicketKind.choices, default=TicketKind.INCIDENT)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM)
    status = models.CharField(max_length=30, choices=TicketStatus.choices, default=TicketStatus.NEW)
    partner = models.ForeignKey(Partner, on_delete=models.PROTECT, related_name="tickets")
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, null=True, blank=True, related_name="tickets"
    )
    assignee = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="assigned_tickets"
    )
    team = models.CharField(max_length=100, blank=True, help_text="Assignment group or queue.")
    subject = models.CharField(max_length=500)
    source = models.CharField(
        max_length=50,
        default="slaboard",
        help_text="The system the ticket came from (helpdesk, PSA, CRM); "
        "'slaboard' if managed here.",
    )
    external_id = models.CharField(max_length=200, help_text="The ticket's id in its source.")
    opened_at = models.DateTimeField()
    first_human_reply_at = models.DateTimeField(null=True, blank=True)
    plan_sent_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    last_event_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TicketQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at"]
        permissions = [
            ("claim_ticket", "Can grab tickets in the queue and record replies, plans, statuses"),
            ("take_over_ticket", "Can take over or reassign a ticket another agent claimed"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["source", "external_id"], name="ticket_unique_source_external_id"
            ),
            models.CheckConstraint(
                condition=~Q(external_id=""), name="ticket_external_id_not_empty"
            ),
            models.CheckConstraint(condition=~Q(source=""), name="ticket_source_not_empty"),
            models.CheckConstraint(
                condition=Q(first_human_reply_at__isnull=True)
                | Q(first_human_reply_at__gte=F("opened_at")),
                name="ticket_first_reply_after_opened",
            ),
            models.CheckConstraint(
                condition=Q(plan_sent_at__isnull=True) | Q(plan_sent_at__gte=F("opened_at")),
                name="ticket_plan_after_opened",
            ),
            models.CheckConstraint(
                condition=Q(resolved_at__isnull=True) | Q(resolved_at__gte=F("opened_at")),
                name="ticket_resolved_after_opened",
            ),
            models.CheckConstraint(
                condition=Q(closed_at__isnull=True) | Q(closed_at__gte=F("opened_at")),
                name="ticket_closed_after_opened",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=TicketKind.values), name="ticket_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(priority__in=Priority.values), name="ticket_priority_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=TicketStatus.values), name="ticket_status_valid"
            ),
        ]
        indexes = [
            models.Index(fields=["partner", "status"], name="ticket_partner_status"),
            models.Index(fields=["updated_at"], name="ticket_updated_at"),
        ]

    def __str__(self) -> str:
        return f"{self.source}:{self.external_id} {self.subject}"

    def get_absolute_url(self) -> str:
        return reverse("ticket", args=[self.pk])

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        if self.opened_at:
            for field in ("first_human_reply_at", "plan_sent_at", "resolved_at", "closed_at"):
                value = getattr(self, field)
                if value is not None and value < self.opened_at:
                    label = field.removesuffix("_at").replace("_", " ").capitalize()
                    errors[field] = f"{label} at cannot be before the ticket was opened."
        if self.assignee_id and self.partner_id:
            assignee_partner = (
                User.objects.filter(pk=self.assignee_id)
                .values_list("partner_id", flat=True)
                .first()
            )
            if assignee_partner is not None and assignee_partner != self.partner_id:
                errors["assignee"] = "The assignee belongs to another partner."
        if errors:
            raise ValidationError(errors)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def reference(self) -> str:
        """How people name the ticket everywhere (boards, queue, messages): its id in its
        source, prefixed with the source unless it is managed in slaboard itself."""
        if self.source == "slaboard":
            return self.external_id
        return f"{self.source}:{self.external_id}"


class TicketEvent(models.Model):
    """An append-only fact about a ticket. Never updated or deleted once written."""

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=30, choices=EventKind.choices)
    at = models.DateTimeField(help_text="When it happened (the source system's time).")
    actor_kind = models.CharField(max_length=20, choices=ActorKind.choices, default=ActorKind.HUMAN)
    user = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="ticket_events"
    )
    payload = models.JSONField(default=dict, blank=True)
    external_id = models.CharField(
        max_length=200,
        blank=True,
        help_text="The event's id in its source, so a retried delivery is not recorded twice.",
    )
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticket", "external_id"],
                condition=~Q(external_id=""),
                name="ticketevent_unique_external_id",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=EventKind.values), name="ticketevent_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(actor_kind__in=ActorKind.values), name="ticketevent_actor_kind_valid"
            ),
        ]
        indexes = [models.Index(fields=["ticket", "at", "id"], name="ticketevent_ticket_at")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} at {self.at:%Y-%m-%d %H:%M} UTC"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError("Ticket events are append-only: record a new event instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ValueError("Ticket events are append-only and cannot be deleted.")


def hash_token(token: str) -> str:
    import hashlib

    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    """An integration's key to the API. Only its hash is stored; the token is shown once."""

    name = models.CharField(max_length=200, help_text="Which integration uses it.")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    partner = models.ForeignKey(
        Partner,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="api_tokens",
        help_text="If set, the token can only read and write this partner's tickets.",
    )
    requests_per_minute = models.PositiveIntegerField(
        default=600, help_text="Requests above this rate get 429 Too Many Requests."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(
        cls, *, name: str, partner: Partner | None = None, **fields: Any
    ) -> tuple[ApiToken, str]:
        """Create a token; return it with the secret, which is never stored or shown again."""
        import secrets

        secret = "slb_" + secrets.token_urlsafe(32)
        token = cls.objects.create(
            name=name,
            partner=partner,
            prefix=secret[:12],
            token_hash=hash_token(secret),
            **fields,
        )
        return token, secret

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class IdempotentRequest(models.Model):
    """The answer to a request sent with an Idempotency-Key, replayed on retries."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=200)
    fingerprint = models.CharField(max_length=64, help_text="Hash of method, path and body.")
    status_code = models.PositiveSmallIntegerField()
    response = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["token", "key"], name="idempotency_unique_key")
        ]

    def __str__(self) -> str:
        return f"{self.key} → {self.status_code}"
