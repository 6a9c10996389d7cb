"""After a Redis outage an open wall screen ends equal to the database within seconds, with
no new change to trigger a publish (issue #16: a board kept showing 635 open tickets while the
database had 777, with heartbeats arriving).

Real processes: the test's own ``redis-server`` (stopped and started again, its data gone),
uvicorn, a realtime worker, a writer process opening tickets, and a websocket client that
stays connected throughout as a wall screen does.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from django.db import connection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.typing import Origin

from dashboard.models import Board
from slaboard.settings import BASE_DIR
from tests.factories import make_partner
from tests.processes import CELERY, Process, RedisServer, free_web_port
from tickets.models import Ticket

pytestmark = [pytest.mark.subprocess, pytest.mark.django_db(transaction=True)]

OPEN_COUNT = re.compile(r'<span class="label">Open tickets</span><span class="value">(\d+)<')


class Screen:
    """A wall screen: one websocket, read on a thread; remembers the open count it shows."""

    def __init__(self, url: str, origin: str) -> None:
        self.url, self.origin = url, origin
        self.shown: int | None = None
        self.closed: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            with connect(self.url, origin=Origin(self.origin), open_timeout=30) as ws:
                while not self.stop.is_set():
                    try:
                        message = ws.recv(timeout=0.2)
                    except TimeoutError:
                        continue
                    found = OPEN_COUNT.search(str(message))
                    if found:
                        self.shown = int(found.group(1))
        except ConnectionClosed as closed:
            self.closed = f"closed: {closed}"

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


def wait_until(condition: object, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.1)  # polling for a condition, with a deadline


def open_tickets(env: dict[str, str], partner_id: int, count: int) -> str:
    """Open tickets from another process of the deployment (its own REDIS_URL); its log."""
    code = (
        "import django; django.setup()\n"
        "from django.utils import timezone\n"
        "from tickets.actions import open_ticket\n"
        f"for n in range({count}):\n"
        "    now = timezone.now()\n"
        f"    open_ticket(partner_id={partner_id}, subject='Printer on fire', opened_at=now,"
        " now=now)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "slaboard.settings"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stderr


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


def test_an_open_board_equals_the_database_within_seconds_of_redis_returning(
    redis_server: RedisServer,
) -> None:
    partner = make_partner()
    Board.objects.create(name="All", slug="all", kiosk_token="k" * 32)
    db = connection.settings_dict
    port = free_web_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": redis_server.url,
        "HEARTBEAT_SECONDS": "2",  # a round every second
        "PYTHONUNBUFFERED": "1",
    }
    worker = Process(
        [*CELERY, "worker", "--queues", "realtime", "--concurrency", "1", "--loglevel", "INFO"]
        + ["--without-gossip", "--without-mingle"],
        env,
        fatal=("Unrecoverable error",),
    )
    web = Process(
        [sys.executable, "-m", "uvicorn", "slaboard.asgi:application", "--host", "127.0.0.1"]
        + ["--port", str(port), "--lifespan", "off"],
        env,
    )
    screen: Screen | None = None
    try:
        worker.wait_for("ready.")
        web.wait_for("Uvicorn running on")
        screen = Screen(
            f"ws://127.0.0.1:{port}/ws/boards/all/?kiosk={'k' * 32}", f"http://127.0.0.1:{port}"
        )
        wait_until(lambda: screen is not None and screen.shown == 0, "the snapshot arrived")
        open_tickets(env, partner.pk, 2)
        wait_until(lambda: screen is not None and screen.shown == 2, "a push showed 2 tickets")

        redis_server.stop()
        down = web.wait_for("heartbeat not sent (Redis unavailable)")
        log = open_tickets(env, partner.pk, 3)  # committed; their publishes are lost
        assert "could not schedule a publish" in log
        assert Ticket.objects.open().count() == 5 and screen.shown == 2

        redis_server.start()
        # No change, no tick: only the web process noticing Redis is back can fix the screen.
        wait_until(lambda: screen is not None and screen.shown == 5, "the screen showed 5")
        assert screen.closed is None, "the screen stayed connected throughout"
        web.wait_for("Redis is back: republishing", after=down)
    finally:
        if screen is not None:
            screen.close()
        web.stop()
        worker.stop()
    assert " 500 " not in "".join(web.output), web.tail()
