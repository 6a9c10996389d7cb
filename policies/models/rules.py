"""SLA policies (matching conditions, first match wins) and their targets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from policies.durations import format_duration
from policies.models.calendars import Calendar
from tickets.models import CustomerTier, PartnerTier, Priority, TicketKind, TicketStatus


class Metric(models.TextChoices):
    FIRST_RESPONSE = "first_response", "First response"
    RESOLUTION_PLAN = "resolution_plan", "Resolution plan"
    RESOLUTION = "resolution", "Resolution"


class ReopenBehaviour(models.TextChoices):
    RESTART = "restart", "Restart at reopen"
    CONTINUE = "continue", "Continue"


def default_pause_statuses() -> list[str]:
    return [TicketStatus.WAITING_ON_CUSTOMER.value]


class Policy(models.Model):
    """Matching conditions plus an order; the first matching active policy applies.

    An empty condition list means "any".
    """

    name = models.CharField(max_length=200, unique=True)
    order = models.PositiveIntegerField(
        default=100, help_text="Lower comes first; the first matching active policy applies."
    )
    active = models.BooleanField(default=True)
    description = models.TextField(blank=True)
    kinds = models.JSONField(default=list, blank=True, help_text="Empty = any kind.")
    priorities = models.JSONField(default=list, blank=True, help_text="Empty = any priority.")
    customer_tiers = models.JSONField(
        default=list, blank=True, help_text="Empty = any customer tier."
    )
    partner_tiers = models.JSONField(
        default=list, blank=True, help_text="Empty = any partner tier."
    )
    partners = models.ManyToManyField(
        "tickets.Partner", blank=True, related_name="policies", help_text="Empty = any partner."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order", "name"]
        verbose_name_plural = "policies"

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        allowed = {
            "kinds": TicketKind.values,
            "priorities": Priority.values,
            "customer_tiers": CustomerTier.values,
            "partner_tiers": PartnerTier.values,
        }
        errors = {}
        for field, values in allowed.items():
            chosen = getattr(self, field)
            if not isinstance(chosen, list):
                errors[field] = "Must be a list of values."
                continue
            unknown = [v for v in chosen if v not in values]
            if unknown:
                errors[field] = f"Unknown value(s) {', '.join(map(str, unknown))}; " + (
                    f"choose from {', '.join(values)}."
                )
        if errors:
            raise ValidationError(errors)

    def touch(self) -> None:
        """Mark the policy changed (loaded policies are cached until something changes)."""
        Policy.objects.filter(pk=self.pk).update(updated_at=timezone.now())

    def conditions_summary(self) -> str:
        parts = []
        for label, values in (
            ("kind", self.kinds),
            ("priority", self.priorities),
            ("customer tier", self.customer_tiers),
            ("partner tier", self.partner_tiers),
        ):
            if values:
                parts.append(f"{label} in {', '.join(values)}")
        return "; ".join(parts) or "any ticket"

    def applies_to(
        self,
        *,
        kind: str,
        priority: str,
        customer_tier: str | None,
        partner_tier: str | None,
        partner_id: int,
        partner_ids: set[int],
    ) -> bool:
        """Whether the conditions hold for a ticket with these attributes (empty = any; the
        active flag is not checked). ``partner_ids`` is this policy's partner restriction,
        fetched once by the caller (``policies.engine.TargetResolver``)."""
        if self.kinds and kind not in self.kinds:
            return False
        if self.priorities and priority not in self.priorities:
            return False
        if self.customer_tiers and customer_tier not in self.customer_tiers:
            return False
        if self.partner_tiers and partner_tier not in self.partner_tiers:
            return False
        return not partner_ids or partner_id in partner_ids


class Target(models.Model):
    """One SLA target of a policy: a metric, a duration on a calendar, and warning thresholds."""

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="targets")
    metric = models.CharField(max_length=30, choices=Metric.choices)
    duration = models.DurationField(help_text="Business time allowed, e.g. 15 min, 4 h, 1 d 2 h.")
    calendar = models.ForeignKey(
        Calendar,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="targets",
        help_text="Empty = the partner's calendar (24×7 when the partner has none).",
    )
    pause_statuses = models.JSONField(
        default=default_pause_statuses,
        blank=True,
        help_text="Ticket statuses during which this clock stops.",
    )
    yellow_pct = models.PositiveSmallIntegerField(
        "yellow at %", default=50, help_text="Warning (yellow) from this % of the target elapsed."
    )
    orange_pct = models.PositiveSmallIntegerField(
        "orange at %", default=75, help_text="Danger (orange) from this % of the target elapsed."
    )
    yellow_minutes_left = models.PositiveIntegerField(
        "yellow at minutes left",
        null=True,
        blank=True,
        help_text="Also yellow when this few business minutes are left (whichever comes first).",
    )
    orange_minutes_left = models.PositiveIntegerField(
        "orange at minutes left",
        null=True,
        blank=True,
        help_text="Also orange when this few business minutes are left (whichever comes first).",
    )
    automated_replies_count = models.BooleanField(
        "automated replies count",
        default=False,
        help_text="First response only: let automation, bot and auto-acknowledgement replies "
        "meet the target. Off = only a human reply counts.",
    )
    on_reopen = models.CharField(
        max_length=20,
        choices=ReopenBehaviour.choices,
        default=ReopenBehaviour.RESTART,
        help_text="What a reopened ticket does to this clock: restart it from the reopen, "
        "or continue the original clock.",
    )

    class Meta:
        # Targets read in the order a ticket meets them: respond, plan, resolve.
        ordering = [
            "policy",
            models.Case(
                models.When(metric="first_response", then=0),
                models.When(metric="resolution_plan", then=1),
                default=2,
            ),
        ]
        constraints = [
            models.UniqueConstraint(fields=["policy", "metric"], name="target_unique_metric"),
            models.CheckConstraint(
                condition=Q(duration__gt=timedelta(0)),
                name="target_duration_positive",
                violation_error_message="The duration must be longer than zero.",
            ),
            models.CheckConstraint(
                condition=Q(yellow_pct__gt=0)
                & Q(yellow_pct__lt=F("orange_pct"))
                & Q(orange_pct__lt=100),
                name="target_pct_thresholds_ordered",
                violation_error_message="Thresholds must be ordered: 0 < yellow % < orange % "
                "< 100.",
            ),
            models.CheckConstraint(
                condition=Q(yellow_minutes_left__isnull=True)
                | Q(orange_minutes_left__isnull=True)
                | Q(yellow_minutes_left__gt=F("orange_minutes_left")),
                name="target_minutes_thresholds_ordered",
                violation_error_message="Yellow minutes-left must be more than orange "
                "minutes-left.",
            ),
            models.CheckConstraint(
                condition=Q(metric__in=Metric.values), name="target_metric_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_metric_display()} in {format_duration(self.duration)}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        Policy.objects.filter(pk=self.policy_id).update(updated_at=timezone.now())

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        result = super().delete(*args, **kwargs)
        Policy.objects.filter(pk=self.policy_id).update(updated_at=timezone.now())
        return result

    def clean(self) -> None:
        super().clean()
        errors: dict[str, str] = {}
        if self.duration is not None and self.duration <= timedelta(0):
            errors["duration"] = "The duration must be longer than zero."
        if self.yellow_pct is not None and self.orange_pct is not None:
            if not 0 < self.yellow_pct < 100:
                errors["yellow_pct"] = "Yellow % must be between 1 and 99."
            elif not 0 < self.orange_pct < 100:
                errors["orange_pct"] = "Orange % must be between 1 and 99."
            elif self.yellow_pct >= self.orange_pct:
                errors["orange_pct"] = (
                    f"Orange % ({self.orange_pct}) must be more than yellow % ({self.yellow_pct})."
                )
        if (
            self.yellow_minutes_left is not None
            and self.orange_minutes_left is not None
            and self.yellow_minutes_left <= self.orange_minutes_left
        ):
            errors["yellow_minutes_left"] = (
                "Yellow minutes-left must be more than orange minutes-left "
                f"({self.orange_minutes_left})."
            )
        if self.duration is not None:
            total_minutes = self.duration.total_seconds() / 60
            for field in ("yellow_minutes_left", "orange_minutes_left"):
                value = getattr(self, field)
                if value is not None and value >= total_minutes:
                    errors.setdefault(
                        field,
                        f"{value} minutes left is not less than the whole target "
                        f"({format_duration(self.duration)}).",
                    )
        if not isinstance(self.pause_statuses, list):
            errors["pause_statuses"] = "Must be a list of statuses."
        else:
            bad = [s for s in self.pause_statuses if s not in TicketStatus.values]
            closing = {TicketStatus.RESOLVED, TicketStatus.CLOSED}
            if bad:
                errors["pause_statuses"] = f"Unknown status(es): {', '.join(map(str, bad))}."
            elif closing & set(self.pause_statuses):
                errors["pause_statuses"] = (
                    "Resolved and closed end the clock; they cannot pause it."
                )
        if self.automated_replies_count and self.metric and self.metric != Metric.FIRST_RESPONSE:
            errors["automated_replies_count"] = (
                "Only a first-response target can count automated replies."
            )
        if errors:
            raise ValidationError(errors)

    @property
    def duration_display(self) -> str:
        return format_duration(self.duration)
