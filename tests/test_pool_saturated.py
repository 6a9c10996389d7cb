"""A saturated connection pool sheds load: 503 + Retry-After, never a 500, and the same server
answers normally once a connection is free (issue #16, 200 concurrent API clients).

Real processes: uvicorn with a pool of one connection; a write that holds it (it waits for
the tick's advisory lock, which this test holds, as a long tick would); then more requests.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from email.message import Message

import psycopg
import pytest
from django.db import connection

from policies.engine import TICK_ADVISORY_LOCK
from tests.factories import make_partner
from tests.processes import Process, free_web_port
from tickets.models import ApiToken

pytestmark = [pytest.mark.subprocess, pytest.mark.django_db(transaction=True)]


def call(
    url: str, token: str, method: str = "GET", body: dict | None = None
) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "X-Forwarded-Proto": "https",  # as the TLS proxy in front says (DEBUG=0)
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def test_a_saturated_pool_answers_503_with_retry_after_and_recovers() -> None:
    partner = make_partner(name="Nordlicht IT")
    token = ApiToken.issue(name="probe")[1]
    db = connection.settings_dict
    conninfo = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    port = free_web_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "DB_POOL_MAX": "1",
        "DB_POOL_MIN": "1",
        "DB_POOL_TIMEOUT": "1",
        "DEBUG": "0",
        "SECRET_KEY": "test-" + "x" * 50,
        "PYTHONUNBUFFERED": "1",
    }
    server = Process(
        [sys.executable, "-m", "uvicorn", "slaboard.asgi:application", "--host", "127.0.0.1"]
        + ["--port", str(port), "--lifespan", "off"],
        env,
    )
    base = f"http://127.0.0.1:{port}"
    answers: list[int] = []
    try:
        server.wait_for("Uvicorn running on")
        assert call(f"{base}/api/v1/tickets", token)[0] == 200
        with psycopg.connect(conninfo, autocommit=True) as holder:
            holder.execute("SELECT pg_advisory_lock(%s)", [TICK_ADVISORY_LOCK])
            body = {
                "partner": partner.name,
                "subject": "Printer on fire",
                "opened_at": "2026-11-17T09:00:00+00:00",
            }
            writer = threading.Thread(
                target=lambda: answers.append(
                    call(f"{base}/api/v1/tickets/probe/T-1", token, "PUT", body)[0]
                )
            )
            writer.start()
            deadline = time.monotonic() + 30
            while not holder.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query ILIKE '%advisory%'"
            ).fetchone()[0]:  # type: ignore[index]
                assert time.monotonic() < deadline, "the write never waited for the lock"
                time.sleep(0.05)  # polling for a condition, with a deadline
            # The pool's only connection is taken: the next requests wait 1 s, then are shed.
            status, headers, raw = call(f"{base}/api/v1/tickets", token)
            assert status == 503, raw[:300]
            assert headers["Retry-After"] == "5" and headers["Content-Type"] == "application/json"
            assert json.loads(raw)["detail"].startswith("No database connection is free")
            status, headers, raw = call(f"{base}/readyz?check=database", token)
            assert status == 503 and json.loads(raw)["checks"]["database"]["ok"] is False
            holder.execute("SELECT pg_advisory_unlock(%s)", [TICK_ADVISORY_LOCK])
        writer.join(timeout=60)
        assert answers == [201]
        assert call(f"{base}/api/v1/tickets", token)[0] == 200
    finally:
        server.stop()
    output = "".join(server.output)
    assert " 500 " not in output and "Traceback" not in output, server.tail()
