from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from policies.durations import format_duration
from policies.models import SLAClock
from policies.timezones import timezone_choices
from slaboard.admin_site import PartnerScopedAdmin
from tickets.actions import TicketActionError, change_ticket, open_ticket
from tickets.models import (
    OPEN_STATUSES,
    ApiToken,
    Customer,
    CustomerTier,
    Partner,
    PartnerTier,
    Priority,
    Ticket,
    TicketEvent,
    TicketKind,
    TicketStatus,
    User,
)


class PartnerForm(forms.ModelForm):
    class Meta:
        model = Partner
        fields = ["name", "tier", "timezone", "default_calendar", "contact_emails"]
        widgets = {
            "timezone": forms.Select(choices=timezone_choices()),
            "contact_emails": forms.Textarea(attrs={"rows": 3}),
        }


@admin.register(Partner)
class PartnerAdmin(PartnerScopedAdmin):
    partner_path = "pk"
    form = PartnerForm
    list_display = ["name", "tier", "timezone", "default_calendar", "open_tickets", "user_count"]
    list_filter = ["tier", "timezone", "default_calendar"]
    search_fields = ["name", "contact_emails"]
    list_select_related = ["default_calendar"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Partner]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                open_total=Count(
                    "tickets", filter=Q(tickets__status__in=OPEN_STATUSES), distinct=True
                ),
                user_total=Count("users", distinct=True),
            )
        )

    @admin.display(description="open tickets", ordering="open_total")
    def open_tickets(self, obj: Any) -> int:
        return int(obj.open_total)

    @admin.display(description="users", ordering="user_total")
    def user_count(self, obj: Any) -> int:
        return int(obj.user_total)


@admin.register(Customer)
class CustomerAdmin(PartnerScopedAdmin):
    partner_path = "tickets__partner"
    list_display = ["name", "tier", "open_tickets"]
    list_filter = ["tier"]
    search_fields = ["name"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Customer]:
        return (
            super()
            .get_queryset(request)
            .annotate(open_total=Count("tickets", filter=Q(tickets__status__in=OPEN_STATUSES)))
        )

    @admin.display(description="open tickets", ordering="open_total")
    def open_tickets(self, obj: Any) -> int:
        return int(obj.open_total)


@admin.register(User)
class UserAdmin(PartnerScopedAdmin, DjangoUserAdmin):
    list_display = ["username", "email", "first_name", "last_name", "partner", "is_staff"]
    list_filter = ["partner", "is_staff", "is_superuser", "is_active", "groups"]
    list_select_related = ["partner"]
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("Partner", {"fields": ["partner"]}),
    )
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Partner", {"fields": ["partner"]}),
    )


class PartnerTierFilter(admin.SimpleListFilter):
    title = "partner tier"
    parameter_name = "partner_tier"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return PartnerTier.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(partner__tier=self.value()) if self.value() else queryset


class CustomerTierFilter(admin.SimpleListFilter):
    title = "customer tier"
    parameter_name = "customer_tier"

    def lookups(self, request: HttpRequest, model_admin: Any) -> Any:
        return CustomerTier.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(customer__tier=self.value()) if self.value() else queryset


