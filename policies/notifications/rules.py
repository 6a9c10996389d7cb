"""Which active rules watch which clocks, and on which channels."""

from __future__ import annotations

from django.db import models

from policies.models import Channel, NotificationRule, SLAClock
from tickets.models import Ticket


def active_rules() -> list[NotificationRule]:
    """Active rules with their partners, policies and users (one query when there are none)."""
    rules = list(NotificationRule.objects.filter(active=True).order_by("pk"))
    if rules:
        models.prefetch_related_objects(rules, "policies", "partners", "notify_users")
    return rules


def _ids(rule: NotificationRule, relation: str) -> set[int]:
    return {obj.pk for obj in getattr(rule, relation).all()}


def rule_applies(rule: NotificationRule, *, ticket: Ticket, clock: SLAClock) -> bool:
    """Whether the rule's filters (empty = any) hold for this clock of this ticket."""
    if rule.metrics and clock.metric not in rule.metrics:
        return False
    if rule.priorities and ticket.priority not in rule.priorities:
        return False
    partners = _ids(rule, "partners")
    if partners and ticket.partner_id not in partners:
        return False
    policies = _ids(rule, "policies")
    return not policies or clock.policy_id in policies


def channels(rule: NotificationRule) -> list[str]:
    found: list[str] = []
    if rule.wants_email(has_users=bool(rule.notify_users.all())):
        found.append(Channel.EMAIL)
    if rule.webhook_url:
        found.append(Channel.WEBHOOK)
    return found
