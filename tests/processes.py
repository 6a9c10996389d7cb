"""Real processes for tests: start with merged output, read lines with a deadline, stop.

Also a throwaway ``redis-server`` a test may stop and start again (never the shared one).
"""

from __future__ import annotations

import glob
import os
import pwd
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


def free_web_port(first: int | None = None, last: int | None = None) -> int:
    """A free port in the range the project's tests and benchmarks use for web servers
    (18100-18199; ``SLABOARD_TEST_PORTS=18500-18599`` moves it, for parallel checkouts)."""
    low, _, high = os.environ.get("SLABOARD_TEST_PORTS", "18100-18199").partition("-")
    first = int(low) if first is None else first
    last = int(high) if last is None else last
    for port in range(first, last + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{last}")


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


def postgres_bin(name: str) -> str:
    """A PostgreSQL server program (``initdb``, ``pg_ctl``): on PATH, or Debian's directory."""
    found = shutil.which(name)
    if found is None:
        candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
        if not candidates:
            pytest.fail(f"{name} not found (apt install postgresql)")
        found = candidates[-1]
    return found


class PostgresServer:
    """A private PostgreSQL cluster (initdb in a temporary directory, its own port), to stop
    and start at will; never the shared server. PostgreSQL refuses to run as root, so as root
    the cluster belongs to the ``postgres`` user and its commands run through ``runuser``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="slaboard-pg-"))
        self.data = self.dir / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        initdb = [postgres_bin("initdb"), "-D", str(self.data), "-U", "postgres"]
        self._run(*initdb, "--auth=trust", "--encoding=UTF8", "--no-sync")

    def _run(self, *argv: str, check: bool = True) -> None:
        result = subprocess.run(
            [*self.as_user, *argv], capture_output=True, text=True, timeout=120, cwd=self.dir
        )
        if check and result.returncode != 0:
            pytest.fail(f"{' '.join(argv[:2])} failed:\n{result.stdout}{result.stderr}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.dir / "log")
        pg_ctl = postgres_bin("pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: clients are disconnected, as in a restart."""
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        """Stop the server if it runs and delete the cluster."""
        pg_ctl = postgres_bin("pg_ctl")
        self._run(pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
