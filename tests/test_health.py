"""Readiness (/readyz) and metrics (/metrics): what operations see, checked against the real
database and Redis."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.test import Client

from policies.models import Notification, TickWatermark
from slaboard import metrics, worker_heartbeat
from slaboard.dbclock import database_now
from tests.factories import make_always_calendar, make_rule, make_sla_policy, make_ticket

pytestmark = pytest.mark.django_db


@pytest.fixture
def workers(redis_client: redis.Redis) -> Iterator[None]:
    """Every queue has just finished a task (as a running worker records)."""
    worker_heartbeat._last.clear()
    for queue in worker_heartbeat.queues():
        worker_heartbeat.record(queue, f"{queue}@test")
    yield
    worker_heartbeat._last.clear()


def ticked(seconds_ago: float) -> None:
    TickWatermark.objects.update_or_create(
        pk=1, defaults={"evaluated_until": database_now() - timedelta(seconds=seconds_ago)}
    )


def test_a_healthy_deployment_is_ready_with_every_check_in_json(
    client: Client, workers: None
) -> None:
    ticked(20)
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["status"] == "ready" and body["failing"] == []
    checks = body["checks"]
    assert list(checks) == ["database", "redis", "clock", "tick", "workers", "notifications"]
    assert checks["tick"]["ok"] and 19 <= checks["tick"]["age_seconds"] < 60
    assert checks["tick"]["late_after_seconds"] == 150
    assert set(checks["workers"]["queues"]) == {"background", "realtime"}
    assert checks["workers"]["queues"]["realtime"]["worker"] == "realtime@test"
    assert checks["notifications"] == {
        "ok": True,
        "backlog": 0,
        "oldest_due_seconds": None,
        "late_after_seconds": 600.0,
    }
    assert abs(checks["clock"]["offset_seconds"]) < 5


def test_a_late_tick_makes_it_not_ready_with_503_and_says_which_check(
    client: Client, workers: None
) -> None:
    ticked(151)
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    body = response.json()
    assert body["status"] == "not ready" and body["failing"] == ["tick"]
    assert body["checks"]["tick"]["age_seconds"] >= 151


def test_a_queue_without_a_worker_is_not_ready(client: Client, redis_client: Any) -> None:
    ticked(5)
    worker_heartbeat._last.clear()
    worker_heartbeat.record("realtime", "realtime@test")
    body = client.get("/readyz").json()
    assert body["failing"] == ["workers"]
    assert body["checks"]["workers"]["queues"]["background"] == {
        "ok": False,
        "last_task_seconds_ago": None,
        "worker": None,
    }


def test_notifications_waiting_too_long_make_it_not_ready(client: Client, workers: None) -> None:
    now = database_now()
    make_sla_policy(calendar=make_always_calendar(), targets={"first_response": timedelta(hours=1)})
    ticket = make_ticket(now=now, opened_at=now - timedelta(hours=2))
    rule = make_rule()
    Notification.objects.create(
        rule=rule,
        ticket=ticket,
        metric="first_response",
        trigger="red",
        channel="email",
        event_at=now - timedelta(hours=1),
        next_attempt_at=now - timedelta(minutes=11),
        created_at=now - timedelta(minutes=11),
    )
    ticked(5)
    body = client.get("/readyz").json()
    assert body["failing"] == ["notifications"]
    assert body["checks"]["notifications"]["backlog"] == 1
    assert body["checks"]["notifications"]["oldest_due_seconds"] >= 660


def test_a_load_balancer_can_ask_for_this_process_s_own_checks_only(client: Client) -> None:
    ticked(3600)  # the tick is an hour late, and no worker ever ran: not this process's problem
    response = client.get("/readyz?check=database&check=redis")
    assert response.status_code == 200
    assert list(response.json()["checks"]) == ["database", "redis"]
    assert client.get("/readyz?check=disk").status_code == 400


def test_redis_away_is_reported_without_its_error_text(
    client: Client, workers: None, settings: Any
) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nobody listens there
    ticked(5)
    body = client.get("/readyz").json()
    assert body["checks"]["redis"] == {"ok": False, "error": "ConnectionError"}
    assert body["checks"]["workers"] == {"ok": False, "error": "redis unavailable"}


def test_metrics_are_not_found_without_the_token(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.METRICS_TOKEN = "s3cret-token"
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404


def test_metrics_with_the_token_show_requests_and_the_deployment_s_health(
    client: Client, settings: Any, workers: None
) -> None:
    settings.METRICS_TOKEN = "s3cret-token"
    ticked(42)
    before = metrics.HTTP_REQUESTS.labels("ops", "GET", "200")._value.get()
    client.get("/healthz")
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    text = response.content.decode()
    counted = re.search(
        r'^slaboard_http_requests_total\{method="GET",status="200",surface="ops"\} (\S+)$',
        text,
        re.M,
    )
    assert counted and float(counted.group(1)) >= before + 1
    age = re.search(r"^slaboard_tick_age_seconds (\S+)$", text, re.M)
    assert age and 42 <= float(age.group(1)) < 100
    assert re.search(r'^slaboard_check_ok\{check="tick"\} 1\.0$', text, re.M)
    assert re.search(r"^slaboard_notifications_backlog 0\.0$", text, re.M)
    assert re.search(r'^slaboard_queue_last_task_seconds\{queue="realtime"\} ', text, re.M)
    for name in (
        "slaboard_tick_duration_seconds",
        "slaboard_tick_clocks_moved_total",
        "slaboard_publish_lag_seconds",
        "slaboard_screens_connected",
        "slaboard_notifications_total",
        "slaboard_http_request_duration_seconds",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
