"""Plain factory functions for tests: each makes one valid row with overridable fields."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from itertools import count
from typing import Any

from policies.models import Calendar, Metric, Policy, Target, WorkingInterval
from tickets.actions import open_ticket
from tickets.models import Customer, Partner, Ticket, User

_seq = count(1)
DEFAULT_NOW = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)


def make_calendar(*, business_hours: bool = True, **fields: Any) -> Calendar:
    fields.setdefault("name", f"Calendar {next(_seq)}")
    fields.setdefault("timezone", "Europe/Paris")
    calendar = Calendar.objects.create(**fields)
    if business_hours:
        WorkingInterval.objects.bulk_create(
            WorkingInterval(calendar=calendar, weekday=day, start=time(9), end=time(17))
            for day in range(5)
        )
    return calendar


def make_partner(**fields: Any) -> Partner:
    fields.setdefault("name", f"Partner {next(_seq)}")
    return Partner.objects.create(**fields)


def make_customer(**fields: Any) -> Customer:
    fields.setdefault("name", f"Customer {next(_seq)}")
    return Customer.objects.create(**fields)


def make_user(**fields: Any) -> User:
    fields.setdefault("username", f"user{next(_seq)}")
    password = fields.pop("password", "correct horse battery staple")
    user = User(**fields)
    user.set_password(password)
    user.save()
    return user


def make_member(role: str = "Agents", **fields: Any) -> User:
    """A user in one of the roles the migrations create: Agents, Managers or Admins."""
    from django.contrib.auth.models import Group, Permission

    from dashboard.roles import ensure_roles

    ensure_roles(Group, Permission)  # a transactional test may have flushed the migration's
    user = make_user(**fields)
    user.groups.add(Group.objects.get(name=role))
    return user


def make_policy(**fields: Any) -> Policy:
    fields.setdefault("name", f"Policy {next(_seq)}")
    return Policy.objects.create(**fields)


def make_target(**fields: Any) -> Target:
    if "policy" not in fields:
        fields["policy"] = make_policy()
    fields.setdefault("metric", Metric.FIRST_RESPONSE)
    fields.setdefault("duration", timedelta(hours=1))
    return Target.objects.create(**fields)


def make_ticket(*, now: datetime = DEFAULT_NOW, **fields: Any) -> Ticket:
    if "partner_id" not in fields:
        fields["partner_id"] = (fields.pop("partner", None) or make_partner()).pk
    if "customer" in fields:
        customer = fields.pop("customer")
        fields["customer_id"] = customer.pk if customer else None
    fields.setdefault("subject", "Printer on fire")
    fields.setdefault("opened_at", now - timedelta(hours=1))
    return open_ticket(now=now, **fields)


def make_always_calendar(**fields: Any) -> Calendar:
    """A 24×7 calendar in UTC."""
    fields.setdefault("timezone", "UTC")
    calendar = make_calendar(business_hours=False, **fields)
    WorkingInterval.objects.bulk_create(
        WorkingInterval(calendar=calendar, weekday=day, start=time(0), end=time(0))
        for day in range(7)
    )
    return calendar


def make_sla_policy(
    *, calendar: Calendar | None = None, targets: dict[str, timedelta] | None = None, **fields: Any
) -> Policy:
    """A policy with first response / plan / resolution targets (1 h / 4 h / 8 h by default)."""
    policy = make_policy(**fields)
    for metric, duration in (
        targets
        or {
            Metric.FIRST_RESPONSE: timedelta(hours=1),
            Metric.RESOLUTION_PLAN: timedelta(hours=4),
            Metric.RESOLUTION: timedelta(hours=8),
        }
    ).items():
        Target.objects.create(policy=policy, metric=metric, duration=duration, calendar=calendar)
    return policy


def make_rule(**fields: Any) -> Any:
    """A notification rule (email to the partner's contacts at red unless told otherwise)."""
    from policies.models import NotificationRule

    m2m = {
        name: fields.pop(name)
        for name in ("policies", "partners", "notify_users")
        if name in fields
    }
    fields.setdefault("name", f"Rule {next(_seq)}")
    if (
        not any(
            fields.get(name)
            for name in ("notify_assignee", "notify_partner_contacts", "emails", "webhook_url")
        )
        and "notify_users" not in m2m
    ):
        fields["notify_partner_contacts"] = True
    rule = NotificationRule.objects.create(**fields)
    for name, values in m2m.items():
        getattr(rule, name).set(values)
    return rule
