"""Benchmark the SLA minute tick: ``policies.actions.reevaluate_due_clocks``.

Run from the repository root (PostgreSQL only; the database is created if missing and
dropped at the end unless ``--keep``; results and findings: docs/bench-tick.md):

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/slaboard_bench \\
        .venv/bin/python bench/bench_tick.py [--sizes 10000,100000,1000000] [--reps 3]
        [--keep] [--alternatives] [--ticks 10] [--rules 3]

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

``--rules N`` (0 to 6) first creates the first N of ``BENCH_RULES``, active notification rules
shaped like the demo's escalation chain (orange → the partner's contacts, red → email and a
webhook, red for 30 min → a manager; some filtered by priority or partner, some not), so the
measured tick also runs ``policies.detect.on_tick``. The tickets are spread over four
partners for the partner filters. Each repetition starts with an empty outbox (the previous
tick then writes its own rows, as in production) and checks, per rule and channel, that the
ticks inserted exactly the rows the rules call for (computed from the stored instants, with
the right event and due instants), that the repeated tick inserts none, and that ``on_tick``
run again over the whole window inserts none either. ``enqueue_delivery`` (a Celery publish on
commit) is replaced by a no-op: the bench must not send tasks to a shared broker.
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
from policies.models import (  # noqa: E402
    Acknowledgement,
    Notification,
    NotificationRule,
    PayloadFormat,
    SLAClock,
    TickWatermark,
    Trigger,
)
from policies.notifications import detect  # noqa: E402
from policies.notifications import rules as notification_rules  # noqa: E402
from tickets.models import Partner, Ticket, TicketEvent, User  # noqa: E402

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
NOTIFICATIONS = Notification._meta.db_table
ACKS = Acknowledgement._meta.db_table
BENCH_PARTNERS = 4  # ticket g belongs to partner 1 + (g / 16) % 4


# --- notification rules (--rules N: the first N) ------------------------------------------

# Shaped like the demo's escalation chain (slaboard/demo.py) and the examples in
# docs/notifications.md. "partners" are indexes into the bench partners (1-based); "channels"
# is what the rule sends on, checked against policies.rules.channels().
BENCH_RULES: list[dict[str, Any]] = [
    {
        "name": "Bench 1: critical and high at orange, the partner's contacts and assignee",
        "trigger": Trigger.ORANGE,
        "priorities": ["critical", "high"],
        "notify_partner_contacts": True,
        "notify_assignee": True,
        "channels": ["email"],
    },
    {
        "name": "Bench 2: every breach to the service desk and Slack",
        "trigger": Trigger.RED,
        "emails": "service-desk@example.com",
        "webhook_url": "https://hooks.example.com/services/bench",
        "webhook_format": PayloadFormat.TEXT,
        "channels": ["email", "webhook"],
    },
    {
        "name": "Bench 3: critical, the manager 30 min after a breach nobody acknowledged",
        "trigger": Trigger.OVERDUE,
        "overdue_minutes": 30,
        "repeat_minutes": 30,
        "priorities": ["critical"],
        "notify_users": True,
        "channels": ["email"],
    },
    {
        "name": "Bench 4: partner 1's warnings to its webhook",
        "trigger": Trigger.YELLOW,
        "partners": [1],
        "webhook_url": "https://partner-1.example.com/slaboard",
        "channels": ["webhook"],
    },
    {
        "name": "Bench 5: partner 2, critical and high breaches to its contacts",
        "trigger": Trigger.RED,
        "partners": [2],
        "priorities": ["critical", "high"],
        "notify_partner_contacts": True,
        "channels": ["email"],
    },
    {
        "name": "Bench 6: every orange to on-call",
        "trigger": Trigger.ORANGE,
        "emails": "oncall@example.com",
        "channels": ["email"],
    },
]
RULE_INSTANTS = {
    Trigger.YELLOW: "yellow_at",
    Trigger.ORANGE: "orange_at",
    Trigger.RED: "due_at",
    Trigger.OVERDUE: "due_at",
}


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
    (%(partners)s::bigint[])[1 + (g / 16) %% {BENCH_PARTNERS}], NULL, NULL, '',
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


def bench_partners() -> list[int]:
    """The ids of the bench partners (created if missing), in order."""
    ids = []
    for k in range(1, BENCH_PARTNERS + 1):
        partner, _ = Partner.objects.get_or_create(
            name=f"Bench partner {k}",
            defaults={"contact_emails": f"ops@partner-{k}.example.com, lead@example.com"},
        )
        ids.append(partner.pk)
    return ids


def create_rules(count: int, partners: list[int]) -> list[NotificationRule]:
    """Replace every notification rule by the first ``count`` of BENCH_RULES (active)."""
    execute(f"TRUNCATE {NOTIFICATIONS}")
    NotificationRule.objects.all().delete()
    manager, _ = User.objects.get_or_create(
        username="bench-manager", defaults={"email": "manager@example.com"}
    )
    rules = []
    for spec in BENCH_RULES[:count]:
        fields = {k: v for k, v in spec.items() if k not in ("partners", "notify_users")}
        del fields["channels"]
        rule = NotificationRule(**fields)
        rule.full_clean()
        rule.save()
        rule.partners.set([partners[k - 1] for k in spec.get("partners", [])])
        if spec.get("notify_users"):
            rule.notify_users.set([manager])
        rules.append(rule)
    active = notification_rules.active_rules()
    assert [r.pk for r in active] == [r.pk for r in rules]
    for rule, spec in zip(active, BENCH_RULES, strict=False):
        assert notification_rules.channels(rule) == spec["channels"], (rule.name, spec["channels"])
    return rules


def load(n: int, partners: list[int]) -> dict[str, float]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    execute(f"TRUNCATE {TICKETS}, {EVENTS}, {CLOCKS} RESTART IDENTITY CASCADE")
    timings["truncate"] = time.perf_counter() - t0
    params = {"partners": partners, "now": NOW, "earlier": EARLIER, "loaded": LOADED_AT, "n": n}
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


def rule_condition(spec: dict[str, Any], partners: list[int], k: int) -> tuple[str, dict[str, Any]]:
    """A bench rule's filters on ``c`` (clock) and ``t`` (ticket), written independently of
    ``policies.notifications`` (no rule here filters by metric or policy)."""
    sql, params = "TRUE", {}
    if spec.get("priorities"):
        sql += f" AND t.priority = ANY(%(prio{k})s)"
        params[f"prio{k}"] = list(spec["priorities"])
    if spec.get("partners"):
        sql += f" AND t.partner_id = ANY(%(part{k})s)"
        params[f"part{k}"] = [partners[p - 1] for p in spec["partners"]]
    return sql, params


def expected_notifications(
    rules: list[NotificationRule], partners: list[int], instants: list[datetime]
) -> dict[tuple[int, str, datetime], int]:
    """{(rule, channel, tick instant): rows} for ticks at ``instants[1:]`` (watermark before:
    ``instants[0]``): one row per channel for each running clock whose instant for the rule's
    trigger lies in the tick's window and that passes the rule's filters."""
    if not rules:
        return {}
    filters, params = [], {f"t{k}": t for k, t in enumerate(instants)}
    keys = []
    for k, (rule, spec) in enumerate(zip(rules, BENCH_RULES, strict=False)):
        field = RULE_INSTANTS[spec["trigger"]]
        condition, extra = rule_condition(spec, partners, k)
        params.update(extra)
        for w in range(1, len(instants)):
            filters.append(
                f"count(*) FILTER (WHERE c.{field} > %(t{w - 1})s AND c.{field} <= %(t{w})s "
                f"AND {condition})"
            )
            keys.append((rule, spec, instants[w]))
    (row,) = fetchall(
        f"SELECT {', '.join(filters)} FROM {CLOCKS} AS c JOIN {TICKETS} AS t "
        "ON t.id = c.ticket_id WHERE c.status = 'running'",
        params,
    )
    expected = {}
    for (rule, spec, when), count in zip(keys, row, strict=True):
        for channel in spec["channels"]:
            if count:
                expected[(rule.pk, channel, when)] = int(count)
    return expected


def check_notifications(expected: dict[tuple[int, str, datetime], int]) -> int:
    """The outbox holds exactly the expected rows, each pending with the clock's instant for
    its trigger as event and due at once (level 3: the rule's minutes after the breach).
    Returns how many rows it holds."""
    found = {
        (rule, channel, when): int(count)
        for rule, channel, when, count in fetchall(
            f"SELECT rule_id, channel, created_at, count(*) FROM {NOTIFICATIONS} "
            "GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        )
    }
    assert found == expected, f"notification rows {found}, expected {expected}"
    ((wrong,),) = fetchall(
        f"""SELECT count(*) FROM {NOTIFICATIONS} AS n
            JOIN {NotificationRule._meta.db_table} AS r ON r.id = n.rule_id
            LEFT JOIN {CLOCKS} AS c
                ON (c.ticket_id, c.metric, c.cycle) = (n.ticket_id, n.metric, n.cycle)
            WHERE c.id IS NULL OR n.trigger <> r.trigger OR n.sequence <> 0
               OR n.status <> 'pending' OR n.attempts <> 0
               OR n.event_at <> CASE n.trigger WHEN 'yellow' THEN c.yellow_at
                                 WHEN 'orange' THEN c.orange_at ELSE c.due_at END
               OR n.next_attempt_at <> CASE WHEN n.trigger = 'overdue'
                    THEN c.due_at + interval '1 minute' * r.overdue_minutes
                    ELSE n.created_at END"""
    )
    assert wrong == 0, f"{wrong} notification rows with the wrong clock, instants or state"
    return sum(found.values())


def notification_rows() -> int:
    return int(fetchall(f"SELECT count(*) FROM {NOTIFICATIONS}")[0][0])


ENQUEUED = [0]


def count_enqueue() -> None:
    """Stands in for ``detect.enqueue_delivery`` (a Celery publish on commit)."""
    ENQUEUED[0] += 1


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
    execute(f"TRUNCATE {NOTIFICATIONS}, {ACKS}")  # the previous tick writes its own rows
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
        rows0 = notification_rows()
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
        self.notified = notification_rows() - rows0

    @property
    def on_tick_queries(self) -> list[dict[str, Any]]:
        """The queries between the clock UPDATE and the watermark UPDATE: on_tick's."""
        sqls = [q["sql"] for q in self.queries]
        start = next((k for k, sql in enumerate(sqls) if sql.startswith(f'UPDATE "{CLOCKS}"')), -1)
        end = next((k for k, sql in enumerate(sqls) if sql.startswith(f'UPDATE "{WATERMARK}"')), -1)
        return self.queries[start + 1 : end] if 0 <= start < end else []

    @property
    def on_tick_ms(self) -> float:
        """Time of on_tick's queries (its deferred foreign key checks run at COMMIT)."""
        return sum(float(q["time"]) * 1000 for q in self.on_tick_queries)

    @property
    def commit_ms(self) -> float:
        return sum(float(q["time"]) * 1000 for q in self.queries if q["sql"] == "COMMIT")

    @property
    def hot_pct(self) -> float:
        return 100 * self.hot / self.updates if self.updates else math.nan

    def text(self) -> str:
        return (
            f"moved {self.moved} in {self.ms:.1f} ms, {len(self.queries)} queries "
            f"({query_ms(self.queries)} ms), CPU {self.server_ms:.0f} ms server + "
            f"{self.python_ms:.0f} ms Python, WAL {self.wal_mb:.1f} MB, "
            f"HOT {self.hot}/{self.updates}"
            + (
                f", {self.notified:,} notification rows (on_tick {self.on_tick_ms:.0f} ms, "
                f"COMMIT {self.commit_ms:.0f} ms)"
                if len(self.on_tick_queries) > 1  # more than the rule lookup: rules exist
                else ""
            )
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


def measure(
    n: int, reps: int, due: int, rules: list[NotificationRule], partners: list[int]
) -> dict[str, Any]:
    runs: list[tuple[Tick, Tick, Tick]] = []
    minute = NOW + timedelta(minutes=1)
    instants = [EARLIER, PREVIOUS, NOW, minute]
    expected = expected_notifications(rules, partners, instants)
    expected_now = sum(v for (_, _, when), v in expected.items() if when == NOW)
    expected_later = sum(v for (_, _, when), v in expected.items() if when == minute)
    retick: list[tuple[float, int]] = []
    for rep in range(reps):
        previous = prepare()
        first = Tick(NOW)
        assert first.moved == due, (first.moved, due)
        assert first.updates == due, f"pg_stat_user_tables counted {first.updates} updates"
        assert first.notified == expected_now, (first.notified, expected_now)
        again = Tick(NOW)
        assert again.moved == again.updates == again.notified == 0, again.text()
        later = Tick(minute)
        assert later.notified == expected_later, (later.notified, expected_later)
        counts = check_ticks(instants, [previous, first.moved, later.moved])
        total = check_notifications(expected)
        again_text = ""
        if rules:  # on_tick itself again, over both ticks' windows: every row exists
            with transaction.atomic():
                t0 = time.perf_counter()
                again_rows = detect.on_tick(lower=PREVIOUS, now=minute)
                retick.append(((time.perf_counter() - t0) * 1000, again_rows))
            assert again_rows == 0 and notification_rows() == total, (again_rows, total)
            again_text = (
                f"\n         on_tick again over ({PREVIOUS:%H:%M}, {minute:%H:%M}]: "
                f"{again_rows} rows in {retick[-1][0]:.0f} ms; outbox checked: {total:,} rows"
            )
        print(
            f"  rep {rep + 1}: {first.text()}\n"
            f"         again: moved {again.moved} in {again.ms:.1f} ms, "
            f"{len(again.queries)} queries, {again.notified} notification rows; "
            f"a minute later: {later.text()}{again_text}",
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
        "rules": len(rules),
        "notified": firsts[-1].notified,
        "on_tick_ms": median(t.on_tick_ms for t in firsts),
        "commit_ms": median(t.commit_ms for t in firsts),
        "later_notified": runs[-1][2].notified,
        "retick_ms": median(ms for ms, _ in retick) if retick else math.nan,
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
        "--rules",
        type=int,
        default=0,
        help=f"active notification rules during the ticks (0..{len(BENCH_RULES)}; BENCH_RULES)",
    )
    parser.add_argument(
        "--alternatives",
        action="store_true",
        help="at the largest size, also time the tick under other settings (slow)",
    )
    args = parser.parse_args()
    if not 0 <= args.ticks <= 29:
        parser.error("--ticks must be 0..29 (at NOW + 29 min yellow clocks start turning orange)")
    if not 0 <= args.rules <= len(BENCH_RULES):
        parser.error(f"--rules must be 0..{len(BENCH_RULES)}")
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
    partners = bench_partners()
    rules = create_rules(args.rules, partners)
    detect.enqueue_delivery = count_enqueue  # no Celery publish to a shared broker
    print(
        f"{len(rules)} active notification rule(s)"
        + "".join(
            f"\n  {r.name} [{', '.join(s['channels'])}]"
            for r, s in zip(rules, BENCH_RULES, strict=False)
        )
    )
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
            timings = load(n, partners)
            due = check_load(n)
            print(
                "  loaded in "
                + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
                + f"; {due:,} clocks due",
                flush=True,
            )
            result = measure(n, args.reps, due, rules, partners)
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
    if rules:
        print(
            f"\nWith {len(rules)} notification rule(s) (median ms):\n"
            "| tickets | rules | notification rows | on_tick ms | COMMIT ms "
            "| +1 min rows | on_tick again ms |\n|---:|---:|---:|---:|---:|---:|---:|"
        )
        for r in results:
            print(
                f"| {r['size']:,} | {r['rules']} | {r['notified']:,} | {r['on_tick_ms']:.1f} "
                f"| {r['commit_ms']:.1f} | {r['later_notified']:,} | {r['retick_ms']:.1f} |"
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
