"""What screens subscribe to: ``tickets_changed``, sent once after a transaction that changed
what boards and queues show — tickets, their events, their SLA clocks (re-syncs, rebuilds,
imports, the tick) or acknowledgements — commits.

Writers call ``tickets_changed_on_commit()``; the dashboard connects its publisher in
``DashboardConfig.ready``. So no write path has to know about screens, and none can forget
them: the call sits in the few functions that write those rows (``tickets.actions``,
``policies.engine.apply_plans``, the tick, acknowledgements, imports).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.dispatch import Signal

log = logging.getLogger(__name__)

tickets_changed = Signal()


def send_tickets_changed() -> None:
    for receiver, result in tickets_changed.send_robust(sender=None):
        if isinstance(result, Exception):  # the write has committed: screens catch up later
            log.warning("a tickets_changed receiver failed (%s): %s", receiver, result)


def tickets_changed_on_commit() -> None:
    """Send ``tickets_changed`` after the current transaction commits, once however many
    changes it holds (an API batch of thousands of events sends it once). Outside a
    transaction, at once."""
    connection = transaction.get_connection()
    if connection.in_atomic_block and any(
        hook is send_tickets_changed for _, hook, *_ in connection.run_on_commit
    ):
        return
    transaction.on_commit(send_tickets_changed)
