from __future__ import annotations

from collections import defaultdict
from datetime import time, timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from policies.durations import DurationFormatError, format_duration, parse_duration
from policies.models import (
    WEEKDAY_NAMES,
    Calendar,
    Closure,
    DateOverride,
    Holiday,
    Policy,
    Target,
    WorkingInterval,
    describe_interval,
    overlapping_pairs,
)
from policies.timezones import timezone_choices
from tickets.models import CustomerTier, PartnerTier, Priority, TicketKind, TicketStatus


class ReadableDurationField(forms.Field):
    """Shows and accepts durations as people write them: 15 min, 4 h, 1 d 2 h."""

    widget = forms.TextInput(attrs={"placeholder": "e.g. 15 min, 4 h, 1 d 2 h", "size": 14})

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, timedelta):
            return format_duration(value)
        return value

    def to_python(self, value: Any) -> timedelta | None:
        if value in self.empty_values:
            return None
        if isinstance(value, timedelta):
            return value
        try:
            return parse_duration(str(value))
        except DurationFormatError as exc:
            raise forms.ValidationError(str(exc), code="invalid") from exc


class JSONChoicesField(forms.MultipleChoiceField):
    """A list stored in a JSONField, edited as checkboxes."""

    widget = forms.CheckboxSelectMultiple

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return [value]
        return value


class TimezoneSelect(forms.Select):
    def __init__(self, attrs: dict[str, Any] | None = None) -> None:
        super().__init__(attrs, choices=timezone_choices())


class WorkingIntervalFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        by_day: dict[int, list[tuple[time, time]]] = defaultdict(list)
        for form in self.forms:
            data = getattr(form, "cleaned_data", None)
            if not data or data.get("DELETE"):
                continue
            if data.get("weekday") is None or data.get("start") is None or data.get("end") is None:
                continue
            by_day[int(data["weekday"])].append((data["start"], data["end"]))
        problems = []
        for weekday in sorted(by_day):
            for problem in overlapping_pairs(by_day[weekday]):
                problems.append(f"{WEEKDAY_NAMES[weekday]}: {problem}")
        if problems:
            raise forms.ValidationError(
                "Working intervals overlap — merge or shorten them: " + "; ".join(problems) + "."
            )


class WorkingIntervalInline(admin.TabularInline):
    model = WorkingInterval
    formset = WorkingIntervalFormSet
    extra = 0
    fields = ["weekday", "start", "end"]


class HolidayInline(admin.TabularInline):
    model = Holiday
    extra = 0
    fields = ["date", "name"]


class DateOverrideInline(admin.TabularInline):
    model = DateOverride
    extra = 0
    fields = ["date", "closed", "start", "end", "note"]
    verbose_name = "special hours on a date"
    verbose_name_plural = "special hours on dates (replace that date's weekly hours)"


class ClosureInline(admin.TabularInline):
    model = Closure
    extra = 0
    fields = ["starts_at", "ends_at", "reason"]
    verbose_name_plural = "one-off closures (exact instants, e.g. maintenance windows)"


class CalendarForm(forms.ModelForm):
    class Meta:
        model = Calendar
        fields = ["name", "timezone", "description"]
        widgets = {"timezone": TimezoneSelect}


@admin.register(Calendar)
class CalendarAdmin(admin.ModelAdmin):
    form = CalendarForm
    list_display = ["name", "timezone", "weekly_hours_display", "hours_summary", "holiday_count"]
    list_filter = ["timezone"]
    search_fields = ["name", "description"]
    inlines = [WorkingIntervalInline, HolidayInline, DateOverrideInline, ClosureInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Calendar]:
        return (
            super()
            .get_queryset(request)
            .annotate(holiday_total=Count("holidays", distinct=True))
            .prefetch_related("intervals")
        )

    @admin.display(description="hours / week")
    def weekly_hours_display(self, obj: Calendar) -> str:
        return f"{obj.weekly_hours():g} h"

    @admin.display(description="working hours")
    def hours_summary(self, obj: Calendar) -> str:
        by_day: dict[int, list[str]] = defaultdict(list)
        for interval in obj.intervals.all():
            by_day[interval.weekday].append(describe_interval(interval.start, interval.end))
        if not by_day:
            return "no working time"
        groups: list[tuple[list[int], str]] = []
        for weekday in sorted(by_day):
            text = ", ".join(by_day[weekday])
            if groups and groups[-1][1] == text and groups[-1][0][-1] == weekday - 1:
                groups[-1][0].append(weekday)
            else:
                groups.append(([weekday], text))
        parts = []
        for days, text in groups:
            first, last = WEEKDAY_NAMES[days[0]][:3], WEEKDAY_NAMES[days[-1]][:3]
            label = first if len(days) == 1 else f"{first}–{last}"
            parts.append(f"{label} {text}")
        return "; ".join(parts)

    @admin.display(description="holidays", ordering="holiday_total")
    def holiday_count(self, obj: Any) -> int:
        return int(obj.holiday_total)


class TargetForm(forms.ModelForm):
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
            "calendar": "Empty = the partner's calendar.",
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
class PolicyAdmin(admin.ModelAdmin):
    form = PolicyForm
    list_display = ["name", "order", "active", "conditions", "targets_summary"]
    list_editable = ["order", "active"]
    list_filter = ["active"]
    search_fields = ["name", "description"]
    filter_horizontal = ["partners"]
    inlines = [TargetInline]
    fieldsets = [
        (None, {"fields": ["name", ("order", "active"), "description"]}),
        (
            "Applies to (the first matching active policy, by order, applies)",
            {"fields": ["kinds", "priorities", "customer_tiers", "partner_tiers", "partners"]},
        ),
    ]

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
