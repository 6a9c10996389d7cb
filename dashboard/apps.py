from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"

    def ready(self) -> None:
        """Screens subscribe to changes: every committed write of tickets, clocks or
        acknowledgements schedules a (coalesced) publish."""
        from dashboard import publish
        from tickets.signals import tickets_changed

        def on_tickets_changed(sender: Any, ticket_ids: Any = None, **kwargs: Any) -> None:
            publish.mark_dirty(ticket_ids)  # looked up each time: benchmarks swap it out

        tickets_changed.connect(
            on_tickets_changed, dispatch_uid="dashboard.publish.mark_dirty", weak=False
        )
