"""Browser tests: a real ASGI server subprocess (uvicorn, as in production), real Redis and
PostgreSQL, and Debian's Chromium driven by Playwright's sync API.

The server runs as a subprocess (not ChannelsLiveServerTestCase) so a test can kill it and
start it again on the same port. It uses the pytest-django test database, so every test here is
``django_db(transaction=True)``: the server only sees committed rows.

Playwright's sync API keeps an asyncio loop running on the main thread. Django refuses ORM calls
there (SynchronousOnlyOperation) unless DJANGO_ALLOW_ASYNC_UNSAFE is set, which this package sets
for exactly as long as the browser lives; ``async_to_sync`` (used by ``publish``) refuses to run
there at all, so pushes and "another process" writes go through ``in_thread``.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import connection, connections
from django.test import Client
from django.utils import timezone
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from dashboard import publish as publish_module
from policies.models import Metric
from tests.factories import make_always_calendar, make_partner, make_sla_policy, make_ticket
from tickets.models import Partner, Ticket, User

BASE_DIR = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SERVER_START_SECONDS = 30
SERVER_STOP_SECONDS = 10
HEARTBEAT_SECONDS = 2  # the server's; screens call themselves stale after 2 × + 5 s
AGENT_PASSWORD = "correct horse battery staple"
# Counts websocket messages swapped in (the snapshot on connect, then each push): live.js
# announces each one once it has placed it.
WS_COUNTER = """
window.__wsMessages = 0;
document.addEventListener("slaboard:message", function () { window.__wsMessages += 1; });
"""

T = TypeVar("T")


# --- threads -------------------------------------------------------------------------------


def in_thread(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``function`` on a fresh thread (its own DB connection, no event loop) and return
    its result or raise its exception. Used for pushes (``async_to_sync`` refuses the
    Playwright thread) and for writes standing in for another process."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as error:  # re-raised on the caller's thread
            outcome["error"] = error
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="browser-test-worker")
    thread.start()
    thread.join(timeout=60)
    if thread.is_alive():
        raise TimeoutError(f"{function!r} did not finish within 60 s")
    if "error" in outcome:
        raise outcome["error"]
    result: T = outcome["value"]
    return result


def wait_for_ws_messages(page: Page, at_least: int, timeout: float = 10_000) -> None:
    """Wait until the page has received ``at_least`` websocket messages (1 = the snapshot sent
    on connect, after the server registered the screen: pushes reach it from then on)."""
    page.wait_for_function("n => window.__wsMessages >= n", arg=at_least, timeout=timeout)


def push() -> int:
    """What the Celery publish task does after a commit: push changed fragments now."""
    return in_thread(lambda: publish_module.publish(now=timezone.now()))


# --- the browser ---------------------------------------------------------------------------


@pytest.fixture(scope="package")
def playwright_browser() -> Iterator[Browser]:
    """One Chromium for the whole browser package (launching costs ~1–2 s)."""
    if not os.path.exists(CHROMIUM):  # a failure, not a skip: CI installs it (.ci/run)
        pytest.fail(f"{CHROMIUM} is not installed: apt-get install -y chromium")
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    expect.set_options(timeout=10_000)  # pushes land in ~0.1 s; leave room for a busy CI box
    manager = sync_playwright()
    playwright: Playwright = manager.start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        manager.__exit__(None, None, None)
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


# --- Redis and the channel layer -----------------------------------------------------------


@pytest.fixture
def channel_prefix(settings: Any) -> str:
    """A channel-layer prefix of our own, shared with the server subprocess: pushes from a dev
    server or worker on this machine never reach our screens, nor ours theirs."""
    prefix = f"slaboard-browser-{uuid.uuid4().hex[:10]}"
    layers = {name: dict(layer) for name, layer in settings.CHANNEL_LAYERS.items()}
    layers["default"]["CONFIG"] = {**layers["default"].get("CONFIG", {}), "prefix": prefix}
    settings.CHANNEL_LAYERS = layers
    return prefix


def _clear_live_keys() -> None:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        keys = [publish_module.key("live"), publish_module.key("publish:pending")]
        keys += list(client.scan_iter(match=publish_module.key("sent:") + "*", count=1000))
        client.delete(*keys)
    finally:
        client.close()


@pytest.fixture
def clean_live_keys() -> Iterator[None]:
    """Forget live groups and last-sent digests from earlier runs (they name other rows)."""
    _clear_live_keys()
    yield
    _clear_live_keys()


# --- the server subprocess -----------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``uvicorn slaboard.asgi:application`` on a fixed port, startable again after a stop."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env = env
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "slaboard.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--lifespan",
            "off",
            "--ws-per-message-deflate",
            "false",
            "--timeout-graceful-shutdown",
            "5",
        ]
        process = subprocess.Popen(
            argv,
            cwd=BASE_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self.process = process
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                self.output.append(line)
                lines.put(line)
            lines.put(None)  # end of output: the process exited

        self._reader = threading.Thread(target=pump, name=f"uvicorn-{self.port}", daemon=True)
        self._reader.start()
        listening = f"Uvicorn running on {self.base_url}"
        while True:
            try:
                line = lines.get(timeout=SERVER_START_SECONDS)
            except queue.Empty:
                self.stop()
                raise RuntimeError(
                    f"server did not listen within {SERVER_START_SECONDS} s:\n" + self.log()
                ) from None
            if line is None:
                self.stop()
                raise RuntimeError("server exited while starting:\n" + self.log())
            if listening in line:
                return

    def stop(self) -> None:
        """SIGTERM (uvicorn closes websockets with 1012), wait; SIGKILL if it hangs."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=SERVER_STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._reader is not None:
            self._reader.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return "".join(self.output[-200:])


