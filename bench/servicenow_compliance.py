"""SLA compliance of an imported ServiceNow log, per priority, from the database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/slaboard_impbench \\
        .venv/bin/python bench/servicenow_compliance.py [--source servicenow]

Run it after ``bench/bench_import.py`` (or any ``import_events``). For the tickets of SOURCE it
prints, per ticket priority (the ticket's last priority, as the board groups them), the
first-response and resolution clocks met on time and breached, compliance = met on time /
(met on time + breached), and the clocks that ended without a verdict (stopped, never breached):
first response per priority, and the total per metric. It only reads; the before/after figures
of ``docs/import.md`` came from it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slaboard.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/slaboard_impbench")


def main() -> None:
    parser = argparse.ArgumentParser(description="Per-priority compliance of imported tickets")
    parser.add_argument("--source", default="servicenow")
    args = parser.parse_args()

    import django

    django.setup()
    from django.db.models import Count, Q

    from policies.models import ClockStatus, Metric, SLAClock
    from tickets.models import Priority

    clocks = SLAClock.objects.filter(ticket__source=args.source)
    breached = Q(breached_at__isnull=False)
    rows = clocks.values("metric", "ticket__priority").annotate(
        n_on_time=Count("pk", filter=Q(status=ClockStatus.MET) & ~breached),
        n_breached=Count("pk", filter=breached),
        n_stopped=Count("pk", filter=Q(status=ClockStatus.STOPPED) & ~breached),
    )
    table = {(r["metric"], r["ticket__priority"]): r for r in rows}

    def cell(metric: str, priority: str) -> str:
        row = table.get((metric, priority))
        if row is None or not row["n_on_time"] + row["n_breached"]:
            return "–"
        met, late = row["n_on_time"], row["n_breached"]
        return f"{100 * met / (met + late):.1f} % ({met:,} / {met + late:,})"

    def stopped(metric: str, priority: str) -> str:
        row = table.get((metric, priority))
        return f"{row['n_stopped']:,}" if row else "0"

    print(f"Clocks of the {clocks.values('ticket').distinct().count():,} {args.source!r} tickets")
    print("| priority | first response | … ended without a verdict | resolution |")
    print("|---|---|---|---|")
    for priority, label in Priority.choices:
        first = cell(Metric.FIRST_RESPONSE, priority)
        resolution = cell(Metric.RESOLUTION, priority)
        print(f"| {label} | {first} | {stopped(Metric.FIRST_RESPONSE, priority)} | {resolution} |")
    for metric, label in Metric.choices:
        total = sum(r["n_stopped"] for (m, _), r in table.items() if m == metric)
        print(f"{label}: {total:,} clocks ended without a verdict (stopped, never breached)")


if __name__ == "__main__":
    main()
