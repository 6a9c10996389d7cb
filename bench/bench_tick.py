"""Benchmark the SLA minute tick: ``policies.actions.reevaluate_due_clocks``.

Run from the repository root (PostgreSQL only; the database is created if missing and
dropped at the end unless ``--keep``; results and findings: docs/bench-tick.md):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/slaboard_bench \\
        .venv/bin/python bench/bench_tick.py [--sizes 10000,100000,1000000] [--reps 3]
        [--keep] [--alternatives] [--ticks 10]

Workload, for each size N: N open tickets with 3 running clocks each (first response,
resolution plan, resolution), all green with ``next_change_at = yellow_at``. Exactly 1 % of
the clocks (every 100th clock in insertion order, so scattered over the whole table like
real due clocks) are due at the bench ``now``: a third of them move to yellow, a third to
orange, a third to red (breached). Each of the others turns yellow during one of the 99
minutes after ``now``. Rows are loaded with server-side ``INSERT ... SELECT ... FROM
generate_series`` and the tables are ``VACUUM ANALYZE``d before measuring.

Each repetition starts from the same state (see ``prepare``: due clocks back to green, the
table re-clustered in load order so the due clocks are scattered again, VACUUM ANALYZE,
CHECKPOINT), runs the tick once under ``CaptureQueriesContext`` (it must move every due
clock), then again with the same ``now`` (it must move nothing: the tick is idempotent),
then once more after a VACUUM. The median of the repetitions is reported with the query
count, the CPU time of the PostgreSQL backend and of Python (steadier than wall time when
other processes share the machine) and the WAL the tick wrote. For the largest size the
script also prints ``EXPLAIN (ANALYZE, BUFFERS)`` of the tick's SELECT and ``EXPLAIN
(ANALYZE, BUFFERS, WAL)`` of its UPDATE (in a rolled-back transaction); ``--alternatives``
times other formulations of the same UPDATE and settings (raw SQL, session settings and
one dropped index in the bench database; nothing in the product is changed); ``--ticks K``
runs K consecutive ticks a minute apart with nothing reset or forced in between.
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
from policies.models import SLAClock  # noqa: E402
from tickets.models import Partner, Ticket, TicketEvent  # noqa: E402

# The bench instant: every due clock changed colour 1 to 50 min before it.
NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
LOADED_AT = datetime(2027, 3, 1, 11, 0, tzinfo=UTC)
CLOCKS_PER_TICKET = 3
DUE_EVERY = 100  # 1 % of the clocks are due

TICKETS = Ticket._meta.db_table
EVENTS = TicketEvent._meta.db_table
CLOCKS = SLAClock._meta.db_table
PARTNERS = Partner._meta.db_table


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

# i = clock ordinal (0 .. 3N-1); every DUE_EVERY-th clock is due at NOW. Due clock j = i / 100
# crossed its yellow (phase 0), orange (phase 1) or due (phase 2) instant b minutes ago, so it
# moves to yellow, orange or red. Each of the others turns yellow during minute r = 1 .. 99 after
# NOW, r a hash of i: the ticks at NOW + 1 min, NOW + 2 min, ... (--ticks) each find another ~1 %
# due, on other heap pages than the previous tick's (as in real life).
CLOCK_SQL = f"""
INSERT INTO {CLOCKS} (
    ticket_id, metric, cycle, policy_id, target_id, started_at, pauses, met_at, stopped_at,
    status, due_at, yellow_at, orange_at, breached_at, bucket, next_change_at,
    remaining_seconds, updated_at
)
SELECT
    c.ticket_id, c.metric, 0, NULL, NULL, c.started_at, '[]'::jsonb, NULL, NULL,
    'running', c.due_at, c.yellow_at, c.orange_at, NULL, 'green', c.yellow_at,
    NULL, %(loaded)s
