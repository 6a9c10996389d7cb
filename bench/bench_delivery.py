"""Notification delivery against a slow webhook receiver: how long N notifications take at
each concurrency, and how many sends the receiver had open at once.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/slaboard_bench_delivery \\
        .venv/bin/python bench/bench_delivery.py [--count 400] [--delay 1] [--concurrency 1 8 16]

The script drops and creates the database, migrates, opens --count breached tickets with one
webhook rule pointing at a local receiver that answers after --delay seconds, runs the tick
(one notification row per ticket), then for each concurrency resets the rows to pending and
delivers them all as the delivery task does (``deliver_due(concurrency=c)`` until none is
due), timing it. The receiver counts the connections it has open at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/slaboard_bench_delivery"


class SlowReceiver:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.open = 0
        self.most_open = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.open += 1
                    receiver.most_open = max(receiver.most_open, receiver.open)
                time.sleep(receiver.delay)  # the slow receiver being measured
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                with receiver.lock:
                    receiver.open -= 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=400)
    parser.add_argument("--delay", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 16])
    args = parser.parse_args()
    database_url = os.environ.setdefault("DATABASE_URL", DEFAULT_DB)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slaboard.settings")
    os.environ.setdefault("DB_POOL_MAX", "0")

    import psycopg

    name = urlsplit(database_url).path.lstrip("/")
    admin = urlsplit(database_url)._replace(path="/postgres").geturl()
    with psycopg.connect(admin.replace("postgres://", "postgresql://", 1), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}"')
        c.execute(f'CREATE DATABASE "{name}"')

    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from policies.actions import reevaluate_due_clocks
    from policies.models import Metric, Notification, NotificationRule, Target
    from policies.notifications.deliver import deliver_due
    from tests.factories import make_always_calendar, make_partner, make_policy
    from tickets.actions import open_ticket

    call_command("migrate", verbosity=0)
    receiver = SlowReceiver(args.delay)
    now = timezone.now()
    opened = now - timedelta(hours=2)
    policy = make_policy(name="Bench")
    Target.objects.create(
        policy=policy,
        metric=Metric.FIRST_RESPONSE,
        duration=timedelta(hours=1),
        calendar=make_always_calendar(),
    )
    partner = make_partner(name="Bench partner")
    for n in range(args.count):
        open_ticket(partner_id=partner.pk, subject=f"Bench {n}", opened_at=opened, now=opened)
    reevaluate_due_clocks(now=opened)
    NotificationRule.objects.create(name="Slow hook", trigger="red", webhook_url=receiver.url)
    reevaluate_due_clocks(now=now)
    rows = Notification.objects.count()
    print(f"{rows} notifications, receiver answers after {args.delay:g} s", flush=True)
    print("| concurrency | notifications | seconds | per second | most open at receiver |")
    print("|---:|---:|---:|---:|---:|")
    for concurrency in args.concurrency:
        Notification.objects.update(status="pending", attempts=0, history=[], next_attempt_at=now)
        receiver.most_open = 0
        started = time.monotonic()
        done = 0
        per_call = 1 if concurrency == 1 else 4 * concurrency  # as the delivery task does
        while handled := deliver_due(now=timezone.now(), limit=per_call, concurrency=concurrency):
            done += handled
        seconds = time.monotonic() - started
        sent = Notification.objects.filter(status="sent").count()
        print(
            f"| {concurrency} | {sent}/{done} | {seconds:.1f} | {sent / seconds:.1f} "
            f"| {receiver.most_open} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
