from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

from slaboard import ops
from slaboard.api import api

admin.site.site_header = "slaboard administration"
admin.site.site_title = "slaboard admin"
admin.site.index_title = "Partners, tickets, calendars and policies"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("readyz", ops.readyz, name="readyz"),
    path("metrics", ops.metrics, name="metrics"),
    path("", include("dashboard.urls")),
]
