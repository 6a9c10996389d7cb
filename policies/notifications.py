"""Notifications and escalation: rules → an outbox of unique rows → email and signed webhooks.

The design (``docs/notifications.md``) in four steps:

1. **Detect.** Every bucket change is made either by the minute tick or by a re-sync, and each
   calls one hook in the same transaction: ``on_tick`` (one ``INSERT … SELECT`` for every
   active rule and channel over the tick's window, nothing at all when no rule is active) or
   ``on_sync`` (the clocks of one ticket whose bucket got worse). Both write ``Notification``
   rows with ON CONFLICT DO NOTHING on a unique (rule, clock, trigger, repeat, channel) key:
   two beats, overlapping tick windows, a re-sync before the tick, a replayed event — one row.
2. **Schedule.** A row is due at once, or (level 3) N minutes after the breach; a level 3 that
   was sent schedules its next repeat until the clock is acknowledged, met or no longer red.
3. **Deliver.** ``deliver_due`` claims one due row at a time (``SELECT … FOR UPDATE SKIP
   LOCKED`` and a conditional update to ``sending`` with a lease), sends it outside any
   transaction, and records the outcome with a conditional update: sent, retried with
   exponential backoff, failed with the reason, deferred by quiet hours, or skipped when it no
   longer applies. A redelivered task finds nothing due; a worker that dies mid-send leaves a
   lease that expires, and the row is retried (the receiver can dedupe by its delivery id).
4. **Acknowledge.** ``acknowledge`` records who took an escalated clock in hand; pending level
   3 messages and their repeats are skipped, and boards show it.

Celery only wraps ``deliver_due`` (``policies.tasks``); tests call it directly with ``now``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import smtplib
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parseaddr
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core import signing
from django.core.mail import EmailMessage
from django.db import connection, models, transaction
from django.db.models import DurationField, JSONField
from django.db.models.constants import OnConflict
from django.template.loader import render_to_string
from django.urls import reverse

from policies.models import (
    ACTIVE_CLOCK_STATUSES,
    BUCKET_RANK,
    DUE_STATUSES,
    ESCALATION_TRIGGERS,
    TRIGGER_BUCKETS,
    Acknowledgement,
    Bucket,
    Channel,
    ClockStatus,
    Metric,
    Notification,
    NotificationRule,
    NotificationStatus,
    PayloadFormat,
    SLAClock,
    Trigger,
)
from tickets.models import Ticket, User

log = logging.getLogger(__name__)

#: A sending worker owns its row this long; after it the sweep retries (the worker died).
LEASE = timedelta(minutes=10)
#: Attempts before a retryable failure becomes "failed"; waits 1, 2, 4, 8, 16 min between.
MAX_ATTEMPTS = 6
BACKOFF_BASE = timedelta(minutes=1)
MAX_BACKOFF = timedelta(hours=1)
WEBHOOK_TIMEOUT = 5.0
#: Level 3 repeats at most this many times (a safety net; acknowledging stops them sooner).
MAX_REPEATS = 48
ACK_SALT = "slaboard.notifications.acknowledge"
ACK_MAX_AGE = timedelta(days=7)
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
HEADLINES: dict[str, str] = {
    Trigger.YELLOW: "Warning",
    Trigger.ORANGE: "Danger",
    Trigger.RED: "Breached",
    Trigger.OVERDUE: "Still breached, not acknowledged",
}


# --------------------------------------------------------------------------- rules


def active_rules() -> list[NotificationRule]:
    """Active rules with their partners, policies and users (one query when there are none)."""
    rules = list(NotificationRule.objects.filter(active=True).order_by("pk"))
    if rules:
        models.prefetch_related_objects(rules, "policies", "partners", "notify_users")
    return rules


def _ids(rule: NotificationRule, relation: str) -> set[int]:
    return {obj.pk for obj in getattr(rule, relation).all()}


def rule_applies(rule: NotificationRule, *, ticket: Ticket, clock: SLAClock) -> bool:
    """Whether the rule's filters (empty = any) hold for this clock of this ticket."""
    if rule.metrics and clock.metric not in rule.metrics:
        return False
    if rule.priorities and ticket.priority not in rule.priorities:
        return False
    partners = _ids(rule, "partners")
    if partners and ticket.partner_id not in partners:
        return False
    policies = _ids(rule, "policies")
    return not policies or clock.policy_id in policies


