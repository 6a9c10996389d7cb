"""Time: business calendars, SLA policies and their targets."""

from __future__ import annotations

from datetime import date, time, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from policies.durations import format_duration
from tickets.models import (
    CustomerTier,
    PartnerTier,
    Priority,
    TicketKind,
    TicketStatus,
    validate_timezone,
)

if TYPE_CHECKING:
    from tickets.models import Ticket

WEEKDAYS = [
    (0, "Monday"),
    (1, "Tuesday"),
    (2, "Wednesday"),
    (3, "Thursday"),
    (4, "Friday"),
    (5, "Saturday"),
    (6, "Sunday"),
]
WEEKDAY_NAMES = dict(WEEKDAYS)
MIDNIGHT = time(0)


def interval_minutes(start: time, end: time) -> tuple[int, int]:
    """Minutes from the start of the day; an end at or before the start runs past midnight."""
    s = start.hour * 60 + start.minute
    e = end.hour * 60 + end.minute
    if e <= s:
        e += 24 * 60
    return s, e


def describe_interval(start: time, end: time) -> str:
    suffix = " (next day)" if end <= start and not (start == end == MIDNIGHT) else ""
    if start == end == MIDNIGHT:
        return "all day"
    return f"{start:%H:%M}–{end:%H:%M}{suffix}"


def overlapping_pairs(intervals: list[tuple[time, time]]) -> list[str]:
    """Human descriptions of intervals of one day that overlap each other."""
    spans = sorted((interval_minutes(s, e), (s, e)) for s, e in intervals)
    problems = []
    for (a, a_raw), (b, b_raw) in zip(spans, spans[1:], strict=False):
        if b[0] < a[1]:
            problems.append(f"{describe_interval(*a_raw)} overlaps {describe_interval(*b_raw)}")
    return problems


class Calendar(models.Model):
    """Working time: weekly intervals, holidays, per-date overrides and one-off closures."""

    name = models.CharField(max_length=200, unique=True)
    timezone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_timezone],
        help_text="Working times below are local wall-clock times in this zone.",
    )
    description = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def touch(self) -> None:
        """Mark the calendar changed (built business calendars are cached by updated_at)."""
        Calendar.objects.filter(pk=self.pk).update(updated_at=timezone.now())

    def weekly_hours(self) -> float:
        """Nominal working hours in a week (ignores holidays and DST)."""
        total = 0
        for interval in self.intervals.all():
            s, e = interval_minutes(interval.start, interval.end)
            total += e - s
        return total / 60

    def to_business_calendar(self) -> Any:
        """The pure business-time calendar (policies.businesstime) for this row."""
        from policies.businesstime import Calendar as BusinessCalendar

        weekly: dict[int, list[tuple[time, time]]] = {}
        for interval in self.intervals.all():
            weekly.setdefault(interval.weekday, []).append((interval.start, interval.end))
        overrides: dict[date, list[tuple[time, time]]] = {}
        for override in self.overrides.all():
            slots = overrides.setdefault(override.date, [])
            if not override.closed and override.start is not None and override.end is not None:
                slots.append((override.start, override.end))
        return BusinessCalendar(
            tz=self.timezone,
            weekly=weekly,
            holidays={h.date for h in self.holidays.all()},
            overrides=overrides,
            closures=[(c.starts_at, c.ends_at) for c in self.closures.all()],
        )


class CalendarPart(models.Model):
    """A row that belongs to a calendar: saving or deleting it marks the calendar changed."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        Calendar.objects.filter(pk=self.calendar_id).update(updated_at=timezone.now())  # type: ignore[attr-defined]

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        result = super().delete(*args, **kwargs)
        Calendar.objects.filter(pk=self.calendar_id).update(updated_at=timezone.now())  # type: ignore[attr-defined]
        return result


class WorkingInterval(CalendarPart):
    """One working interval of a weekday. End at or before start = runs past midnight."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="intervals")
    weekday = models.PositiveSmallIntegerField(choices=WEEKDAYS)
    start = models.TimeField(help_text="Local time, e.g. 09:00.")
    end = models.TimeField(
        help_text="Local time. 00:00 means midnight at the end of the day; an end before the "
        "start is an overnight shift that belongs to the day it starts."
    )

    class Meta:
        ordering = ["calendar", "weekday", "start"]
        constraints = [
            models.CheckConstraint(
                condition=Q(weekday__gte=0) & Q(weekday__lte=6), name="interval_weekday_0_6"
            ),
            models.CheckConstraint(
                condition=~Q(start=F("end")) | Q(start=MIDNIGHT),
                name="interval_not_empty",
                violation_error_message="A working interval cannot start and end at the same "
                "time (use 00:00–00:00 for a whole day).",
            ),
            models.UniqueConstraint(
                fields=["calendar", "weekday", "start"], name="interval_unique_start"
            ),
        ]

    def __str__(self) -> str:
        return f"{WEEKDAY_NAMES.get(self.weekday, '?')} {describe_interval(self.start, self.end)}"

    def clean(self) -> None:
        super().clean()
        if self.start is not None and self.end is not None:
            if self.start == self.end and self.start != MIDNIGHT:
                raise ValidationError(
                    {
                        "end": "The interval is empty: the end must differ from the start "
                        "(use 00:00–00:00 for a whole day)."
                    }
                )
            if self.start.second or self.end.second:
                raise ValidationError("Working times are whole minutes (e.g. 09:00, 17:30).")