class TicketEventInline(admin.TabularInline):
    """The ticket's timeline: append-only, so read-only here."""

    model = TicketEvent
    fields = ("at", "kind", "actor_kind", "user", "details", "external_id", "recorded_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ["at", "id"]
    verbose_name = "event"
    verbose_name_plural = "timeline (append-only)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[TicketEvent]:
        return super().get_queryset(request).select_related("user")

    @admin.display(description="details")
    def details(self, obj: TicketEvent) -> str:
        return describe_payload(obj.payload)


LABELS: dict[str, dict[str, str]] = {
    "kind": dict(TicketKind.choices),
    "priority": dict(Priority.choices),
    "status": dict(TicketStatus.choices),
}
RELATED = {"partner_id": Partner, "customer_id": Customer, "assignee_id": User}


def describe_payload(payload: dict[str, Any]) -> str:
    """An event's payload as a person reads it: names instead of ids, labels instead of codes."""
    parts = []
    for key, value in sorted(payload.items()):
        if value in (None, ""):
            continue
        name = key.removesuffix("_id")
        if key in RELATED:
            row = RELATED[key]._default_manager.filter(pk=value).first()
            value = str(row) if row is not None else f"#{value} (deleted)"
        elif key in LABELS:
            value = LABELS[key].get(value, value)
        parts.append(f"{name}: {value}")
    return ", ".join(parts)


class SLAClockInline(admin.TabularInline):
    """The ticket's SLA clocks, computed from its events: read-only."""

    model = SLAClock
    fields = (
        "metric",
        "cycle",
        "status",
        "bucket",
        "started_at",
        "due_at",
        "met_at",
        "breached_at",
        "time_left",
        "policy",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "SLA clocks (computed from the timeline)"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="business time left")
    def time_left(self, obj: SLAClock) -> str:
        if obj.status == "paused" and obj.remaining_seconds is not None:
            return f"{format_duration(timedelta(seconds=obj.remaining_seconds))} (paused)"
        return "—"


class TicketAddForm(forms.ModelForm):
    external_id = forms.CharField(
        required=False,
        max_length=200,
        help_text="The id in the source system. Leave empty to number it SLA-<n>.",
    )

    class Meta:
        model = Ticket
        fields = [
            "subject",
            "partner",
            "customer",
            "kind",
            "priority",
            "team",
            "assignee",
            "source",
            "external_id",
            "opened_at",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["opened_at"].initial = timezone.now
        self.auto_numbered = False

    def clean_opened_at(self) -> Any:
        value = self.cleaned_data["opened_at"]
        if value and value > timezone.now():
            raise forms.ValidationError("The ticket cannot be opened in the future.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("external_id"):
            # Numbered SLA-<id> once saved; a unique placeholder passes validation meanwhile.
            self.auto_numbered = True
            data["external_id"] = f"pending-{timezone.now().timestamp()}"
            self.instance.external_id = data["external_id"]
        return data


class TicketChangeForm(forms.ModelForm):
    class Meta:
        model = Ticket
        fields = [
            "subject",
            "partner",
            "customer",
            "kind",
            "priority",
            "status",
            "team",
            "assignee",
        ]


@admin.register(Ticket)
class TicketAdmin(PartnerScopedAdmin):
    list_display = [
        "reference",
        "subject",
        "priority",
        "status",
        "kind",
        "partner",
        "customer",
        "assignee",
        "opened_at",
    ]
    list_filter = [
        "status",
        "priority",
        "kind",
        PartnerTierFilter,
        CustomerTierFilter,
        "partner",
        "source",
    ]
    search_fields = ["subject", "external_id", "customer__name", "partner__name", "team"]
    list_select_related = ["partner", "customer", "assignee"]
    date_hierarchy = "opened_at"
    autocomplete_fields = ["customer", "assignee"]
    inlines = [SLAClockInline, TicketEventInline]
    list_per_page = 50
    projected = [
        "opened_at",
        "first_human_reply_at",
        "plan_sent_at",
        "resolved_at",
        "closed_at",
        "last_event_at",
    ]

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs["form"] = TicketChangeForm if obj is not None else TicketAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_inlines(self, request: HttpRequest, obj: Any) -> Any:
        return self.inlines if obj is not None else []  # a new ticket has no timeline yet

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [(None, {"fields": TicketAddForm.Meta.fields})]
        return [
            (None, {"fields": TicketChangeForm.Meta.fields}),
            (
                "From the event log (read-only)",
                {"fields": [("source", "external_id"), *self.projected]},
            ),
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return []
        return ["source", "external_id", *self.projected]

    @admin.display(description="ticket", ordering="external_id")
    def reference(self, obj: Ticket) -> str:
        return obj.external_id if obj.source == "slaboard" else f"{obj.source}:{obj.external_id}"

    def save_model(self, request: HttpRequest, obj: Ticket, form: Any, change: bool) -> None:
        """Admin edits become events through the same actions as every other entry point."""
        now = timezone.now()
        user = request.user if isinstance(request.user, User) else None
        try:
            if not change:
                data = form.cleaned_data
                ticket = open_ticket(
                    partner_id=data["partner"].pk,
                    customer_id=data["customer"].pk if data.get("customer") else None,
                    subject=data["subject"],
                    kind=data["kind"],
                    priority=data["priority"],
                    team=data.get("team") or "",
                    assignee_id=data["assignee"].pk if data.get("assignee") else None,
                    source=data.get("source") or "slaboard",
                    external_id="" if form.auto_numbered else data["external_id"],
                    opened_at=data["opened_at"],
                    now=now,
                    user=user,
                )
                obj.pk = ticket.pk
                obj._state.adding = False
                obj.refresh_from_db()
                return
            changes = {
                name: form.cleaned_data[name] for name in form.changed_data if name != "subject"
            }
            if "subject" in form.changed_data:
                changes["subject"] = form.cleaned_data["subject"]
            for fk in ("partner", "customer", "assignee"):
                if fk in changes:
                    value = changes.pop(fk)
                    changes[f"{fk}_id"] = value.pk if value is not None else None
            change_ticket(ticket=obj, changes=changes, at=now, now=now, user=user)
            obj.refresh_from_db()
        except TicketActionError as exc:
            self.message_user(request, str(exc), level=messages.ERROR)
            raise


@admin.register(ApiToken)
class ApiTokenAdmin(PartnerScopedAdmin):
    list_display = [
        "name",
        "prefix",
        "partner",
        "requests_per_minute",
        "created_at",
        "last_used_at",
        "state",
    ]
    list_filter = ["partner", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    fields = [
        "name",
        "partner",
        "requests_per_minute",
        "prefix",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    readonly_fields = ["prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    @admin.display(description="state")
    def state(self, obj: ApiToken) -> str:
        return "revoked" if obj.revoked_at else "active"

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, secret = ApiToken.issue(
            name=obj.name, partner=obj.partner, requests_per_minute=obj.requests_per_minute
        )
        obj.pk, obj.prefix, obj.token_hash = token.pk, token.prefix, token.token_hash
        obj._state.adding = False
        self.message_user(
            request,
            f"API token for {obj.name}: {secret} — copy it now: it is stored hashed and will "
            "not be shown again.",
            messages.WARNING,
        )

    @admin.action(description="Revoke selected tokens (they stop working at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).", messages.SUCCESS)
