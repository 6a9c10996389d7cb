"""Is the deployment healthy? The checks behind ``/readyz``, the boards' health line and the
metrics read at scrape time.

Each check answers ``ok`` and a few numbers; none raises. ``database`` and ``redis``: they
answer (and how fast). ``clock``: this process's clock against the database's. ``tick``: the
age of the tick's watermark (when clocks were last evaluated) by the database's clock.
``workers``: when each queue last finished a task (``slaboard.worker_heartbeat``).
``notifications``: the due outbox rows and how long the oldest has waited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from policies.engine import evaluated_until
from policies.models import DUE_STATUSES, Notification
from slaboard import worker_heartbeat
from slaboard.dbclock import clock_offset, database_now

log = logging.getLogger(__name__)

CHECKS = ("database", "redis", "clock", "tick", "workers", "notifications")


@dataclass
class Report:
    """The outcome of the checks that were run: ``checks[name] = {"ok": bool, ...}``."""

    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    checked_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return all(check["ok"] for check in self.checks.values())

    @property
    def failing(self) -> list[str]:
        return [name for name, check in self.checks.items() if not check["ok"]]

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "ready" if self.ok else "not ready",
            "checked_at": self.checked_at.isoformat() if self.checked_at else None,
            "failing": self.failing,
            "checks": self.checks,
        }

    def problems(self) -> list[str]:
        """What people in front of a board should know, in a few words each."""
        said = []
        for name in self.failing:
            check = self.checks[name]
            if name == "tick" and check.get("evaluated_until"):
                said.append(f"clocks last evaluated {check['age_seconds'] // 60:.0f} min ago")
            elif name == "tick":
                said.append("clocks not evaluated yet")
            elif name == "workers":
                late = [q for q, seen in check["queues"].items() if not seen["ok"]]
                said.append("no worker for " + ", ".join(late))
            elif name == "notifications":
                said.append(
                    f"{check['backlog']} notifications waiting, the oldest "
                    f"{check['oldest_due_seconds'] // 60:.0f} min"
                )
            elif name in {"database", "redis"}:
                said.append(f"{name} unavailable")
        return said


def _failed(error: BaseException) -> dict[str, Any]:
    # The type only: /readyz is unauthenticated and messages can name hosts; the log has it.
    log.warning("health check failed: %s: %s", type(error).__name__, error)
    return {"ok": False, "error": type(error).__name__}


def _timed(probe: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = probe()
    return value, round((time.perf_counter() - started) * 1000, 1)


_redis: dict[str, redis.Redis] = {}


def redis_client() -> redis.Redis:
    """One client per process (per ``REDIS_URL``), with short timeouts: a probe must answer."""
    client = _redis.get(settings.REDIS_URL)
    if client is None:
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2
        )
        _redis[settings.REDIS_URL] = client
    return client


def check(names: Iterable[str] = CHECKS) -> Report:
    """Run the named checks (all by default) and report. Never raises."""
    wanted = [name for name in CHECKS if name in set(names)]
    report = Report()
    db_now: datetime | None = None
    if {"database", "clock", "tick", "notifications"} & set(wanted):
        local = timezone.now()
        try:
            db_now, ms = _timed(database_now)
            report.checks["database"] = {"ok": True, "latency_ms": ms}
        except Exception as error:
            report.checks["database"] = _failed(error)
        if "clock" in wanted:
            if db_now is None:
                report.checks["clock"] = {"ok": False, "error": "database unavailable"}
            else:
                offset = round(clock_offset(db_now, local), 3)
                limit = settings.CLOCK_SKEW_LIMIT_SECONDS
                report.checks["clock"] = {
                    "ok": abs(offset) <= limit,
                    "offset_seconds": offset,
                    "limit_seconds": limit,
                }
        if "database" not in wanted:
            del report.checks["database"]
    report.checked_at = db_now or timezone.now()
    if {"redis", "workers"} & set(wanted):
        try:
            _, ms = _timed(redis_client().ping)
            report.checks["redis"] = {"ok": True, "latency_ms": ms}
        except Exception as error:
            report.checks["redis"] = _failed(error)
        if "workers" in wanted:
            report.checks["workers"] = _workers(report.checks["redis"]["ok"])
        if "redis" not in wanted:
            del report.checks["redis"]
    if "tick" in wanted:
        report.checks["tick"] = _tick(db_now)
    if "notifications" in wanted:
        report.checks["notifications"] = _notifications(db_now)
    report.checks = {name: report.checks[name] for name in CHECKS if name in report.checks}
    return report


def _tick(db_now: datetime | None) -> dict[str, Any]:
    limit = settings.TICK_LATE_SECONDS
    if db_now is None:
        return {"ok": False, "error": "database unavailable"}
    try:
        until = evaluated_until()
    except Exception as error:
        return _failed(error)
    if until is None:
        return {"ok": False, "evaluated_until": None, "late_after_seconds": limit}
    age = round(max(0.0, (db_now - until).total_seconds()), 1)
    return {
        "ok": age <= limit,
        "evaluated_until": until.isoformat(),
        "age_seconds": age,
        "late_after_seconds": limit,
    }


def _workers(redis_ok: bool) -> dict[str, Any]:
    limit = settings.WORKER_LATE_SECONDS
    if not redis_ok:
        return {"ok": False, "error": "redis unavailable"}
    try:
        seen = worker_heartbeat.last_seen(redis_client())
    except Exception as error:
        return _failed(error)
    queues: dict[str, dict[str, Any]] = {}
    for queue, last in seen.items():
        if last is None:
            queues[queue] = {"ok": False, "last_task_seconds_ago": None, "worker": None}
        else:
            worker, ago = last
            queues[queue] = {
                "ok": ago <= limit,
                "last_task_seconds_ago": round(ago, 1),
                "worker": worker,
            }
    return {
        "ok": all(q["ok"] for q in queues.values()),
        "queues": queues,
        "late_after_seconds": limit,
    }


def _notifications(db_now: datetime | None) -> dict[str, Any]:
    limit = settings.NOTIFICATION_LATE_SECONDS
    if db_now is None:
        return {"ok": False, "error": "database unavailable"}
    try:
        due = Notification.objects.filter(status__in=DUE_STATUSES, next_attempt_at__lte=db_now)
        found = due.aggregate(backlog=Count("pk"), oldest=Min("next_attempt_at"))
    except Exception as error:
        return _failed(error)
    oldest = found["oldest"]
    waited = round(max(0.0, (db_now - oldest).total_seconds()), 1) if oldest else None
    return {
        "ok": waited is None or waited <= limit,
        "backlog": found["backlog"],
        "oldest_due_seconds": waited,
        "late_after_seconds": limit,
    }


class HealthCollector(Collector):
    """The checks as gauges, read when Prometheus scrapes (not per process: one truth)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        report = check()
        up = GaugeMetricFamily(
            "slaboard_check_ok", "1 if the health check passes.", labels=["check"]
        )
        for name, result in report.checks.items():
            up.add_metric([name], 1.0 if result["ok"] else 0.0)
        yield up
        tick = report.checks.get("tick", {})
        if tick.get("age_seconds") is not None:
            yield GaugeMetricFamily(
                "slaboard_tick_age_seconds",
                "Seconds since the instant the tick last evaluated clocks up to (database clock).",
                value=tick["age_seconds"],
            )
        notifications = report.checks.get("notifications", {})
        if "backlog" in notifications:
            yield GaugeMetricFamily(
                "slaboard_notifications_backlog",
                "Notifications due and not yet delivered.",
                value=notifications["backlog"],
            )
            yield GaugeMetricFamily(
                "slaboard_notifications_oldest_due_seconds",
                "How long the oldest due notification has waited (0 when none).",
                value=notifications["oldest_due_seconds"] or 0.0,
            )
        workers = report.checks.get("workers", {})
        if "queues" in workers:
            seen = GaugeMetricFamily(
                "slaboard_queue_last_task_seconds",
                "Seconds since a worker last finished a task of the queue (Redis clock).",
                labels=["queue"],
            )
            for queue, result in workers["queues"].items():
                if result["last_task_seconds_ago"] is not None:
                    seen.add_metric([queue], result["last_task_seconds_ago"])
            yield seen
        clock = report.checks.get("clock", {})
        if "offset_seconds" in clock:
            yield GaugeMetricFamily(
                "slaboard_clock_offset_seconds",
                "This web process's clock minus the database's.",
                value=clock["offset_seconds"],
            )