FROM (
    SELECT
        t.id AS ticket_id,
        m.metric,
        CASE WHEN x.due THEN x.yellow - interval '1 hour'
             ELSE %(now)s - interval '1 minute' * (1 + x.i %% 1440) END AS started_at,
        x.yellow AS yellow_at,
        CASE WHEN x.due AND x.phase = 0 THEN %(now)s + interval '30 min'
             WHEN x.due AND x.phase = 1 THEN %(now)s - x.b
             WHEN x.due THEN %(now)s - interval '60 min' - x.b
             ELSE x.yellow + interval '1 hour' END AS orange_at,
        CASE WHEN x.due AND x.phase < 2 THEN %(now)s + interval '60 min'
             WHEN x.due THEN %(now)s - x.b
             ELSE x.yellow + interval '2 hours' END AS due_at,
        x.i
    FROM {TICKETS} AS t
    CROSS JOIN (VALUES (0, 'first_response'), (1, 'resolution_plan'), (2, 'resolution'))
        AS m (k, metric)
    CROSS JOIN LATERAL (
        SELECT
            y.i, y.due, y.phase, y.b,
            CASE WHEN y.due AND y.phase = 0 THEN %(now)s - y.b
                 WHEN y.due AND y.phase = 1 THEN %(now)s - interval '60 min' - y.b
                 WHEN y.due THEN %(now)s - interval '120 min' - y.b
                 ELSE %(now)s + interval '1 minute' * (1 + y.i * 2654435761 %% 4294967291 %% 99)
                      - interval '1 second' * (y.i %% 60) END AS yellow
        FROM (
            SELECT
                z.i,
                z.i %% {DUE_EVERY} = 0 AS due,
                (z.i / {DUE_EVERY}) %% 3 AS phase,
                interval '1 minute' * (1 + (z.i / {DUE_EVERY}) %% 50) AS b
            FROM (SELECT {CLOCKS_PER_TICKET} * (t.id - 1) + m.k AS i) AS z
        ) AS y
    ) AS x
    ORDER BY t.id, m.k
) AS c
"""

# Put the clocks a tick moved back to green with their original next_change_at (= yellow_at).
RESET_SQL = f"""
UPDATE {CLOCKS}
SET bucket = 'green', next_change_at = yellow_at, breached_at = NULL, updated_at = %(loaded)s
WHERE status = 'running'
  AND (bucket <> 'green' OR next_change_at IS DISTINCT FROM yellow_at OR breached_at IS NOT NULL)
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
    params = {"partner": partner, "now": NOW, "loaded": LOADED_AT, "n": n}
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


def check_load(n: int) -> int:
    """Counts as loaded; returns the number of due clocks."""
    ((tickets,),) = fetchall(f"SELECT count(*) FROM {TICKETS}")
    ((clocks, running, due),) = fetchall(
        f"SELECT count(*), count(*) FILTER (WHERE status = 'running'), "
        f"count(*) FILTER (WHERE status = 'running' AND next_change_at <= %(now)s) FROM {CLOCKS}",
        {"now": NOW},
    )
    bad = fetchall(
        f"SELECT count(*) FROM {CLOCKS} WHERE NOT (started_at < yellow_at AND "
        "yellow_at < orange_at AND orange_at < due_at AND started_at < %(now)s)",
        {"now": NOW},
    )[0][0]
    assert tickets == n, (tickets, n)
    assert clocks == running == CLOCKS_PER_TICKET * n, (clocks, running)
    assert bad == 0, f"{bad} clocks with unordered instants"
    assert due == -(-clocks // DUE_EVERY), (due, clocks)
    return due


def bucket_counts() -> dict[str, int]:
    return dict(fetchall(f"SELECT bucket, count(*) FROM {CLOCKS} GROUP BY bucket ORDER BY 1"))


def prepare() -> None:
    """The same starting state for every measurement.

    The due clocks go back to green; CLUSTER rewrites the table in id order (the load order),
    so the due clocks are again scattered over the whole heap as after loading (an UPDATE
    moves rows to wherever there is room, which would leave them packed together at the end
    of the table and make later repetitions unrealistically cheap); VACUUM ANALYZE sets the
    visibility map and statistics; CHECKPOINT makes every repetition pay the same full-page
    writes (a real tick follows a checkpoint often: see the docs).
    """
    execute(RESET_SQL, {"now": NOW, "loaded": LOADED_AT})
    execute(f"CLUSTER {CLOCKS} USING {CLOCKS}_pkey")
    vacuum(CLOCKS)
    execute("CHECKPOINT")


def wal_lsn() -> str:
    return fetchall("SELECT pg_current_wal_lsn()::text")[0][0]


def wal_mb(since: str) -> float:
    ((diff,),) = fetchall("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %(lsn)s)", {"lsn": since})
    return float(diff) / (1024 * 1024)


# --- measure -------------------------------------------------------------------------------


# CPU time of the last timed_tick: [PostgreSQL backend, this Python process], in ms. Other
# processes on the machine inflate wall time but hardly CPU time, so these are steadier.
LAST_CPU_MS = [math.nan, math.nan]


def backend_cpu_ms() -> float:
    """CPU time (user + system) of this connection's PostgreSQL backend, from /proc."""
    try:
        pid = connection.connection.info.backend_pid
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, IndexError, ValueError):  # not a local server
        return math.nan