class Holiday(CalendarPart):
    """A local date on which the calendar's own intervals do not apply."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="holidays")
    date = models.DateField()
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["calendar", "date"]
        constraints = [
            models.UniqueConstraint(fields=["calendar", "date"], name="holiday_unique_date")
        ]

    def __str__(self) -> str:
        return f"{self.date:%Y-%m-%d} {self.name}".strip()


class DateOverride(CalendarPart):
    """Special hours on one date: replaces that date's weekly intervals (e.g. Christmas Eve)."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="overrides")
    date = models.DateField()
    start = models.TimeField(null=True, blank=True)
    end = models.TimeField(null=True, blank=True)
    closed = models.BooleanField(
        default=False, help_text="Closed all day (leave start and end empty)."
    )
    note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["calendar", "date", "start"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(closed=True) & Q(start__isnull=True) & Q(end__isnull=True))
                | (
                    Q(closed=False)
                    & Q(start__isnull=False)
                    & Q(end__isnull=False)
                    & (~Q(start=F("end")) | Q(start=MIDNIGHT))
                ),
                name="override_well_formed",
                violation_error_message="An override is either closed all day or has a start "
                "and a different end.",
            ),
        ]

    def __str__(self) -> str:
        if self.closed:
            return f"{self.date:%Y-%m-%d} closed"
        assert self.start is not None and self.end is not None
        return f"{self.date:%Y-%m-%d} {describe_interval(self.start, self.end)}"

    def clean(self) -> None:
        super().clean()
        if self.closed:
            if self.start is not None or self.end is not None:
                raise ValidationError("A closed day has no start or end: clear them.")
            return
        errors = {}
        if self.start is None:
            errors["start"] = "Enter the start, or tick 'closed' for a closed day."
        if self.end is None:
            errors["end"] = "Enter the end, or tick 'closed' for a closed day."
        if errors:
            raise ValidationError(errors)
        if self.start == self.end and self.start != MIDNIGHT:
            raise ValidationError({"end": "The end must differ from the start."})


class Closure(CalendarPart):
    """A one-off closure of exact instants (a maintenance window, an office move)."""

    calendar = models.ForeignKey(Calendar, on_delete=models.CASCADE, related_name="closures")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["calendar", "starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")),
                name="closure_ends_after_start",
                violation_error_message="A closure must end after it starts.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.starts_at:%Y-%m-%d %H:%M} → {self.ends_at:%Y-%m-%d %H:%M} UTC"

    def clean(self) -> None:
        super().clean()
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValidationError({"ends_at": "A closure must end after it starts."})


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

    def matches(self, ticket: Ticket, *, partner_ids: set[int] | None = None) -> bool:
        """Whether this policy's conditions hold for the ticket (active flag not checked).

        ``partner_ids`` is the policy's partner restriction when already fetched (avoids a query
        per ticket in bulk matching).
        """
        if self.kinds and ticket.kind not in self.kinds:
            return False
        if self.priorities and ticket.priority not in self.priorities:
            return False
        if self.customer_tiers:
            tier = ticket.customer.tier if ticket.customer is not None else None
            if tier not in self.customer_tiers:
                return False
        if self.partner_tiers and ticket.partner.tier not in self.partner_tiers:
            return False
        if partner_ids is None:
            partner_ids = set(self.partners.values_list("pk", flat=True))
        return not partner_ids or ticket.partner_id in partner_ids


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


# --------------------------------------------------------------------------- notifications


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
