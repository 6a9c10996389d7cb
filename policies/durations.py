"""Readable SLA durations: "15 min", "4 h", "1 d 2 h" <-> timedelta. Pure, no Django."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_CLOCK = re.compile(r"^(\d+):([0-5]\d)(?::([0-5]\d))?$")


class DurationFormatError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """Parse "15 min", "4h", "1 d 2 h", "1.5 h", "01:30" (h:mm) or "90" (minutes)."""
    cleaned = text.strip().lower().replace(",", " ")
    if not cleaned:
        raise DurationFormatError("Enter a duration, for example 15 min, 4 h or 1 d 2 h.")
    if cleaned.isdigit():
        return timedelta(minutes=int(cleaned))
    clock = _CLOCK.match(cleaned)
    if clock:
        hours, minutes, seconds = clock.groups()
        return timedelta(hours=int(hours), minutes=int(minutes), seconds=int(seconds or 0))
    total = 0.0
    position = 0
    for match in _PART.finditer(cleaned):
        if cleaned[position : match.start()].strip():
            break
        unit = match.group(2)
        if unit not in _UNITS:
            raise DurationFormatError(
                f"Unknown unit {unit!r} in {text.strip()!r}: use d, h, min or s "
                "(for example 1 d 2 h)."
            )
        total += float(match.group(1)) * _UNITS[unit]
        position = match.end()
    if position == 0 or cleaned[position:].strip():
        raise DurationFormatError(
            f"Cannot read {text.strip()!r} as a duration: write it like 15 min, 4 h or 1 d 2 h."
        )
    return timedelta(seconds=round(total))


def format_duration(value: timedelta | None) -> str:
    """Render a duration the way an operations admin reads it: "4 h", "1 d 2 h", "15 min"."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    if seconds == 0:
        return "0 min"
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days} d")
    if hours:
        parts.append(f"{hours} h")
    if minutes:
        parts.append(f"{minutes} min")
    if secs:
        parts.append(f"{secs} s")
    return sign + " ".join(parts)
