"""A real Celery worker and a real beat move a clock to its next colour with no other trigger."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from policies.models import Metric, SLAClock
from slaboard.settings import BASE_DIR
from tests.factories import make_always_calendar, make_sla_policy, make_ticket

pytestmark = pytest.mark.subprocess


def _start(argv: list[str], env: dict[str, str], lines: queue.Queue[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        argv,
        cwd=BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return process


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.mark.django_db(transaction=True)
def test_beat_and_worker_turn_a_clock_yellow_by_themselves(
    tmp_path: Path, redis_client: object
) -> None:
    now = timezone.now()
    make_sla_policy(
        calendar=make_always_calendar(),
        targets={Metric.FIRST_RESPONSE: timedelta(seconds=40)},
    )
    ticket = make_ticket(now=now, opened_at=now)
    clock = SLAClock.objects.get(ticket=ticket, metric=Metric.FIRST_RESPONSE)
    assert (clock.bucket, clock.next_change_at) == ("green", now + timedelta(seconds=20))

    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "TICK_SECONDS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    lines: queue.Queue[str] = queue.Queue()
    celery = [sys.executable, "-m", "celery", "-A", "slaboard"]
    worker = _start(
        [*celery, "worker", "--queues", "realtime,background", "--loglevel", "INFO"]
        + ["--concurrency", "1"],
        env,
        lines,
    )
    beat = _start(
        [*celery, "beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "beat")], env, lines
    )
    output: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail("no tick moved the clock in time:\n" + "".join(output[-40:]))
            output.append(line)
            if "policies.tick" in line and "succeeded" in line:
                clock.refresh_from_db()
                if clock.bucket != "green":
                    break
    finally:
        _stop(beat)
        _stop(worker)
    assert clock.bucket in {"yellow", "orange", "red"}
    assert clock.next_change_at is None or clock.next_change_at > now + timedelta(seconds=20)
    sent = [line for line in output if "Scheduler: Sending due task tick-sla-clocks" in line]
    assert sent, "the beat sent the tick"
