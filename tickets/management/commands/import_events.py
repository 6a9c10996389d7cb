"""``manage.py import_events FILE --mapping NAME``: import a CSV event-log export.

The work is in ``tickets.importer``; this reads ``now`` (once: ``--replay-as-of`` shifts the
file's times to it), checks the options, draws the progress bar on stderr and prints the
summary. See docs/import.md.
"""

from __future__ import annotations

import time
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from policies.timezones import is_valid_timezone
from tickets.importer import (
    BUILTIN_MAPPINGS,
    CHUNK_SIZE,
    ImportFileError,
    ImportStopped,
    MappingError,
    import_events,
    load_mapping,
)

BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Import a CSV event-log export (plain or .gz; one row per update of a ticket) as "
        "tickets, their events and SLA clocks. Re-running the same file adds nothing; an "
        "interrupted import continues where it stopped. See docs/import.md."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The export: a CSV file, optionally gzipped.")
        parser.add_argument(
            "--mapping",
            required=True,
            help=f"A built-in mapping ({', '.join(BUILTIN_MAPPINGS)}) or the path of a JSON "
            "mapping file describing the export's columns.",
        )
        parser.add_argument(
            "--partner",
            default=None,
            help="Partner owning the imported tickets, created if missing (default: the "
            "mapping's, 'ServiceNow import' for servicenow).",
        )
        parser.add_argument(
            "--timezone",
            dest="zone",
            default="UTC",
            help="IANA zone of times written without one in the file (default UTC).",
        )
        parser.add_argument(
            "--chunk-size",
            type=int,
            default=CHUNK_SIZE,
            help=f"Tickets per transaction (default {CHUNK_SIZE}).",
        )
        parser.add_argument(
            "--replay-as-of",
            dest="replay_as_of",
            default=None,
            metavar="INSTANT",
            help="Replay an old log on the live board: shift every time so that INSTANT (e.g. "
            '"2016-04-15 10:00", read in --timezone) is now, and leave out the rows after it. '
            "What was open then is open now. Meant for a fresh database or a demo.",
        )

    def handle(
        self,
        *args: Any,
        file: str,
        mapping: str,
        partner: str | None,
        zone: str,
        chunk_size: int,
        replay_as_of: str | None = None,
        **options: Any,
    ) -> None:
        now = timezone.now()
        if chunk_size < 1:
            raise CommandError("--chunk-size must be 1 or more.")
        if not is_valid_timezone(zone):
            raise CommandError(
                f"Unknown time zone {zone!r} for --timezone: use an IANA name such as Europe/Paris."
            )
        as_of = None if replay_as_of is None else parse_instant(replay_as_of, ZoneInfo(zone))
        if partner is not None and not partner.strip():
            raise CommandError("--partner must not be empty.")
        try:
            column_mapping = load_mapping(mapping)
        except MappingError as exc:
            raise CommandError(str(exc)) from exc
        path = Path(file)
        if path.is_dir():
            raise CommandError(f"{file} is a directory: give the export file itself.")
        if not path.is_file():
            raise CommandError(f"No such file: {file}.")
        self._bar_started = time.monotonic()
        self._bar_step = -1
        try:
            report = import_events(
                path,
                mapping=column_mapping,
                now=now,
                zone=ZoneInfo(zone),
                partner_name=partner.strip() if partner else None,
                chunk_size=chunk_size,
                progress=self._progress,
                replay_as_of=as_of,
            )
        except (ImportFileError, ImportStopped) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(report.summary())

    def _progress(self, done: int, total: int) -> None:
        """A progress bar on stderr: redrawn in place on a terminal, every 10 % otherwise."""
        fraction = done / total if total else 1.0
        tty = self.stderr.isatty()
        step = int(fraction * 10)
        if not tty and step == self._bar_step and done != total:
            return
        self._bar_step = step
        filled = int(fraction * BAR_WIDTH)
        elapsed = time.monotonic() - self._bar_started
        line = (
            f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:,}/{total:,} tickets "
            f"{fraction:4.0%} {elapsed:5.1f} s"
        )
        if tty:
            self.stderr.write("\r" + line, ending="\n" if done == total else "")
            self.stderr.flush()
        else:
            self.stderr.write(line)


def parse_instant(text: str, zone: tzinfo) -> datetime:
    """``--replay-as-of``: ISO 8601 (``2016-04-15 10:00``, ``2016-04-15T10:00:00+02:00``,
    ``2016-04-15``); without an offset it is read in ``zone``."""
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f'--replay-as-of {text!r} is not a time: write it like "2016-04-15 10:00" '
            "(ISO 8601, read in --timezone unless it has an offset)."
        ) from None
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=zone)