def channels(rule: NotificationRule) -> list[str]:
    found: list[str] = []
    if rule.wants_email(has_users=bool(rule.notify_users.all())):
        found.append(Channel.EMAIL)
    if rule.webhook_url:
        found.append(Channel.WEBHOOK)
    return found


# --------------------------------------------------------------------------- detection


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


def on_sync(*, ticket: Ticket, changes: Iterable[tuple[SLAClock, str]], now: datetime) -> int:
    """Outbox rows for one ticket's clocks whose bucket got worse in a re-sync.

    ``changes`` pairs each such clock (already holding its new state) with its bucket before
    (green for a new clock). Every threshold crossed fires its rules once: warnings only for
    clocks still running or paused, a breach also for a clock met late or stopped, level 3
    only for a running breach.
    """
    changes = list(changes)
    if not changes:
        return 0
    rules = active_rules()
    if not rules:
        return 0
    rows: list[Notification] = []
    for clock, before in changes:
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
    if rows:
        Notification.objects.bulk_create(rows, ignore_conflicts=True)
        transaction.on_commit(enqueue_delivery)
    return len(rows)


def enqueue_delivery() -> None:
    """Ask a worker to deliver now. Never raises: the minute sweep delivers anyway."""
    try:
        from policies.tasks import deliver_notifications_task

        deliver_notifications_task.apply_async(expires=300)
    except Exception as error:  # broker down: the beat's sweep will deliver
        log.warning("could not schedule notification delivery: %s", error)


# --------------------------------------------------------------------------- delivery


@dataclass
class Outcome:
    """What one attempt did: ``sent``, ``retry``, ``failed`` or ``skipped``."""

    result: str
    detail: str
    recipients: str = ""
    retry_after: float | None = None


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """Wait before the next attempt after ``attempts`` failed ones: 1, 2, 4, 8 … min."""
    wait = BACKOFF_BASE * (2 ** max(attempts - 1, 0))
    if retry_after is not None:
        wait = max(wait, timedelta(seconds=retry_after))
    return min(wait, MAX_BACKOFF)


def quiet_until(rule: NotificationRule, now: datetime) -> datetime | None:
    """When the rule's quiet hours end, or None when it may deliver now."""
    if rule.quiet_hours_id is None:
        return None
    from policies.actions import business_calendar
    from policies.businesstime import CalendarError

    assert rule.quiet_hours is not None
    calendar = business_calendar(rule.quiet_hours)
    try:
        if calendar.is_open(now):
            return None
        opens: datetime = calendar.next_open(now)
    except CalendarError as error:  # no working time at all: deliver rather than never
        log.warning("quiet hours of rule %s ignored: %s", rule.pk, error)
        return None
    return opens


def _entry(now: datetime, attempt: int, outcome: str, detail: str) -> dict[str, Any]:
    return {"at": now.isoformat(), "attempt": attempt, "outcome": outcome, "detail": detail}


