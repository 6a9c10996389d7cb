"""Detection: every bucket change writes its notification rows in the same transaction.

The tick calls ``on_tick`` (one ``INSERT … SELECT`` for every active rule and channel over its
window), a re-sync calls ``on_sync`` (the clocks of the tickets whose bucket got worse). Both
write ``Notification`` rows with ON CONFLICT DO NOTHING on a unique (rule, clock, trigger,
repeat, channel) key, and ask a worker to deliver after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import DurationField, JSONField
from django.db.models.constants import OnConflict

from policies.models import (
    ACTIVE_CLOCK_STATUSES,
    BUCKET_RANK,
    TRIGGER_BUCKETS,
    ClockStatus,
    Notification,
    NotificationRule,
    NotificationStatus,
    SLAClock,
    Trigger,
)
from policies.notifications.rules import _ids, active_rules, channels, rule_applies
from slaboard.celery import app as celery_app
from tickets.models import Ticket

log = logging.getLogger(__name__)


#: The very first tick (no watermark yet) notifies only what changed this recently: a fresh
#: install must not mail every clock that was red before the rules existed.
FIRST_TICK_WINDOW = timedelta(minutes=2)


#: A breach learnt of this long after it happened, on a clock already met or stopped, is
#: history being imported (API backfills, merges): recorded on the clock, not announced.
HISTORY_HORIZON = timedelta(hours=1)


#: The stored instant at which a clock crosses each trigger's threshold.
INSTANT_FIELDS: dict[str, str] = {
    Trigger.YELLOW: "yellow_at",
    Trigger.ORANGE: "orange_at",
    Trigger.RED: "due_at",
    Trigger.OVERDUE: "due_at",
}


_COLUMNS = [
    "rule_id",
    "ticket_id",
    "metric",
    "cycle",
    "trigger",
    "sequence",
    "channel",
    "event_at",
    "status",
    "attempts",
    "next_attempt_at",
    "created_at",
    "recipients",
    "last_error",
    "history",
]


def _window_insert(
    rules: list[NotificationRule], *, lower: datetime, now: datetime
) -> tuple[str, list[Any]] | None:
    """The tick's one ``INSERT … SELECT`` for every active rule and channel, or None.

    ``w`` (a CTE: PostgreSQL materialises it, as it is read more than once) holds the running
    clocks with an instant the rules watch in ``(lower, now]``, with their ticket's priority
    and partner when a rule filters on them: the partial indexes on ``yellow_at``,
    ``orange_at`` and ``due_at`` find them, and their heap pages are read once, not once per
    rule and channel. Then one ``SELECT`` per rule and channel over ``w``, under UNION ALL:
    the clocks whose instant for the rule's trigger lies in the window and that pass its
    filters (empty = any; as ``rule_applies``). Duplicates are ignored with the backend's own
    "insert or ignore" syntax (PostgreSQL and SQLite).
    """
    pairs = [(rule, channel) for rule in rules for channel in channels(rule)]
    if not pairs:
        return None
    ops = connection.ops
    qn = ops.quote_name
    lo, hi = ops.adapt_datetimefield_value(lower), ops.adapt_datetimefield_value(now)
    fields = sorted({INSTANT_FIELDS[rule.trigger] for rule, _ in pairs})
    tickets = any(rule.priorities or _ids(rule, "partners") for rule, _ in pairs)
    columns = ["ticket_id", "metric", "cycle", "policy_id", *fields]
    select = [f"c.{qn(name)}" for name in columns]
    join = ""
    if tickets:  # every clock has its ticket: the inner join keeps every clock
        select += [f"t.{qn('priority')}", f"t.{qn('partner_id')}"]
        join = f" INNER JOIN {qn(Ticket._meta.db_table)} t ON t.{qn('id')} = c.{qn('ticket_id')}"
    window = " OR ".join(f"(c.{qn(f)} > %s AND c.{qn(f)} <= %s)" for f in fields)
    params: list[Any] = [ClockStatus.RUNNING.value]
    for _ in fields:
        params += [lo, hi]
    cte = (
        f"WITH w AS (SELECT {', '.join(select)} FROM {qn(SLAClock._meta.db_table)} c{join}"
        f" WHERE c.{qn('status')} = %s AND ({window}))"
    )
    history = JSONField().get_db_prep_value([], connection)
    branches = []
    for rule, channel in pairs:
        field = qn(INSTANT_FIELDS[rule.trigger])
        if rule.trigger == Trigger.OVERDUE:
            delay = timedelta(minutes=rule.overdue_minutes or 0)
            due = ops.combine_duration_expression("+", [f"w.{qn('due_at')}", "%s"])
            due_params = [DurationField().get_db_prep_value(delay, connection)]
        else:
            due, due_params = "%s", [hi]
        filters = [f"w.{field} > %s", f"w.{field} <= %s"]
        filter_params: list[Any] = [lo, hi]
        for column, values in (
            ("metric", list(rule.metrics or [])),
            ("priority", list(rule.priorities or [])),
            ("partner_id", sorted(_ids(rule, "partners"))),
            ("policy_id", sorted(_ids(rule, "policies"))),
        ):
            if values:
                filters.append(f"w.{qn(column)} IN ({', '.join(['%s'] * len(values))})")
                filter_params += values
        branches.append(
            f"SELECT %s, w.{qn('ticket_id')}, w.{qn('metric')}, w.{qn('cycle')}, %s, 0, %s, "
            f"w.{field}, %s, 0, {due}, %s, %s, %s, %s FROM w WHERE {' AND '.join(filters)}"
        )
        params += [rule.pk, rule.trigger, channel, NotificationStatus.PENDING.value]
        params += [*due_params, hi, "", "", history, *filter_params]
    table = qn(Notification._meta.db_table)
    head = ops.insert_statement(on_conflict=OnConflict.IGNORE)
    tail = ops.on_conflict_suffix_sql([], OnConflict.IGNORE, [], []) or ""
    names = ", ".join(qn(name) for name in _COLUMNS)
    # WITH after INSERT: Python's sqlite3 reports a rowcount only for statements that start
    # with INSERT, UPDATE, DELETE or REPLACE.
    sql = f"{head} {table} ({names}) {cte} {' UNION ALL '.join(branches)} {tail}"
    return sql, params


def on_tick(*, lower: datetime | None, now: datetime) -> int:
    """Outbox rows for running clocks whose threshold fell in ``(lower, now]``.

    Called by the tick inside its transaction, after it moved clocks. Queries: one when no rule
    is active, else four plus one INSERT … SELECT for all rules and channels (``_window_insert``)
    — never one per clock, nor one per rule. Clocks a re-sync moved first get their rows here
    too; the unique key drops the repeats.
    """
    rules = active_rules()
    if not rules:
        return 0
    if lower is None:
        lower = now - FIRST_TICK_WINDOW
    statement = _window_insert(rules, lower=lower, now=now)
    if statement is None:
        return 0
    with connection.cursor() as cursor:
        cursor.execute(*statement)
        inserted = max(cursor.rowcount, 0)
    if inserted:
        transaction.on_commit(enqueue_delivery)
    return inserted


SyncedClocks = tuple[Ticket, Sequence[tuple[SLAClock, str]], datetime]


def on_sync(synced: Iterable[SyncedClocks]) -> int:
    """Outbox rows for the clocks whose bucket got worse in a re-sync of one or many tickets.

    ``synced`` holds, per ticket, each such clock (already holding its new state) paired with
    its bucket before (green for a new clock), and the sync's ``now``. Every threshold crossed
    fires its rules once: warnings only for clocks still running or paused, a breach also for
    a clock met late or stopped, level 3 only for a running breach. Rules are read once and
    the rows written in one INSERT, however many tickets.
    """
    synced = [item for item in synced if item[1]]
    if not synced:
        return 0
    rules = active_rules()
    if not rules:
        return 0
    rows: list[Notification] = []
    for ticket, changes, now in synced:
        for clock, before in changes:
            rows += _rows_for(rules, ticket, clock, before, now)
    if rows:
        Notification.objects.bulk_create(rows, ignore_conflicts=True)
        transaction.on_commit(enqueue_delivery)
    return len(rows)


def _rows_for(
    rules: list[NotificationRule], ticket: Ticket, clock: SLAClock, before: str, now: datetime
) -> list[Notification]:
    rows: list[Notification] = []
    old_rank, new_rank = BUCKET_RANK.get(before, 0), BUCKET_RANK.get(clock.bucket, 0)
    for rule in rules:
        if not old_rank < BUCKET_RANK[TRIGGER_BUCKETS[rule.trigger]] <= new_rank:
            continue
        if rule.trigger in (Trigger.YELLOW, Trigger.ORANGE):
            if clock.status not in ACTIVE_CLOCK_STATUSES:
                continue
        elif rule.trigger == Trigger.OVERDUE and clock.status != ClockStatus.RUNNING:
            continue
        instant = getattr(clock, INSTANT_FIELDS[rule.trigger])
        if rule.trigger in (Trigger.RED, Trigger.OVERDUE):
            instant = clock.breached_at or clock.due_at
        if instant is None or not rule_applies(rule, ticket=ticket, clock=clock):
            continue
        if clock.status not in ACTIVE_CLOCK_STATUSES and instant < now - HISTORY_HORIZON:
            continue
        due = now
        if rule.trigger == Trigger.OVERDUE:
            due = max(now, instant + timedelta(minutes=rule.overdue_minutes or 0))
        for channel in channels(rule):
            rows.append(
                Notification(
                    rule=rule,
                    ticket_id=ticket.pk,
                    metric=clock.metric,
                    cycle=clock.cycle,
                    trigger=rule.trigger,
                    channel=channel,
                    event_at=instant,
                    next_attempt_at=due,
                    created_at=now,
                )
            )
    return rows


def enqueue_delivery() -> None:
    """Ask a worker to deliver now. Never raises: the minute sweep delivers anyway."""
    try:
        # By name: the task module is a later layer (policies.tasks).
        celery_app.send_task("policies.deliver_notifications", expires=300)
    except Exception as error:  # broker down: the beat's sweep will deliver
        log.warning("could not schedule notification delivery: %s", error)
