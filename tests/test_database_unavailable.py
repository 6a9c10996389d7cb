"""PostgreSQL stopped under a running server: the API answers 503 JSON with Retry-After, pages a
styled 503, never a 500; started again, the same server answers normally (no restart).

Real processes: the test's own PostgreSQL cluster (stopped and started, never the shared one)
and uvicorn, as in production.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message

import psycopg
import pytest

from slaboard.settings import BASE_DIR
from tests.processes import PostgresServer, Process, free_web_port

pytestmark = pytest.mark.subprocess


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.remove()


def get(url: str, token: str | None = None) -> tuple[int, Message, bytes]:
    # As the TLS-terminating proxy in front says (DEBUG=0 redirects plain HTTP to HTTPS).
    headers = {"X-Forwarded-Proto": "https"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def prepare(postgres: PostgresServer, env: dict[str, str]) -> str:
    """Create and migrate a database on the private server; return an API token."""
    with psycopg.connect(postgres.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE slaboard")
    code = (
        "import django; django.setup(); from django.core.management import call_command; "
        "call_command('migrate', verbosity=0); from tickets.models import ApiToken; "
        "print(ApiToken.issue(name='probe')[1])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**env, "DJANGO_SETTINGS_MODULE": "slaboard.settings"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def until_status(url: str, token: str, status: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while True:
        code = get(url, token)[0]
        if code == status or time.monotonic() > deadline:
            return code
        time.sleep(0.2)  # polling for a condition, with a deadline


@pytest.mark.parametrize("pool_max", ["10", "0"], ids=["pooled", "unpooled"])
def test_a_stopped_database_answers_503_and_recovers_without_a_restart(
    postgres: PostgresServer, pool_max: str
) -> None:
    port = free_web_port()
    env = {
        **os.environ,
        "DATABASE_URL": postgres.url("slaboard"),
        "DB_POOL_MAX": pool_max,
        "DB_POOL_TIMEOUT": "1",  # pooled: how long a request waits for a connection
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback: no TLS proxy in front here
        "SECRET_KEY": "test-" + "x" * 50,
        "PYTHONUNBUFFERED": "1",
    }
    token = prepare(postgres, env)
    server = Process(
        [sys.executable, "-m", "uvicorn", "slaboard.asgi:application", "--host", "127.0.0.1"]
        + ["--port", str(port), "--lifespan", "off"],
        env,
    )
    api = f"http://127.0.0.1:{port}/api/v1/tickets"
    page = f"http://127.0.0.1:{port}/boards/all/"
    try:
        server.wait_for("Uvicorn running on")
        assert get(api, token)[0] == 200

        postgres.stop()
        status, headers, body = get(api, token)
        assert status == 503, body[:500]
        assert headers["Content-Type"] == "application/json"
        assert headers["Retry-After"] == "5"
        assert (
            json.loads(body)["detail"]
            == {
                "10": "No database connection is free (busy or unavailable); retry in 5 s.",
                "0": "The database is unavailable; retry in 5 s.",
            }[pool_max]
        )
        status, headers, body = get(page)
        assert status == 503 and headers["Retry-After"] == "5"
        assert headers["Content-Type"].startswith("text/html")
        assert b"Back in a moment" in body and b'http-equiv="refresh"' in body

        postgres.start()
        assert until_status(api, token, 200) == 200
    finally:
        server.stop()
    output = "".join(server.output)
    assert " 500 " not in output and "Traceback" not in output, server.tail()
    assert "database unavailable, answering 503 to GET /api/v1/tickets" in output
