from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from slaboard.demo import DEMO_PASSWORD, seed_demo


class Command(BaseCommand):
    help = "Create the demo organisation and a few hundred open tickets (safe to re-run)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tickets", type=int, default=300, help="How many demo tickets.")

    def handle(self, *args: Any, tickets: int, **options: Any) -> None:
        if tickets < 0:
            self.stderr.write("--tickets must be 0 or more.")
            raise SystemExit(2)
        report = seed_demo(now=timezone.now(), tickets=tickets)
        self.stdout.write(f"seed_demo: {report}.")
        if report.users:
            self.stdout.write(
                f"Demo logins, password {DEMO_PASSWORD}: alice (manager), bob and chen "
                "(agents), nina (Nordlicht IT agent), diego (Andes Soporte manager), admin."
            )