def claim_next(*, now: datetime) -> Notification | None:
    """Claim the next due row for this worker (status ``sending``, a lease, one more attempt).

    ``SELECT … FOR UPDATE SKIP LOCKED`` lets workers claim side by side; the conditional
    update makes the claim safe on databases without row locks too. Rows in quiet hours are
    deferred to the calendar's next opening on the way.
    """
    for _ in range(1000):
        with transaction.atomic():
            row = (
                Notification.objects.select_for_update(skip_locked=True)
                .filter(status__in=DUE_STATUSES, next_attempt_at__lte=now)
                .order_by("next_attempt_at", "pk")
                .first()
            )
            if row is None:
                return None
            previous = (row.status, row.attempts)
            claimed = Notification.objects.filter(
                pk=row.pk, status=previous[0], attempts=previous[1]
            )
            history = list(row.history or [])
            if row.status == NotificationStatus.SENDING:
                history.append(
                    _entry(now, row.attempts, "lease expired", "the worker did not finish")
                )
            opens = quiet_until(row.rule, now)
            if opens is not None:
                history.append(_entry(now, row.attempts, "deferred", f"quiet hours until {opens}"))
                claimed.update(
                    status=NotificationStatus.DEFERRED, next_attempt_at=opens, history=history
                )
                continue
            if not claimed.update(
                status=NotificationStatus.SENDING,
                attempts=row.attempts + 1,
                next_attempt_at=now + LEASE,
                history=history,
            ):
                continue  # another worker took it between our read and our write
            row.status, row.attempts, row.history = (
                NotificationStatus.SENDING,
                row.attempts + 1,
                history,
            )
            return row
    return None


def deliver_due(*, now: datetime, limit: int = 20) -> int:
    """Deliver up to ``limit`` due notifications, one claim at a time; return how many."""
    handled = 0
    while handled < limit:
        row = claim_next(now=now)
        if row is None:
            break
        deliver_claimed(row, now=now)
        handled += 1
    return handled


def _clock(row: Notification) -> SLAClock | None:
    clocks = SLAClock.objects.filter(ticket_id=row.ticket_id, metric=row.metric, cycle=row.cycle)
    return clocks.first()


def stale_reason(row: Notification, clock: SLAClock | None) -> str:
    """Why a message no longer applies at delivery ("" if it does). A breach always does."""
    if not row.rule.active:
        return "the rule was deactivated"
    if row.trigger == Trigger.RED:
        return ""
    if clock is None:
        return "the clock no longer exists (re-targeted)"
    if BUCKET_RANK.get(clock.bucket, 0) < BUCKET_RANK[TRIGGER_BUCKETS[row.trigger]]:
        return f"the clock is {clock.bucket} again (due time moved)"
    if row.trigger == Trigger.OVERDUE:
        if clock.status != ClockStatus.RUNNING:
            return f"the clock is {clock.get_status_display().lower()}"
        ack = (
            Acknowledgement.objects.filter(
                ticket_id=row.ticket_id, metric=row.metric, cycle=row.cycle
            )
            .select_related("user")
            .first()
        )
        if ack is not None:
            return str(ack)
    elif clock.status not in ACTIVE_CLOCK_STATUSES:
        return f"the clock was {clock.get_status_display().lower()} before delivery"
    return ""


def deliver_claimed(row: Notification, *, now: datetime) -> Outcome:
    """Send one claimed row and record the outcome."""
    rule = row.rule
    clock = _clock(row)
    reason = stale_reason(row, clock)
    if reason:
        outcome = Outcome("skipped", reason)
    else:
        ticket = Ticket.objects.select_related("partner", "customer", "assignee").get(
            pk=row.ticket_id
        )
        context = message_context(row, rule, ticket, clock, now)
        try:
            if row.channel == Channel.EMAIL:
                outcome = send_email(row, rule, ticket, context)
            else:
                outcome = send_webhook(row, rule, context, now)
        except Exception as error:  # never wedge the outbox on one bad row
            log.exception("notification %s: unexpected error", row.pk)
            outcome = Outcome("retry", f"unexpected error: {type(error).__name__}: {error}")
    finish(row, outcome, now=now)
    return outcome


