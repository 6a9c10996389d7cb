"""Policies and their targets, with a due-time preview."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from policies.admin.base import RulesAdmin, resync_and_audit
from policies.audit import diff, policy_snapshot
from policies.businesstime import CalendarError
from policies.durations import format_duration
from policies.engine import business_calendar
from policies.models import (
    Policy,
    Target,
)
from slaboard.forms import JSONChoicesField, ReadableDurationField
from tickets.models import CustomerTier, PartnerTier, Priority, TicketKind, TicketStatus


class TargetForm(forms.ModelForm):
    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        _check_target_calendar(self)
        return data

    duration = ReadableDurationField(help_text="Business time: 15 min, 4 h, 1 d 2 h.")
    pause_statuses = JSONChoicesField(
        choices=[
            (value, label)
            for value, label in TicketStatus.choices
            if value not in {TicketStatus.RESOLVED, TicketStatus.CLOSED}
        ],
        required=False,
        help_text="The clock stops in these statuses.",
    )

    class Meta:
        model = Target
        widgets = {
            "yellow_pct": forms.NumberInput(attrs={"size": 4, "style": "width: 4em"}),
            "orange_pct": forms.NumberInput(attrs={"size": 4, "style": "width: 4em"}),
            "yellow_minutes_left": forms.NumberInput(attrs={"style": "width: 5em"}),
            "orange_minutes_left": forms.NumberInput(attrs={"style": "width: 5em"}),
        }
        help_texts = {
            "calendar": "Empty = the partner's calendar (24×7 if it has none).",
            "yellow_pct": "",
            "orange_pct": "",
            "yellow_minutes_left": "Optional; the earlier of % and minutes wins.",
            "orange_minutes_left": "Optional.",
            "automated_replies_count": "First response only.",
            "on_reopen": "",
        }
        fields = [
            "metric",
            "duration",
            "calendar",
            "pause_statuses",
            "yellow_pct",
            "orange_pct",
            "yellow_minutes_left",
            "orange_minutes_left",
            "automated_replies_count",
            "on_reopen",
        ]


def _check_target_calendar(form: forms.ModelForm) -> None:
    calendar = form.cleaned_data.get("calendar")
    if calendar is None:
        return
    try:
        business_calendar(calendar).next_open(timezone.now())
    except CalendarError:
        form.add_error(
            "calendar",
            f"Calendar '{calendar}' has no working time, so this target could never fall due: "
            "add working intervals to it or choose another calendar.",
        )


class TargetInline(admin.StackedInline):
    """Three lines per target: what and how long, when it warns, what pauses it."""

    model = Target
    form = TargetForm
    extra = 0
    fieldsets = [
        (None, {"fields": [("metric", "duration", "calendar")]}),
        (
            None,
            {
                "fields": [
                    ("yellow_pct", "orange_pct", "yellow_minutes_left", "orange_minutes_left")
                ]
            },
        ),
        (None, {"fields": [("pause_statuses", "automated_replies_count", "on_reopen")]}),
    ]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "calendar" and field is not None:
            # A plain select: the add/change/delete icons would crowd the one-row layout.
            field.widget = getattr(field.widget, "widget", field.widget)
        return field


class PolicyForm(forms.ModelForm):
    kinds = JSONChoicesField(choices=TicketKind.choices, required=False, help_text="None = any.")
    priorities = JSONChoicesField(choices=Priority.choices, required=False, help_text="None = any.")
    customer_tiers = JSONChoicesField(
        choices=CustomerTier.choices, required=False, help_text="None = any."
    )
    partner_tiers = JSONChoicesField(
        choices=PartnerTier.choices, required=False, help_text="None = any."
    )

    class Meta:
        model = Policy
        fields = [
            "name",
            "order",
            "active",
            "description",
            "kinds",
            "priorities",
            "customer_tiers",
            "partner_tiers",
            "partners",
        ]


@admin.register(Policy)
class PolicyAdmin(RulesAdmin):
    form = PolicyForm
    list_display = ["name", "order", "active", "conditions", "targets_summary"]
    list_editable = ["order", "active"]
    list_filter = ["active"]
    search_fields = ["name", "description"]
    filter_horizontal = ["partners"]
    inlines = [TargetInline]
    readonly_fields = ["preview"]
    fieldsets = [
        (None, {"fields": ["name", ("order", "active"), "description"]}),
        (
            "Applies to (the first matching active policy, by order, applies)",
            {"fields": ["kinds", "priorities", "customer_tiers", "partner_tiers", "partners"]},
        ),
        ("Preview", {"fields": ["preview"]}),
    ]

    def snapshot(self, obj: Any) -> dict[str, Any]:
        return policy_snapshot(obj)

    def delete_model(self, request: HttpRequest, obj: Policy) -> None:
        changes = diff(policy_snapshot(obj), {})
        super().delete_model(request, obj)
        resync_and_audit(request, obj, changes, action="deleted")

    @admin.display(description="due times for a ticket opened now")
    def preview(self, obj: Policy) -> str:
        if obj.pk is None:
            return "Save the policy to see a preview."
        now = timezone.now()
        rows = []
        for target in obj.targets.select_related("calendar"):
            if target.calendar is None:
                rows.append((target.get_metric_display(), "depends on the partner's calendar"))
                continue
            try:
                due = business_calendar(target.calendar).add(now, target.duration.total_seconds())
            except CalendarError as error:
                rows.append((target.get_metric_display(), str(error)))
                continue
            local = due.astimezone(business_calendar(target.calendar).tz)
            rows.append(
                (
                    target.get_metric_display(),
                    f"{local:%a %d %b %H:%M} {target.calendar.timezone} "
                    f"({format_duration(target.duration)} on {target.calendar})",
                )
            )
        if not rows:
            return "No targets yet."
        return format_html("<ul>{}</ul>", format_html_join("", "<li><b>{}</b>: {}</li>", rows))

    def get_queryset(self, request: HttpRequest) -> QuerySet[Policy]:
        return super().get_queryset(request).prefetch_related("targets", "partners")

    @admin.display(description="applies to")
    def conditions(self, obj: Policy) -> str:
        summary = obj.conditions_summary()
        partners = [p.name for p in obj.partners.all()]
        if partners:
            prefix = "" if summary == "any ticket" else summary + "; "
            summary = prefix + "partner " + ", ".join(partners)
        return summary

    @admin.display(description="targets")
    def targets_summary(self, obj: Policy) -> str:
        return ", ".join(
            f"{t.get_metric_display()} {format_duration(t.duration)}" for t in obj.targets.all()
        )
