"""Delivering notifications: signed webhooks to a real local HTTP receiver, retries with
backoff, permanent failures, crashed workers and redelivered tasks — each message once."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from django.core import mail
from django.utils import timezone

from policies.actions import reevaluate_due_clocks
from policies.models import Metric, Notification, Trigger
from policies.notifications import deliver
from policies.notifications.deliver import LEASE, claim_next, deliver_due
from policies.tasks import deliver_notifications_task
from tests.factories import (
    make_always_calendar,
    make_customer,
    make_partner,
    make_rule,
    make_sla_policy,
    make_ticket,
)

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 17, 9, 50, tzinfo=UTC)
DUE = T0 + timedelta(hours=1)
BREACHED = DUE + timedelta(seconds=30)  # the tick that sees the breach
MINUTE = timedelta(minutes=1)


class Receiver:
    """A webhook receiver on 127.0.0.1:<free port>: answers from a script, records requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body})
                status, headers = receiver.script.pop(0) if receiver.script else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/slaboard?x=1"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def answer(self, *statuses: int | tuple[int, dict[str, str]]) -> None:
        for status in statuses:
            self.script.append(status if isinstance(status, tuple) else (status, {}))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def breached(db: Any) -> SimpleNamespace:
    """A high ticket whose 1 h first response is due at 10:50; the previous tick ran at T0."""
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(hours=1)}
    )
    partner = make_partner(name="Andes Soporte", timezone="America/Sao_Paulo")
    ticket = make_ticket(
        now=T0,
        opened_at=T0,
        partner=partner,
        customer=make_customer(name="Initech"),
        priority="critical",
        subject="Checkout <returns> 502 & more",
    )
    reevaluate_due_clocks(now=T0)
    return SimpleNamespace(ticket=ticket, partner=partner)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does (docs/notifications.md)."""
    timestamp = headers["X-Slaboard-Timestamp"]
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest("sha256=" + expected.hexdigest(), headers["X-Slaboard-Signature"])


def test_a_breach_posts_one_signed_json_webhook(
    breached: SimpleNamespace, receiver: Receiver
) -> None:
    rule = make_rule(name="NOC hook", trigger=Trigger.RED, webhook_url=receiver.url)
    reevaluate_due_clocks(now=BREACHED)
    assert deliver_due(now=BREACHED) == 1
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    assert verify(rule.webhook_secret, headers, body)
    assert not verify("another secret", headers, body)
    assert headers["X-Slaboard-Timestamp"] == str(int(BREACHED.timestamp()))
    row = Notification.objects.get()
    assert headers["X-Slaboard-Delivery"] == str(row.pk)
    assert headers["X-Slaboard-Event"] == "sla.red"
    assert headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["type"] == "sla.red" and payload["level"] == 2 and payload["delivery"] == row.pk
    assert payload["rule"] == {"id": rule.pk, "name": "NOC hook"}
    assert payload["ticket"]["subject"] == "Checkout <returns> 502 & more"
    assert payload["ticket"]["partner"] == "Andes Soporte"
    assert payload["ticket"]["customer"] == "Initech"
    assert payload["clock"]["bucket"] == "red"
    assert payload["clock"]["due_at"] == DUE.isoformat()
    assert payload["acknowledge_url"].startswith("http://localhost:8000/ack/")
    assert "Tue 17 Nov 2026, 07:50 (America/Sao_Paulo)" in payload["text"]
    assert (row.status, row.attempts, row.recipients) == ("sent", 1, "127.0.0.1")
    # Later sweeps and ticks send nothing more.
    reevaluate_due_clocks(now=BREACHED + MINUTE)
    assert deliver_due(now=BREACHED + 10 * MINUTE) == 0
    assert len(receiver.requests) == 1


def test_the_slack_and_teams_format_is_a_signed_text_message(
    breached: SimpleNamespace, receiver: Receiver
) -> None:
    rule = make_rule(trigger=Trigger.RED, webhook_url=receiver.url, webhook_format="text")
    reevaluate_due_clocks(now=BREACHED)
    deliver_due(now=BREACHED)
    [request] = receiver.requests
    assert verify(rule.webhook_secret, request["headers"], request["body"])
    payload = json.loads(request["body"])
    assert list(payload) == ["text"]
    text = payload["text"]
    assert text.startswith("*Breached* (level 2): First response SLA on")
    assert "Checkout &lt;returns&gt; 502 &amp; more" in text  # chat markup escaped
    assert "Acknowledge: http://localhost:8000/ack/" in text


def test_a_receiver_answering_500_is_retried_with_backoff_and_sent_once(
    breached: SimpleNamespace, receiver: Receiver
) -> None:
    make_rule(trigger=Trigger.RED, webhook_url=receiver.url)
    receiver.answer(500, 503)
    reevaluate_due_clocks(now=BREACHED)
    assert deliver_due(now=BREACHED) == 1
    row = Notification.objects.get()
    assert (row.status, row.attempts, row.last_error) == (
        "pending",
        1,
        "HTTP 500 from 127.0.0.1",
    )
    assert row.next_attempt_at == BREACHED + MINUTE
    assert deliver_due(now=BREACHED + MINUTE - timedelta(seconds=1)) == 0  # not yet
    assert deliver_due(now=BREACHED + MINUTE) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("pending", 2)
    assert row.next_attempt_at == BREACHED + 3 * MINUTE  # then 2 min
    assert deliver_due(now=BREACHED + 3 * MINUTE) == 1
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == ("sent", 3, "")
    assert [h["outcome"] for h in row.history] == ["retry", "retry", "sent"]
    assert "retry in 1 min" in row.history[0]["detail"]
    assert len(receiver.requests) == 3
    assert {r["headers"]["X-Slaboard-Delivery"] for r in receiver.requests} == {str(row.pk)}
    assert deliver_due(now=BREACHED + timedelta(hours=2)) == 0
    assert len(receiver.requests) == 3


def test_a_4xx_fails_at_once_with_the_reason(breached: SimpleNamespace, receiver: Receiver) -> None:
    make_rule(trigger=Trigger.RED, webhook_url=receiver.url)
    receiver.answer(404)
    reevaluate_due_clocks(now=BREACHED)
    deliver_due(now=BREACHED)
    row = Notification.objects.get()
    assert row.status == "failed" and row.attempts == 1
    assert row.last_error == "HTTP 404 from 127.0.0.1: refused (not retried)"
    assert deliver_due(now=BREACHED + timedelta(hours=2)) == 0
    assert len(receiver.requests) == 1


def test_429_waits_at_least_its_retry_after_and_a_redirect_is_not_followed(
    breached: SimpleNamespace, receiver: Receiver
) -> None:
    make_rule(trigger=Trigger.RED, webhook_url=receiver.url)
    receiver.answer((429, {"Retry-After": "300"}), (302, {"Location": "http://elsewhere.test/"}))
    reevaluate_due_clocks(now=BREACHED)
    deliver_due(now=BREACHED)
    row = Notification.objects.get()
    assert (row.status, row.next_attempt_at) == ("pending", BREACHED + 5 * MINUTE)
    deliver_due(now=BREACHED + 5 * MINUTE)
    row.refresh_from_db()
    assert row.status == "failed" and "redirects are not followed" in row.last_error
    assert len(receiver.requests) == 2


def test_retries_end_in_failed_after_the_last_attempt(
    breached: SimpleNamespace, receiver: Receiver
) -> None:
    make_rule(trigger=Trigger.RED, webhook_url=receiver.url)
    receiver.answer(*[500] * 10)
    reevaluate_due_clocks(now=BREACHED)
    at = BREACHED
    for _ in range(deliver.MAX_ATTEMPTS):
        assert deliver_due(now=at) == 1
        at = Notification.objects.get().next_attempt_at
    row = Notification.objects.get()
    assert row.status == "failed" and row.attempts == deliver.MAX_ATTEMPTS
    assert row.last_error == "gave up after 6 attempts: HTTP 500 from 127.0.0.1"
    waits = [
        datetime.fromisoformat(b["at"]) - datetime.fromisoformat(a["at"])
        for a, b in zip(row.history, row.history[1:], strict=False)
    ]
    assert waits == [MINUTE, 2 * MINUTE, 4 * MINUTE, 8 * MINUTE, 16 * MINUTE]
    assert deliver_due(now=at + timedelta(days=1)) == 0


def test_an_unreachable_receiver_is_retried(breached: SimpleNamespace) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    make_rule(trigger=Trigger.RED, webhook_url=f"http://127.0.0.1:{port}/")
    reevaluate_due_clocks(now=BREACHED)
    deliver_due(now=BREACHED)
    row = Notification.objects.get()
    assert row.status == "pending" and row.last_error.startswith("could not reach 127.0.0.1")


def test_a_redelivered_task_sends_nothing_twice(db: Any, receiver: Receiver) -> None:
    now = timezone.now()
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(hours=1)}
    )
    opened = now - timedelta(hours=1, seconds=10)
    make_ticket(now=opened, opened_at=opened)
    make_rule(trigger=Trigger.RED, webhook_url=receiver.url, emails="noc@example.com")
    reevaluate_due_clocks(now=opened)
    reevaluate_due_clocks(now=now)
    assert deliver_notifications_task() == 2  # what the worker runs …
    assert deliver_notifications_task() == 0  # … and the same message delivered again
    assert deliver_notifications_task() == 0
    assert len(receiver.requests) == 1 and len(mail.outbox) == 1


def test_a_delivery_task_stops_at_its_time_and_hands_the_rest_to_a_new_task(
    db: Any, receiver: Receiver, redis_client: Any, settings: Any
) -> None:
    settings.NOTIFICATION_CONCURRENCY = 1  # one message at a time: its time is up after one
    now = timezone.now()
    make_sla_policy(
        calendar=make_always_calendar(), targets={Metric.FIRST_RESPONSE: timedelta(hours=1)}
    )
    opened = now - timedelta(hours=1, seconds=10)
    make_ticket(now=opened, opened_at=opened)
    for name in ("NOC", "Partner desk", "Escalations"):
        make_rule(name=name, trigger=Trigger.RED, webhook_url=receiver.url)
    reevaluate_due_clocks(now=opened)
    reevaluate_due_clocks(now=now)
    assert deliver_notifications_task(seconds=0) == 1  # its time is up after one message …
    queued = [
        json.loads(raw)["headers"]["task"] for raw in redis_client.lrange("background", 0, -1)
    ]
    assert queued == ["policies.deliver_notifications"]  # … and another task carries on
    assert deliver_notifications_task() == 2  # (what that task does)
    assert len(receiver.requests) == 3


def test_a_crashed_worker_is_retried_after_its_lease_and_only_then(
    breached: SimpleNamespace, receiver: Receiver
) -> None:
    make_rule(trigger=Trigger.RED, webhook_url=receiver.url)
    reevaluate_due_clocks(now=BREACHED)
    claimed = claim_next(now=BREACHED)  # a worker claims it, then dies before sending
    assert claimed is not None and claimed.status == "sending"
    assert claim_next(now=BREACHED) is None  # another worker does not take it meanwhile
    assert deliver_due(now=BREACHED + LEASE - timedelta(seconds=1)) == 0
    assert deliver_due(now=BREACHED + LEASE) == 1
    row = Notification.objects.get()
    assert (row.status, row.attempts) == ("sent", 2)
    assert [h["outcome"] for h in row.history] == ["lease expired", "sent"]
    assert len(receiver.requests) == 1


def test_a_worker_that_lost_its_lease_does_not_overwrite_the_outcome(
    breached: SimpleNamespace, receiver: Receiver
) -> None:
    make_rule(trigger=Trigger.RED, webhook_url=receiver.url)
    reevaluate_due_clocks(now=BREACHED)
    slow = claim_next(now=BREACHED)
    assert slow is not None
    assert deliver_due(now=BREACHED + LEASE) == 1  # the lease ran out: another worker sent it
    late = deliver.Outcome("retry", "HTTP 500 from 127.0.0.1")
    assert deliver.finish(slow, late, now=BREACHED + LEASE + MINUTE) is False
    assert Notification.objects.get().status == "sent"


def test_email_delivery_failures_are_retried(breached: SimpleNamespace, settings: Any) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port  # no mail server there
    make_rule(trigger=Trigger.RED, emails="noc@example.com")
    reevaluate_due_clocks(now=BREACHED)
    deliver_due(now=BREACHED)
    row = Notification.objects.get()
    assert row.status == "pending" and row.last_error.startswith("could not send the email")
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    deliver_due(now=row.next_attempt_at)
    row.refresh_from_db()
    assert row.status == "sent" and row.recipients == "noc@example.com"
    assert len(mail.outbox) == 1


def test_an_email_rule_with_nobody_to_mail_is_skipped_with_the_reason(
    breached: SimpleNamespace,
) -> None:
    make_rule(trigger=Trigger.RED, notify_assignee=True)  # the ticket is unassigned
    reevaluate_due_clocks(now=BREACHED)
    deliver_due(now=BREACHED)
    row = Notification.objects.get()
    assert row.status == "skipped" and "no email recipients" in row.last_error
    assert not mail.outbox


class SlowReceiver:
    """A receiver that holds each request until ``width`` are open at once (or 3 s pass, below
    the webhook timeout), and records the most it ever had open: sends that overlap reach
    ``width``, sends one after the other never pass 1."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.open = 0
        self.most_open = 0
        self.answered = 0
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.changed:
                    receiver.open += 1
                    receiver.most_open = max(receiver.most_open, receiver.open)
                    receiver.changed.notify_all()
                    receiver.changed.wait_for(lambda: receiver.open >= receiver.width, timeout=3)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                with receiver.changed:
                    receiver.open -= 1
                    receiver.answered += 1

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def test_sends_overlap_up_to_the_concurrency_and_each_is_recorded_once(
    breached: SimpleNamespace,
) -> None:
    concurrency = 3
    receiver = SlowReceiver(width=3)
    try:
        for n in range(6):
            make_rule(name=f"Hook {n}", trigger=Trigger.RED, webhook_url=receiver.url)
        reevaluate_due_clocks(now=BREACHED)
        assert deliver_due(now=BREACHED, limit=6, concurrency=concurrency) == 6
    finally:
        receiver.close()
    assert receiver.most_open == concurrency  # open connections at the receiver at once
    rows = Notification.objects.all()
    assert [row.status for row in rows] == ["sent"] * 6
    assert all(len(row.history) == 1 and row.attempts == 1 for row in rows)
