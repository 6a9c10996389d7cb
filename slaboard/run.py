"""Run the whole product locally: `python -m slaboard.run` (what `make run` calls).

Migrates, seeds the demo once, makes sure Redis answers (starting a local redis-server if one is
installed), then starts the web server (ASGI, with websockets), one Celery worker, exactly one
Celery beat and the traffic simulator (unless SIMULATE=0), prefixes their output, and stops all
of them cleanly on Ctrl-C. If any of them dies, the others are stopped too and the exit code
says so.
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


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = field(default=None, repr=False)


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


def _pump(child: Child) -> None:
    assert child.process is not None and child.process.stdout is not None
    prefix = f"{child.name:>6} | "
    for raw in iter(child.process.stdout.readline, b""):
        sys.stdout.write(prefix + raw.decode(errors="replace"))
        sys.stdout.flush()


def start(child: Child) -> None:
    child.process = subprocess.Popen(
        child.argv,
        cwd=BASE_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
    )
    child.reader = threading.Thread(target=_pump, args=(child,), daemon=True)
    child.reader.start()


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
    children += [
        Child("web", [PYTHON, "manage.py", "runserver", "--noreload", f"{host}:{port}"]),
        Child("worker", [*celery, "worker", "--loglevel", "INFO", "--concurrency", "2"]),
        # Exactly one beat, here and only here (never `worker -B`).
        Child(
            "beat",
            [*celery, "beat", "--loglevel", "INFO", "--schedule", str(BASE_DIR / "var" / "beat")],
        ),
    ]
    if os.environ.get("SIMULATE", "1") not in {"0", "false", "no"}:
        # Demo traffic so the boards move while someone watches (SIMULATE=0 turns it off).
        children.append(Child("sim", [PYTHON, "manage.py", "simulate"]))
    for child in children:
        if child.process is None:
            start(child)

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
            assert child.process is not None
            code = child.process.poll()
            if code is not None:
                say(f"{child.name} exited with code {code}; stopping the rest.")
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
