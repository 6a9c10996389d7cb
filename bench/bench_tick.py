"""Benchmark the SLA minute tick: ``policies.actions.reevaluate_due_clocks``.

Run from the repository root (PostgreSQL only; the database is created if missing and
dropped at the end unless ``--keep``; results and findings: docs/bench-tick.md):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/slaboard_bench \\
        .venv/bin/python bench/bench_tick.py [--sizes 10000,100000,1000000] [--reps 3]
        [--keep] [--alternatives] [--ticks 10]

Workload, for each size N: N open tickets with 3 running clocks each (first response,
resolution plan, resolution), in the steady state the tick sees every minute. The previous
tick ran at ``PREVIOUS = NOW - 60 s`` (the ``TickWatermark``), and every clock's bucket,
``next_change_at`` and ``breached_at`` are what they were at that instant:

* 1 % of the clocks (every 100th in insertion order, so scattered over the whole heap) have
  an instant in ``(NOW - 60 s, NOW]``: a third turn yellow, a third orange, a third breach;
  the tick at ``NOW`` must move exactly these;
* another 1 % (every 100th, offset 50) had theirs in ``(NOW - 120 s, NOW - 60 s]``: the
  previous tick moved them already (``prepare`` really runs it, so their pages hold the dead
  row versions it left). They lie in the tick's lookback window too, so the tick reads,
  prunes and skips them as it would in production;
* the others turn yellow during one of the 99 minutes after ``NOW`` (a hash of the clock),
  so the ticks at ``NOW + 1 min``, ``NOW + 2 min``, ... each find another ~1 %.

Rows are loaded with server-side ``INSERT ... SELECT ... FROM generate_series``. Each
repetition starts from that same state (``prepare``: moved clocks and watermark reset, the
table re-clustered in load order, VACUUM ANALYZE, the previous tick, CHECKPOINT) and runs
the tick under ``CaptureQueriesContext`` (it must move exactly the due clocks), again with
the same ``now`` (it must move nothing) and once more a minute later. Then one scan checks,
from the stored instants, that each tick moved and wrote exactly the clocks whose bucket
changed and that every clock holds its bucket, next change and breach. The median of the
repetitions is reported with the query count, the CPU time of the PostgreSQL backend and of
Python (steadier than wall time when other processes share the machine), the WAL written
(the smallest of the repetitions: the server's other sessions can only add to it) and the
share of heap-only (HOT) updates. For the largest size the script also prints the tick's
queries and ``EXPLAIN (ANALYZE, BUFFERS, WAL)`` of its UPDATE in a rolled-back transaction;
``--alternatives`` times the same tick under other session settings or arguments;
``--ticks K`` runs K consecutive ticks a minute apart with nothing reset in between.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/slaboard_bench")
os.environ["DJANGO_SETTINGS_MODULE"] = "slaboard.settings"

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from policies.actions import reevaluate_due_clocks  # noqa: E402
from policies.models import SLAClock, TickWatermark  # noqa: E402
from tickets.models import Partner, Ticket, TicketEvent  # noqa: E402

# The bench instant, the previous tick's (the watermark every repetition starts from) and
# the one before (the state prepare() resets to before it runs the previous tick).
NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
PREVIOUS = NOW - timedelta(minutes=1)
EARLIER = PREVIOUS - timedelta(minutes=1)
LOADED_AT = datetime(2027, 3, 1, 11, 0, tzinfo=UTC)
CLOCKS_PER_TICKET = 3
DUE_EVERY = 100  # 1 % of the clocks are due at NOW, another 1 % moved at PREVIOUS

TICKETS = Ticket._meta.db_table
EVENTS = TicketEvent._meta.db_table
CLOCKS = SLAClock._meta.db_table
PARTNERS = Partner._meta.db_table
WATERMARK = TickWatermark._meta.db_table


# --- database setup ------------------------------------------------------------------------


def admin_conninfo() -> dict[str, Any]:
    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        sys.exit("bench_tick needs PostgreSQL: set DATABASE_URL=postgres://...")
    info: dict[str, Any] = {"dbname": "postgres", "autocommit": True}
    for key, name in (
        ("HOST", "host"),
        ("PORT", "port"),
        ("USER", "user"),
        ("PASSWORD", "password"),
    ):
        if db.get(key):
            info[name] = db[key]
    return info


def create_database() -> None:
    name = settings.DATABASES["default"]["NAME"]
    with psycopg.connect(**admin_conninfo()) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')
            print(f"created database {name}")
    call_command("migrate", verbosity=0, interactive=False)


def drop_database() -> None:
    name = settings.DATABASES["default"]["NAME"]
    connection.close()
    with psycopg.connect(**admin_conninfo()) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"dropped database {name}")


def execute(sql: str, params: dict[str, Any] | None = None) -> int:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def fetchall(sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def vacuum(*tables: str) -> None:
    # Django's connection is in autocommit mode outside atomic blocks: VACUUM is allowed.
    assert connection.get_autocommit()
    for table in tables:
        execute(f"VACUUM (ANALYZE) {table}")


# --- the expected state, computed independently of policies.actions ------------------------

# A running clock's bucket, next change and breach at instant T, from its stored instants.
BUCKET_AT = (
    "CASE WHEN due_at <= @ THEN 'red' WHEN orange_at <= @ THEN 'orange' "
    "WHEN yellow_at <= @ THEN 'yellow' ELSE 'green' END"
)
NEXT_AT = (
    "CASE WHEN due_at <= @ THEN NULL WHEN orange_at <= @ THEN due_at "
    "WHEN yellow_at <= @ THEN orange_at ELSE yellow_at END"
)
BREACHED_AT = "CASE WHEN due_at <= @ THEN due_at END"


def at(expr: str, param: str) -> str:
    """One of the expressions above at the instant bound to the query parameter ``param``."""
    return expr.replace("@", f"%({param})s")


STATE_AT_EARLIER = ", ".join(at(e, "earlier") for e in (BUCKET_AT, NEXT_AT, BREACHED_AT))


# --- load ----------------------------------------------------------------------------------

TICKET_SQL = f"""
INSERT INTO {TICKETS} (
    kind, priority, status, partner_id, customer_id, assignee_id, team, subject, source,
    external_id, opened_at, first_human_reply_at, plan_sent_at, resolved_at, closed_at,
    last_event_at, created_at, updated_at
)
SELECT
    (ARRAY['incident', 'service_request', 'lead', 'inquiry'])[1 + g %% 4],
    (ARRAY['critical', 'high', 'medium', 'low'])[1 + (g / 4) %% 4],
    (ARRAY['new', 'open'])[1 + g %% 2],
    %(partner)s, NULL, NULL, '',
    'Bench ticket ' || g,
    'bench',
    'T' || g,
    %(now)s - interval '1 minute' * (300 + g %% 1440),
    NULL, NULL, NULL, NULL,
    %(now)s - interval '1 minute' * (300 + g %% 1440),
    %(loaded)s, %(loaded)s
