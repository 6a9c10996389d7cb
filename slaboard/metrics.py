"""Prometheus metrics (prometheus-client), recorded where things happen and served at
``/metrics`` (``slaboard.ops``; protected by ``METRICS_TOKEN``).

Every process records into prometheus-client's registry. With several processes on a host
(uvicorn workers, Celery prefork children) set ``PROMETHEUS_MULTIPROC_DIR`` for all of them
to one directory per host: each process then writes its values to files there and whichever
web process answers a scrape sums them (prometheus-client's multiprocess mode;
``docs/deployment.md``, "Metrics"). Without it a scrape sees only the answering process.

What the database and Redis know (tick age, notification backlog, workers last seen) is read
at scrape time by ``slaboard.health`` instead: the same numbers as the readiness check.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

TICK_DURATION = Histogram(
    "slaboard_tick_duration_seconds",
    "How long one minute tick took (its transaction, locks included).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TICK_CLOCKS_MOVED = Counter(
    "slaboard_tick_clocks_moved",
    "SLA clocks the tick moved to their next colour.",
)
PUBLISH_LAG = Histogram(
    "slaboard_publish_lag_seconds",
    "From the commit of the oldest change a publish renders to its push sent to the screens.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
PUBLISH_DURATION = Histogram(
    "slaboard_publish_duration_seconds",
    "How long one publish took (render every live group, send what changed).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
SCREENS = Gauge(
    "slaboard_screens_connected",
    "Open websockets, by what they watch (board, queue, ticket).",
    ["kind"],
    multiprocess_mode="livesum",
)
NOTIFICATIONS = Counter(
    "slaboard_notifications",
    "Notification delivery attempts by channel and outcome (sent, retry, failed, skipped).",
    ["channel", "outcome"],
)
HTTP_REQUESTS = Counter(
    "slaboard_http_requests",
    "HTTP requests answered, by surface (api, page, static, ops), method and status.",
    ["surface", "method", "status"],
)
HTTP_DURATION = Histogram(
    "slaboard_http_request_duration_seconds",
    "HTTP request latency in this process, by surface (api, page, static, ops).",
    ["surface"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)

#: Methods kept as label values; anything else is "other" (labels must stay few).
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def surface(path: str) -> str:
    if path.startswith("/api/"):
        return "api"
    if path.startswith("/static/"):
        return "static"
    if path in OPS_PATHS:
        return "ops"
    return "page"


def observe_request(path: str, method: str, status: int, seconds: float) -> None:
    where = surface(path)
    HTTP_REQUESTS.labels(where, method if method in METHODS else "other", str(status)).inc()
    HTTP_DURATION.labels(where).observe(seconds)


def screen_kind(group: str) -> str:
    """``board-3-all`` → board; ``queue-all`` → queue; ``ticket-42`` → ticket."""
    return group.partition("-")[0] or "other"
