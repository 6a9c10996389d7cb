from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from policies.actions import rebuild_clocks


class Command(BaseCommand):
    help = "Recompute SLA clocks from ticket events and the current policies."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--ticket", type=int, action="append", dest="tickets", help="Ticket id (repeatable)."
        )

    def handle(self, *args: Any, tickets: list[int] | None, **options: Any) -> None:
        now = timezone.now()
        report = rebuild_clocks(now=now, ticket_ids=tickets)
        self.stdout.write(
            f"rebuild_clocks: {report.created} created, {report.updated} updated, "
            f"{report.deleted} deleted ({'nothing differed' if not report.changed else 'fixed'})."
        )