def finish(row: Notification, outcome: Outcome, *, now: datetime) -> bool:
    """Record an attempt's outcome if this worker still owns the row (conditional update)."""
    result = outcome.result
    detail = outcome.detail
    fields: dict[str, Any] = {}
    if result == "sent":
        fields = {"status": NotificationStatus.SENT, "sent_at": now, "last_error": ""}
    elif result == "skipped":
        fields = {"status": NotificationStatus.SKIPPED, "last_error": detail}
    elif result == "retry" and row.attempts < MAX_ATTEMPTS:
        wait = backoff(row.attempts, outcome.retry_after)
        fields = {
            "status": NotificationStatus.PENDING,
            "next_attempt_at": now + wait,
            "last_error": detail,
        }
        detail = f"{detail}; retry in {int(wait.total_seconds() // 60) or 1} min"
    else:
        if result == "retry":
            detail = f"gave up after {row.attempts} attempts: {detail}"
            result = "failed"
        fields = {"status": NotificationStatus.FAILED, "last_error": detail}
    if outcome.recipients:
        fields["recipients"] = outcome.recipients
    fields["history"] = [*row.history, _entry(now, row.attempts, result, detail)]
    with transaction.atomic():
        owned = Notification.objects.filter(
            pk=row.pk, status=NotificationStatus.SENDING, attempts=row.attempts
        ).update(**fields)
        if not owned:
            log.warning("notification %s: lease lost before recording %s", row.pk, result)
            return False
        rule = row.rule
        if (
            result == "sent"
            and row.trigger == Trigger.OVERDUE
            and rule.repeat_minutes
            and row.sequence < MAX_REPEATS
        ):
            Notification.objects.bulk_create(
                [
                    Notification(
                        rule=rule,
                        ticket_id=row.ticket_id,
                        metric=row.metric,
                        cycle=row.cycle,
                        trigger=row.trigger,
                        sequence=row.sequence + 1,
                        channel=row.channel,
                        event_at=row.event_at,
                        next_attempt_at=now + timedelta(minutes=rule.repeat_minutes),
                        created_at=now,
                    )
                ],
                ignore_conflicts=True,
            )
    for name, value in fields.items():
        setattr(row, name, value)
    return True


# --------------------------------------------------------------------------- messages


def absolute(path: str) -> str:
    return f"{settings.SITE_URL.rstrip('/')}{path}"


def ack_token(notification_id: int) -> str:
    return signing.dumps(notification_id, salt=ACK_SALT)


def read_ack_token(token: str) -> int:
    """The notification id in an acknowledge link; raises ``signing.BadSignature`` (or
    ``SignatureExpired``) when it was tampered with or is older than ``ACK_MAX_AGE``."""
    value = signing.loads(token, salt=ACK_SALT, max_age=ACK_MAX_AGE)
    if not isinstance(value, int):
        raise signing.BadSignature("not an acknowledge link")
    return value


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _local(instant: datetime | None, zone: ZoneInfo) -> str:
    """An instant as the partner reads it: "Tue 17 Nov 2026, 11:00 (Europe/Paris)"."""
    if instant is None:
        return ""
    return f"{instant.astimezone(zone):%a %d %b %Y, %H:%M} ({zone.key})"


def _chat_escape(text: str) -> str:
    """Slack and Teams read <…> as links and &…; as entities: escape user text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def message_context(
    row: Notification,
    rule: NotificationRule,
    ticket: Ticket,
    clock: SLAClock | None,
    now: datetime,
) -> dict[str, Any]:
    zone = _zone(ticket.partner.timezone)
    due = clock.due_at if clock is not None else None
    breached = clock.breached_at if clock is not None else None
    reference = ticket.external_id
    if ticket.source != "slaboard":
        reference = f"{ticket.source}:{ticket.external_id}"
    metric = Metric(row.metric).label if row.metric in Metric.values else row.metric
    headline = HEADLINES.get(row.trigger, row.trigger)
    if row.trigger == Trigger.OVERDUE and rule.overdue_minutes:
        headline = f"Breached {rule.overdue_minutes} min ago, not acknowledged"
    return {
        "notification": row,
        "rule": rule,
        "ticket": ticket,
        "clock": clock,
        "reference": reference,
        "metric": metric,
        "headline": headline,
        "level": row.level,
        "repeat": row.sequence,
        "bucket": Bucket(clock.bucket).label if clock is not None else "",
        "zone": zone.key,
        "due_text": _local(due, zone),
        "breached_text": _local(breached, zone),
        "queue_url": absolute(reverse("queue")),
        "ticket_url": absolute(reverse("admin:tickets_ticket_change", args=[ticket.pk])),
        "ack_url": absolute(reverse("acknowledge", args=[ack_token(row.pk)])),
        "chat_subject": _chat_escape(ticket.subject),
        "chat_customer": _chat_escape(str(ticket.customer or "—")),
        "chat_partner": _chat_escape(str(ticket.partner)),
    }


def email_recipients(rule: NotificationRule, ticket: Ticket) -> list[str]:
    """The rule's addresses for this ticket, each once (case-insensitively), in order."""
    addresses: list[str] = []
    if rule.notify_assignee and ticket.assignee is not None and ticket.assignee.email:
        addresses.append(ticket.assignee.email)
    if rule.notify_partner_contacts:
        addresses += ticket.partner.contact_email_list()
    addresses += [u.email for u in rule.notify_users.all() if u.email and u.is_active]
    addresses += rule.email_list()
    seen: set[str] = set()
    unique = []
    for address in addresses:
        if address.lower() not in seen:
            seen.add(address.lower())
            unique.append(address)
    return unique


