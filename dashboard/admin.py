from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from dashboard.actions import revoke_kiosk_link, rotate_kiosk_link
from dashboard.models import Board
from policies.timezones import timezone_choices
from slaboard.forms import JSONChoicesField
from tickets.models import CustomerTier, Priority, TicketKind


class BoardForm(forms.ModelForm):
    display_timezone = forms.ChoiceField(
        required=False,
        label="Display time zone",
        help_text="Times on the board, and when today and this month start.",
    )
    priorities = JSONChoicesField(choices=Priority.choices, required=False, help_text="None = any.")
    kinds = JSONChoicesField(choices=TicketKind.choices, required=False, help_text="None = any.")
    customer_tiers = JSONChoicesField(
        choices=CustomerTier.choices, required=False, help_text="None = any."
    )
    teams = forms.CharField(
        required=False,
        help_text="Team names separated by commas. Empty = any team.",
        widget=forms.TextInput(attrs={"size": 60}),
    )

    class Meta:
        model = Board
        fields = [
            "name",
            "slug",
            "display_timezone",
            "partners",
            "priorities",
            "kinds",
            "customer_tiers",
            "teams",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        zone = self.fields["display_timezone"]
        assert isinstance(zone, forms.ChoiceField)
        zone.choices = [("", "Default: the board's one partner's, else the site's")] + list(
            timezone_choices()
        )
        if self.instance.pk and isinstance(self.instance.teams, list):
            self.initial["teams"] = ", ".join(self.instance.teams)

    def clean_teams(self) -> list[str]:
        raw = self.cleaned_data.get("teams") or ""
        return [name.strip() for name in raw.split(",") if name.strip()]


@admin.register(Board)
class BoardAdmin(admin.ModelAdmin):
    form = BoardForm
    list_display = ["name", "slug", "open_link", "kiosk"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["partners"]
    readonly_fields = ["kiosk_link"]
    actions = ["create_kiosk_link", "revoke_kiosk_link"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = list(BoardForm.Meta.fields)
        return [*fields, "kiosk_link"] if obj is not None else fields

    @admin.display(description="board")
    def open_link(self, obj: Board) -> str:
        return format_html('<a href="{}">open</a>', obj.get_absolute_url())

    @admin.display(description="kiosk link", boolean=True)
    def kiosk(self, obj: Board) -> bool:
        return bool(obj.kiosk_token)

    @admin.display(description="kiosk link (read-only, no login)")
    def kiosk_link(self, obj: Board) -> str:
        if not obj.kiosk_token:
            return "None. Use the action “Create or rotate kiosk link” in the board list."
        return format_html(
            '<a href="{0}">{0}</a><br><span class="help">Anyone with this link sees the board '
            "read-only. Rotate or revoke it from the board list.</span>",
            obj.kiosk_url(),
        )

    @admin.action(description="Create or rotate kiosk link (the old link stops working)")
    def create_kiosk_link(self, request: HttpRequest, queryset: QuerySet[Board]) -> None:
        for board in queryset:
            rotate_kiosk_link(board)
            self.message_user(
                request,
                format_html("Kiosk link for {}: {}", board.name, board.kiosk_url()),
                messages.SUCCESS,
            )

    @admin.action(description="Revoke kiosk link")
    def revoke_kiosk_link(self, request: HttpRequest, queryset: QuerySet[Board]) -> None:
        for board in queryset:
            revoke_kiosk_link(board)
        self.message_user(request, f"Revoked {queryset.count()} kiosk link(s).", messages.SUCCESS)