def timed_tick(func: Callable[[], int]) -> tuple[int, float, list[dict[str, Any]]]:
    connection.ensure_connection()
    server, client = backend_cpu_ms(), time.process_time()
    with CaptureQueriesContext(connection) as ctx:
        t0 = time.perf_counter()
        moved = func()
        elapsed = time.perf_counter() - t0
    LAST_CPU_MS[:] = [backend_cpu_ms() - server, (time.process_time() - client) * 1000]
    return moved, elapsed, list(ctx.captured_queries)


def cpu_text() -> str:
    return f"CPU {LAST_CPU_MS[0]:.0f} ms server + {LAST_CPU_MS[1]:.0f} ms Python"


def tick() -> int:
    return reevaluate_due_clocks(now=NOW)


def query_ms(queries: list[dict[str, Any]]) -> str:
    return "+".join(f"{float(q['time']) * 1000:.0f}" for q in queries)


def measure(n: int, reps: int, due: int) -> dict[str, Any]:
    runs = []
    select_sql = ""
    update_sql = ""
    after: dict[str, int] = {}
    for rep in range(reps):
        prepare()
        assert bucket_counts() == {"green": CLOCKS_PER_TICKET * n}
        lsn = wal_lsn()
        moved, elapsed, queries = timed_tick(tick)
        cpu = LAST_CPU_MS[:]
        wal = wal_mb(lsn)
        after = bucket_counts()
        moved2, elapsed2, queries2 = timed_tick(tick)
        vacuum(CLOCKS)
        moved3, elapsed3, _ = timed_tick(tick)
        assert moved == due, (moved, due)
        assert moved2 == moved3 == 0, (moved2, moved3)
        assert bucket_counts() == after
        select_sql = queries[0]["sql"]
        update_sql = next((q["sql"] for q in queries if q["sql"].startswith("UPDATE")), "")
        print(
            f"  rep {rep + 1}: moved {moved} in {elapsed * 1000:.1f} ms, {len(queries)} queries "
            f"({query_ms(queries)} ms), CPU {cpu[0]:.0f} ms server + {cpu[1]:.0f} ms Python, "
            f"WAL {wal:.1f} MB; again: moved {moved2} in "
            f"{elapsed2 * 1000:.1f} ms, {len(queries2)} queries; "
            f"after VACUUM {elapsed3 * 1000:.1f} ms",
            flush=True,
        )
        runs.append((elapsed, len(queries), elapsed2, len(queries2), wal, elapsed3, *cpu))
    print(f"  buckets after the tick: {after}")
    return {
        "size": n,
        "clocks": CLOCKS_PER_TICKET * n,
        "due": due,
        "moved": moved,
        "ms": statistics.median(r[0] for r in runs) * 1000,
        "all_ms": [r[0] * 1000 for r in runs],
        "queries": runs[-1][1],
        "second_ms": statistics.median(r[2] for r in runs) * 1000,
        "second_queries": runs[-1][3],
        "vacuumed_ms": statistics.median(r[5] for r in runs) * 1000,
        "wal_mb": statistics.median(r[4] for r in runs),
        "server_cpu_ms": statistics.median(r[6] for r in runs),
        "client_cpu_ms": statistics.median(r[7] for r in runs),
        "select_sql": select_sql,
        "update_sql": update_sql,
    }