FROM generate_series(1, %(n)s) AS g
"""

# i = clock ordinal (0 .. 3N-1), j = i / 100. Clock i % 100 = 0 crosses an instant ("at") in
# (NOW - 60 s, NOW]; clock i % 100 = 50 crossed one in (NOW - 120 s, NOW - 60 s] (the previous
# tick moved it). Phase j % 3 says which instant "at" is: 0 yellow, 1 orange, 2 due; the other
# two lie an hour or more away. Every other clock (phase 3) turns yellow during minute
# r = 1 .. 99 after NOW, r a hash of i, so the ticks at NOW + 1 min, NOW + 2 min, ... (--ticks)
# each find another ~1 % due, on other heap pages than the previous tick's (as in real life).
# The bucket, next change and breach are those at EARLIER: prepare() runs the tick at
# PREVIOUS before every measurement.
CLOCK_SQL = f"""
INSERT INTO {CLOCKS} (
    ticket_id, metric, cycle, policy_id, target_id, started_at, pauses, met_at, stopped_at,
    status, due_at, yellow_at, orange_at, breached_at, bucket, next_change_at,
    remaining_seconds, updated_at
)
SELECT
    c.ticket_id, c.metric, 0, NULL, NULL, c.started_at, '[]'::jsonb, NULL, NULL,
    'running', c.due_at, c.yellow_at, c.orange_at, {at(BREACHED_AT, "earlier")},
    {at(BUCKET_AT, "earlier")}, {at(NEXT_AT, "earlier")}, NULL, %(loaded)s
