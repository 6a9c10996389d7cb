from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from policies.engine import TargetResolver
from policies.models import Closure, DateOverride, Metric, Policy, Target, WorkingInterval
from tests.factories import (
    make_calendar,
    make_customer,
    make_partner,
    make_policy,
    make_target,
    make_ticket,
)
from tickets.models import Ticket
from tickets.projection import attribute_key

pytestmark = pytest.mark.django_db


def test_a_target_uses_50_and_75_percent_and_human_replies_by_default() -> None:
    target = make_target()
    assert (target.yellow_pct, target.orange_pct) == (50, 75)
    assert target.automated_replies_count is False
    assert target.pause_statuses == ["waiting_on_customer"]
    assert str(target) == "First response in 1 h"


def test_the_database_refuses_thresholds_out_of_order() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make_target(yellow_pct=80, orange_pct=60)


def test_the_database_refuses_a_zero_duration() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        make_target(duration=timedelta(0))


def test_the_database_refuses_two_targets_for_one_metric_on_a_policy() -> None:
    target = make_target(metric=Metric.RESOLUTION)
    with pytest.raises(IntegrityError), transaction.atomic():
        make_target(policy=target.policy, metric=Metric.RESOLUTION)


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"yellow_pct": 80, "orange_pct": 60}, "orange_pct", "must be more than yellow %"),
        ({"orange_pct": 100}, "orange_pct", "between 1 and 99"),
        ({"duration": timedelta(0)}, "duration", "longer than zero"),
        (
            {"yellow_minutes_left": 5, "orange_minutes_left": 10},
            "yellow_minutes_left",
            "more than orange minutes-left",
        ),
        ({"orange_minutes_left": 90}, "orange_minutes_left", "not less than the whole target"),
        ({"pause_statuses": ["resolved"]}, "pause_statuses", "cannot pause it"),
        ({"pause_statuses": ["napping"]}, "pause_statuses", "Unknown status"),
        (
            {"metric": Metric.RESOLUTION, "automated_replies_count": True},
            "automated_replies_count",
            "Only a first-response target",
        ),
    ],
)
def test_target_validation_says_what_to_fix(fields: dict, field: str, message: str) -> None:
    target = Target(policy=make_policy(), metric=Metric.FIRST_RESPONSE, duration=timedelta(hours=1))
    for name, value in fields.items():
        setattr(target, name, value)
    with pytest.raises(ValidationError) as error:
        target.full_clean()
    assert message in " ".join(error.value.message_dict[field])


def test_the_database_refuses_an_empty_working_interval() -> None:
    calendar = make_calendar(business_hours=False)
    with pytest.raises(IntegrityError), transaction.atomic():
        WorkingInterval.objects.create(calendar=calendar, weekday=0, start=time(9), end=time(9))


def test_a_whole_day_and_an_overnight_shift_are_well_formed() -> None:
    calendar = make_calendar(business_hours=False)
    whole = WorkingInterval(calendar=calendar, weekday=5, start=time(0), end=time(0))
    night = WorkingInterval(calendar=calendar, weekday=0, start=time(22), end=time(6))
    whole.full_clean()
    night.full_clean()
    whole.save()
    night.save()
    assert str(night) == "Monday 22:00–06:00 (next day)"
    assert str(whole) == "Saturday all day"
    assert calendar.weekly_hours() == 32


def test_the_database_refuses_a_weekday_outside_monday_to_sunday() -> None:
    calendar = make_calendar(business_hours=False)
    with pytest.raises(IntegrityError), transaction.atomic():
        WorkingInterval.objects.create(calendar=calendar, weekday=7, start=time(9), end=time(17))


def test_an_empty_interval_is_explained() -> None:
    interval = WorkingInterval(
        calendar=make_calendar(business_hours=False), weekday=0, start=time(9), end=time(9)
    )
    with pytest.raises(ValidationError) as error:
        interval.full_clean()
    assert "The interval is empty" in " ".join(error.value.messages)


def test_an_override_is_closed_or_has_hours() -> None:
    calendar = make_calendar()
    override = DateOverride(calendar=calendar, date="2026-12-24", closed=False, start=time(9))
    with pytest.raises(ValidationError) as error:
        override.full_clean()
    assert "Enter the end" in error.value.message_dict["end"][0]
    with pytest.raises(IntegrityError), transaction.atomic():
        DateOverride.objects.create(
            calendar=calendar, date="2026-12-24", closed=True, start=time(9)
        )


def test_a_closure_must_end_after_it_starts(now: datetime) -> None:
    calendar = make_calendar()
    closure = Closure(calendar=calendar, starts_at=now, ends_at=now)
    with pytest.raises(ValidationError) as error:
        closure.full_clean()
    assert "end after it starts" in " ".join(error.value.messages)
    with pytest.raises(IntegrityError), transaction.atomic():
        Closure.objects.create(calendar=calendar, starts_at=now, ends_at=now - timedelta(hours=1))


def test_policy_conditions_only_take_known_values() -> None:
    policy = Policy(name="Odd", priorities=["critical", "urgent"], kinds=["incident"])
    with pytest.raises(ValidationError) as error:
        policy.full_clean()
    assert "Unknown value(s) urgent" in error.value.message_dict["priorities"][0]


def _applies(policy: Policy, ticket: Ticket) -> bool:
    """Whether the engine's resolver (what production uses) picks ``policy`` for ``ticket``."""
    specs = TargetResolver.load()(attribute_key(ticket))
    return any(spec.policy_id == policy.pk for spec in specs.values())


def _policy_with_a_target(**conditions: Any) -> Policy:
    policy = make_policy(**conditions)
    Target.objects.create(policy=policy, metric="first_response", duration=timedelta(hours=1))
    return policy


def test_a_policy_applies_on_every_condition_it_sets() -> None:
    gold = make_partner(tier="gold")
    silver = make_partner(tier="silver")
    enterprise = make_customer(tier="enterprise")
    policy = _policy_with_a_target(
        priorities=["critical", "high"], customer_tiers=["enterprise"], partner_tiers=["gold"]
    )
    assert _applies(policy, make_ticket(partner=gold, customer=enterprise, priority="high"))
    assert not _applies(policy, make_ticket(partner=gold, customer=enterprise, priority="low"))
    assert not _applies(policy, make_ticket(partner=silver, customer=enterprise, priority="high"))
    assert not _applies(policy, make_ticket(partner=gold, customer=None, priority="high"))
    policy.partners.add(silver)
    assert not _applies(policy, make_ticket(partner=gold, customer=enterprise, priority="high"))


def test_an_unconditional_policy_applies_to_any_ticket() -> None:
    policy = _policy_with_a_target()
    assert policy.conditions_summary() == "any ticket"
    assert _applies(policy, make_ticket())


def test_a_calendar_in_use_by_a_target_cannot_be_deleted() -> None:
    calendar = make_calendar()
    make_target(calendar=calendar)
    with pytest.raises(Exception, match="protected"), transaction.atomic():
        calendar.delete()
