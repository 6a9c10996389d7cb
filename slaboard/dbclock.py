"""The database's clock: the one notion of "now" that every process of a deployment shares.

Hosts' clocks drift, and a worker whose clock ran 180 s ahead once moved 191 SLA clocks into
their next colour before their instant and pushed the tick's watermark three minutes into the
future (issue #16). The minute tick therefore takes ``now`` from PostgreSQL
(``statement_timestamp()``: the start of the statement, by the database server's clock), not
from the worker it happens to run on. SQLite runs in this very process, so its clock is ours.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.db import connection
from django.utils import timezone

#: A process whose clock differs from the database's by more than this says so in its log
#: (the tick) and in the readiness check (web processes).
CLOCK_SKEW_WARNING_SECONDS = 2.0


def database_now() -> datetime:
    """Now by the database server's clock (UTC, aware); this process's clock on SQLite."""
    if connection.vendor != "postgresql":
        return timezone.now()
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement_timestamp()")
        row = cursor.fetchone()
    assert row is not None
    value: datetime = row[0]
    return value.astimezone(UTC)


def clock_offset(database: datetime, local: datetime) -> float:
    """Seconds this process's clock is ahead of the database's (negative: behind)."""
    return (local - database).total_seconds()
