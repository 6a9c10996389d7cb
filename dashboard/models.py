"""Boards: saved filters shown on wall screens, each with an optional read-only kiosk link."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.urls import reverse

from tickets.models import CustomerTier, Priority, TicketKind, validate_timezone


class Board(models.Model):
    """A saved filter over open tickets. Empty filters mean "any"."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(
        max_length=100, unique=True, help_text="The board's address: /boards/<slug>/"
    )
    partners = models.ManyToManyField(
        "tickets.Partner", blank=True, related_name="boards", help_text="Empty = all partners."
    )
    priorities = models.JSONField(default=list, blank=True, help_text="Empty = any priority.")
    kinds = models.JSONField(default=list, blank=True, help_text="Empty = any kind.")
    customer_tiers = models.JSONField(default=list, blank=True, help_text="Empty = any tier.")
    teams = models.JSONField(
        default=list, blank=True, help_text="Team names (assignment groups). Empty = any team."
    )
    display_timezone = models.CharField(
        "display time zone",
        max_length=64,
        blank=True,
        validators=[validate_timezone],
        help_text="Times on the board, and when 'today' and 'this month' start. Empty = the "
        "partner's zone when the board shows one partner, else the site's (TIME_ZONE).",
    )
    kiosk_token = models.CharField(
        max_length=64,
        blank=True,
        help_text="Secret of the read-only kiosk link. Empty = no kiosk link.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        permissions = [("view_reports", "Can see SLA reports of every partner in scope")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("board", args=[self.slug])

    def clean(self) -> None:
        super().clean()
        allowed = {
            "priorities": Priority.values,
            "kinds": TicketKind.values,
            "customer_tiers": CustomerTier.values,
        }
        errors = {}
        for field, values in allowed.items():
            chosen = getattr(self, field)
            unknown = [v for v in chosen if v not in values] if isinstance(chosen, list) else chosen
            if unknown:
                errors[field] = f"Unknown value(s): {unknown}; choose from {', '.join(values)}."
        if not isinstance(self.teams, list) or not all(isinstance(t, str) for t in self.teams):
            errors["teams"] = "Teams must be a list of names."
        if errors:
            raise ValidationError(errors)

    def ticket_filter(self, partner_ids: set[int] | None = None) -> Q:
        """The board's conditions on tickets (``partner_ids`` when already fetched)."""
        condition = Q()
        if partner_ids is None:
            partner_ids = set(self.partners.values_list("pk", flat=True))
        if partner_ids:
            condition &= Q(partner_id__in=partner_ids)
        if self.priorities:
            condition &= Q(priority__in=self.priorities)
        if self.kinds:
            condition &= Q(kind__in=self.kinds)
        if self.customer_tiers:
            condition &= Q(customer__tier__in=self.customer_tiers)
        if self.teams:
            condition &= Q(team__in=self.teams)
        return condition

    def kiosk_matches(self, token: Any) -> bool:
        return (
            bool(self.kiosk_token)
            and isinstance(token, str)
            and secrets.compare_digest(self.kiosk_token, token)
        )

    def kiosk_url(self) -> str:
        if not self.kiosk_token:
            return ""
        # After "#": browsers never send it, so no server or proxy logs the secret.
        return f"{self.get_absolute_url()}#kiosk={self.kiosk_token}"
