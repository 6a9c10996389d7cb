"""What screens subscribe to: ``tickets_changed``, sent once after a transaction that changed
what boards, queues and ticket pages show — tickets, their events, their SLA clocks (re-syncs,
rebuilds, imports, the tick) or acknowledgements — commits.

Writers call ``tickets_changed_on_commit(ticket_ids)``; the dashboard connects its publisher in
``DashboardConfig.ready``. So no write path has to know about screens, and none can forget
them: the call sits in the few functions that write those rows (``tickets.actions``,
``policies.engine.apply_plans``, the tick, acknowledgements, imports).

Receivers get ``ticket_ids``: the tickets that changed, or ``None`` when the writer cannot say
(the tick moves thousands of clocks: every board's counts may change, but no ticket's own row
or page does — their colours follow from their stored instants, in the browser too).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction
from django.dispatch import Signal

log = logging.getLogger(__name__)

tickets_changed = Signal()

#: Above this many changed tickets in one transaction, receivers get None ("many").
MAX_IDS = 5000


class PendingChange:
    """The on-commit hook of one transaction: the tickets it changed so far."""

    def __init__(self) -> None:
        self.ticket_ids: set[int] | None = set()

    def add(self, ticket_ids: Iterable[int] | None) -> None:
        if self.ticket_ids is None:
            return
        if ticket_ids is None:
            self.ticket_ids = None
            return
        self.ticket_ids.update(ticket_ids)
        if len(self.ticket_ids) > MAX_IDS:
            self.ticket_ids = None

    def __call__(self) -> None:
        send_tickets_changed(self.ticket_ids)


def send_tickets_changed(ticket_ids: Iterable[int] | None = None) -> None:
    ids = None if ticket_ids is None else frozenset(ticket_ids)
    for receiver, result in tickets_changed.send_robust(sender=None, ticket_ids=ids):
        if isinstance(result, Exception):  # the write has committed: screens catch up later
            log.warning("a tickets_changed receiver failed (%s): %s", receiver, result)


def tickets_changed_on_commit(ticket_ids: Iterable[int] | None = None) -> None:
    """Send ``tickets_changed`` after the current transaction commits, once however many
    changes it holds (an API batch of thousands of events sends it once, with every ticket
    id). Outside a transaction, at once. ``ticket_ids=None``: the writer cannot say which."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        send_tickets_changed(ticket_ids)
        return
    for _, hook, *_ in connection.run_on_commit:
        if isinstance(hook, PendingChange):
            hook.add(ticket_ids)
            return
    pending = PendingChange()
    pending.add(ticket_ids)
    transaction.on_commit(pending)
