from __future__ import annotations

from collections import defaultdict
from datetime import time, timedelta
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models, transaction
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from policies.actions import (
    business_calendar,
    open_ticket_ids_for_calendar,
    record_audit,
    schedule_resync,
)
from policies.audit import calendar_snapshot, diff, policy_snapshot
from policies.businesstime import CalendarError
from policies.durations import DurationFormatError, format_duration, parse_duration
from policies.holiday_import import MAX_YEARS, country_choices, import_holidays, subdivisions
from policies.models import (
    DUE_STATUSES,
    WEEKDAY_NAMES,
    Acknowledgement,
    AuditEntry,
    Calendar,
    Closure,
    DateOverride,
    Holiday,
    Metric,
    Notification,
    NotificationRule,
    NotificationStatus,
    Policy,
    Target,
    Trigger,
    WorkingInterval,
    describe_interval,
    new_webhook_secret,
    overlapping_pairs,
)
from policies.notifications import enqueue_delivery
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
            _resync_and_audit(
                request,
                obj,
                changes,
                calendar_id=self.affected_calendar(obj),
                action="changed" if change else "created",
            )


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
                    _resync_and_audit(
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


def _resync_and_audit(
    request: HttpRequest,
    obj: Any,
    changes: dict[str, Any],
    *,
    calendar_id: int | None = None,
    action: str = "changed",
) -> None:
    """After a rule changed: re-sync the open clocks it may affect and record who did what."""
    now = timezone.now()
    ticket_ids = open_ticket_ids_for_calendar(calendar_id) if calendar_id is not None else None
    cause = f"{obj._meta.verbose_name.capitalize()} '{obj}' {action} by {request.user}"
    how = schedule_resync(now=now, cause=cause, ticket_ids=ticket_ids)
    count = len(ticket_ids) if ticket_ids is not None else None
    record_audit(
        now=now, user=request.user, obj=obj, action=action, changes=changes, resynced=count or 0
    )
    messages.info(request, f"Audit recorded; {how}.")


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
        _resync_and_audit(request, obj, changes, action="deleted")

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


def _https_urls(field: Any, **kwargs: Any) -> Any:
    """URLs typed without a scheme mean https (Django 6's default, asked for now)."""
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class NotificationRuleForm(forms.ModelForm):
    metrics = JSONChoicesField(choices=Metric.choices, required=False, help_text="None = any.")
    priorities = JSONChoicesField(choices=Priority.choices, required=False, help_text="None = any.")
    webhook_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the current secret (a new webhook gets one generated and "
        "shown once). Or paste the secret your receiver expects.",
    )
    new_secret = forms.BooleanField(
        required=False,
        label="generate a new secret",
        help_text="The old one stops verifying at once; the new one is shown once after saving.",
    )

    class Meta:
        model = NotificationRule
        fields = [
            "name",
            "active",
            "description",
            "trigger",
            "overdue_minutes",
            "repeat_minutes",
            "quiet_hours",
            "metrics",
            "priorities",
            "policies",
            "partners",
            "notify_assignee",
            "notify_partner_contacts",
            "notify_users",
            "emails",
            "webhook_url",
            "webhook_format",
            "webhook_secret",
        ]
        widgets = {"emails": forms.Textarea(attrs={"rows": 3, "cols": 60})}
        formfield_callback = _https_urls

    def clean_webhook_secret(self) -> str:
        secret = str(self.cleaned_data.get("webhook_secret") or "")
        if not secret and self.instance.pk is not None:
            return self.instance.webhook_secret  # empty = keep
        if secret and len(secret) < 16:
            raise forms.ValidationError(
                "Use at least 16 characters (or leave it empty to have one generated)."
            )
        return secret

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        has_email = bool(
            data.get("notify_assignee")
            or data.get("notify_partner_contacts")
            or data.get("notify_users")
            or (data.get("emails") or "").strip()
        )
        if not has_email and not data.get("webhook_url") and "webhook_url" not in self.errors:
            raise forms.ValidationError(
                "Nobody would hear of it: choose at least one email recipient (the assignee, "
                "the partner's contacts, users or addresses) or enter a webhook URL."
            )
        calendar = data.get("quiet_hours")
        if calendar is not None:
            try:
                business_calendar(calendar).next_open(timezone.now())
            except CalendarError:
                self.add_error(
                    "quiet_hours",
                    f"Calendar '{calendar}' has no working time, so messages would wait "
                    "forever: add working intervals to it or choose another calendar.",
                )
        if data.get("new_secret") or (data.get("webhook_url") and not data.get("webhook_secret")):
            data["webhook_secret"] = new_webhook_secret()
            self.instance.webhook_secret = data["webhook_secret"]
            self.generated_secret = True
        return data


@admin.register(NotificationRule)
class NotificationRuleAdmin(admin.ModelAdmin):
    form = NotificationRuleForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = [
        "name",
        "active",
        "trigger_summary",
        "applies_to",
        "recipients_summary",
        "quiet_hours",
    ]
    list_editable = ["active"]
    list_filter = ["active", "trigger", "webhook_format"]
    search_fields = ["name", "description", "emails", "webhook_url"]
    filter_horizontal = ["policies", "partners", "notify_users"]
    readonly_fields = ["secret_hint"]
    fieldsets = [
        (None, {"fields": ["name", "active", "description"]}),
        (
            "When (a rule notifies once per clock; level 3 may repeat until acknowledged)",
            {"fields": ["trigger", ("overdue_minutes", "repeat_minutes"), "quiet_hours"]},
        ),
        (
            "Which clocks (empty = any)",
            {"fields": ["metrics", "priorities", "policies", "partners"]},
        ),
        (
            "Email",
            {"fields": ["notify_assignee", "notify_partner_contacts", "notify_users", "emails"]},
        ),
        (
            "Webhook (HMAC-SHA256 signed POST; see docs/notifications.md)",
            {
                "fields": [
                    "webhook_url",
                    "webhook_format",
                    "secret_hint",
                    "webhook_secret",
                    "new_secret",
                ]
            },
        ),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[NotificationRule]:
        return (
            super()
            .get_queryset(request)
            .select_related("quiet_hours")
            .prefetch_related("partners", "policies", "notify_users")
        )

    def save_model(
        self, request: HttpRequest, obj: NotificationRule, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        if getattr(form, "generated_secret", False):
            self.message_user(
                request,
                f"Webhook secret of '{obj}': {obj.webhook_secret} — copy it to the receiver "
                "now; it is not shown again.",
                messages.WARNING,
            )

    @admin.display(description="secret")
    def secret_hint(self, obj: NotificationRule) -> str:
        if not obj.webhook_secret:
            return "none yet (one is generated when you save a webhook URL)"
        return f"{obj.webhook_secret[:10]}… (hidden)"

    @admin.display(description="when", ordering="trigger")
    def trigger_summary(self, obj: NotificationRule) -> str:
        text = str(obj.get_trigger_display())
        if obj.trigger == Trigger.OVERDUE:
            text = f"Level 3: red for {obj.overdue_minutes} min, unless acknowledged"
            if obj.repeat_minutes:
                text += f"; every {obj.repeat_minutes} min until then"
        return text

    @admin.display(description="applies to")
    def applies_to(self, obj: NotificationRule) -> str:
        parts = []
        if obj.metrics:
            parts.append(", ".join(Metric(m).label for m in obj.metrics if m in Metric.values))
        if obj.priorities:
            parts.append(", ".join(obj.priorities))
        policies = [p.name for p in obj.policies.all()]
        if policies:
            parts.append("policy " + ", ".join(policies))
        partners = [p.name for p in obj.partners.all()]
        if partners:
            parts.append("partner " + ", ".join(partners))
        return "; ".join(parts) or "every clock"

    @admin.display(description="notifies")
    def recipients_summary(self, obj: NotificationRule) -> str:
        who = []
        if obj.notify_assignee:
            who.append("assignee")
        if obj.notify_partner_contacts:
            who.append("partner contacts")
        who += [u.get_username() for u in obj.notify_users.all()]
        who += obj.email_list()
        if obj.webhook_url:
            who.append(f"webhook {urlsplit(obj.webhook_url).hostname}")
        return ", ".join(who)


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    """The log of every notification: read-only, with a "retry now" action for failures."""

    list_display = [
        "created_at",
        "rule",
        "ticket_link",
        "metric",
        "trigger",
        "sequence",
        "channel",
        "status",
        "attempts",
        "due",
        "sent_at",
        "recipients",
        "last_error",
    ]
    list_filter = ["status", "channel", "trigger", "metric", "rule"]
    search_fields = ["ticket__external_id", "ticket__subject", "recipients", "last_error"]
    list_select_related = ["rule", "ticket"]
    date_hierarchy = "created_at"
    actions = ["retry_now"]
    readonly_fields = [
        "rule",
        "ticket",
        "metric",
        "cycle",
        "trigger",
        "sequence",
        "channel",
        "event_at",
        "status",
        "attempts",
        "next_attempt_at",
        "created_at",
        "sent_at",
        "recipients",
        "last_error",
        "history_table",
    ]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("policies.change_notification")

    @admin.display(description="next attempt", ordering="next_attempt_at")
    def due(self, obj: Notification) -> Any:
        """When a waiting row goes out (a sending row's lease end); nothing once it is done."""
        return obj.next_attempt_at if obj.status in DUE_STATUSES else "—"

    @admin.display(description="ticket", ordering="ticket__external_id")
    def ticket_link(self, obj: Notification) -> str:
        url = reverse("admin:tickets_ticket_change", args=[obj.ticket_id])
        return format_html('<a href="{}">{}</a>', url, obj.ticket.external_id)

    @admin.display(description="attempts")
    def history_table(self, obj: Notification) -> str:
        rows = [
            (h.get("at", ""), h.get("attempt", ""), h.get("outcome", ""), h.get("detail", ""))
            for h in obj.history or []
        ]
        if not rows:
            return "none yet"
        return format_html(
            "<table><tr><th>at</th><th>attempt</th><th>outcome</th><th>detail</th></tr>{}</table>",
            format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", rows),
        )

    @admin.action(description="Retry now (failed or deferred)", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[Notification]) -> None:
        count = queryset.filter(
            status__in=[NotificationStatus.FAILED, NotificationStatus.DEFERRED]
        ).update(status=NotificationStatus.PENDING, attempts=0, next_attempt_at=timezone.now())
        if count:
            transaction.on_commit(enqueue_delivery)
        self.message_user(request, f"{count} notification(s) will be sent again.", messages.INFO)


@admin.register(Acknowledgement)
class AcknowledgementAdmin(admin.ModelAdmin):
    list_display = ["at", "ticket", "metric", "cycle", "user", "via"]
    list_filter = ["via", "metric"]
    search_fields = ["ticket__external_id", "user__username"]
    list_select_related = ["ticket", "user"]
    readonly_fields = ["ticket", "metric", "cycle", "user", "at", "via"]
    fields = tuple(readonly_fields)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
