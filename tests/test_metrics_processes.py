"""/metrics on a host with several processes (prometheus-client's multiprocess mode): any web
worker's answer sums every uvicorn worker and the Celery worker that share the directory."""

from __future__ import annotations

import os
import re
import sys
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from slaboard.celery import app
from tests.processes import CELERY, Process, RedisServer, free_web_port

pytestmark = [pytest.mark.subprocess, pytest.mark.django_db(transaction=True)]


def scrape(base: str) -> str:
    request = urllib.request.Request(
        f"{base}/metrics", headers={"Authorization": "Bearer scrape-me"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.read().decode())


def sample(text: str, pattern: str) -> float:
    found = re.search(rf"^{pattern} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_a_scrape_sums_every_web_worker_and_the_celery_worker_of_the_host(
    tmp_path: Path,
) -> None:
    redis = RedisServer()
    redis.start()
    db = connection.settings_dict
    directory = tmp_path / "metrics"
    directory.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": redis.url,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "METRICS_TOKEN": "scrape-me",
        "PYTHONUNBUFFERED": "1",
    }
    port = free_web_port()
    web = Process(
        [sys.executable, "-m", "uvicorn", "slaboard.asgi:application", "--host", "127.0.0.1"]
        + ["--port", str(port), "--lifespan", "off", "--workers", "2"],
        env,
    )
    worker = Process(
        [*CELERY, "worker", "--queues", "realtime", "--concurrency", "1", "--loglevel", "INFO"]
        + ["--without-gossip", "--without-mingle"],
        env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        web.wait_for("Started server process", after=web.wait_for("Started server process") + 1)
        worker.wait_for("ready.")
        for _ in range(40):  # over new connections: both web workers answer some
            with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
                assert response.status == 200
        with app.connection_for_write(redis.url) as conn:
            app.send_task("policies.tick", connection=conn)
        worker.wait_for("Task policies.tick[", "succeeded")
        text = scrape(base)
    finally:
        web.stop()
        worker.stop()
        redis.stop()
    pattern = r'slaboard_http_requests_total\{method="GET",status="200",surface="ops"\}'
    assert sample(text, pattern) == 40
    writers = {p.name.rsplit("_", 1)[-1] for p in directory.glob("counter_*.db")}
    assert len(writers) >= 3  # each process keeps its own files; the scrape sums them
    assert sample(text, "slaboard_tick_duration_seconds_count") == 1
    assert re.search(r'^slaboard_check_ok\{check="database"\} 1\.0$', text, re.M)
