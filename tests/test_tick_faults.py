"""The minute tick against two faults of issue #16, with real processes: a worker killed with
-9 in the middle of a tick, and a worker whose clock runs three minutes ahead.

Each test has its own ``redis-server`` (broker) and uses the test database; the workers and
the beat are real Celery processes started with the deployment's command.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from policies.models import Metric, SLAClock, TickWatermark
from slaboard.celery import app
from slaboard.dbclock import database_now
from tests.factories import make_always_calendar, make_sla_policy, make_ticket
from tests.processes import CELERY, Process, RedisServer

pytestmark = [pytest.mark.subprocess, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def broker() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def environment(broker: RedisServer, **extra: str) -> dict[str, str]:
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": broker.url,
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


def realtime_worker(env: dict[str, str], *, prefix: list[str] | None = None) -> Process:
    argv = prefix or [*CELERY]
    argv += ["worker", "--queues", "realtime", "--concurrency", "1", "--loglevel", "INFO"]
    argv += ["--without-gossip", "--without-mingle"]
    return Process(argv, env, fatal=("Unrecoverable error",))


def database_conninfo() -> str:
    db = connection.settings_dict
    return f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


def wait_until(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.1)  # polling for a condition, with a deadline


def test_a_worker_killed_mid_tick_holds_nothing_and_the_next_tick_moves_the_clocks(
    broker: RedisServer, tmp_path: Path
) -> None:
    now = database_now()
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(minutes=10)}
    )
    # Stored green when it opened 5.5 minutes ago; its yellow instant (5 min) has passed since.
    opened = now - timedelta(minutes=5, seconds=30)
    ticket = make_ticket(now=opened, opened_at=opened)
    clock = SLAClock.objects.get(ticket=ticket, metric=Metric.FIRST_RESPONSE)
    assert clock.bucket == "green" and clock.yellow_at is not None and clock.orange_at is not None
    assert clock.yellow_at < now < clock.orange_at
    TickWatermark.objects.update_or_create(
        pk=1, defaults={"evaluated_until": now - timedelta(seconds=60)}
    )
    env = environment(broker, TICK_SECONDS="2")
    beat = Process([*CELERY, "beat", "--schedule", str(tmp_path / "beat")], env)
    first = realtime_worker(env)
    second: Process | None = None
    # The test holds the watermark row: the worker's tick takes the advisory lock, then waits
    # for this row inside its transaction — a tick caught in the middle.
    with psycopg.connect(database_conninfo()) as holder:
        holder.execute("SELECT 1 FROM policies_tickwatermark WHERE id = 1 FOR UPDATE")
        try:
            with psycopg.connect(database_conninfo(), autocommit=True) as probe:

                def tick_waits() -> bool:
                    row = probe.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock' AND query ILIKE %s",
                        ["%tickwatermark%"],
                    ).fetchone()
                    return bool(row and row[0])

                wait_until(tick_waits, "a tick waits inside its transaction")
                os.killpg(first.process.pid, signal.SIGKILL)  # the worker and its children
                first.process.wait()
                # What a supervisor does: start the worker again.
                second = realtime_worker(env)
                second.wait_for("ready.")
        finally:
            holder.rollback()  # the killed tick's statement may now run: its client is gone

        def moved() -> bool:
            clock.refresh_from_db()
            return clock.bucket != "green"

        wait_until(moved, "a tick after the kill moved the clock", timeout=60)
    try:
        second.wait_for("Task policies.tick[", "succeeded", timeout=30)
        assert "succeeded" not in "".join(first.output)  # the killed worker finished nothing
    finally:
        beat.stop()
        second.stop()
    assert clock.bucket == "yellow"
    mark = TickWatermark.objects.get(pk=1).evaluated_until
    assert mark is not None and mark > now


def test_a_worker_whose_clock_runs_ahead_moves_no_clock_early(broker: RedisServer) -> None:
    now = database_now()
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(minutes=2)}
    )
    ticket = make_ticket(now=now, opened_at=now)
    clock = SLAClock.objects.get(ticket=ticket, metric=Metric.FIRST_RESPONSE)
    assert clock.yellow_at == now + timedelta(minutes=1) and clock.bucket == "green"
    TickWatermark.objects.update_or_create(pk=1, defaults={"evaluated_until": now})
    skewed = [sys.executable, str(Path(__file__).with_name("skewed_clock.py")), "180", "celery"]
    worker = realtime_worker(environment(broker), prefix=[*skewed, "-A", "slaboard"])
    try:
        worker.wait_for("ready.")
        with app.connection_for_write(broker.url) as conn:
            app.send_task("policies.tick", connection=conn)
        warned = worker.wait_for("this worker's clock is", "ahead of the database's")
        worker.wait_for("Task policies.tick[", "succeeded", after=warned)
    finally:
        worker.stop()
    after = database_now()
    clock.refresh_from_db()
    assert clock.bucket == "green"  # its yellow instant is a minute away by the database
    mark = TickWatermark.objects.get(pk=1).evaluated_until
    assert mark is not None and now < mark <= after  # not three minutes ahead
