"""Logs: one access line per request with its id, JSON lines on demand, quiet about the
expected (a 403 or 404 is one line, a publish task is silent unless DEBUG)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from slaboard.logs import JsonFormatter, QuietTasksFilter, request_id


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]


@pytest.fixture
def json_log() -> Iterator[Captured]:
    """The console handler of settings.LOGGING, JSON format, writing to a buffer."""
    from logging.config import dictConfig

    stream = io.StringIO()
    config = {**settings.LOGGING, "formatters": {**settings.LOGGING["formatters"]}}
    config["handlers"] = {
        "console": {**settings.LOGGING["handlers"]["console"], "formatter": "json"}
    }
    dictConfig(config)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield Captured(stream)
    dictConfig(settings.LOGGING)


def test_a_request_is_one_json_line_with_the_request_id_it_came_with(
    json_log: Captured, client: Client
) -> None:
    response = client.get("/healthz", HTTP_X_REQUEST_ID="lb-7f3a.42")
    assert response["X-Request-ID"] == "lb-7f3a.42"
    [line] = json_log.records()
    assert line["logger"] == "slaboard.request" and line["level"] == "INFO"
    assert line["message"].startswith("GET /healthz 200 ")
    assert (line["request_id"], line["method"], line["path"], line["status"]) == (
        "lb-7f3a.42",
        "GET",
        "/healthz",
        200,
    )
    assert isinstance(line["duration_ms"], float) and "time" in line


def test_a_request_without_an_id_or_with_a_bad_one_gets_a_fresh_one(
    json_log: Captured, client: Client
) -> None:
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz", HTTP_X_REQUEST_ID="no spaces <allowed>")["X-Request-ID"]
    assert len({first, second}) == 2 and all(len(rid) == 16 for rid in (first, second))
    assert [line["request_id"] for line in json_log.records()] == [first, second]
    assert request_id.get() == "-"  # nothing leaks past the request


@pytest.mark.django_db
def test_an_expected_403_or_404_is_the_access_line_alone_without_a_traceback(
    json_log: Captured, client: Client
) -> None:
    assert client.get("/boards/nowhere/?kiosk=revoked").status_code == 403
    assert client.get("/no/such/page").status_code == 404
    records = json_log.records()
    assert [line["logger"] for line in records] == ["slaboard.request", "slaboard.request"]
    assert [line["status"] for line in records] == [403, 404]
    assert not any("exception" in line for line in records)


def test_a_log_line_carries_its_traceback_and_extra_fields_as_json() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed %s", ("once",), exc_info=sys.exc_info()
        )
    record.ticket = 42
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "failed once" and line["ticket"] == 42
    assert "ValueError: boom" in line["exception"] and line["request_id"] == "-"


def test_celery_lines_of_a_publish_task_show_only_at_debug() -> None:
    def record(task: str) -> logging.LogRecord:
        made = logging.makeLogRecord(
            {"name": "celery.app.trace", "levelno": logging.INFO, "levelname": "INFO"}
        )
        made.data = {"name": task, "id": "1"}
        return made

    quiet = QuietTasksFilter()
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.INFO)
        assert not quiet.filter(record("dashboard.publish"))
        assert quiet.filter(record("policies.tick"))
        root.setLevel(logging.DEBUG)
        assert quiet.filter(record("dashboard.publish"))
    finally:
        root.setLevel(level)