def _server_env(channel_prefix: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(
        DJANGO_SETTINGS_MODULE="slaboard.settings",
        DATABASE_URL=f"postgres://{db['USER'] or 'postgres'}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}",
        REDIS_URL=settings.REDIS_URL,
        CHANNEL_PREFIX=channel_prefix,
        HEARTBEAT_SECONDS=str(HEARTBEAT_SECONDS),
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
    )
    return env


@pytest.fixture
def server(
    transactional_db: None, channel_prefix: str, clean_live_keys: None
) -> Iterator[ServerProcess]:
    """The product's ASGI app in its own process, on the pytest-django test database."""
    process = ServerProcess(_server_env(channel_prefix), free_port())
    process.start()
    try:
        yield process
    finally:
        process.stop()
        # Shown by pytest only when the test failed.
        print(f"--- server output ({process.base_url}) ---\n{process.log()}")


class RedisProcess:
    """A redis-server of the test's own on a free loopback port, stoppable and restartable."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        argv = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no", "--loglevel", "notice"]
        process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.process = process
        stdout = process.stdout
        assert stdout is not None
        for line in stdout:  # blocks until redis says it is ready (or exits)
            if "Ready to accept connections" in line:
                threading.Thread(target=stdout.read, daemon=True).start()
                return
        raise RuntimeError(f"redis-server on port {self.port} exited while starting")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis(settings: Any, channel_prefix: str) -> Iterator[RedisProcess]:
    """Point this test (and the server it starts) at a Redis it may stop and restart."""
    from channels.layers import channel_layers

    process = RedisProcess(free_port())
    process.start()
    settings.REDIS_URL = process.url
    layers = {name: dict(layer) for name, layer in settings.CHANNEL_LAYERS.items()}
    config = dict(layers["default"]["CONFIG"])
    config["hosts"] = [{**config["hosts"][0], "address": process.url}]
    layers["default"]["CONFIG"] = config
    settings.CHANNEL_LAYERS = layers
    channel_layers.backends = {}
    publish_module._client = None
    try:
        yield process
    finally:
        process.stop()
        channel_layers.backends = {}
        publish_module._client = None


@pytest.fixture
def server_on_private_redis(
    transactional_db: None, private_redis: RedisProcess
) -> Iterator[ServerProcess]:
    config = cast(dict[str, Any], settings.CHANNEL_LAYERS["default"]["CONFIG"])
    env = _server_env(config["prefix"])
    process = ServerProcess(env, free_port())
    process.start()
    try:
        yield process
    finally:
        process.stop()
        print(f"--- server output ({process.base_url}) ---\n{process.log()}")


# --- people and data -----------------------------------------------------------------------


@pytest.fixture
def make_agent(transactional_db: None) -> Callable[[str], User]:
    """Users who may work the queue: members of the demo "Agents" group."""

    def make(username: str) -> User:
        group, _ = Group.objects.get_or_create(name="Agents")
        group.permissions.add(Permission.objects.get(codename="claim_ticket"))
        user = User(username=username, email=f"{username}@example.com")
        user.set_password(AGENT_PASSWORD)
        user.save()
        user.groups.add(group)
        return user

    return make


def logged_in_context(
    browser: Browser, server: ServerProcess, user: User | None = None
) -> BrowserContext:
    """A browser context on ``server``, logged in as ``user`` (a copied session cookie)."""
    context = browser.new_context(base_url=server.base_url)
    context.set_default_timeout(10_000)
    context.add_init_script(WS_COUNTER)
    if user is not None:
        client = Client()
        client.force_login(user)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": server.base_url}]
        )
    return context


@pytest.fixture
def new_context(
    playwright_browser: Browser, server: ServerProcess
) -> Iterator[Callable[..., BrowserContext]]:
    """Browser contexts on the server, logged in as ``user`` (a copied session cookie) or not."""
    contexts: list[BrowserContext] = []

    def make(user: User | None = None) -> BrowserContext:
        context = logged_in_context(playwright_browser, server, user)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def sla_partner(transactional_db: None) -> Partner:
    """A partner whose tickets run on a 24×7 clock: respond 1 h, plan 4 h, resolve 8 h."""
    calendar = make_always_calendar()
    make_sla_policy(
        calendar=calendar,
        targets={
            Metric.FIRST_RESPONSE: timedelta(hours=1),
            Metric.RESOLUTION_PLAN: timedelta(hours=4),
            Metric.RESOLUTION: timedelta(hours=8),
        },
    )
    return make_partner(name="Globex Support", default_calendar=calendar)


@pytest.fixture
def at_risk_ticket(sla_partner: Partner) -> Callable[..., Ticket]:
    """An open ticket opened 50 min ago: its 1 h first response is in danger (orange)."""

    def make(subject: str = "Checkout returns 502", **fields: Any) -> Ticket:
        now: datetime = timezone.now()
        fields.setdefault("priority", "high")
        return make_ticket(
            now=now,
            partner=sla_partner,
            subject=subject,
            opened_at=now - timedelta(minutes=50),
            **fields,
        )

    return make