FROM (
    SELECT
        t.id AS ticket_id,
        m.metric,
        CASE WHEN x.phase < 3 THEN x.at - interval '3 hours'
             ELSE %(now)s - interval '1 minute' * (1 + x.i %% 1440) END AS started_at,
        x.at + interval '1 minute' * (ARRAY[0, -60, -120, 0])[1 + x.phase] AS yellow_at,
        x.at + interval '1 minute' * (ARRAY[30, 0, -60, 60])[1 + x.phase] AS orange_at,
        x.at + interval '1 minute' * (ARRAY[60, 60, 0, 120])[1 + x.phase] AS due_at
    FROM {TICKETS} AS t
    CROSS JOIN (VALUES (0, 'first_response'), (1, 'resolution_plan'), (2, 'resolution'))
        AS m (k, metric)
    CROSS JOIN LATERAL (
        SELECT
            y.i,
            CASE WHEN y.i %% {DUE_EVERY} IN (0, {DUE_EVERY // 2}) THEN y.j %% 3 ELSE 3 END
                AS phase,
            CASE WHEN y.i %% {DUE_EVERY} = 0 THEN %(now)s - y.s
                 WHEN y.i %% {DUE_EVERY} = {DUE_EVERY // 2}
                     THEN %(now)s - interval '60 seconds' - y.s
                 ELSE %(now)s + interval '1 minute' * (1 + y.i * 2654435761 %% 4294967291 %% 99)
                      - interval '1 second' * (y.i %% 60) END AS at
        FROM (
            SELECT
                z.i,
                z.i / {DUE_EVERY} AS j,
                interval '1 millisecond' * (z.i / {DUE_EVERY} * 7919 %% 60000) AS s
            FROM (SELECT {CLOCKS_PER_TICKET} * (t.id - 1) + m.k AS i) AS z
        ) AS y
    ) AS x
    ORDER BY t.id, m.k
) AS c
"""

# Back to the state at EARLIER: the clocks the ticks moved (or any other difference).
RESET_SQL = f"""
UPDATE {CLOCKS}
SET (bucket, next_change_at, breached_at, updated_at) = ({STATE_AT_EARLIER}, %(loaded)s)
WHERE status = 'running'
  AND (bucket, next_change_at, breached_at, updated_at)
      IS DISTINCT FROM ({STATE_AT_EARLIER}, %(loaded)s)
"""


def load(n: int) -> dict[str, float]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    execute(f"TRUNCATE {TICKETS}, {EVENTS}, {CLOCKS} RESTART IDENTITY CASCADE")
    execute(
        f"INSERT INTO {PARTNERS} (name, tier, timezone, contact_emails, created_at, updated_at) "
        "VALUES ('Bench partner', 'silver', 'UTC', '', %(loaded)s, %(loaded)s) "
        "ON CONFLICT (name) DO NOTHING",
        {"loaded": LOADED_AT},
    )
    partner = fetchall(f"SELECT id FROM {PARTNERS} WHERE name = 'Bench partner'")[0][0]
    timings["truncate"] = time.perf_counter() - t0
    params = {"partner": partner, "now": NOW, "earlier": EARLIER, "loaded": LOADED_AT, "n": n}
    t0 = time.perf_counter()
    with transaction.atomic():
        execute(TICKET_SQL, params)
        timings["tickets"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        execute(CLOCK_SQL, params)
        timings["clocks"] = time.perf_counter() - t1
    t0 = time.perf_counter()
    vacuum(TICKETS, CLOCKS)
    timings["vacuum"] = time.perf_counter() - t0
    return timings


def changed(since: datetime, until: datetime) -> int:
    """Running clocks whose bucket differs between the two instants (computed, not stored)."""
    return int(
        fetchall(
            f"SELECT count(*) FROM {CLOCKS} WHERE status = 'running' "
            f"AND {at(BUCKET_AT, 'since')} <> {at(BUCKET_AT, 'until')}",
            {"since": since, "until": until},
        )[0][0]
    )


def expected_counts(when: datetime) -> dict[str, int]:
    return dict(
        fetchall(
            f"SELECT {at(BUCKET_AT, 'when')}, count(*) FROM {CLOCKS} GROUP BY 1 ORDER BY 1",
            {"when": when},
        )
    )


def bucket_counts() -> dict[str, int]:
    return dict(fetchall(f"SELECT bucket, count(*) FROM {CLOCKS} GROUP BY bucket ORDER BY 1"))


def check_load(n: int) -> int:
    """Counts as loaded; returns the number of clocks due at NOW."""
    ((tickets,),) = fetchall(f"SELECT count(*) FROM {TICKETS}")
    ((clocks, running),) = fetchall(
        f"SELECT count(*), count(*) FILTER (WHERE status = 'running') FROM {CLOCKS}"
    )
    bad = fetchall(
        f"SELECT count(*) FROM {CLOCKS} WHERE NOT (started_at < yellow_at AND "
        "yellow_at < orange_at AND orange_at < due_at AND started_at < %(now)s)",
        {"now": NOW},
    )[0][0]
    assert tickets == n, (tickets, n)
    assert clocks == running == CLOCKS_PER_TICKET * n, (clocks, running)
    assert bad == 0, f"{bad} clocks with unordered instants"
    due = changed(PREVIOUS, NOW)
    assert due == -(-clocks // DUE_EVERY), (due, clocks)
    moved_before = changed(EARLIER, PREVIOUS)
    assert moved_before == clocks // DUE_EVERY + (clocks % DUE_EVERY > DUE_EVERY // 2)
    return due


def check_ticks(instants: list[datetime], moved: list[int]) -> dict[str, int]:
    """Verify a series of ticks at ``instants[1:]`` (watermark before: ``instants[0]``) that
    moved ``moved`` clocks each; return the bucket counts at the last instant.

    Runs once after the series, not between ticks: a scan between ticks would prune the
    pages the last tick left dead row versions on, work the next tick does in production.
    Checks that each tick moved exactly the clocks whose bucket changed since the tick
    before, that each clock was last written by the last tick that changed it (its
    ``updated_at``), and that every running clock now holds its bucket, next change and
    breach at the last instant, all computed from the stored instants.
    """
    params: dict[str, Any] = {f"t{k}": t for k, t in enumerate(instants)}
    params["loaded"] = LOADED_AT
    changes = [
        f"{at(BUCKET_AT, f't{k - 1}')} <> {at(BUCKET_AT, f't{k}')}" for k in range(1, len(instants))
    ]
    last_write = " ".join(
        f"WHEN {change} THEN %(t{k})s::timestamptz"
        for k, change in reversed(list(enumerate(changes, start=1)))
    )
    state = ", ".join(at(e, f"t{len(instants) - 1}") for e in (BUCKET_AT, NEXT_AT, BREACHED_AT))
    counts = ", ".join(f"count(*) FILTER (WHERE {change})" for change in changes)
    row = fetchall(
        f"""SELECT {counts},
                   count(*) FILTER (WHERE updated_at IS DISTINCT FROM
                                    CASE {last_write} ELSE %(loaded)s::timestamptz END),
                   count(*) FILTER (WHERE (bucket, next_change_at, breached_at)
                                    IS DISTINCT FROM ({state}))
            FROM {CLOCKS} WHERE status = 'running'""",
        params,
    )[0]
    expected, wrong_writes, wrong_state = list(row[:-2]), row[-2], row[-1]
    assert moved == expected, f"ticks at {instants[1:]} moved {moved}, expected {expected}"
    assert wrong_writes == 0, f"{wrong_writes} clocks written by the wrong tick"
    assert wrong_state == 0, f"{wrong_state} clocks not in their state at {instants[-1]}"
    counts_now = bucket_counts()
    assert counts_now == expected_counts(instants[-1]), counts_now
    return counts_now


def set_watermark(when: datetime) -> None:
    TickWatermark.objects.update_or_create(pk=1, defaults={"evaluated_until": when})


def prepare(*, vacuum_previous: bool = False) -> int:
    """The same starting state for every measurement: the steady state after the tick at
    PREVIOUS.

    The clocks the ticks moved go back to their state at EARLIER and the watermark to
    EARLIER. CLUSTER rewrites the table in id order (the load order, with the fillfactor's
    free space on every page), so the due clocks are again scattered over the whole heap as
    after loading: an update may move rows to other pages, which would make later
    repetitions unrealistically cheap. VACUUM ANALYZE sets the visibility map and
    statistics. Then the previous tick runs for real (untimed; ``check_ticks`` verifies it
    with the measured ticks), so the clocks it
    moved leave dead row versions on their pages, which the measured tick reads again
    (lookback) and prunes, as in production. CHECKPOINT makes every repetition pay the same
    full-page writes (with default settings a tick often follows a checkpoint: see the
    docs). ``vacuum_previous`` vacuums the previous tick's dead versions away first.
    Returns how many clocks the previous tick moved (see ``check_ticks``).
    """
    execute(RESET_SQL, {"earlier": EARLIER, "loaded": LOADED_AT})
    set_watermark(EARLIER)
    execute(f"CLUSTER {CLOCKS} USING {CLOCKS}_pkey")
    vacuum(CLOCKS, WATERMARK)
    moved = reevaluate_due_clocks(now=PREVIOUS)  # checked with the measured ticks
    if vacuum_previous:
        vacuum(CLOCKS)
    execute("CHECKPOINT")
    return moved


def wal_lsn() -> str:
    return fetchall("SELECT pg_current_wal_lsn()::text")[0][0]


def wal_mb(since: str) -> float:
    """WAL written since ``since`` by the whole server: other sessions can only add to it."""
    ((diff,),) = fetchall("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %(lsn)s)", {"lsn": since})
    return float(diff) / (1024 * 1024)


def update_counters() -> tuple[int, int]:
    """(n_tup_upd, n_tup_hot_upd) of the clocks table, this session's updates included.

    A backend publishes its statistics when it goes idle, at most once a second
    (PGSTAT_MIN_INTERVAL); pg_stat_force_next_flush() (PostgreSQL 15+) lifts that limit for
    the next flush, which happens once the SELECT's transaction has ended, before the next
    statement (a new transaction, so a fresh stats snapshot) reads the counters.
    """
    execute("SELECT pg_stat_force_next_flush()")
    ((upd, hot),) = fetchall(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = %(t)s::regclass",
        {"t": CLOCKS},
    )
    return int(upd), int(hot)


# --- measure -------------------------------------------------------------------------------


class Tick:
    """One timed tick: result, wall and CPU time, queries, WAL and HOT updates."""

    def __init__(self, when: datetime, func: Callable[..., int] = reevaluate_due_clocks):
        connection.ensure_connection()
        upd0, hot0 = update_counters()
        lsn = wal_lsn()
        server, client = backend_cpu_ms(), time.process_time()
        with CaptureQueriesContext(connection) as ctx:
            t0 = time.perf_counter()
            self.moved = func(now=when)
            self.ms = (time.perf_counter() - t0) * 1000
        self.server_ms = backend_cpu_ms() - server
        self.python_ms = (time.process_time() - client) * 1000
        self.queries = list(ctx.captured_queries)
        self.wal_mb = wal_mb(lsn)
        upd1, hot1 = update_counters()
        self.updates, self.hot = upd1 - upd0, hot1 - hot0

    @property
    def hot_pct(self) -> float:
        return 100 * self.hot / self.updates if self.updates else math.nan

    def text(self) -> str:
        return (
            f"moved {self.moved} in {self.ms:.1f} ms, {len(self.queries)} queries "
            f"({query_ms(self.queries)} ms), CPU {self.server_ms:.0f} ms server + "
            f"{self.python_ms:.0f} ms Python, WAL {self.wal_mb:.1f} MB, "
            f"HOT {self.hot}/{self.updates}"
        )


def backend_cpu_ms() -> float:
    """CPU time (user + system) of this connection's PostgreSQL backend, from /proc.

    Other processes on the machine inflate wall time but hardly CPU time: steadier.
    """
    try:
        pid = connection.connection.info.backend_pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, IndexError, ValueError):  # not a local server
        return math.nan


def query_ms(queries: list[dict[str, Any]]) -> str:
    return "+".join(f"{float(q['time']) * 1000:.0f}" for q in queries)


def clock_update(queries: list[dict[str, Any]]) -> str:
    return next((q["sql"] for q in queries if q["sql"].startswith(f'UPDATE "{CLOCKS}"')), "")


def measure(n: int, reps: int, due: int) -> dict[str, Any]:
    runs: list[tuple[Tick, Tick, Tick]] = []
    minute = NOW + timedelta(minutes=1)
    for rep in range(reps):
        previous = prepare()
        first = Tick(NOW)
        assert first.moved == due, (first.moved, due)
        assert first.updates == due, f"pg_stat_user_tables counted {first.updates} updates"
        again = Tick(NOW)
        assert again.moved == again.updates == 0, again.text()
        later = Tick(minute)
        counts = check_ticks([EARLIER, PREVIOUS, NOW, minute], [previous, first.moved, later.moved])
        print(
            f"  rep {rep + 1}: {first.text()}\n"
            f"         again: moved {again.moved} in {again.ms:.1f} ms, "
            f"{len(again.queries)} queries; a minute later: {later.text()}",
            flush=True,
        )
        runs.append((first, again, later))
    print(f"  buckets at {PREVIOUS:%H:%M:%S}: {expected_counts(PREVIOUS)}")
    print(f"  buckets at {NOW:%H:%M:%S}: {expected_counts(NOW)}")
    print(f"  buckets after the tick at {minute:%H:%M:%S} (checked): {counts}")
    firsts = [r[0] for r in runs]

    def median(values: Any) -> float:
        return float(statistics.median(values))

    return {
        "size": n,
        "clocks": CLOCKS_PER_TICKET * n,
        "due": due,
        "moved": firsts[-1].moved,
        "ms": median(t.ms for t in firsts),
        "all_ms": [t.ms for t in firsts],
        "queries": len(firsts[-1].queries),
        "server_cpu_ms": median(t.server_ms for t in firsts),
        "client_cpu_ms": median(t.python_ms for t in firsts),
        "wal_mb": min(t.wal_mb for t in firsts),  # others' WAL can only add to it
        "hot_pct": median(t.hot_pct for t in firsts),
        "again_ms": median(r[1].ms for r in runs),
        "again_queries": len(runs[-1][1].queries),
        "later_moved": runs[-1][2].moved,
        "later_ms": median(r[2].ms for r in runs),
        "later_queries": len(runs[-1][2].queries),
        "later_hot_pct": median(r[2].hot_pct for r in runs),
        "update_sql": clock_update(firsts[-1].queries),
        "queries_sql": [q["sql"] for q in firsts[-1].queries],
    }


def explain(sql: str, options: str) -> None:
    """Print EXPLAIN (options) of sql in a transaction that is rolled back."""
    if not sql:
        return
    with transaction.atomic():
        lines = fetchall(f"EXPLAIN ({options}) {sql}")
        transaction.set_rollback(True)
    for (line,) in lines:
        print(f"    {shorten(line, 200)}")


def shorten(sql: str, limit: int = 400) -> str:
    return sql if len(sql) <= limit else f"{sql[:limit]} ... [{len(sql):,} chars]"


# --- alternatives: the same tick under other session settings ------------------------------


def checkpoints() -> int:
    return int(fetchall("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")[0][0])


def sustained(ticks: int) -> list[Tick]:
    """Ticks at NOW, NOW + 1 min, ...: each moves another ~1 %, with nothing reset in between.

    Closer to production than the repetitions: no CHECKPOINT or VACUUM is forced, so dead
    row versions accumulate (HOT pruning has to make room on the pages) and checkpoints come
    when the WAL volume or checkpoint_timeout calls for them (the ticks run back to back,
    not a minute apart). Checked after the last tick.
    """
    previous = prepare()
    rows = []
    instants = [EARLIER, PREVIOUS]
    for k in range(ticks):
        when = NOW + timedelta(minutes=k)
        before = checkpoints()
        result = Tick(when)
        ckpt = checkpoints() - before
        rows.append(result)
        instants.append(when)
        print(
            f"  tick at NOW + {k} min: {result.text()}, checkpoints during it: {ckpt}",
            flush=True,
        )
    check_ticks(instants, [previous, *(t.moved for t in rows)])
    return rows


def alternatives(due: int, reps: int) -> list[tuple[str, float, int, float, float]]:
    """Time the same tick, from ``prepare()``, under other settings or arguments."""
    try:
        with transaction.atomic():
            execute("SET LOCAL wal_compression = lz4")
        lz4 = "wal_compression = lz4"
    except Exception:  # a server built without lz4
        lz4 = ""
    tick = reevaluate_due_clocks
    # (label, session setting, tick function, previous tick's dead versions vacuumed)
    variants: list[tuple[str, str, Callable[..., int], bool]] = [
        ("product tick, default settings", "", tick, False),
        ("previous tick's dead versions vacuumed first", "", tick, True),
        ("no lookback (window (watermark, now])", "", partial(tick, lookback=timedelta(0)), False),
        ("jit = off", "jit = off", tick, False),
        ("work_mem = 64MB", "work_mem = '64MB'", tick, False),
    ]
    if lz4:
        variants.append((lz4, lz4, tick, False))
    rows = []
    for name, setting, func, vacuum_previous in variants:
        ticks = []
        for _ in range(reps):
            previous = prepare(vacuum_previous=vacuum_previous)
            if setting:
                execute(f"SET {setting}")
            try:
                result = Tick(NOW, func)
            finally:
                if setting:
                    execute("RESET ALL")
            assert result.moved == due, (name, result.moved, due)
            check_ticks([EARLIER, PREVIOUS, NOW], [previous, result.moved])
            ticks.append(result)
        rows.append(
            (
                name,
                statistics.median(t.ms for t in ticks),
                len(ticks[-1].queries),
                statistics.median(t.server_ms for t in ticks),
                min(t.wal_mb for t in ticks),
            )
        )
        print(
            f"  {name}: median {rows[-1][1]:.0f} ms ("
            + ", ".join(f"{t.ms:.0f}" for t in ticks)
            + f"), {rows[-1][2]} queries, server CPU {rows[-1][3]:.0f} ms, "
            f"WAL {rows[-1][4]:.0f} MB",
            flush=True,
        )
    return rows


def contention() -> str:
    """Load average and CPU pressure: other processes on the machine skew the timings."""
    text = f"load average {os.getloadavg()[0]:.1f}"
    try:
        some = Path("/proc/pressure/cpu").read_text().split("\n")[0].split()
        text += f", CPU pressure {some[2].split('=')[1]} % (avg60)"
    except (OSError, IndexError):
        pass
    return text


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="10000,100000,1000000", help="open tickets, comma-separated"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions per size (median shown)")
    parser.add_argument("--keep", action="store_true", help="keep the bench database")
    parser.add_argument(
        "--ticks",
        type=int,
        default=0,
        help="at the largest size, also run this many consecutive ticks a minute apart (max 29)",
    )
    parser.add_argument(
        "--alternatives",
        action="store_true",
        help="at the largest size, also time the tick under other settings (slow)",
    )
    args = parser.parse_args()
    if not 0 <= args.ticks <= 29:
        parser.error("--ticks must be 0..29 (at NOW + 29 min yellow clocks start turning orange)")
    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
    db = settings.DATABASES["default"]
    print(f"database {db['NAME']} on {db['HOST']}:{db['PORT']}, now = {NOW.isoformat()}")
    print(f"{os.cpu_count()} CPUs; at start: {contention()}")
    started = time.perf_counter()
    create_database()
    print(fetchall("SELECT version()")[0][0])
    print(
        "server: "
        + ", ".join(
            f"{name}={fetchall(f'SHOW {name}')[0][0]}"
            for name in (
                "shared_buffers",
                "work_mem",
                "max_wal_size",
                "wal_compression",
                "jit",
                "autovacuum",
            )
        )
    )
    ((fillfactor,),) = fetchall(
        "SELECT coalesce(array_to_string(reloptions, ','), '') FROM pg_class "
        "WHERE oid = %(t)s::regclass",
        {"t": CLOCKS},
    )
    indexes = ", ".join(
        r[0]
        for r in fetchall(
            "SELECT indexname FROM pg_indexes WHERE tablename = %(t)s ORDER BY 1", {"t": CLOCKS}
        )
    )
    print(f"{CLOCKS}: {fillfactor or 'default options'}; indexes: {indexes}")
    results = []
    alt_rows: list[tuple[str, float, int, float, float]] = []
    tick_rows: list[Tick] = []
    try:
        for n in sizes:
            print(
                f"\n== {n:,} open tickets, {CLOCKS_PER_TICKET * n:,} running clocks "
                f"({contention()})",
                flush=True,
            )
            timings = load(n)
            due = check_load(n)
            print(
                "  loaded in "
                + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
                + f"; {due:,} clocks due",
                flush=True,
            )
            result = measure(n, args.reps, due)
            results.append(result)
            if n != max(sizes):
                continue
            print(f"\n  The tick's queries at {n:,} tickets:")
            for sql in result["queries_sql"]:
                print(f"    -- {shorten(sql, 2000)}")
            prepare()
            print("\n  EXPLAIN (ANALYZE, BUFFERS, WAL) of the tick's UPDATE (rolled back):")
            explain(result["update_sql"], "ANALYZE, BUFFERS, WAL")
            if args.alternatives:
                print(f"\n  Alternatives at {n:,} tickets (median of {args.reps}):")
                alt_rows = alternatives(due, args.reps)
            if args.ticks:
                print(f"\n  {args.ticks} consecutive ticks at {n:,} tickets:")
                tick_rows = sustained(args.ticks)
    finally:
        if not args.keep:
            drop_database()

    elapsed = time.perf_counter() - started
    print(
        f"\nSLA tick, median of {args.reps} (bench took {elapsed:.0f} s, "
        f"at the end: {contention()})"
    )
    header = ["tickets", "clocks", "due", "moved", "median ms", "runs ms", "queries"]
    header += ["server CPU ms", "Python CPU ms", "WAL MB", "HOT %"]
    header += ["again ms", "again queries", "+1 min moved", "+1 min ms", "+1 min HOT %"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    for r in results:
        runs = " / ".join(f"{ms:.0f}" for ms in r["all_ms"])
        print(
            f"| {r['size']:,} | {r['clocks']:,} | {r['due']:,} | {r['moved']:,} | {r['ms']:.1f} "
            f"| {runs} | {r['queries']} | {r['server_cpu_ms']:.0f} | {r['client_cpu_ms']:.0f} "
            f"| {r['wal_mb']:.1f} | {r['hot_pct']:.0f} | {r['again_ms']:.1f} "
            f"| {r['again_queries']} | {r['later_moved']:,} | {r['later_ms']:.1f} "
            f"| {r['later_hot_pct']:.0f} |"
        )
    if alt_rows:
        print(
            "\n| variant | median ms | queries | server CPU ms | WAL MB |"
            "\n|---|---:|---:|---:|---:|"
        )
        for name, ms, q, cpu, wal in alt_rows:
            print(f"| {name} | {ms:.0f} | {q} | {cpu:.0f} | {wal:.0f} |")
    if tick_rows:
        print(
            f"\n{len(tick_rows)} consecutive ticks at {results[-1]['size']:,} tickets: "
            + " / ".join(f"{t.ms:.0f}" for t in tick_rows)
            + f" ms (median {statistics.median(t.ms for t in tick_rows):.0f} ms), HOT "
            + " / ".join(f"{t.hot_pct:.0f}" for t in tick_rows)
            + " %"
        )
    if results and results[-1]["size"] >= 1_000_000:
        last = results[-1]
        verdict = "under" if last["ms"] < 1000 else "OVER"
        print(f"\n{last['size']:,}-ticket tick: median {last['ms']:.0f} ms, {verdict} 1 s")


if __name__ == "__main__":
    main()
