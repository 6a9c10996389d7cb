"""Time the import of the whole ServiceNow incident log, clocks included, on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/slaboard_impbench \\
        .venv/bin/python bench/bench_import.py [--log PATH] [--rerun] [--business-hours]

Drops and recreates the database named in DATABASE_URL, migrates, loads the demo policies and
calendars (no demo tickets), then runs ``manage.py import_events LOG --mapping servicenow``
in process and prints rows / tickets / events / clocks / skipped rows / seconds. ``--rerun``
also times a second run of the same file (which must add nothing). ``--business-hours`` gives
the import's partner the demo's Paris business-hours calendar, so the non-critical clocks run
on business time with holidays instead of 24×7. The log is the UCI dataset 498 export kept in
``../shared/data`` (docs/import.md); the product never needs it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from io import StringIO
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slaboard.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/slaboard_impbench")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("CHANNEL_PREFIX", "slaboard-impbench")
DEFAULT_LOG = ROOT.parent / "shared" / "data" / "servicenow-incident-event-log.csv.gz"


def ensure_database() -> None:
    from urllib.parse import urlsplit

    import psycopg

    parts = urlsplit(os.environ["DATABASE_URL"])
    if parts.scheme not in {"postgres", "postgresql"}:
        sys.exit("bench_import needs PostgreSQL: set DATABASE_URL=postgres://...")
    name = parts.path.lstrip("/")
    with psycopg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
        autocommit=True,
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def run_import(log: Path) -> tuple[float, str]:
    from django.core.management import call_command

    out = StringIO()
    started = time.perf_counter()
    call_command("import_events", str(log), "--mapping", "servicenow", stdout=out)
    return time.perf_counter() - started, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description="Time the full ServiceNow import")
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG)
    parser.add_argument("--rerun", action="store_true", help="also time a second, no-op run")
    parser.add_argument(
        "--business-hours", action="store_true", help="partner on Paris business hours"
    )
    args = parser.parse_args()
    if not args.log.is_file():
        sys.exit(f"No log at {args.log}: pass --log PATH (see docs/import.md).")
    ensure_database()

    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from policies.models import Calendar, SLAClock
    from slaboard.demo import seed_demo
    from tickets.models import Partner, Ticket, TicketEvent

    call_command("migrate", verbosity=0)
    seed_demo(now=timezone.now(), tickets=0)
    if args.business_hours:
        Partner.objects.create(
            name="ServiceNow import",
            default_calendar=Calendar.objects.get(name="Paris business hours"),
        )

    seconds, summary = run_import(args.log)
    print(summary)
    rows = summary.split("Rows: ", 1)[1].split(" read", 1)[0]
    skipped = summary.split(" used, ", 1)[1].split(" skipped", 1)[0]
    print(
        f"full import: {rows} rows, {Ticket.objects.count():,} tickets, "
        f"{TicketEvent.objects.count():,} events, {SLAClock.objects.count():,} clocks, "
        f"{skipped} skipped rows in {seconds:.1f} s "
        f"({'Paris business hours' if args.business_hours else '24×7'} partner calendar)"
    )
    if args.rerun:
        before = (Ticket.objects.count(), TicketEvent.objects.count(), SLAClock.objects.count())
        seconds, summary = run_import(args.log)
        after = (Ticket.objects.count(), TicketEvent.objects.count(), SLAClock.objects.count())
        print(summary.splitlines()[2])
        print(f"re-run: {seconds:.1f} s, {'nothing added' if before == after else 'CHANGED'}")


if __name__ == "__main__":
    main()
