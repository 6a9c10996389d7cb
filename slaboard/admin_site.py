"""The admin is for your own staff: partner users never get it (they have the product's
pages), and every admin list of partner data is scoped to the user's partner anyway.

``AdminConfig`` replaces ``django.contrib.admin`` in ``INSTALLED_APPS`` so that the default
site (``admin.site``, which every ``@admin.register`` uses) is ``StaffOnlyAdminSite``.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig
from django.db.models import QuerySet
from django.http import HttpRequest


def belongs_to_a_partner(user: Any) -> bool:
    return getattr(user, "partner_id", None) is not None


class StaffOnlyAdminSite(admin.AdminSite):
    def has_permission(self, request: HttpRequest) -> bool:
        """Active staff without a partner. A partner's user is refused even if an older
        account (or a direct database edit) made them staff: ``User.clean`` forbids it."""
        return super().has_permission(request) and not belongs_to_a_partner(request.user)


class AdminConfig(DjangoAdminConfig):
    default_site = "slaboard.admin_site.StaffOnlyAdminSite"


class PartnerScopedAdmin(admin.ModelAdmin):
    """Defence in depth: if a partner's user ever reached the admin, they would see only
    their partner's rows. ``partner_path`` is the lookup from the model to its partner."""

    partner_path = "partner"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        partner_id = getattr(request.user, "partner_id", None)
        if partner_id is None:
            return queryset
        # A subquery, not a join: annotations (counts) of the list stay right.
        mine = self.model._default_manager.filter(**{self.partner_path: partner_id})
        return queryset.filter(pk__in=mine.values("pk"))