def _message_id(row: Notification) -> str:
    domain = parseaddr(settings.DEFAULT_FROM_EMAIL)[1].rpartition("@")[2] or "slaboard.local"
    return f"<slaboard.notification.{row.pk}@{domain}>"


def send_email(
    row: Notification, rule: NotificationRule, ticket: Ticket, context: dict[str, Any]
) -> Outcome:
    recipients = email_recipients(rule, ticket)
    if not recipients:
        return Outcome("skipped", "no email recipients (no assignee, contacts or addresses)")
    subject = " ".join(render_to_string("notifications/subject.txt", context).split())
    body = render_to_string("notifications/email.txt", context)
    message = EmailMessage(
        subject=subject,
        body=body,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        # The same Message-ID on a retry lets mail systems drop a copy a dead worker sent.
        headers={"Message-ID": _message_id(row), "X-Slaboard-Delivery": str(row.pk)},
    )
    who = ", ".join(recipients)
    try:
        message.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as error:
        refused = ", ".join(sorted(error.recipients))
        return Outcome("failed", f"the mail server refused {refused}", who)
    except (smtplib.SMTPException, OSError) as error:
        return Outcome("retry", f"could not send the email: {error}", who)
    return Outcome("sent", f"emailed {who}", who)


def webhook_payload(row: Notification, context: dict[str, Any], now: datetime) -> dict[str, Any]:
    text = render_to_string("notifications/chat.txt", context).strip()
    rule: NotificationRule = context["rule"]
    if rule.webhook_format == PayloadFormat.TEXT:
        return {"text": text}
    ticket: Ticket = context["ticket"]
    clock: SLAClock | None = context["clock"]
    return {
        "type": f"sla.{row.trigger}",
        "delivery": row.pk,
        "level": row.level,
        "repeat": row.sequence,
        "rule": {"id": rule.pk, "name": rule.name},
        "occurred_at": row.event_at.isoformat(),
        "sent_at": now.isoformat(),
        "ticket": {
            "id": ticket.pk,
            "source": ticket.source,
            "external_id": ticket.external_id,
            "subject": ticket.subject,
            "priority": ticket.priority,
            "status": ticket.status,
            "partner": ticket.partner.name,
            "customer": ticket.customer.name if ticket.customer else None,
            "assignee": ticket.assignee.get_username() if ticket.assignee else None,
            "team": ticket.team,
            "url": context["ticket_url"],
        },
        "clock": {
            "metric": row.metric,
            "cycle": row.cycle,
            "bucket": clock.bucket if clock else None,
            "status": clock.status if clock else None,
            "due_at": clock.due_at.isoformat() if clock and clock.due_at else None,
            "breached_at": clock.breached_at.isoformat() if clock and clock.breached_at else None,
        },
        "acknowledge_url": context["ack_url"],
        "text": text,
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`` (the X-Slaboard-Signature)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is reported, not followed (a POST must not turn into a GET elsewhere)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the exponential backoff will do


def send_webhook(
    row: Notification, rule: NotificationRule, context: dict[str, Any], now: datetime
) -> Outcome:
    """POST the signed payload. 2xx: sent; 408, 429, 5xx and network errors: retry; any other
    status (3xx, 4xx): failed. The secret and the URL's path never reach the log."""
    host = urlsplit(rule.webhook_url).hostname or "?"
    body = json.dumps(
        webhook_payload(row, context, now), separators=(",", ":"), ensure_ascii=False
    ).encode()
    timestamp = str(int(now.timestamp()))
    request = urllib.request.Request(
        rule.webhook_url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "slaboard-notifications/1",
            "X-Slaboard-Event": f"sla.{row.trigger}",
            "X-Slaboard-Delivery": str(row.pk),
            "X-Slaboard-Timestamp": timestamp,
            "X-Slaboard-Signature": sign(rule.webhook_secret, timestamp, body),
        },
    )
    retry_after = None
    try:
        with _opener.open(request, timeout=WEBHOOK_TIMEOUT) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status, retry_after = error.code, _retry_after(error.headers)
        error.close()
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        return Outcome("retry", f"could not reach {host}: {reason}", host)
    if 200 <= status < 300:
        return Outcome("sent", f"HTTP {status} from {host}", host)
    if status in (408, 429) or status >= 500:
        return Outcome("retry", f"HTTP {status} from {host}", host, retry_after)
    if 300 <= status < 400:
        return Outcome("failed", f"HTTP {status} from {host}: redirects are not followed", host)
    return Outcome("failed", f"HTTP {status} from {host}: refused (not retried)", host)


