"""After Redis was away, the next publish sends every fragment again; publishes time the lag
from the oldest change's commit to the push."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from dashboard import publish
from dashboard.access import Viewer
from dashboard.boards import board_group
from dashboard.convergence import republish_after_outage
from policies.models import TickWatermark

pytestmark = pytest.mark.django_db


def test_after_an_outage_the_next_publish_sends_what_was_sent_before_again(
    org: dict, live_redis: Any
) -> None:
    TickWatermark.objects.create(pk=1, evaluated_until=timezone.now())
    group = board_group(org["board"].pk, Viewer())
    live_redis.zadd(publish.key("live"), {group: timezone.now().timestamp()})
    assert publish.publish(now=timezone.now()) == 1
    assert publish.publish(now=timezone.now()) == 0  # nothing changed: nothing to send
    live_redis.set(publish.key("publish:state"), "running")  # a publish died with Redis

    assert republish_after_outage([group, "ticket-42"])

    assert live_redis.get(publish.key("publish:state")) == b"queued"  # scheduled at once
    assert b"42" in live_redis.smembers(publish.key("changed"))
    assert publish.publish(now=timezone.now()) == 1  # every fragment, though none changed


def test_a_publish_times_its_oldest_change_from_commit_to_push(org: dict, live_redis: Any) -> None:
    group = board_group(org["board"].pk, Viewer())
    live_redis.zadd(publish.key("live"), {group: timezone.now().timestamp()})
    before = REGISTRY.get_sample_value("slaboard_publish_lag_seconds_count") or 0
    publish.mark_dirty()
    publish.mark_dirty()  # the second change keeps the first one's instant
    assert publish.publish_and_follow_up(now=timezone.now()) == 1
    assert REGISTRY.get_sample_value("slaboard_publish_lag_seconds_count") == before + 1
    assert live_redis.get(publish.key("dirty:since")) is None  # taken by that publish