def explain(sql: str, options: str, *, rollback: bool = False) -> None:
    """Print EXPLAIN (options) of sql; with rollback, in a transaction that is rolled back."""
    if not sql:
        return
    with transaction.atomic():
        lines = fetchall(f"EXPLAIN ({options}) {sql}")
        if rollback:
            transaction.set_rollback(True)
    for (line,) in lines:
        print(f"    {shorten(line, 200)}")


def shorten(sql: str, limit: int = 400) -> str:
    return sql if len(sql) <= limit else f"{sql[:limit]} ... [{len(sql):,} chars]"


# --- alternatives (raw SQL, for the findings; the product code is not changed) --------------

# The tick's SET clause, as policies.actions builds it.
SET_BUCKET = """
    bucket = CASE WHEN due_at <= %(now)s OR breached_at <= %(now)s THEN 'red'
                  WHEN orange_at <= %(now)s THEN 'orange'
                  WHEN yellow_at <= %(now)s THEN 'yellow' ELSE 'green' END"""
SET_NEXT_CHANGE = """
    next_change_at = CASE WHEN due_at <= %(now)s OR breached_at <= %(now)s THEN NULL
                          WHEN orange_at <= %(now)s THEN due_at
                          WHEN yellow_at <= %(now)s THEN orange_at ELSE yellow_at END"""
SET_REST = """
    breached_at = CASE WHEN breached_at IS NOT NULL THEN breached_at
                       WHEN due_at <= %(now)s THEN due_at ELSE NULL END,
    updated_at = %(now)s"""
CASES = f"{SET_BUCKET},{SET_NEXT_CHANGE},{SET_REST}"


def checkpoints() -> int:
    return int(fetchall("SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")[0][0])


def sustained(
    ticks: int, due: int, func: Callable[..., int] = reevaluate_due_clocks
) -> list[tuple[int, float, int, float]]:
    """Ticks at NOW, NOW + 1 min, ...: each moves another 1 %, with nothing reset in between.

    Closer to production than the repetitions: no CHECKPOINT or VACUUM is forced, so the
    dead index entries of earlier ticks accumulate and checkpoints come when the WAL volume
    or checkpoint_timeout calls for them (the ticks run back to back, not a minute apart).
    """
    prepare()
    rows = []
    for k in range(ticks):
        at = NOW + timedelta(minutes=k)
        before, lsn = checkpoints(), wal_lsn()
        moved, elapsed, queries = timed_tick(partial(func, now=at))
        wal, ckpt = wal_mb(lsn), checkpoints() - before
        # Exactly `due` at NOW; about as many (hashed minutes) at each later minute.
        assert moved == due if k == 0 else abs(moved - due) < due / 10, (k, moved, due)
        rows.append((k, elapsed * 1000, len(queries), wal))
        print(
            f"  tick at NOW + {k} min: moved {moved} in {elapsed * 1000:.0f} ms "
            f"({query_ms(queries)} ms), {cpu_text()}, WAL {wal:.0f} MB, "
            f"checkpoints during it: {ckpt}",
            flush=True,
        )
    return rows


def probe_update(*, now: datetime = NOW, batch_size: int = 50_000) -> int:
    """Batched by time instead of by an id list: no ids travel, the heap is visited once.

    An index-only probe on the partial index finds the ``next_change_at`` of the batch-th due
    clock (none: fewer due than a batch, the usual case); one UPDATE then moves every running
    clock due up to that instant (ties included). Each clock lands in its bucket at ``now``
    with a ``next_change_at`` after ``now``, so the loop ends. 2 queries in the usual case.
    """
    moved = 0
    while True:
        rows = fetchall(
            f"SELECT next_change_at FROM {CLOCKS} WHERE status = 'running' "
            "AND next_change_at <= %(now)s ORDER BY next_change_at OFFSET %(skip)s LIMIT 1",
            {"now": now, "skip": batch_size - 1},
        )
        upto = rows[0][0] if rows else now
        moved += execute(
            f"UPDATE {CLOCKS} SET {CASES} WHERE status = 'running' AND next_change_at <= %(upto)s",
            {"now": now, "upto": upto},
        )
        if not rows:
            return moved


