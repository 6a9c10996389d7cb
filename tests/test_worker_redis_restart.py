"""A real worker busy on a task survives a restart of its Redis and runs the next task.

Celery 5.7.0 exits with "Unrecoverable error: AttributeError('NoneType' object has no attribute
'hostname')" here; ``slaboard.celery.Consumer`` is the fix. The Redis is the test's own
``redis-server`` on a free port, stopped and started again (its data gone, as on a restart).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connection

from slaboard.celery import app
from tests.processes import CELERY, Process, RedisServer

pytestmark = pytest.mark.subprocess


def _send(broker_url: str, name: str, *args: object) -> None:
    with app.connection_for_write(broker_url) as broker:
        app.send_task(name, args=list(args), connection=broker)


@pytest.mark.django_db(transaction=True)
def test_a_busy_worker_survives_a_redis_restart_and_runs_the_next_task(tmp_path: Path) -> None:
    redis = RedisServer()
    redis.start()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": redis.url,
        "PYTHONUNBUFFERED": "1",
    }
    argv = [*CELERY, "worker", "--queues", "realtime,background", "--include", "tests.worker_tasks"]
    # Two slots: while one holds the task the consumer waits in BRPOP for more work, which is
    # the state the crash needs (with one slot the prefetch window is full and it does not).
    argv += ["--concurrency", "2", "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    worker = Process(argv, env, fatal=("Unrecoverable error",))
    release = tmp_path / "release"
    try:
        worker.wait_for("ready.")
        _send(redis.url, "tests.hold", str(release))
        busy = worker.wait_for(f"holding until {release}")

        redis.stop()
        lost = worker.wait_for("Connection to broker lost", after=busy)
        redis.start()
        worker.wait_for("Connected to redis://", after=lost)

        release.touch()
        held = worker.wait_for("Task tests.hold[", "succeeded", after=lost)
        _send(redis.url, "policies.tick")
        worker.wait_for("Task policies.tick[", "succeeded", after=held)
        assert worker.alive(), worker.tail()
    finally:
        release.touch()  # a failed run must not leave the task holding the worker's shutdown
        worker.stop()
        redis.stop()
    output = "".join(worker.output)
    assert "Unrecoverable error" not in output, worker.tail()
    assert output.count("Task tests.hold[") == 2  # received once, succeeded once: not run twice
