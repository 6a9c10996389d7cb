"""Publishing coalesces bursts and survives a dead Redis."""

from __future__ import annotations

from typing import Any

import pytest

from dashboard import publish

pytestmark = pytest.mark.django_db


def test_a_burst_of_ten_thousand_changes_schedules_one_publish(live_redis: Any) -> None:
    for _ in range(10_000):
        publish.mark_dirty()
    assert live_redis.llen("celery") == 1  # one publish task waits for the worker


def test_changes_with_redis_down_are_committed_and_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import redis

    monkeypatch.setattr(publish, "_client", redis.Redis(host="127.0.0.1", port=1))
    monkeypatch.setattr(publish, "_last_scheduled", 0.0)
    publish.mark_dirty()  # must not raise: the write it follows has committed
    assert "could not schedule a publish" in caplog.text


def test_a_ticket_is_recorded_while_redis_is_down(
    monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    import redis
    from django.utils import timezone

    from tests.factories import make_ticket
    from tickets.models import Ticket

    monkeypatch.setattr(publish, "_client", redis.Redis(host="127.0.0.1", port=1))
    monkeypatch.setattr(publish, "_last_scheduled", 0.0)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ticket = make_ticket(now=timezone.now(), subject="Redis is down")
    assert callbacks  # publishing was attempted after commit, and failed quietly
    assert Ticket.objects.filter(pk=ticket.pk, subject="Redis is down").exists()
