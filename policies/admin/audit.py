"""The audit trail of rule edits (read-only)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from policies.models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["at", "user", "action", "object_type", "object_repr", "resynced_tickets"]
    list_filter = ["object_type", "action"]
    search_fields = ["object_repr", "user__username"]
    readonly_fields = [
        "at",
        "user",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "changes_table",
        "resynced_tickets",
    ]
    fields = tuple(readonly_fields)
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="changes")
    def changes_table(self, obj: AuditEntry) -> str:
        rows = [(key, str(old), str(new)) for key, (old, new) in sorted(obj.changes.items())]
        return format_html(
            "<table><tr><th>field</th><th>before</th><th>after</th></tr>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )


# --------------------------------------------------------------------------- notifications
