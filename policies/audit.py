"""Snapshots of policies and calendars, and the differences between two of them."""

from __future__ import annotations

from typing import Any

from policies.durations import format_duration
from policies.models import Calendar, Policy, describe_interval


def policy_snapshot(policy: Policy | None) -> dict[str, Any]:
    if policy is None or policy.pk is None:
        return {}
    snapshot: dict[str, Any] = {
        "name": policy.name,
        "order": policy.order,
        "active": policy.active,
        "kinds": sorted(policy.kinds),
        "priorities": sorted(policy.priorities),
        "customer_tiers": sorted(policy.customer_tiers),
        "partner_tiers": sorted(policy.partner_tiers),
        "partners": sorted(p.name for p in policy.partners.all()),
    }
    for target in policy.targets.select_related("calendar"):
        prefix = f"target {target.metric}"
        snapshot[f"{prefix} duration"] = format_duration(target.duration)
        snapshot[f"{prefix} calendar"] = (
            target.calendar.name if target.calendar else "partner's calendar"
        )
        snapshot[f"{prefix} thresholds"] = (
            f"yellow {target.yellow_pct}% / {target.yellow_minutes_left} min left, "
            f"orange {target.orange_pct}% / {target.orange_minutes_left} min left"
        )
        snapshot[f"{prefix} pauses"] = sorted(target.pause_statuses)
        snapshot[f"{prefix} automated replies count"] = target.automated_replies_count
        snapshot[f"{prefix} on reopen"] = target.on_reopen
    return snapshot


def calendar_snapshot(calendar: Calendar | None) -> dict[str, Any]:
    if calendar is None or calendar.pk is None:
        return {}
    return {
        "name": calendar.name,
        "timezone": calendar.timezone,
        "working intervals": sorted(
            f"{i.weekday} {describe_interval(i.start, i.end)}" for i in calendar.intervals.all()
        ),
        "holidays": sorted(h.date.isoformat() for h in calendar.holidays.all()),
        "overrides": sorted(str(o) for o in calendar.overrides.all()),
        "closures": sorted(str(c) for c in calendar.closures.all()),
    }


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for every field that differs (lists: what was removed/added)."""
    changes: dict[str, list[Any]] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if isinstance(old, list) and isinstance(new, list) and len(old) + len(new) > 12:
            removed = [v for v in old if v not in new]
            added = [v for v in new if v not in old]
            changes[key] = [f"removed {removed}", f"added {added}"]
        else:
            changes[key] = [old, new]
    return changes
