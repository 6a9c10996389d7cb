"""The audit trail of rule edits (policies, targets, calendars)."""

from __future__ import annotations

from django.db import models


class AuditEntry(models.Model):
    """Who changed a policy, target or calendar, what changed, and what it re-synced."""

    at = models.DateTimeField()
    user = models.ForeignKey(
        "tickets.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    object_type = models.CharField(max_length=50)
    object_id = models.PositiveBigIntegerField(null=True, blank=True)
    object_repr = models.CharField(max_length=200)
    action = models.CharField(max_length=20)
    changes = models.JSONField(default=dict, blank=True)
    resynced_tickets = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.object_type} {self.object_repr}"
