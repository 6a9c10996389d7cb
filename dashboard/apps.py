from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        """Screens subscribe to changes: every committed write of tickets, clocks or
        acknowledgements schedules a (coalesced) publish."""
        from dashboard.publish import mark_dirty
        from tickets.signals import tickets_changed

        def on_tickets_changed(sender: Any, ticket_ids: Any = None, **kwargs: Any) -> None:
            mark_dirty(ticket_ids)

        tickets_changed.connect(
            on_tickets_changed, dispatch_uid="dashboard.publish.mark_dirty", weak=False
        )
