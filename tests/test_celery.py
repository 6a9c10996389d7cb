from __future__ import annotations

from django.conf import settings

from slaboard.celery import app


def test_every_beat_entry_expires_before_the_next_run() -> None:
    app.loader.import_default_modules()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["options"]["expires"] < entry["schedule"], name
        assert entry["task"] in app.tasks, name
