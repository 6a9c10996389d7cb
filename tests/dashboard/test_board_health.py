"""Boards say when the deployment is unwell: the "evaluated" time turns into a warning when
the tick is late, and the heartbeat carries a health line."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.template.loader import render_to_string
from django.utils import timezone

from dashboard.access import Viewer
from dashboard.boards import render_board_fragments
from policies.models import TickWatermark
from slaboard import worker_heartbeat
from slaboard.dbclock import database_now
from slaboard.health import check

pytestmark = pytest.mark.django_db


def test_the_evaluated_time_turns_into_a_warning_when_the_tick_is_late(org: dict) -> None:
    now = timezone.now()
    fresh = render_board_fragments(org["board"], Viewer(), now, now - timedelta(seconds=20))
    late = render_board_fragments(org["board"], Viewer(), now, now - timedelta(seconds=151))
    assert "clocks evaluated" in fresh["board-compliance"]
    assert "tick late" not in fresh["board-compliance"]
    assert "⚠ tick late: clocks last evaluated" in late["board-compliance"]
    assert 'class="detail evaluated late"' in late["board-compliance"]
    assert 'data-late-after="150"' in fresh["board-compliance"]  # live.js warns by itself


def test_the_heartbeat_tells_boards_what_is_wrong_in_a_few_words(live_redis: Any) -> None:
    TickWatermark.objects.create(pk=1, evaluated_until=database_now() - timedelta(minutes=5))
    worker_heartbeat._last.clear()
    worker_heartbeat.record("realtime", "realtime@wall")
    problems = check(["tick", "workers", "notifications"]).problems()
    assert problems == ["clocks last evaluated 5 min ago", "no worker for background"]
    html = render_to_string("dashboard/fragments/heartbeat.html", {"at": "x", "problems": problems})
    assert "⚠ clocks last evaluated 5 min ago · no worker for background" in html
    quiet = render_to_string("dashboard/fragments/heartbeat.html", {"at": "x", "problems": []})
    assert '<p id="board-health" class="health" hidden' in quiet
