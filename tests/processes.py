"""Real processes for tests: start with merged output, read lines with a deadline, stop.

Also a throwaway ``redis-server`` a test may stop and start again (never the shared one).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slaboard.settings import BASE_DIR

CELERY = [sys.executable, "-m", "celery", "-A", "slaboard"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """A child process whose merged output is read line by line on a thread.

    ``fatal``: text that ends any wait at once with a failure (say, "Unrecoverable error").
    """

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        *,
        cwd: Path = BASE_DIR,
        fatal: tuple[str, ...] = (),
    ) -> None:
        self.argv = argv
        self.fatal = fatal
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, *needles: str, after: int = 0, timeout: float = 60) -> int:
        """Wait for a line (index >= ``after``) containing every needle; return its index."""
        needle = " … ".join(needles)
        deadline = time.monotonic() + timeout
        while True:
            for index in range(after, len(self.output)):
                if all(n in self.output[index] for n in needles):
                    return index
            after = max(after, len(self.output))
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"timed out waiting for {needle!r}:\n" + self.tail())
            if line is None:
                pytest.fail(f"{self.argv[:4]} exited before {needle!r}:\n" + self.tail())
            self.output.append(line)
            if any(text in line for text in self.fatal):
                pytest.fail(f"{line.strip()} (waiting for {needle!r}):\n" + self.tail())

    def drain(self) -> None:
        """Collect what is already written (the process may still run)."""
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return
            if line is None:
                return
            self.output.append(line)

    def tail(self, lines: int = 80) -> str:
        return "".join(self.output[-lines:])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the process (it stops its own children), then kill its group if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.drain()
        return self.process.returncode


class RedisServer:
    """A private, in-memory ``redis-server`` on its own port, to stop and start at will."""

    def __init__(self, port: int | None = None) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is not installed (apt install redis-server)")
        self.server = server
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None

    def start(self) -> None:
        argv = [self.server, "--bind", "127.0.0.1", "--port", str(self.port)]
        argv += ["--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction"]
        self.process = Process(argv, env=dict(os.environ))
        self.process.wait_for("Ready to accept connections", timeout=30)

    def stop(self) -> None:
        """Stop the server as a restart would (its data is gone, like an in-memory Redis)."""
        if self.process is not None:
            self.process.stop(signal.SIGTERM)
            self.process = None
