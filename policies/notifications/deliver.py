"""Delivery: claim due outbox rows, send email or signed webhooks, record the outcome.

``deliver_due`` claims one due row at a time (``SELECT … FOR UPDATE SKIP LOCKED`` and a
conditional update to ``sending`` with a lease), sends it outside any transaction, and records
the outcome with a conditional update: sent, retried with exponential backoff, failed with the
reason, deferred by quiet hours, or skipped when it no longer applies. A redelivered task finds
nothing due; a worker that dies mid-send leaves a lease that expires, and the row is retried
(the receiver can dedupe by its delivery id).

With ``concurrency`` > 1 it keeps up to that many sends in flight: it claims a row (each claim
commits its lease) and prepares it on the calling thread (database reads, rendering, signing:
``prepare``), sends it on a small thread pool (the network part only, no ORM: ``transmit``),
claims and prepares the next meanwhile, and records each outcome on the calling thread as it
comes back. A slow receiver then costs its delay once per ``concurrency`` messages.
"""

from __future__ import annotations

import json
import logging
import os
import smtplib
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.template.loader import render_to_string

from policies.businesstime import CalendarError
from policies.engine import business_calendar
from policies.models import (
    ACTIVE_CLOCK_STATUSES,
    BUCKET_RANK,
    DUE_STATUSES,
    TRIGGER_BUCKETS,
    Acknowledgement,
    Channel,
    ClockStatus,
    Notification,
    NotificationRule,
    NotificationStatus,
    SLAClock,
    Trigger,
)
from policies.notifications.messages import (
    _message_id,
    email_recipients,
    message_context,
    sign,
    webhook_payload,
)
from slaboard import metrics
from tickets.models import Ticket

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


def deliver_due(*, now: datetime, limit: int = 20, concurrency: int = 1) -> int:
    """Deliver up to ``limit`` due notifications; return how many were handled.

    ``concurrency`` 1: one claim, send and record at a time. More: up to that many sends in
    flight on a thread pool (see the module's docstring)."""
    if concurrency > 1:
        return _deliver_side_by_side(now=now, limit=limit, concurrency=concurrency)
    handled = 0
    while handled < limit:
        row = claim_next(now=now)
        if row is None:
            break
        deliver_claimed(row, now=now)
        handled += 1
    return handled


def _deliver_side_by_side(*, now: datetime, limit: int, concurrency: int) -> int:
    """Keep up to ``concurrency`` sends in flight: claim and prepare the next row while others
    are on the network, record each as it comes back (all on this thread)."""
    pool = _pool(concurrency)
    flying: dict[Future[Outcome], Notification] = {}
    handled = 0
    exhausted = False
    while True:
        while not exhausted and len(flying) < concurrency and handled + len(flying) < limit:
            row = claim_next(now=now)
            if row is None:
                exhausted = True
                break
            item = _prepare_or_retry(row, now=now)
            if item.outcome is not None:
                finish(row, item.outcome, now=now)
                handled += 1
            else:
                flying[pool.submit(transmit, item)] = row
        if not flying:
            return handled
        done, _ = wait(flying, return_when=FIRST_COMPLETED)
        for future in done:
            finish(flying.pop(future), future.result(), now=now)
            handled += 1


def _prepare_or_retry(row: Notification, *, now: datetime) -> Prepared:
    """In a batch, one row that cannot be prepared must not strand the others' leases."""
    try:
        return prepare(row, now=now)
    except Exception as error:
        return Prepared(row, _unexpected(row, error))


_pools: dict[tuple[int, int], ThreadPoolExecutor] = {}


def _pool(size: int) -> ThreadPoolExecutor:
    """One pool per process (Celery forks its children: a pool made before would be empty)."""
    pool = _pools.get((os.getpid(), size))
    if pool is None:
        pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="deliver")
        _pools[(os.getpid(), size)] = pool
    return pool


@dataclass
class Prepared:
    """A claimed row ready to go: its ``outcome`` if already decided (skipped, or an error
    while preparing), else ``send``, the network part (no database access)."""

    row: Notification
    outcome: Outcome | None = None
    send: Callable[[], Outcome] | None = None


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
    prepared = prepare(row, now=now)
    outcome = prepared.outcome or transmit(prepared)
    finish(row, outcome, now=now)
    return outcome


def _unexpected(row: Notification, error: Exception) -> Outcome:
    """Never wedge the outbox on one bad row: log it, retry it later."""
    log.exception("notification %s: unexpected error", row.pk)
    return Outcome("retry", f"unexpected error: {type(error).__name__}: {error}")


def prepare(row: Notification, *, now: datetime) -> Prepared:
    """Everything before the network, on the caller's thread: is it still due, to whom, the
    rendered message or the signed request."""
    rule = row.rule
    clock = _clock(row)
    reason = stale_reason(row, clock)
    if reason:
        return Prepared(row, Outcome("skipped", reason))
    ticket = Ticket.objects.select_related("partner", "customer", "assignee").get(pk=row.ticket_id)
    context = message_context(row, rule, ticket, clock, now)
    try:
        if row.channel == Channel.EMAIL:
            ready = email_sender(row, rule, ticket, context)
        else:
            ready = webhook_sender(row, rule, context, now)
    except Exception as error:
        return Prepared(row, _unexpected(row, error))
    if isinstance(ready, Outcome):
        return Prepared(row, ready)
    return Prepared(row, send=ready)


def transmit(prepared: Prepared) -> Outcome:
    """The network part of one prepared row (any thread: it touches no database)."""
    assert prepared.send is not None
    try:
        return prepared.send()
    except Exception as error:
        return _unexpected(prepared.row, error)


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
        metrics.NOTIFICATIONS.labels(row.channel, result).inc()
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


def send_email(
    row: Notification, rule: NotificationRule, ticket: Ticket, context: dict[str, Any]
) -> Outcome:
    ready = email_sender(row, rule, ticket, context)
    return ready if isinstance(ready, Outcome) else ready()


def email_sender(
    row: Notification, rule: NotificationRule, ticket: Ticket, context: dict[str, Any]
) -> Outcome | Callable[[], Outcome]:
    """The rendered email and a function that sends it (or the outcome: nobody to send to)."""
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

    def send() -> Outcome:
        try:
            message.send(fail_silently=False)
        except smtplib.SMTPRecipientsRefused as error:
            refused = ", ".join(sorted(error.recipients))
            return Outcome("failed", f"the mail server refused {refused}", who)
        except (smtplib.SMTPException, OSError) as error:
            return Outcome("retry", f"could not send the email: {error}", who)
        return Outcome("sent", f"emailed {who}", who)

    return send


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
    return webhook_sender(row, rule, context, now)()


def webhook_sender(
    row: Notification, rule: NotificationRule, context: dict[str, Any], now: datetime
) -> Callable[[], Outcome]:
    """The signed request, and a function that posts it and reads the answer."""
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
    return lambda: _post(request, host)


def _post(request: urllib.request.Request, host: str) -> Outcome:
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
