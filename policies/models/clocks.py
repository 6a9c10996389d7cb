"""SLA clocks (one per ticket per target) and the minute tick's watermark."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from policies.models.rules import Metric, Policy, Target


class ClockStatus(models.TextChoices):
    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    MET = "met", "Met"
    STOPPED = "stopped", "Stopped"


class Bucket(models.TextChoices):
    GREEN = "green", "On track"
    YELLOW = "yellow", "Warning"
    ORANGE = "orange", "Danger"
    RED = "red", "Breached"


ACTIVE_CLOCK_STATUSES = (ClockStatus.RUNNING, ClockStatus.PAUSED)
#: Severity of a bucket: a change that raises it may notify (``policies.notifications``).
BUCKET_RANK: dict[str, int] = {Bucket.GREEN: 0, Bucket.YELLOW: 1, Bucket.ORANGE: 2, Bucket.RED: 3}


class SLAClock(models.Model):
    """One SLA clock of a ticket: its inputs and the instants computed from them.

    A projection of the ticket's events and the policies (``policies.actions``); the minute
    tick only moves ``bucket``/``next_change_at``/``breached_at`` along the stored instants.

    None of the columns the tick writes is indexed, and the table keeps 10 % of each page free
    (migration 0005), so PostgreSQL makes the tick's updates heap-only (HOT): no index entry is
    written for a colour change. The tick finds due clocks through the partial indexes on the
    instants, which only a re-sync writes (``docs/bench-tick.md``).
    """

    # No index of its own: the unique (ticket, metric, cycle) index starts with ticket_id.
    ticket = models.ForeignKey(
        "tickets.Ticket", on_delete=models.CASCADE, related_name="clocks", db_index=False
    )
    metric = models.CharField(max_length=30, choices=Metric.choices)
    cycle = models.PositiveSmallIntegerField(
        default=0, help_text="0, or the number of reopens before this resolution clock."
    )
    policy = models.ForeignKey(
        Policy, on_delete=models.SET_NULL, null=True, blank=True, related_name="clocks"
    )
    target = models.ForeignKey(
        Target, on_delete=models.SET_NULL, null=True, blank=True, related_name="clocks"
    )
    # Inputs.
    started_at = models.DateTimeField()
    pauses = models.JSONField(
        default=list, blank=True, help_text="[[start, end or null], ...] as ISO instants."
    )
    met_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    # Computed.
    status = models.CharField(max_length=10, choices=ClockStatus.choices)
    due_at = models.DateTimeField(null=True, blank=True)
    yellow_at = models.DateTimeField(null=True, blank=True)
    orange_at = models.DateTimeField(null=True, blank=True)
    breached_at = models.DateTimeField(null=True, blank=True)
    bucket = models.CharField(max_length=10, choices=Bucket.choices)
    next_change_at = models.DateTimeField(null=True, blank=True)
    remaining_seconds = models.FloatField(
        null=True, blank=True, help_text="Business seconds left when paused."
    )
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["ticket", "metric", "cycle"]
        verbose_name = "SLA clock"
        constraints = [
            models.UniqueConstraint(
                fields=["ticket", "metric", "cycle"], name="clock_unique_ticket_metric_cycle"
            ),
            models.CheckConstraint(
                condition=Q(status__in=ClockStatus.values), name="clock_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(bucket__in=Bucket.values), name="clock_bucket_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status=ClockStatus.RUNNING) | Q(due_at__isnull=False),
                name="clock_running_has_due",
            ),
        ]
        indexes = [
            # The tick's lookups: running clocks with an instant inside the tick's window.
            models.Index(
                fields=["yellow_at"], condition=Q(status="running"), name="clock_yellow_running"
            ),
            models.Index(
                fields=["orange_at"], condition=Q(status="running"), name="clock_orange_running"
            ),
            models.Index(
                fields=["due_at"], condition=Q(status="running"), name="clock_due_running"
            ),
        ]

    def __str__(self) -> str:
        cycle = f" #{self.cycle + 1}" if self.cycle else ""
        return f"{self.get_metric_display()}{cycle}: {self.get_status_display()}, {self.bucket}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_CLOCK_STATUSES

    @property
    def breached(self) -> bool:
        return self.breached_at is not None


class TickWatermark(models.Model):
    """Up to when the minute tick has moved the clocks: one row, written with the clocks.

    The tick looks only at running clocks with an instant in ``(evaluated_until, now]`` and
    moves the watermark in the same transaction, so a tick that dies halfway is rolled back and
    the next one redoes its window; after downtime one tick covers it all. Clock writers never
    compute before the watermark (``policies.actions.clock_now``).
    """

    evaluated_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "tick watermark"

    def __str__(self) -> str:
        return f"evaluated until {self.evaluated_until}"


class Rescue(models.Model):
    """A clock saved by someone: claimed while orange or red, then met.

    Written by the clock writer when the clock turns met (``policies.engine``), from the
    claim's own record of the buckets it saw (the ``claimed`` event's payload). The boards
    show today's rescues per agent.
    """

    ticket = models.ForeignKey(
        "tickets.Ticket", on_delete=models.CASCADE, related_name="rescues", db_index=False
    )
    metric = models.CharField(max_length=30, choices=Metric.choices)
    cycle = models.PositiveSmallIntegerField(default=0)
    user = models.ForeignKey(
        "tickets.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="rescues"
    )
    claimed_at = models.DateTimeField()
    claimed_bucket = models.CharField(max_length=10, choices=Bucket.choices)
    met_at = models.DateTimeField()

    class Meta:
        ordering = ["-met_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["ticket", "metric", "cycle"], name="rescue_once_per_clock"
            )
        ]
        indexes = [models.Index(fields=["met_at"], name="rescue_met_at")]

    def __str__(self) -> str:
        who = self.user.get_username() if self.user else "someone"
        return f"{self.metric} rescued by {who} (claimed at {self.claimed_bucket})"
