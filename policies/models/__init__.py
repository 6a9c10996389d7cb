"""Time: business calendars, SLA policies and targets, clocks, notifications, audit.

One module per topic; everything is re-exported here, so ``from policies.models import X``
keeps working and Django finds every model.
"""

from __future__ import annotations

from policies.models.audit import AuditEntry
from policies.models.calendars import (
    MIDNIGHT,
    WEEKDAY_NAMES,
    WEEKDAYS,
    Calendar,
    CalendarPart,
    Closure,
    DateOverride,
    Holiday,
    WorkingInterval,
    describe_interval,
    interval_minutes,
    overlapping_pairs,
)
from policies.models.clocks import (
    ACTIVE_CLOCK_STATUSES,
    BUCKET_RANK,
    Bucket,
    ClockStatus,
    Rescue,
    SLAClock,
    TickWatermark,
)
from policies.models.notifications import (
    DUE_STATUSES,
    ESCALATION_TRIGGERS,
    TRIGGER_BUCKETS,
    TRIGGER_LEVELS,
    Acknowledgement,
    AckVia,
    Channel,
    Notification,
    NotificationRule,
    NotificationStatus,
    PayloadFormat,
    Trigger,
    new_webhook_secret,
    split_addresses,
    validate_webhook_url,
)
from policies.models.rules import (
    Metric,
    Policy,
    ReopenBehaviour,
    Target,
    default_pause_statuses,
)

__all__ = [
    "ACTIVE_CLOCK_STATUSES",
    "AckVia",
    "Acknowledgement",
    "AuditEntry",
    "BUCKET_RANK",
    "Bucket",
    "Calendar",
    "CalendarPart",
    "Channel",
    "ClockStatus",
    "Closure",
    "DUE_STATUSES",
    "DateOverride",
    "ESCALATION_TRIGGERS",
    "Holiday",
    "MIDNIGHT",
    "Metric",
    "Notification",
    "NotificationRule",
    "NotificationStatus",
    "PayloadFormat",
    "Policy",
    "ReopenBehaviour",
    "Rescue",
    "SLAClock",
    "TRIGGER_BUCKETS",
    "TRIGGER_LEVELS",
    "Target",
    "TickWatermark",
    "Trigger",
    "WEEKDAYS",
    "WEEKDAY_NAMES",
    "WorkingInterval",
    "default_pause_statuses",
    "describe_interval",
    "interval_minutes",
    "new_webhook_secret",
    "overlapping_pairs",
    "split_addresses",
    "validate_webhook_url",
]