def ticket_only_index() -> tuple[str, str] | None:
    """The FK index on ticket_id alone (the unique (ticket_id, metric, cycle) index covers it)."""
    rows = fetchall(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %(t)s "
        "AND indexdef LIKE '%%(ticket_id)'",
        {"t": CLOCKS},
    )
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def hot_bound_update() -> int:
    """A lower bound, not a tick: the same rows, but only columns no index covers change.

    Run with fillfactor 90 and without the (status, bucket) index (see ``alternatives``), so
    PostgreSQL can make every update heap-only (HOT): no index entry is written. A real tick
    could only do this if it found its due clocks without an index on a column it rewrites.
    """
    return execute(
        f"UPDATE {CLOCKS} SET {SET_BUCKET},{SET_REST} "
        "WHERE status = 'running' AND next_change_at <= %(now)s",
        {"now": NOW},
    )


def schema_change(kind: str) -> list[str]:
    """Apply a bench-only schema change; return the SQL that undoes it."""
    undo = []
    if kind in ("drop-ticket-index", "hot"):
        dropped = ticket_only_index() if kind == "drop-ticket-index" else None
        if kind == "hot":
            rows = fetchall(
                "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %(t)s "
                "AND indexname = 'clock_status_bucket'",
                {"t": CLOCKS},
            )
            dropped = (str(rows[0][0]), str(rows[0][1])) if rows else None
            execute(f"ALTER TABLE {CLOCKS} SET (fillfactor = 90)")
            undo.append(f"ALTER TABLE {CLOCKS} RESET (fillfactor)")
        if dropped is not None:
            execute(f'DROP INDEX "{dropped[0]}"')
            undo.append(dropped[1])
    return undo


