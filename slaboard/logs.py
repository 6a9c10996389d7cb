"""Logging: a request id on every line, JSON lines on demand, and quiet about the expected.

Wired in ``settings.LOGGING`` (web processes) and, through Celery's ``setup_logging`` signal,
in workers and beat (``slaboard/celery.py``): one configuration for every process.

- ``request_id``: the id of the HTTP request (``X-Request-ID``, set by
  ``slaboard.middleware.RequestLogMiddleware``) or of the Celery task being run; ``-`` if none.
- ``JsonFormatter``: ``LOG_FORMAT=json`` writes one JSON object per line (time, level,
  logger, message, request_id, the access line's fields, the traceback if any).
- ``ExpectedFilter``: no Django warning for a 4xx (the access line says it; a 403 came with
  a 50-line traceback), no traceback for ``django.security`` records, nothing for the 503s
  the middleware already reports.
- ``QuietTasksFilter``: Celery's "received"/"succeeded" lines for ``dashboard.publish``
  (several a second when busy) only when LOG_LEVEL is DEBUG.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

#: The current request's (or task's) id; "-" outside any.
request_id: ContextVar[str] = ContextVar("request_id", default="-")

#: Celery tasks whose routine INFO lines are logged only at DEBUG.
QUIET_TASKS = frozenset({"dashboard.publish"})

#: LogRecord attributes that are not "extra" fields (color_message: uvicorn's, with ANSI codes).
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "request_id",
    "color_message",
}


class RequestIdFilter(logging.Filter):
    """Adds ``record.request_id`` (for the formats) from the current context."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class ExpectedFilter(logging.Filter):
    """Drops what is expected and said elsewhere; keeps every real error whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "django.request":
            status = getattr(record, "status_code", 500)
            # 4xx: the access line has it. 503: the database middleware said why, once.
            if status < 500 or status == 503:
                return False
        if record.name.startswith("django.security"):
            # A bad Host header or a CSRF failure is one line, not a traceback.
            record.exc_info = None
            record.exc_text = None
        return True


class QuietTasksFilter(logging.Filter):
    """Celery's per-task INFO lines for QUIET_TASKS pass only when the root logs DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if (
            record.levelno == logging.INFO
            and isinstance(data, dict)
            and data.get("name") in QUIET_TASKS
            and record.name in {"celery.app.trace", "celery.worker.strategy"}
        ):
            return logging.getLogger().isEnabledFor(logging.DEBUG)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Extra fields of a record (``extra={...}``) are included."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id.get()),
            "process": record.processName if record.processName != "MainProcess" else None,
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(
            {k: v for k, v in entry.items() if v is not None}, default=str, ensure_ascii=False
        )
