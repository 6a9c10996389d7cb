from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.conf import settings

from policies.durations import format_duration

register = template.Library()

ICONS = {"green": "✓", "yellow": "!", "orange": "▲", "red": "✖"}
LABELS = {"green": "On track", "yellow": "Warning", "orange": "Danger", "red": "Breached"}


@register.filter
def bucket_icon(bucket: str) -> str:
    return ICONS.get(bucket, "?")


@register.filter
def bucket_label(bucket: str) -> str:
    return LABELS.get(bucket, bucket)


@register.filter
def iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


@register.filter
def readable(value: timedelta | None) -> str:
    if value is None:
        return ""
    rounded = timedelta(minutes=max(1, round(value.total_seconds() / 60)))
    return format_duration(rounded)


@register.filter
def compact(count: int) -> str:
    """Counts that fit a wall-board cell: 987, 9876, 12k, 1.2M."""
    if count < 10_000:
        return str(count)
    if count < 1_000_000:
        return f"{count // 1000}k"
    return f"{count / 1_000_000:.1f}M"


@register.filter
def digits(count: int) -> int:
    """How wide a count is once compacted (for the cell's font size)."""
    return min(len(compact(count)), 5)


@register.filter
def parse_iso(value: str | None) -> datetime | None:
    """An ISO instant stored as text (event payloads) as a datetime, for ``|date``."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


@register.filter
def ago(value: timedelta | None) -> str:
    """A span as a wall reads it at a glance: 45 min, 5 h, 3 d."""
    if value is None:
        return ""
    minutes = max(0, int(value.total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} d"


@register.filter
def tick_late(evaluated_at: datetime | None, now: datetime | None) -> bool:
    """The tick's watermark is older than ``TICK_LATE_SECONDS`` (the board then warns)."""
    if evaluated_at is None or now is None:
        return False
    return (now - evaluated_at).total_seconds() > settings.TICK_LATE_SECONDS


@register.simple_tag
def tick_late_seconds() -> str:
    """For live.js, which turns the board's "evaluated" time into a warning by itself."""
    return f"{settings.TICK_LATE_SECONDS:g}"
