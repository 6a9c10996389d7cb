"""The README's run command really starts the product: web, worker, one beat, a local Redis.

These tests start `python -m slaboard.run` as a user would (with its own SQLite file and a free
port), wait for each process to announce itself, use the site, then press Ctrl-C.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

import pytest

from slaboard.demo import DEMO_PASSWORD
from slaboard.settings import BASE_DIR

STARTUP_TIMEOUT = 120


pytestmark = pytest.mark.subprocess


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Supervisor:
    def __init__(self, env: dict[str, str]) -> None:
        full_env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        full_env.update(env)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "slaboard.run"],
            cwd=BASE_DIR,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, *needles: str, timeout: float = STARTUP_TIMEOUT) -> None:
        """Block until every needle has appeared in the output (or fail with the output)."""
        missing = [n for n in needles if not any(n in line for line in self.output)]
        deadline = time.monotonic() + timeout
        while missing:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"timed out waiting for {missing}:\n" + "".join(self.output[-60:]))
            if line is None:
                pytest.fail(f"exited before {missing}:\n" + "".join(self.output[-60:]))
            self.output.append(line)
            missing = [n for n in missing if n not in line]

    def wait_for_count(self, needle: str, count: int, timeout: float = STARTUP_TIMEOUT) -> None:
        """Block until ``needle`` has appeared on ``count`` lines."""
        deadline = time.monotonic() + timeout
        while sum(needle in line for line in self.output) < count:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"timed out waiting for {needle!r} x{count}:\n" + self.tail())
            if line is None:
                pytest.fail(f"exited before {needle!r} x{count}:\n" + self.tail())
            self.output.append(line)

    def tail(self) -> str:
        return "".join(self.output[-60:])

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise
        while (line := self.lines.get(timeout=10)) is not None:
            self.output.append(line)
        return code


@pytest.fixture
def supervisor_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    yield {
        "DATABASE_URL": f"sqlite:///{tmp_path}/slaboard.sqlite3",
        "PORT": str(free_port()),
        "CHANNEL_PREFIX": f"test-run-{os.getpid()}",
    }


def test_the_run_command_starts_everything_and_stops_it_on_ctrl_c(
    supervisor_env: dict[str, str],
) -> None:
    redis_port = free_port()  # nothing answers there: the command must start its own Redis
    env = {**supervisor_env, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"}
    run = Supervisor(env)
    try:
        run.wait_for(
            "Empty database: loading the demo organisation",
            f"starting a local redis-server on port {redis_port}",
            "Demo login: alice / " + DEMO_PASSWORD,
            "Listening on TCP address",
            "realtime@",  # one Celery worker per queue
            "background@",
            "beat: Starting",
            "sim |",  # the traffic simulator makes the demo move
        )
        run.wait_for_count("ready.", 2)
        base = f"http://127.0.0.1:{env['PORT']}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert response.read() == b"ok"
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        with opener.open(f"{base}/admin/login/", timeout=10) as response:
            page = response.read().decode()
        token = page.split('name="csrfmiddlewaretoken" value="')[1].split('"')[0]
        form = urlencode(
            {"csrfmiddlewaretoken": token, "username": "admin", "password": DEMO_PASSWORD}
        ).encode()
        request = urllib.request.Request(
            f"{base}/admin/login/?next=/admin/tickets/ticket/",
            data=form,
            headers={"Referer": f"{base}/admin/login/"},
        )
        with opener.open(request, timeout=30) as response:
            tickets_page = response.read().decode()
        assert "Select ticket to change" in tickets_page
        total = re.search(r"(\d+) tickets", tickets_page)
        assert total is not None and int(total.group(1)) >= 300  # the demo, plus simulated ones

        # A worker that dies (here: killed with its pool) is started again and comes back ready.
        started = next(line for line in run.output if "[slaboard] realtime started (pid" in line)
        pid = int(re.search(r"pid (\d+)", started).group(1))  # type: ignore[union-attr]
        os.killpg(pid, signal.SIGKILL)
        run.wait_for(
            f"realtime exited with code -{int(signal.SIGKILL)}; starting it again in 1 s.",
            "[slaboard] realtime restarted (pid",
        )
        run.wait_for_count("ready.", 3)
    finally:
        code = run.stop()
    output = "".join(run.output)
    assert code == 0, output[-3000:]
    assert "Stopping redis, web, realtime, background, beat and sim" in output
    # One access line per request, with its id (Daphne's own line and Django's repeat are off).
    assert len(re.findall(r"\[[0-9a-f]{16}\] GET /healthz 200 ", output)) == 1, output[-3000:]
    # Ctrl-C stops the children for good: nothing is restarted on the way out.
    assert "starting it again" not in output.split("Stopping redis")[1]
    assert "Stopped." in output
    assert "did not stop" not in output
    with pytest.raises(OSError):  # the Redis it started is gone with it
        socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()


def test_the_run_command_explains_a_redis_it_cannot_start(supervisor_env: dict[str, str]) -> None:
    env = {**supervisor_env, "REDIS_URL": "redis://127.0.0.2:1/0"}
    run = Supervisor(env)
    code = run.stop() if run.process.wait(timeout=120) is not None else -1
    output = "".join(run.output)
    assert code == 2
    assert "No Redis answers at redis://127.0.0.2:1/0" in output
    assert "which slaboard does not start for you" in output
