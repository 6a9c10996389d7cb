"""What every rule admin does: saving a rule re-syncs the open clocks it may affect, audited."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils import timezone

from policies.actions import rules_changed
from policies.audit import diff


class RulesAdmin(admin.ModelAdmin):
    """Saving a rule (calendar, policy with targets) re-syncs the open clocks it may affect
    and records an audit entry of who changed what, before → after."""

    def snapshot(self, obj: Any) -> dict[str, Any]:
        raise NotImplementedError

    def affected_calendar(self, obj: Any) -> int | None:
        """Only tickets on this calendar are affected; None means every open ticket."""
        return None

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        before = type(obj).objects.filter(pk=obj.pk).first() if change else None
        request._slaboard_before = self.snapshot(before)  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        obj = form.instance
        obj.touch()
        changes = diff(getattr(request, "_slaboard_before", {}), self.snapshot(obj))
        if changes:
            resync_and_audit(
                request,
                obj,
                changes,
                calendar_id=self.affected_calendar(obj),
                action="changed" if change else "created",
            )


def resync_and_audit(
    request: HttpRequest,
    obj: Any,
    changes: dict[str, Any],
    *,
    calendar_id: int | None = None,
    action: str = "changed",
) -> None:
    """After a rule changed: the action re-syncs and audits; the admin says what it did."""
    how = rules_changed(
        obj=obj,
        changes=changes,
        user=request.user,
        now=timezone.now(),
        action=action,
        calendar_id=calendar_id,
    )
    messages.info(request, how)
