"""Run the whole product locally: `python -m slaboard.run` (what `make run` calls).

Migrates, seeds the demo once, makes sure Redis answers (starting a local redis-server if one is
installed), then starts the web server (ASGI, with websockets), one Celery worker per queue
(``realtime``: the tick and publishing; ``background``: notification delivery and re-syncs),
exactly one Celery beat and the traffic simulator (unless SIMULATE=0), prefixes their output,
and stops all of them cleanly on Ctrl-C.

A worker, the beat or the simulator that dies is started again after a back-off (1 s, doubling
to 30 s; back to 1 s once it has run for a minute), with a line saying so. The web server and
the Redis started here are not: if one of them dies, everything stops and the exit code says so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
STOP_GRACE_SECONDS = 10
#: A restartable child that died waits this long before starting again, doubling each time...
RESTART_BACKOFF_FIRST = 1.0
#: ...up to this...
RESTART_BACKOFF_MAX = 30.0
#: ...and back to the first wait once it has run this long.
RESTART_BACKOFF_RESET_AFTER = 60.0
#: Prefix width of the children's output (`realtime | …`).
NAME_WIDTH = 10


@dataclass
class Child:
    name: str
    argv: list[str]
    #: Start it again when it dies (workers, beat, simulator), rather than stopping everything.
    restart: bool = False
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = field(default=None, repr=False)
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = RESTART_BACKOFF_FIRST
    #: When a dead restartable child is due to start again (None while it runs).
    restart_at: float | None = None


def worker_argv(queue: str, *, concurrency: int, loglevel: str = "INFO") -> list[str]:
    """The command of one Celery worker consuming one queue (docs/deployment.md has the same).

    Gossip and mingle are off: slaboard uses neither (no remote control, no revoked-task
    sync), they cost a second at start-up, and gossip logs an error on every broker outage.
    """
    return [
        *[PYTHON, "-m", "celery", "-A", "slaboard", "worker"],
        *["--queues", queue, "--hostname", f"{queue}@%h", "--concurrency", str(concurrency)],
        *["--loglevel", loglevel, "--without-gossip", "--without-mingle"],
    ]


def say(message: str) -> None:
    print(f"[slaboard] {message}", flush=True)


def manage(*args: str) -> None:
    subprocess.run([PYTHON, "manage.py", *args], cwd=BASE_DIR, check=True)


def redis_answers(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def ensure_redis(url: str) -> Child | None:
    """Return a child running a local redis-server if none answers at ``url``."""
    if redis_answers(url):
        say(f"Redis answers at {url}.")
        return None
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 6379
    local = host in {"127.0.0.1", "localhost", "::1"}
    server = shutil.which("redis-server")
    if not local or server is None:
        hint = (
            "Install it (Debian/Ubuntu: sudo apt install redis-server; macOS: brew install redis) "
            "and run `make run` again, or point REDIS_URL at a running Redis."
        )
        if not local:
            hint = f"REDIS_URL points at {host}, which slaboard does not start for you."
        say(f"No Redis answers at {url}. {hint}")
        raise SystemExit(2)
    say(f"No Redis at {url}: starting a local redis-server on port {port} (kept in memory).")
    child = Child(
        "redis",
        [
            server,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxmemory-policy",
            "noeviction",
        ],
    )
    start(child)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if redis_answers(url):
            return child
        if child.process is not None and child.process.poll() is not None:
            break
        time.sleep(0.1)
    stop_all([child])
    say("redis-server did not come up; see its output above.")
    raise SystemExit(2)


def _pump(child: Child, process: subprocess.Popen[bytes]) -> None:
    assert process.stdout is not None
    prefix = f"{child.name:>{NAME_WIDTH}} | "
    for raw in iter(process.stdout.readline, b""):
        sys.stdout.write(prefix + raw.decode(errors="replace"))
        sys.stdout.flush()


def start(child: Child) -> None:
    process = subprocess.Popen(
        child.argv,
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
    )
    child.process = process
    child.started_at = time.monotonic()
    child.restart_at = None
    child.reader = threading.Thread(target=_pump, args=(child, process), daemon=True)
    child.reader.start()


def supervise(child: Child, now: float) -> str | None:
    """Look after one child; return why everything must stop, or None.

    A restartable child that exited is scheduled to start again after its back-off, and
    started when that has passed; any other child that exited stops the whole product.
    """
    assert child.process is not None
    if child.restart_at is not None:
        if now >= child.restart_at:
            child.restarts += 1
            start(child)
            say(f"{child.name} restarted (pid {child.process.pid}, restart {child.restarts}).")
        return None
    code = child.process.poll()
    if code is None:
        return None
    if not child.restart:
        return f"{child.name} exited with code {code}; stopping the rest."
    if child.reader is not None:
        child.reader.join(timeout=2)  # its last words before ours
    if now - child.started_at >= RESTART_BACKOFF_RESET_AFTER:
        child.backoff = RESTART_BACKOFF_FIRST
    wait = child.backoff
    child.backoff = min(child.backoff * 2, RESTART_BACKOFF_MAX)
    child.restart_at = now + wait
    say(f"{child.name} exited with code {code}; starting it again in {wait:g} s.")
    return None


def stop_all(children: list[Child]) -> None:
    running = [c for c in children if c.process is not None and c.process.poll() is None]
    for child in reversed(running):
        assert child.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for child in running:
        assert child.process is not None
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop within {STOP_GRACE_SECONDS} s; killing it.")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait()
    for child in children:
        if child.reader is not None:
            child.reader.join(timeout=2)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slaboard.settings")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    (BASE_DIR / "var").mkdir(exist_ok=True)
    # Metrics of every process started here, summed by the web's /metrics (prometheus-client's
    # multiprocess mode): one directory, emptied at each start.
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = BASE_DIR / "var" / "metrics"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")

    import django

    django.setup()
    from django.conf import settings

    from slaboard.demo import DEMO_PASSWORD
    from tickets.models import Partner

    say(
        f"Database: {settings.DATABASES['default']['NAME']} ({settings.DATABASE_URL.split(':')[0]})"
    )
    manage("migrate", "--no-input", "-v", "0")
    if not Partner.objects.exists():
        say("Empty database: loading the demo organisation (once).")
        manage("seed_demo")

    children: list[Child] = []
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    redis_child = ensure_redis(settings.REDIS_URL)
    if redis_child is not None:
        children.append(redis_child)

    celery = [PYTHON, "-m", "celery", "-A", "slaboard"]
    beat_schedule = str(BASE_DIR / "var" / "beat")
    children += [
        Child("web", [PYTHON, "manage.py", "runserver", "--noreload", f"{host}:{port}"]),
        # One worker per queue, so a slow webhook receiver never delays the tick (settings).
        Child("realtime", worker_argv("realtime", concurrency=2), restart=True),
        Child("background", worker_argv("background", concurrency=2), restart=True),
        # Exactly one beat, here and only here (never `worker -B`).
        Child(
            "beat",
            [*celery, "beat", "--loglevel", "INFO", "--schedule", beat_schedule],
            restart=True,
        ),
    ]
    if os.environ.get("SIMULATE", "1") not in {"0", "false", "no"}:
        # Demo traffic so the boards move while someone watches (SIMULATE=0 turns it off).
        children.append(Child("sim", [PYTHON, "manage.py", "simulate"], restart=True))
    for child in children:
        if child.process is None:
            start(child)
            assert child.process is not None
            say(f"{child.name} started (pid {child.process.pid}).")

    url_host = "localhost" if host in {"127.0.0.1", "0.0.0.0"} else host
    say(f"slaboard is starting at http://{url_host}:{port}/  (wall board: /boards/all/)")
    say(
        f"Demo login: alice / {DEMO_PASSWORD} (support manager; agents bob and chen, partner "
        f"users nina and diego, admin for the admin at http://{url_host}:{port}/admin/)"
    )
    say("Press Ctrl-C to stop everything.")

    exit_code = 0
    while not stopping.is_set():
        for child in children:
            reason = supervise(child, time.monotonic())
            if reason is not None:
                say(reason)
                exit_code = 1
                stopping.set()
                break
        stopping.wait(0.5)
    names = [c.name for c in children]
    say("Stopping " + ", ".join(names[:-1]) + " and " + names[-1] + "…")
    stop_all(children)
    say("Stopped.")
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
