"""N concurrent API clients against two uvicorn worker processes: throughput, latency, errors
and the PostgreSQL connections the server used.

    DATABASE_URL=postgres://postgres@127.0.0.1:5440/slaboard_bench_load \\
        .venv/bin/python bench/bench_load.py [--clients 50 200] [--seconds 20] [--pool-max 10]

Point DATABASE_URL at a PostgreSQL you may saturate (its own cluster, not a shared server: an
unpooled run opens a connection per client and others get "too many clients"). The script
drops and creates the database, migrates, seeds the demo (300 tickets), issues an API token,
starts `uvicorn slaboard.asgi:application --workers 2` (as in production, with the
DB_POOL_* settings given), then for each client count runs that many threads for --seconds,
each with a keep-alive connection looping over a mix of calls: 60 % list tickets (a page of
20), 30 % read one ticket with its clocks, 10 % record an event (a note: a write, a clock
re-sync, a publish scheduled in Redis). A sampler counts the server's connections in
pg_stat_activity every 100 ms. The load generator shares the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/slaboard_bench_load"


def free_port(first: int = 18100, last: int = 18199) -> int:
    for port in range(first, last + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    sys.exit(f"no free port in {first}-{last}")


def admin_dsn(database_url: str) -> str:
    parts = urlsplit(database_url)
    return parts._replace(path="/postgres").geturl().replace("postgres://", "postgresql://", 1)


def prepare(env: dict[str, str]) -> tuple[str, list[tuple[str, str]]]:
    """Fresh database, migrated and seeded; return an API token and the tickets' keys."""
    import psycopg

    name = urlsplit(env["DATABASE_URL"]).path.lstrip("/")
    with psycopg.connect(admin_dsn(env["DATABASE_URL"]), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    code = (
        "import json, django; django.setup()\n"
        "from django.core.management import call_command\n"
        "from django.utils import timezone\n"
        "from tickets.demo import seed_demo\n"
        "from tickets.models import ApiToken, Ticket\n"
        "call_command('migrate', verbosity=0)\n"
        "seed_demo(now=timezone.now())\n"
        "secret = ApiToken.issue(name='bench', requests_per_minute=10**9)[1]\n"
        "keys = list(Ticket.objects.values_list('source', 'external_id'))\n"
        "print(json.dumps({'token': secret, 'keys': keys}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if result.returncode != 0:
        sys.exit(result.stderr)
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return data["token"], [tuple(key) for key in data["keys"]]


class Sampler(threading.Thread):
    """Counts the connections to the bench database every 100 ms; keeps the maximum."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.database_url = database_url
        self.name_ = urlsplit(database_url).path.lstrip("/")
        self.max = 0
        self.stopped = threading.Event()

    def reset(self) -> None:
        self.max = 0

    def run(self) -> None:
        import psycopg

        with psycopg.connect(admin_dsn(self.database_url), autocommit=True) as conn:
            while not self.stopped.wait(0.1):
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [self.name_]
                ).fetchone()
                self.max = max(self.max, int(row[0]) if row else 0)


class Client(threading.Thread):
    def __init__(
        self, port: int, token: str, keys: list[tuple[str, str]], until: float, seed: int
    ) -> None:
        super().__init__(daemon=True)
        self.port, self.token, self.keys, self.until = port, token, keys, until
        self.rng = random.Random(seed)
        self.latencies: list[float] = []
        self.outcomes: Counter[str] = Counter()

    def call(self, conn: http.client.HTTPConnection) -> str:
        roll = self.rng.random()
        source, external_id = self.rng.choice(self.keys)
        headers = {"Authorization": f"Bearer {self.token}"}
        body = None
        if roll < 0.6:
            method, path = "GET", "/api/v1/tickets?limit=20"
        elif roll < 0.9:
            method, path = "GET", f"/api/v1/tickets/{source}/{external_id}"
        else:
            method, path = "POST", f"/api/v1/tickets/{source}/{external_id}/events"
            event = {"kind": "note", "at": datetime.now(UTC).isoformat(), "text": "bench"}
            body = json.dumps({"events": [event]})
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        response.read()
        return str(response.status)

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while time.monotonic() < self.until:
            started = time.perf_counter()
            try:
                outcome = self.call(conn)
            except (OSError, http.client.HTTPException) as error:
                outcome = type(error).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.latencies.append(time.perf_counter() - started)
            self.outcomes[outcome] += 1
        conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--pool-max", default="10", help="DB_POOL_MAX (0: no pool)")
    parser.add_argument("--pool-timeout", default="5", help="DB_POOL_TIMEOUT, seconds")
    args = parser.parse_args()

    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "slaboard.settings",
        "DATABASE_URL": os.environ.get("DATABASE_URL", DEFAULT_DB),
        "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/11"),
        "DEBUG": "0",
        "SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback
        "SECRET_KEY": "bench-" + "x" * 50,
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
        "DB_POOL_MAX": args.pool_max,
        "DB_POOL_TIMEOUT": args.pool_timeout,
    }
    token, keys = prepare(env)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "slaboard.asgi:application", "--host", "127.0.0.1"]
        + ["--port", str(port), "--workers", str(args.workers), "--lifespan", "off"]
        + ["--no-access-log", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        start_new_session=True,
    )
    sampler = Sampler(env["DATABASE_URL"])
    sampler.start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("uvicorn did not start")
                time.sleep(0.2)  # waiting for the server to listen, with a deadline

        import psycopg

        with psycopg.connect(admin_dsn(env["DATABASE_URL"])) as conn_pg:
            row = conn_pg.execute("SHOW max_connections").fetchone()
        pool = f"pool max {args.pool_max}/process" if args.pool_max != "0" else "no pool"
        print(
            f"{args.workers} uvicorn processes, {pool} (timeout {args.pool_timeout} s), "
            f"PostgreSQL max_connections {row[0] if row else '?'}, {os.cpu_count()} cores "
            f"shared with the load generator, {args.seconds:g} s per run"
        )
        print("| clients | requests | req/s | p50 ms | p99 ms | max ms | answers | max DB conns |")
        print("|---:|---:|---:|---:|---:|---:|---|---:|")
        for count in args.clients:
            sampler.reset()
            started = time.monotonic()
            until = started + args.seconds
            clients = [Client(port, token, keys, until, seed) for seed in range(count)]
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            elapsed = time.monotonic() - started
            latencies = [x for c in clients for x in c.latencies]
            outcomes: Counter[str] = Counter()
            for client in clients:
                outcomes.update(client.outcomes)
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(outcomes.items()))
            print(
                f"| {count} | {len(latencies)} | {len(latencies) / elapsed:.0f} "
                f"| {statistics.median(latencies) * 1000:.0f} "
                f"| {percentile(latencies, 0.99) * 1000:.0f} | {max(latencies) * 1000:.0f} "
                f"| {answers} | {sampler.max} |",
                flush=True,
            )
    finally:
        sampler.stopped.set()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