# --------------------------------------------------------------------------- acknowledging


def can_acknowledge(user: Any) -> bool:
    return bool(
        user.is_authenticated
        and (user.has_perm("tickets.claim_ticket") or user.has_perm("policies.add_acknowledgement"))
    )


def acknowledge(
    *, ticket: Ticket, metric: str, cycle: int, user: User, now: datetime, via: str
) -> tuple[Acknowledgement, bool]:
    """Record that ``user`` took this clock in hand; its pending level 3 messages (and so
    their repeats) are skipped. Returns the acknowledgement and whether it is new."""
    with transaction.atomic():
        ack, created = Acknowledgement.objects.get_or_create(
            ticket=ticket,
            metric=metric,
            cycle=cycle,
            defaults={"user": user, "at": now, "via": via},
        )
        if created:
            Notification.objects.filter(
                ticket=ticket,
                metric=metric,
                cycle=cycle,
                trigger=Trigger.OVERDUE,
                status__in=[NotificationStatus.PENDING, NotificationStatus.DEFERRED],
            ).update(status=NotificationStatus.SKIPPED, last_error=str(ack))
            _mark_dirty_on_commit()
    return ack, created


def _mark_dirty_on_commit() -> None:
    from dashboard.publish import mark_dirty_on_commit  # a later layer; avoids an import cycle

    mark_dirty_on_commit()


def escalations(keys: Iterable[tuple[int, str, int]]) -> dict[tuple[int, str, int], Any]:
    """For (ticket, metric, cycle) keys: {"ack": Acknowledgement | None, "escalated": bool}.

    Two queries however many keys (the board's and queue's rows)."""
    keys = set(keys)
    if not keys:
        return {}
    ticket_ids = {k[0] for k in keys}
    acks = {
        (a.ticket_id, a.metric, a.cycle): a
        for a in Acknowledgement.objects.filter(ticket_id__in=ticket_ids).select_related("user")
    }
    escalated = set(
        Notification.objects.filter(ticket_id__in=ticket_ids, trigger__in=ESCALATION_TRIGGERS)
        .exclude(status=NotificationStatus.SKIPPED)
        .values_list("ticket_id", "metric", "cycle")
        .distinct()
    )
    return {k: {"ack": acks.get(k), "escalated": k in escalated} for k in keys}
