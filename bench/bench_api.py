"""Events per second through the ingestion API, single calls and the bulk endpoint.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/slaboard_bench_api \\
        .venv/bin/python bench/bench_api.py [--tickets 200] [--events-per-ticket 10]

Runs the real Django stack in process (Django's test client: URL routing, token auth, rate
limiting in Redis, validation, actions, SLA clock re-sync, publish scheduling) on PostgreSQL;
no HTTP server, so the figures are the application's cost per event. Bounded, loopback only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slaboard.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/slaboard_bench_api")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/11")
os.environ["ALLOWED_HOSTS"] = "testserver"  # Django test client host


def ensure_database() -> None:
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(os.environ["DATABASE_URL"])
    if parts.scheme not in {"postgres", "postgresql"}:
        sys.exit("bench_api needs PostgreSQL: set DATABASE_URL=postgres://...")
    name = parts.path.lstrip("/")
    with psycopg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description="API events per second")
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--events-per-ticket", type=int, default=10)
    parser.add_argument("--single", type=int, default=300, help="single-event calls to time")
    args = parser.parse_args()
    ensure_database()

    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.utils import timezone

    from slaboard.demo import seed_demo
    from tickets.models import ApiToken

    call_command("migrate", verbosity=0)
    now = timezone.now()
    seed_demo(now=now, tickets=0)
    secret = ApiToken.issue(name="bench", requests_per_minute=10**9)[1]
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    opened = now - timedelta(hours=6)

    def event_list(count: int, start: float) -> list[dict[str, object]]:
        kinds = ["replied", "status_changed", "status_changed", "plan_sent", "note"]
        events: list[dict[str, object]] = []
        for i in range(count):
            kind = kinds[i % len(kinds)]
            event: dict[str, object] = {
                "kind": kind,
                "at": (opened + timedelta(minutes=start + i)).isoformat(),
                "external_id": f"e{start:.2f}-{i}",
            }
            if kind == "status_changed":
                event["status"] = "waiting_on_customer" if i % 2 else "open"
            events.append(event)
        return events

    # Bulk: create tickets and their events through /batch, 50 tickets per call.
    per_call = 50
    bulk_times = []
    total_events = 0
    for call in range(0, args.tickets, per_call):
        items = [
            {
                "source": "bench",
                "external_id": f"B-{n}",
                "ticket": {
                    "partner": "Acme Managed Services",
                    "subject": f"Bench ticket {n}",
                    "priority": ["critical", "high", "medium", "low"][n % 4],
                    "opened_at": opened.isoformat(),
                },
                "events": event_list(args.events_per_ticket, 1),
            }
            for n in range(call, min(call + per_call, args.tickets))
        ]
        started = time.perf_counter()
        response = client.post("/api/v1/batch", {"items": items}, content_type="application/json")
        bulk_times.append(time.perf_counter() - started)
        body = response.json()
        assert response.status_code == 200 and body["failed"] == 0, body
        total_events += sum(item["events"] for item in body["items"])
    bulk_seconds = sum(bulk_times)

    # Single: one event per call on existing tickets.
    single_times = []
    for i in range(args.single):
        ticket = f"B-{i % args.tickets}"
        started = time.perf_counter()
        response = client.post(
            f"/api/v1/tickets/bench/{ticket}/events",
            {"events": event_list(1, 20 + i / 100)},
            content_type="application/json",
        )
        single_times.append(time.perf_counter() - started)
        assert response.status_code == 200, response.content

    print(f"PostgreSQL, {args.tickets} tickets × {args.events_per_ticket} events, 2 cores")
    print("| path | events | seconds | events/s | per call p50 ms |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| bulk /batch ({per_call} tickets + {per_call * args.events_per_ticket} events a call) "
        f"| {total_events} | {bulk_seconds:.1f} | {total_events / bulk_seconds:.0f} "
        f"| {statistics.median(bulk_times) * 1000:.0f} |"
    )
    print(
        f"| single /events (1 event a call) | {args.single} | {sum(single_times):.1f} "
        f"| {args.single / sum(single_times):.0f} | {statistics.median(single_times) * 1000:.1f} |"
    )


if __name__ == "__main__":
    main()
