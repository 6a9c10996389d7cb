"""The minute tick: cost by changes not by open tickets, safe against overlap."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from policies.actions import reevaluate_due_clocks
from policies.engine import clock_now, evaluated_until, sync_ticket_clocks
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
    # The writers' lock, lock the watermark, one UPDATE of the clocks, move the watermark
    # (+ savepoint pair; + one query for the notification rules, since a clock moved).
    assert len(few.captured_queries) == len(many.captured_queries) == 7


def test_a_second_beat_in_the_same_minute_moves_nothing_twice() -> None:
    now = timezone.now()
    make_sla_policy(calendar=make_always_calendar())
    ticket = make_ticket(now=now - timedelta(hours=2), opened_at=now - timedelta(hours=2))
    assert reevaluate_due_clocks(now=now) == 2  # respond red, plan yellow
    assert ticket.clocks.get(metric=Metric.FIRST_RESPONSE).bucket == "red"
    assert reevaluate_due_clocks(now=now) == 0
    assert reevaluate_due_clocks(now=now - timedelta(seconds=5)) == 0  # a late, older beat


def test_the_tick_records_when_clocks_were_last_evaluated() -> None:
    now = timezone.now()
    reevaluate_due_clocks(now=now)
    assert evaluated_until() == now


def test_a_write_that_read_now_before_the_last_tick_computes_clocks_as_of_that_tick() -> None:
    """A request read ``now`` before a tick but commits after it: its clocks are right as of
    the tick, so the next tick's window holds every change still to come."""
    now = timezone.now()
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(hours=4)}
    )
    ticket = make_ticket(now=now, opened_at=now - timedelta(hours=3, minutes=30))
    reevaluate_due_clocks(now=now)  # yellow at 3 h 12 min (80 %)
    SLAClock.objects.update(bucket="green", next_change_at=now - timedelta(minutes=18))
    sync_ticket_clocks(ticket=ticket, now=now - timedelta(minutes=20))  # a stale request
    first = SLAClock.objects.get(metric=Metric.FIRST_RESPONSE)
    assert first.bucket != "green"
    assert first.next_change_at is not None and first.next_change_at > now


def test_the_tick_waits_for_a_clock_write_in_progress(transactional_db: Any) -> None:
    """PostgreSQL: a tick blocks until writers that hold the shared lock commit."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connections, transaction

    now = timezone.now()
    reevaluate_due_clocks(now=now - timedelta(minutes=1))
    with transaction.atomic():
        assert clock_now(now - timedelta(hours=1)) == now - timedelta(minutes=1)

        def tick() -> int:
            try:
                with connections["default"].cursor() as cursor:
                    cursor.execute("SET lock_timeout = '200ms'")
                return reevaluate_due_clocks(now=now)
            except Exception as error:  # the lock is held: the tick waits (here: times out)
                return -1 if "lock timeout" in str(error) else -2
            finally:
                connections["default"].close()

        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(tick).result() == -1

    def tick_again() -> int:
        try:
            return reevaluate_due_clocks(now=now)
        finally:
            connections["default"].close()  # this thread's connection (to the pool, if any)

    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(tick_again).result() == 0


def test_a_tick_older_than_the_last_one_changes_nothing() -> None:
    now = timezone.now()
    make_sla_policy(calendar=make_always_calendar())
    ticket = make_ticket(now=now - timedelta(hours=2), opened_at=now - timedelta(hours=2))
    assert reevaluate_due_clocks(now=now) == 2
    assert reevaluate_due_clocks(now=now - timedelta(minutes=5)) == 0
    assert ticket.clocks.get(metric=Metric.FIRST_RESPONSE).bucket == "red"
