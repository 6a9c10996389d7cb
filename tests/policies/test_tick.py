"""The minute tick: cost by changes not by open tickets, safe against overlap."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from policies.actions import TICK_LOCK, reevaluate_due_clocks, run_tick
from policies.models import Metric, SLAClock
from tests.factories import make_always_calendar, make_partner, make_sla_policy, make_ticket

pytestmark = pytest.mark.django_db


def _open_tickets(count: int, now: Any) -> None:
    partner = make_partner()
    for _ in range(count):
        make_ticket(now=now, opened_at=now - timedelta(minutes=1), partner=partner)


def test_the_tick_query_count_does_not_grow_with_open_tickets() -> None:
    now = timezone.now()
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(hours=4)}
    )
    _open_tickets(5, now)
    reevaluate_due_clocks(now=now - timedelta(minutes=1))  # the previous tick
    SLAClock.objects.filter(pk=SLAClock.objects.first().pk).update(  # type: ignore[union-attr]
        next_change_at=now - timedelta(seconds=1), yellow_at=now - timedelta(seconds=1)
    )
    with CaptureQueriesContext(connection) as few:
        assert reevaluate_due_clocks(now=now) == 1
    _open_tickets(200, now)
    later = now + timedelta(minutes=1)
    SLAClock.objects.filter(pk=SLAClock.objects.last().pk).update(  # type: ignore[union-attr]
        next_change_at=later - timedelta(seconds=1), yellow_at=later - timedelta(seconds=1)
    )
    with CaptureQueriesContext(connection) as many:
        assert reevaluate_due_clocks(now=later) == 1
    # Lock the watermark, one UPDATE of the clocks, move the watermark (+ savepoint pair).
    # (+ one query for the notification rules, since a clock moved: none active here.)
    assert len(few.captured_queries) == len(many.captured_queries) == 6


def test_a_tick_that_finds_the_lock_taken_does_nothing(redis_client: redis.Redis) -> None:
    now = timezone.now()
    make_sla_policy(calendar=make_always_calendar())
    ticket = make_ticket(now=now - timedelta(hours=2), opened_at=now - timedelta(hours=2))
    other = redis.Redis.from_url(settings.REDIS_URL)
    held = other.lock(TICK_LOCK, timeout=30)
    assert held.acquire(blocking=False)
    try:
        assert run_tick(now=now, redis_url=settings.REDIS_URL) is None
        assert ticket.clocks.get(metric=Metric.FIRST_RESPONSE).bucket == "green"
    finally:
        held.release()
    assert run_tick(now=now, redis_url=settings.REDIS_URL) == 2  # respond red, plan yellow
    assert ticket.clocks.get(metric=Metric.FIRST_RESPONSE).bucket == "red"
    assert run_tick(now=now, redis_url=settings.REDIS_URL) == 0


def test_the_tick_records_when_clocks_were_last_evaluated(redis_client: redis.Redis) -> None:
    from dashboard.publish import last_tick

    now = timezone.now()
    run_tick(now=now, redis_url=settings.REDIS_URL)
    assert last_tick() == now


def test_a_resync_that_committed_after_a_tick_it_predates_is_still_moved() -> None:
    """A request read ``now`` before a tick but committed after it: the next tick catches it."""
    now = timezone.now()
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(hours=4)}
    )
    _open_tickets(1, now)
    reevaluate_due_clocks(now=now)  # the previous tick
    # What the late request wrote: computed at now - 5 s, turning yellow at now - 2 s.
    SLAClock.objects.update(
        yellow_at=now - timedelta(seconds=2), next_change_at=now - timedelta(seconds=2)
    )
    assert reevaluate_due_clocks(now=now + timedelta(minutes=1)) == 1
    assert SLAClock.objects.get().bucket == "yellow"
    assert reevaluate_due_clocks(now=now + timedelta(minutes=2)) == 0


def test_a_tick_older_than_the_last_one_changes_nothing() -> None:
    now = timezone.now()
    make_sla_policy(calendar=make_always_calendar())
    ticket = make_ticket(now=now - timedelta(hours=2), opened_at=now - timedelta(hours=2))
    assert reevaluate_due_clocks(now=now) == 2
    assert reevaluate_due_clocks(now=now - timedelta(minutes=5)) == 0
    assert ticket.clocks.get(metric=Metric.FIRST_RESPONSE).bucket == "red"
