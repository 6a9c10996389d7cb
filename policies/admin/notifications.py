"""Notification rules, the notification log (with retry), acknowledgements."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from policies.businesstime import CalendarError
from policies.engine import business_calendar
from policies.models import (
    DUE_STATUSES,
    Acknowledgement,
    Metric,
    Notification,
    NotificationRule,
    NotificationStatus,
    Trigger,
    new_webhook_secret,
)
from policies.notifications.detect import enqueue_delivery
from slaboard.admin_site import PartnerScopedAdmin
from slaboard.forms import JSONChoicesField
from tickets.models import Priority


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
class NotificationAdmin(PartnerScopedAdmin):
    partner_path = "ticket__partner"
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
class AcknowledgementAdmin(PartnerScopedAdmin):
    partner_path = "ticket__partner"
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