def alternatives(due: int, reps: int) -> list[tuple[str, float, int, float, float]]:
    """Time other formulations / settings of the same tick, each from ``prepare()``."""
    try:
        with transaction.atomic():
            execute("SET LOCAL wal_compression = lz4")
        lz4 = "SET wal_compression = lz4"
    except Exception:  # a server built without lz4
        lz4 = ""
    # (label, function, SET run before the timing, bench-only schema change)
    variants: list[tuple[str, Callable[[], int], str, str]] = [
        ("product: SELECT ids + UPDATE ... id IN (ids)", tick, "", ""),
        ("probe + one UPDATE by next_change_at", probe_update, "", ""),
    ]
    if lz4:
        variants += [
            ("product, wal_compression = lz4", tick, lz4, ""),
            ("probe + UPDATE, wal_compression = lz4", probe_update, lz4, ""),
        ]
    variants += [
        ("probe + UPDATE, no ticket_id-only index", probe_update, "", "drop-ticket-index"),
        ("bound: HOT update (fillfactor 90, no bucket index)", hot_bound_update, "", "hot"),
    ]
    rows = []
    for name, func, setting, schema in variants:
        undo = schema_change(schema)
        try:
            times, wals, cpus = [], [], []
            for _ in range(reps):
                prepare()
                if setting:
                    execute(setting)
                lsn = wal_lsn()
                moved, elapsed, queries = timed_tick(func)
                cpus.append(LAST_CPU_MS[0])
                wals.append(wal_mb(lsn))
                if setting:
                    execute("RESET ALL")
                assert moved == due, (name, moved, due)
                times.append(elapsed * 1000)
            rows.append(
                (
                    name,
                    statistics.median(times),
                    len(queries),
                    statistics.median(wals),
                    statistics.median(cpus),
                )
            )
            print(
                f"  {name}: median {rows[-1][1]:.0f} ms ("
                + ", ".join(f"{t:.0f}" for t in times)
                + f"), {len(queries)} queries, server CPU {rows[-1][4]:.0f} ms, "
                f"WAL {rows[-1][3]:.0f} MB",
                flush=True,
            )
        finally:
            for sql in undo:
                execute(sql)
    prepare()  # the table packed again (fillfactor back to 100), for what follows
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
        help="at the largest size, also run this many consecutive ticks a minute apart (max 29), "
        "with the product's tick and with the probe + UPDATE alternative",
    )
    parser.add_argument(
        "--alternatives",
        action="store_true",
        help="at the largest size, also time other formulations and settings (slow)",
    )
    args = parser.parse_args()
    if not 0 <= args.ticks <= 29:
        parser.error("--ticks must be 0..29 (at NOW + 30 min the first yellow clocks turn orange)")
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
            for name in ("shared_buffers", "max_wal_size", "wal_compression", "jit")
        )
    )
    results = []
    alt_rows: list[tuple[str, float, int, float, float]] = []
    tick_rows: list[tuple[int, float, int, float]] = []
    probe_rows: list[tuple[int, float, int, float]] = []
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
            prepare()
            print(f"\n  EXPLAIN (ANALYZE, BUFFERS) of the tick's SELECT at {n:,} tickets:")
            print(f"    -- {shorten(result['select_sql'])}")
            explain(result["select_sql"], "ANALYZE, BUFFERS")
            prepare()
            print("\n  EXPLAIN (ANALYZE, BUFFERS, WAL) of the tick's UPDATE (rolled back):")
            print(f"    -- {shorten(result['update_sql'])}")
            explain(result["update_sql"], "ANALYZE, BUFFERS, WAL", rollback=True)
            if args.alternatives:
                print(f"\n  Alternatives at {n:,} tickets (median of {args.reps}):")
                alt_rows = alternatives(due, args.reps)
            if args.ticks:
                print(f"\n  {args.ticks} consecutive ticks at {n:,} tickets:")
                tick_rows = sustained(args.ticks, due)
                print(f"\n  The same {args.ticks} ticks with probe + UPDATE (see alternatives):")
                probe_rows = sustained(args.ticks, due, probe_update)
    finally:
        if not args.keep:
            drop_database()

    elapsed = time.perf_counter() - started
    print(
        f"\nSLA tick, median of {args.reps} (bench took {elapsed:.0f} s, "
        f"at the end: {contention()})"
    )
    header = ["tickets", "clocks", "due", "moved", "median ms", "runs ms", "queries"]
    header += ["server CPU ms", "Python CPU ms", "WAL MB"]
    header += ["2nd run ms", "2nd queries", "2nd after VACUUM ms"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---:" for _ in header) + "|")
    for r in results:
        runs = " / ".join(f"{ms:.0f}" for ms in r["all_ms"])
        print(
            f"| {r['size']:,} | {r['clocks']:,} | {r['due']:,} | {r['moved']:,} | {r['ms']:.1f} "
            f"| {runs} | {r['queries']} | {r['server_cpu_ms']:.0f} | {r['client_cpu_ms']:.0f} "
            f"| {r['wal_mb']:.1f} | {r['second_ms']:.1f} "
            f"| {r['second_queries']} | {r['vacuumed_ms']:.1f} |"
        )
    if alt_rows:
        print(
            "\n| formulation | median ms | queries | server CPU ms | WAL MB |"
            "\n|---|---:|---:|---:|---:|"
        )
        for name, ms, q, wal, cpu in alt_rows:
            print(f"| {name} | {ms:.0f} | {q} | {cpu:.0f} | {wal:.0f} |")
    for label, series in (("product", tick_rows), ("probe + UPDATE", probe_rows)):
        if series:
            print(
                f"\n{len(series)} consecutive ticks at {results[-1]['size']:,} tickets, {label}: "
                + " / ".join(f"{ms:.0f}" for _, ms, _, _ in series)
                + f" ms (median {statistics.median(ms for _, ms, _, _ in series):.0f} ms)"
            )
    if results and results[-1]["size"] >= 1_000_000:
        last = results[-1]
        verdict = "under" if last["ms"] < 1000 else "OVER"
        print(f"\n{last['size']:,}-ticket tick: median {last['ms']:.0f} ms, {verdict} 1 s")


if __name__ == "__main__":
    main()
