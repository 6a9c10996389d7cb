"""SLA clocks as users see them: start, colours, pauses, meeting, breaching, re-targeting."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from policies.actions import reevaluate_due_clocks
from policies.engine import sync_ticket_clocks
from policies.models import Metric, ReopenBehaviour, SLAClock, Target, WorkingInterval
from tests.factories import (
    make_always_calendar,
    make_calendar,
    make_partner,
    make_sla_policy,
    make_ticket,
)
from tickets.actions import change_ticket, record_event
from tickets.models import ActorKind, EventKind, Ticket, TicketEvent

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 17, 10, 0, tzinfo=UTC)  # a Tuesday


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def clock(ticket: Ticket, metric: str = Metric.FIRST_RESPONSE, cycle: int = 0) -> SLAClock:
    return SLAClock.objects.get(ticket=ticket, metric=metric, cycle=cycle)


def event(ticket: Ticket, kind: str, minutes: float, **kwargs: Any) -> None:
    record_event(ticket=ticket, kind=kind, at=at(minutes), now=at(minutes), **kwargs)


@pytest.fixture
def always() -> Any:
    return make_always_calendar()


@pytest.fixture
def policy(always: Any) -> Any:
    return make_sla_policy(calendar=always, priorities=["high"], order=10)


def open_high(**fields: Any) -> Ticket:
    fields.setdefault("priority", "high")
    return make_ticket(now=T0, opened_at=T0, **fields)


def test_a_new_ticket_starts_one_clock_per_target(policy: Any) -> None:
    ticket = open_high()
    clocks = {c.metric: c for c in ticket.clocks.all()}
    assert set(clocks) == {"first_response", "resolution_plan", "resolution"}
    first = clocks["first_response"]
    assert (first.status, first.bucket) == ("running", "green")
    assert first.started_at == T0
    assert first.due_at == at(60)
    assert (first.yellow_at, first.orange_at) == (at(30), at(45))
    assert first.next_change_at == at(30)
    assert clocks["resolution"].due_at == at(8 * 60)


def test_a_ticket_no_policy_matches_has_no_clocks(policy: Any) -> None:
    ticket = make_ticket(now=T0, opened_at=T0, priority="low")
    assert not ticket.clocks.exists()


def test_the_first_matching_policy_by_order_applies(always: Any, policy: Any) -> None:
    make_sla_policy(
        calendar=always,
        priorities=["high"],
        order=5,
        targets={Metric.FIRST_RESPONSE: timedelta(minutes=15)},
    )
    ticket = open_high()
    assert clock(ticket).due_at == at(15)
    assert not ticket.clocks.filter(metric=Metric.RESOLUTION).exists()


def test_an_inactive_policy_is_skipped(always: Any, policy: Any) -> None:
    make_sla_policy(calendar=always, priorities=["high"], order=5, active=False)
    assert clock(open_high()).policy_id == policy.pk


def test_it_turns_yellow_orange_and_red_on_the_tick(policy: Any) -> None:
    ticket = open_high()
    for minutes, bucket in [(29.9, "green"), (30, "yellow"), (45, "orange"), (60, "red")]:
        reevaluate_due_clocks(now=at(minutes))
        assert clock(ticket).bucket == bucket, minutes
    red = clock(ticket)
    assert red.breached_at == at(60)
    assert red.next_change_at is None


def test_a_tick_after_an_hour_of_downtime_catches_up_in_one_run(policy: Any) -> None:
    ticket = open_high()
    moved = reevaluate_due_clocks(now=at(65))
    assert moved >= 1
    first = clock(ticket)
    assert (first.bucket, first.breached_at) == ("red", at(60))


def test_a_second_tick_with_the_same_now_changes_nothing(policy: Any) -> None:
    open_high()
    assert reevaluate_due_clocks(now=at(31)) == 1
    assert reevaluate_due_clocks(now=at(31)) == 0


def test_a_human_reply_meets_first_response(policy: Any) -> None:
    ticket = open_high()
    event(ticket, EventKind.REPLIED, 12)
    first = clock(ticket)
    assert (first.status, first.met_at, first.breached_at) == ("met", at(12), None)
    assert first.next_change_at is None
    assert first.bucket == "green"


def test_an_automated_reply_does_not_meet_first_response(policy: Any) -> None:
    ticket = open_high()
    event(ticket, EventKind.REPLIED, 1, actor_kind=ActorKind.AUTO_ACK)
    event(ticket, EventKind.REPLIED, 2, actor_kind=ActorKind.BOT)
    assert clock(ticket).status == "running"


def test_an_automated_reply_meets_when_the_target_allows_it(policy: Any) -> None:
    Target.objects.filter(policy=policy, metric=Metric.FIRST_RESPONSE).update(
        automated_replies_count=True
    )
    ticket = open_high()
    event(ticket, EventKind.REPLIED, 1, actor_kind=ActorKind.AUTO_ACK)
    assert clock(ticket).met_at == at(1)


def test_a_late_reply_is_met_but_counted_as_breached(policy: Any) -> None:
    ticket = open_high()
    event(ticket, EventKind.REPLIED, 75)
    first = clock(ticket)
    assert (first.status, first.met_at, first.breached_at, first.bucket) == (
        "met",
        at(75),
        at(60),
        "red",
    )


def test_a_reply_exactly_at_due_is_on_time(policy: Any) -> None:
    ticket = open_high()
    event(ticket, EventKind.REPLIED, 60)
    assert clock(ticket).breached_at is None


def test_a_plan_meets_the_plan_target_and_a_resolution_meets_resolution(policy: Any) -> None:
    ticket = open_high()
    event(ticket, EventKind.REPLIED, 5)
    event(ticket, EventKind.PLAN_SENT, 50)
    event(ticket, EventKind.RESOLVED, 300)
    assert clock(ticket, Metric.RESOLUTION_PLAN).met_at == at(50)
    resolution = clock(ticket, Metric.RESOLUTION)
    assert (resolution.status, resolution.met_at) == ("met", at(300))


def test_resolving_without_a_plan_meets_the_plan_target(policy: Any) -> None:
    ticket = open_high()
    event(ticket, EventKind.RESOLVED, 30)
    assert clock(ticket, Metric.RESOLUTION_PLAN).met_at == at(30)


def test_resolving_without_a_reply_stops_first_response_without_a_verdict(policy: Any) -> None:
    ticket = open_high()
    event(ticket, EventKind.RESOLVED, 30)
    first = clock(ticket)
    assert (first.status, first.stopped_at, first.breached_at) == ("stopped", at(30), None)


def test_waiting_on_the_customer_pauses_and_extends_due_by_the_pause(policy: Any) -> None:
    ticket = open_high()
    event(ticket, EventKind.STATUS_CHANGED, 20, payload={"status": "waiting_on_customer"})
    paused = clock(ticket)
    assert (paused.status, paused.due_at, paused.next_change_at) == ("paused", None, None)
    assert paused.remaining_seconds == 40 * 60
    event(ticket, EventKind.STATUS_CHANGED, 50, payload={"status": "open"})
    resumed = clock(ticket)
    assert resumed.status == "running"
    assert resumed.due_at == at(90)
    assert resumed.pauses == [[at(20).isoformat(), at(50).isoformat()]]


def test_a_paused_clock_does_not_change_colour(policy: Any) -> None:
    ticket = open_high()
    event(ticket, EventKind.STATUS_CHANGED, 40, payload={"status": "waiting_on_customer"})
    assert reevaluate_due_clocks(now=at(500)) <= 2  # plan/resolution may move; not this one
    paused = clock(ticket)
    assert (paused.status, paused.bucket) == ("paused", "yellow")


def test_a_clock_paused_after_its_breach_stays_red(policy: Any) -> None:
    ticket = open_high()
    reevaluate_due_clocks(now=at(61))
    event(ticket, EventKind.STATUS_CHANGED, 70, payload={"status": "waiting_on_customer"})
    paused = clock(ticket)
    assert (paused.status, paused.bucket, paused.breached_at) == ("paused", "red", at(60))
    event(ticket, EventKind.STATUS_CHANGED, 90, payload={"status": "open"})
    assert clock(ticket).bucket == "red"


def test_a_pause_after_the_due_time_does_not_extend_it() -> None:
    office = make_calendar(timezone="UTC")  # Mon–Fri 09:00–17:00
    make_sla_policy(calendar=office, targets={Metric.RESOLUTION: timedelta(hours=4)})
    ticket = make_ticket(now=at(30 * 60), opened_at=at(0))  # Tue 10:00, due Tue 14:00
    for minutes, status in [(6 * 60, "waiting_on_customer"), (24 * 60, "open")]:
        record_event(
            ticket=ticket,
            kind=EventKind.STATUS_CHANGED,
            at=at(minutes),
            now=at(30 * 60),
            payload={"status": status},
        )
    resolution = clock(ticket, Metric.RESOLUTION)
    assert (resolution.due_at, resolution.breached_at) == (at(4 * 60), at(4 * 60))
    assert resolution.bucket == "red"


def test_a_pause_inside_business_hours_moves_due_across_the_night() -> None:
    office = make_calendar(timezone="UTC")  # Mon–Fri 09:00–17:00
    make_sla_policy(calendar=office, targets={Metric.RESOLUTION: timedelta(hours=4)})
    ticket = make_ticket(now=at(30 * 60), opened_at=at(0))  # Tue 10:00
    # Waiting on the customer from Tue 11:00 to Wed 10:00.
    for minutes, status in [(60, "waiting_on_customer"), (24 * 60, "open")]:
        record_event(
            ticket=ticket,
            kind=EventKind.STATUS_CHANGED,
            at=at(minutes),
            now=at(30 * 60),
            payload={"status": status},
        )
    # 1 h ran before the pause (10–11 Tue); 3 h remain from Wed 10:00 → Wed 13:00.
    assert clock(ticket, Metric.RESOLUTION).due_at == at(24 * 60 + 3 * 60)


def test_raising_the_priority_retargets_keeping_the_time_already_elapsed(
    always: Any, policy: Any
) -> None:
    make_sla_policy(
        calendar=always,
        priorities=["critical"],
        targets={Metric.FIRST_RESPONSE: timedelta(minutes=15)},
    )
    ticket = open_high()
    change_ticket(ticket=ticket, changes={"priority": "critical"}, at=at(10), now=at(10))
    first = clock(ticket)
    assert (first.due_at, first.started_at, first.bucket) == (at(15), T0, "yellow")
    assert first.next_change_at == at(11.25)  # orange at 75 % of the new 15 min
    timeline = ticket.events.filter(kind=EventKind.SLA_CHANGED).get()
    assert timeline.payload["old_due"] == at(60).isoformat()
    assert timeline.payload["new_due"] == at(15).isoformat()
    assert "Priority changed" in timeline.payload["cause"]


def test_raising_the_priority_past_the_new_due_breaches_at_the_change(
    always: Any, policy: Any
) -> None:
    make_sla_policy(
        calendar=always,
        priorities=["critical"],
        targets={Metric.FIRST_RESPONSE: timedelta(minutes=15)},
    )
    ticket = open_high()
    change_ticket(ticket=ticket, changes={"priority": "critical"}, at=at(40), now=at(40))
    first = clock(ticket)
    assert (first.bucket, first.breached_at) == ("red", at(40))


def test_a_breach_is_kept_after_the_priority_is_lowered(always: Any, policy: Any) -> None:
    make_sla_policy(
        calendar=always,
        priorities=["low"],
        targets={Metric.FIRST_RESPONSE: timedelta(hours=24)},
    )
    ticket = open_high()
    reevaluate_due_clocks(now=at(61))
    change_ticket(ticket=ticket, changes={"priority": "low"}, at=at(70), now=at(70))
    first = clock(ticket)
    assert (first.bucket, first.breached_at) == ("red", at(60))
    assert first.due_at == at(24 * 60)
    event(ticket, EventKind.REPLIED, 80)
    met = clock(ticket)
    assert (met.status, met.breached_at) == ("met", at(60))


def test_lowering_the_priority_before_the_breach_gives_the_longer_target(
    always: Any, policy: Any
) -> None:
    make_sla_policy(
        calendar=always,
        priorities=["low"],
        targets={Metric.FIRST_RESPONSE: timedelta(hours=24)},
    )
    ticket = open_high()
    change_ticket(ticket=ticket, changes={"priority": "low"}, at=at(50), now=at(50))
    first = clock(ticket)
    assert (first.bucket, first.breached_at, first.due_at) == ("green", None, at(24 * 60))
    # The low policy has no resolution target: that clock stops at the change, no verdict.
    resolution = clock(ticket, Metric.RESOLUTION)
    assert (resolution.status, resolution.stopped_at) == ("stopped", at(50))


def test_moving_to_a_partner_with_another_calendar_retargets(always: Any) -> None:
    office = make_calendar(timezone="UTC")
    make_sla_policy(calendar=None, targets={Metric.FIRST_RESPONSE: timedelta(hours=2)})
    night_partner = make_partner(default_calendar=always)
    office_partner = make_partner(default_calendar=office)
    ticket = make_ticket(now=at(0), opened_at=at(-8 * 60), partner=office_partner)  # Tue 02:00
    assert clock(ticket).due_at == at(60)  # office opens 09:00, +2 h = 11:00
    change_ticket(ticket=ticket, changes={"partner_id": night_partner.pk}, at=at(0), now=at(0))
    assert clock(ticket).due_at == at(-6 * 60)  # 24×7: 02:00 + 2 h


def test_reopening_restarts_the_resolution_clock_from_the_reopen(policy: Any) -> None:
    ticket = open_high()
    event(ticket, EventKind.RESOLVED, 100)
    event(ticket, EventKind.REOPENED, 200)
    first, second = clock(ticket, Metric.RESOLUTION, 0), clock(ticket, Metric.RESOLUTION, 1)
    assert (first.status, first.met_at) == ("met", at(100))
    assert (second.status, second.started_at, second.due_at) == ("running", at(200), at(680))


def test_reopening_can_continue_the_original_clock(policy: Any) -> None:
    Target.objects.filter(policy=policy, metric=Metric.RESOLUTION).update(
        on_reopen=ReopenBehaviour.CONTINUE
    )
    ticket = open_high()
    event(ticket, EventKind.RESOLVED, 100)
    event(ticket, EventKind.REOPENED, 200)
    resolution = clock(ticket, Metric.RESOLUTION)
    assert not ticket.clocks.filter(metric=Metric.RESOLUTION, cycle=1).exists()
    # 100 min ran, 100 min resolved (not counted): due at 8 h + 100 min.
    assert (resolution.status, resolution.due_at) == ("running", at(8 * 60 + 100))


def test_minutes_left_thresholds_win_when_they_come_first(policy: Any) -> None:
    Target.objects.filter(policy=policy, metric=Metric.FIRST_RESPONSE).update(
        yellow_minutes_left=40, orange_minutes_left=5
    )
    ticket = open_high()
    first = clock(ticket)
    assert first.yellow_at == at(20)  # 40 min left comes before 50 %
    assert first.orange_at == at(45)  # 75 % comes before 5 min left


def test_minutes_left_are_business_minutes() -> None:
    office = make_calendar(timezone="UTC")
    policy = make_sla_policy(calendar=office, targets={Metric.FIRST_RESPONSE: timedelta(hours=4)})
    Target.objects.filter(policy=policy).update(orange_minutes_left=90, orange_pct=99)
    ticket = make_ticket(now=at(6 * 60), opened_at=at(6 * 60 - 30))  # Tue 15:30
    first = clock(ticket)
    assert first.due_at == at(24 * 60 + 60 + 30)  # Wed 11:30 (1.5 h Tue + 2.5 h Wed)
    assert first.orange_at == at(24 * 60)  # 90 business minutes before: Wed 10:00


def test_events_delivered_out_of_order_give_the_same_clocks(always: Any, policy: Any) -> None:
    history = [
        (EventKind.STATUS_CHANGED, 10, {"status": "waiting_on_customer"}),
        (EventKind.STATUS_CHANGED, 25, {"status": "open"}),
        (EventKind.REPLIED, 40, {}),
        (EventKind.PLAN_SENT, 70, {}),
    ]
    in_order, shuffled = open_high(), open_high()
    for kind, minutes, payload in history:
        record_event(ticket=in_order, kind=kind, at=at(minutes), now=at(100), payload=payload)
    for kind, minutes, payload in [history[2], history[3], history[1], history[0]]:
        record_event(ticket=shuffled, kind=kind, at=at(minutes), now=at(100), payload=payload)
    fields = ["metric", "cycle", "status", "due_at", "met_at", "breached_at", "bucket", "pauses"]
    assert list(in_order.clocks.order_by("metric").values(*fields)) == list(
        shuffled.clocks.order_by("metric").values(*fields)
    )


def test_a_duplicate_event_changes_no_clock(policy: Any) -> None:
    ticket = open_high()
    record_event(ticket=ticket, kind=EventKind.REPLIED, at=at(5), now=at(5), external_id="reply-1")
    before = list(ticket.clocks.values())
    record_event(ticket=ticket, kind=EventKind.REPLIED, at=at(6), now=at(6), external_id="reply-1")
    assert list(ticket.clocks.values()) == before
    assert ticket.events.filter(kind=EventKind.REPLIED).count() == 1


def test_a_target_whose_calendar_has_no_working_time_starts_no_clock() -> None:
    empty = make_calendar(business_hours=False, name="Never")
    make_sla_policy(calendar=empty, targets={Metric.FIRST_RESPONSE: timedelta(hours=1)})
    ticket = make_ticket(now=T0, opened_at=T0)
    assert not ticket.clocks.exists()


def test_syncing_twice_changes_nothing(policy: Any) -> None:
    ticket = open_high()
    event(ticket, EventKind.REPLIED, 5)
    report = sync_ticket_clocks(ticket=ticket, now=at(5))
    assert report.changed == 0
    assert not TicketEvent.objects.filter(kind=EventKind.SLA_CHANGED).exists()


def test_overnight_shift_calendar_counts_across_midnight() -> None:
    night = make_calendar(business_hours=False, timezone="UTC")
    WorkingInterval.objects.create(calendar=night, weekday=1, start=time(22), end=time(6))
    make_sla_policy(calendar=night, targets={Metric.FIRST_RESPONSE: timedelta(hours=4)})
    ticket = make_ticket(now=at(0), opened_at=at(0))  # Tue 10:00, before the shift
    assert clock(ticket).due_at == at(12 * 60 + 4 * 60)  # Tue 22:00 + 4 h = Wed 02:00


# A finished clock is final: nothing after it was met or stopped changes it (issue #10).


@pytest.fixture
def critical(always: Any) -> Any:
    """Critical: respond within 15 min, resolve within 4 h (High: 1 h and 8 h)."""
    return make_sla_policy(
        calendar=always,
        priorities=["critical"],
        targets={
            Metric.FIRST_RESPONSE: timedelta(minutes=15),
            Metric.RESOLUTION: timedelta(hours=4),
        },
    )


def test_it_keeps_a_met_verdict_after_a_late_priority_change(policy: Any, critical: Any) -> None:
    # INC0008934: replied between the Critical and the High due times, raised a minute later.
    ticket = open_high()
    event(ticket, EventKind.REPLIED, 22)
    change_ticket(ticket=ticket, changes={"priority": "critical"}, at=at(23), now=at(23))
    first = clock(ticket)
    assert (first.status, first.met_at, first.breached_at) == ("met", at(22), None)
    assert (first.due_at, first.policy_id, first.bucket) == (at(60), policy.pk, "green")
    assert not ticket.events.filter(kind=EventKind.SLA_CHANGED, payload__metric="first_response")


def test_a_priority_change_at_the_instant_of_the_reply_comes_too_late(
    policy: Any, critical: Any
) -> None:
    ticket = open_high()
    change_ticket(ticket=ticket, changes={"priority": "critical"}, at=at(22), now=at(22))
    event(ticket, EventKind.REPLIED, 22)
    first = clock(ticket)
    assert (first.status, first.due_at, first.breached_at) == ("met", at(60), None)
    assert first.policy_id == policy.pk


def test_it_keeps_a_stopped_first_response_after_a_priority_change_while_resolved(
    policy: Any, critical: Any
) -> None:
    ticket = open_high()
    event(ticket, EventKind.RESOLVED, 40)
    change_ticket(ticket=ticket, changes={"priority": "critical"}, at=at(45), now=at(45))
    first = clock(ticket)
    assert (first.status, first.stopped_at, first.breached_at) == ("stopped", at(40), None)
    assert (first.due_at, first.policy_id) == (at(60), policy.pk)


def test_it_keeps_a_met_resolution_after_a_priority_change_while_resolved(
    policy: Any, critical: Any
) -> None:
    ticket = open_high()
    event(ticket, EventKind.REPLIED, 5)
    event(ticket, EventKind.RESOLVED, 300)  # High allows 8 h; Critical would allow 4 h
    change_ticket(ticket=ticket, changes={"priority": "critical"}, at=at(310), now=at(310))
    resolution = clock(ticket, Metric.RESOLUTION)
    assert (resolution.status, resolution.met_at, resolution.breached_at) == ("met", at(300), None)
    assert (resolution.due_at, resolution.policy_id) == (at(8 * 60), policy.pk)
    # Reopened, the new cycle runs under the target in force now.
    event(ticket, EventKind.REOPENED, 320)
    assert clock(ticket, Metric.RESOLUTION).breached_at is None
    assert clock(ticket, Metric.RESOLUTION, 1).due_at == at(320 + 4 * 60)


def test_a_priority_change_before_the_reply_still_retargets_it(policy: Any, critical: Any) -> None:
    ticket = open_high()
    change_ticket(ticket=ticket, changes={"priority": "critical"}, at=at(21), now=at(21))
    event(ticket, EventKind.REPLIED, 22)
    first = clock(ticket)
    assert (first.status, first.due_at, first.breached_at) == ("met", at(15), at(21))
    assert first.policy_id == critical.pk


def test_a_clock_stopped_because_no_target_applies_stays_stopped(policy: Any) -> None:
    ticket = open_high()
    change_ticket(ticket=ticket, changes={"priority": "low"}, at=at(20), now=at(20))  # no policy
    change_ticket(ticket=ticket, changes={"priority": "high"}, at=at(30), now=at(30))
    event(ticket, EventKind.REPLIED, 90)
    first = clock(ticket)
    assert (first.status, first.stopped_at, first.breached_at) == ("stopped", at(20), None)
    assert (first.due_at, first.policy_id) == (at(60), policy.pk)


def test_an_automated_reply_counts_under_the_target_in_force_when_it_came(
    always: Any, policy: Any, critical: Any
) -> None:
    Target.objects.filter(policy=critical, metric=Metric.FIRST_RESPONSE).update(
        automated_replies_count=True
    )
    ticket = open_high(priority="critical")
    event(ticket, EventKind.REPLIED, 1, actor_kind=ActorKind.AUTO_ACK)
    change_ticket(ticket=ticket, changes={"priority": "high"}, at=at(5), now=at(5))
    first = clock(ticket)
    assert (first.status, first.met_at, first.policy_id) == ("met", at(1), critical.pk)


def test_a_reopen_continues_the_clock_only_if_its_own_target_says_so(
    policy: Any, critical: Any
) -> None:
    Target.objects.filter(policy=critical, metric=Metric.RESOLUTION).update(
        on_reopen=ReopenBehaviour.CONTINUE
    )
    ticket = open_high()
    event(ticket, EventKind.RESOLVED, 100)  # met under High, which restarts at a reopen
    change_ticket(ticket=ticket, changes={"priority": "critical"}, at=at(110), now=at(110))
    event(ticket, EventKind.REOPENED, 200)
    first, second = clock(ticket, Metric.RESOLUTION, 0), clock(ticket, Metric.RESOLUTION, 1)
    assert (first.status, first.met_at, first.policy_id) == ("met", at(100), policy.pk)
    assert (second.started_at, second.due_at, second.policy_id) == (at(200), at(440), critical.pk)
