"""Publishing coalesces bursts, loses no change, keeps snapshots and survives a dead Redis."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from dashboard import publish
from dashboard.access import Viewer
from dashboard.boards import board_group
from tickets.signals import tickets_changed_on_commit

pytestmark = pytest.mark.django_db


def test_a_burst_of_ten_thousand_changes_schedules_one_publish(live_redis: Any) -> None:
    for _ in range(10_000):
        publish.mark_dirty()
    assert live_redis.llen("realtime") == 1  # one publish task waits for the worker
    assert publish.change_count() == 10_000


@pytest.mark.django_db(transaction=True)
def test_a_commit_of_many_changes_is_counted_once_and_every_commit_is(live_redis: Any) -> None:
    from django.db import transaction

    for _ in range(2):
        with transaction.atomic():  # e.g. an API batch: one on-commit hook per event
            for _ in range(500):
                tickets_changed_on_commit()
    assert publish.change_count() == 2
    assert live_redis.llen("realtime") == 1


def test_a_change_counted_while_a_publish_runs_gets_a_publish_of_its_own(
    live_redis: Any,
) -> None:
    publish.mark_dirty()
    assert live_redis.llen("realtime") == 1
    version = publish.begin_publish()  # the worker starts that publish...
    publish.mark_dirty()  # ...and a change commits after it read the count
    assert live_redis.llen("realtime") == 1  # the running publish is responsible for it
    assert publish.end_publish(version) is True
    assert live_redis.llen("realtime") == 2  # the follow-up publish


def test_a_change_just_after_a_publish_is_scheduled_not_dropped(live_redis: Any) -> None:
    publish.mark_dirty()
    version = publish.begin_publish()
    assert publish.end_publish(version) is False  # nothing new: a short cooldown starts
    publish.mark_dirty()  # within the cooldown: published when it ends, not forgotten
    assert live_redis.llen("realtime") == 2
    publish.mark_dirty()  # that publish is scheduled: this one only counts
    assert live_redis.llen("realtime") == 2


def test_a_publish_keeps_each_groups_snapshot_for_connecting_screens(
    org: dict, live_redis: Any
) -> None:
    board = org["board"]
    publish.mark_dirty()  # some earlier change
    everyone = board_group(board.pk, Viewer())
    north = board_group(board.pk, Viewer(org["north"].pk))
    live_redis.zadd(publish.key("live"), {everyone: timezone.now().timestamp()})
    live_redis.zadd(publish.key("live"), {north: timezone.now().timestamp()})
    publish.publish(now=timezone.now())
    version = publish.board_version(board)
    all_snapshot = publish.cached_snapshot(everyone, version)
    north_snapshot = publish.cached_snapshot(north, version)
    assert all_snapshot is not None and north_snapshot is not None
    assert "South VPN down" in all_snapshot["board-breached"]
    assert "North printer" in north_snapshot["board-breached"]
    assert "South" not in "".join(north_snapshot.values())
    publish.mark_dirty()  # a change the snapshot does not show yet
    assert publish.cached_snapshot(everyone, version) is None
    board.name = "Renamed"
    board.save()
    publish.publish(now=timezone.now())
    assert publish.cached_snapshot(everyone, version) is None  # shows the board as it was
    assert publish.cached_snapshot(everyone, publish.board_version(board)) is not None


def test_a_push_spares_the_group_a_heartbeat(org: dict, live_redis: Any) -> None:
    group = board_group(org["board"].pk, Viewer())
    live_redis.zadd(publish.key("live"), {group: timezone.now().timestamp()})
    assert publish.publish(now=timezone.now()) == 1
    assert live_redis.pttl(publish.key("beat:" + group)) > 0


@pytest.mark.slow
def test_changes_with_redis_down_are_committed_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    monkeypatch.setattr(publish, "_client", redis.Redis(host="127.0.0.1", port=1))
    publish.mark_dirty()  # must not raise: the write it follows has committed
    assert "could not schedule a publish" in caplog.text


@pytest.mark.slow
def test_a_ticket_is_recorded_while_redis_is_down(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    import redis

    from tests.factories import make_ticket
    from tickets.models import Ticket

    monkeypatch.setattr(publish, "_client", redis.Redis(host="127.0.0.1", port=1))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ticket = make_ticket(now=timezone.now(), subject="Redis is down")
    assert callbacks  # publishing was attempted after commit, and failed quietly
    assert Ticket.objects.filter(pk=ticket.pk, subject="Redis is down").exists()
