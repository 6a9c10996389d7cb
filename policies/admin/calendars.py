"""Calendars: working intervals, holidays (with an import by country), overrides, closures."""

from __future__ import annotations

from collections import defaultdict
from datetime import time
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone

from policies.admin.base import RulesAdmin, resync_and_audit
from policies.audit import calendar_snapshot, diff
from policies.holiday_import import MAX_YEARS, country_choices, import_holidays, subdivisions
from policies.models import (
    WEEKDAY_NAMES,
    Calendar,
    Closure,
    DateOverride,
    Holiday,
    WorkingInterval,
    describe_interval,
    overlapping_pairs,
)
from slaboard.forms import TimezoneSelect


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
        calendar = self.instance
        if not by_day and calendar.pk is not None and calendar.targets.exists():
            raise forms.ValidationError(
                "This calendar is used by SLA targets, so it needs some working time: "
                "add at least one working interval (00:00–00:00 is a whole day)."
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


class HolidayImportForm(forms.Form):
    country = forms.ChoiceField(choices=[("", "— choose —")])
    subdivision = forms.CharField(
        required=False,
        max_length=10,
        help_text="State, province or region code, e.g. NY for New York, BY for Bavaria.",
    )
    first_year = forms.IntegerField(min_value=1970, max_value=2100)
    last_year = forms.IntegerField(min_value=1970, max_value=2100)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        country = self.fields["country"]
        assert isinstance(country, forms.ChoiceField)
        country.choices = [("", "— choose —"), *country_choices()]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, last = data.get("first_year"), data.get("last_year")
        if first is not None and last is not None:
            if last < first:
                self.add_error("last_year", "The last year must not be before the first year.")
            elif last - first + 1 > MAX_YEARS:
                self.add_error("last_year", f"Import at most {MAX_YEARS} years at a time.")
        country, subdivision = data.get("country"), (data.get("subdivision") or "").strip()
        if country and subdivision:
            known = subdivisions(country)
            if subdivision not in known:
                listed = ", ".join(known[:40]) + (" …" if len(known) > 40 else "")
                self.add_error(
                    "subdivision",
                    f"{subdivision!r} is not a subdivision of {country}"
                    + (f"; choose one of {listed}." if known else " (it has none)."),
                )
        data["subdivision"] = subdivision
        return data


@admin.register(Calendar)
class CalendarAdmin(RulesAdmin):
    form = CalendarForm
    list_display = ["name", "timezone", "weekly_hours_display", "hours_summary", "holiday_count"]
    list_filter = ["timezone"]
    search_fields = ["name", "description"]
    inlines = [WorkingIntervalInline, HolidayInline, DateOverrideInline, ClosureInline]
    change_form_template = "admin/policies/calendar/change_form.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Calendar]:
        return (
            super()
            .get_queryset(request)
            .annotate(holiday_total=Count("holidays", distinct=True))
            .prefetch_related("intervals")
        )

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view(self.import_holidays_view)
        return [
            path("<int:pk>/import-holidays/", view, name="policies_calendar_import_holidays"),
            *super().get_urls(),
        ]

    def snapshot(self, obj: Any) -> dict[str, Any]:
        return calendar_snapshot(obj)

    def affected_calendar(self, obj: Any) -> int | None:
        return int(obj.pk)

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

    def import_holidays_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        calendar = get_object_or_404(Calendar, pk=pk)
        if not self.has_change_permission(request, calendar):
            raise PermissionDenied
        year = timezone.now().year
        form = HolidayImportForm(
            request.POST or None, initial={"first_year": year, "last_year": year + 1}
        )
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            before = calendar_snapshot(calendar)
            with transaction.atomic():
                added, existing = import_holidays(
                    calendar=calendar,
                    country=data["country"],
                    subdivision=data["subdivision"],
                    first_year=data["first_year"],
                    last_year=data["last_year"],
                )
                calendar.refresh_from_db()
                where = data["country"] + (f"-{data['subdivision']}" if data["subdivision"] else "")
                summary = (
                    f"Imported {added} public holidays of {where} for "
                    f"{data['first_year']}–{data['last_year']} ({existing} were already there)."
                )
                if added:
                    resync_and_audit(
                        request,
                        calendar,
                        diff(before, calendar_snapshot(calendar)),
                        calendar_id=calendar.pk,
                        action="imported holidays",
                    )
            self.message_user(request, summary, messages.SUCCESS)
            return HttpResponseRedirect(reverse("admin:policies_calendar_change", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import public holidays into {calendar}",
            "calendar": calendar,
            "form": form,
            "opts": self.opts,
            "original": calendar,
        }
        return TemplateResponse(request, "admin/policies/calendar/import_holidays.html", context)
