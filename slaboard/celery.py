"""The Celery application: worker and the single beat process load it from here."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slaboard.settings")

app = Celery("slaboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
