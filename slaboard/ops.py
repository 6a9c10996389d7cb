"""Operations endpoints: ``/readyz`` (readiness, JSON) and ``/metrics`` (Prometheus).

``/healthz`` (liveness: the process answers) stays in ``dashboard.views``.
"""

from __future__ import annotations

import glob
import hmac
import os
import re
from collections.abc import Iterable, Iterator

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from slaboard.health import CHECKS, HealthCollector, check


@require_GET
def readyz(request: HttpRequest) -> HttpResponse:
    """Ready (200) when every check passes, else 503; JSON either way.

    ``?check=database&check=redis`` runs only those (a load balancer's probe should not take
    every web process out because the tick is late: that is a worker's problem).
    """
    asked = request.GET.getlist("check")
    unknown = sorted(set(asked) - set(CHECKS))
    if unknown:
        return JsonResponse(
            {"detail": f"unknown check(s): {', '.join(unknown)}; known: {', '.join(CHECKS)}"},
            status=400,
        )
    report = check(asked or CHECKS)
    response = JsonResponse(report.as_json(), status=200 if report.ok else 503)
    response["Cache-Control"] = "no-store"
    if not report.ok:
        response["Retry-After"] = "5"
    return response


_LIVE_GAUGE = re.compile(r"^gauge_live\w*?_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class HostCollector(Collector):
    """prometheus-client's multiprocess files of every slaboard process on this host, summed.

    Before reading, the live gauges (open screens) of processes that no longer exist are
    removed — a uvicorn worker killed with -9 must not count its screens forever. Counters and
    histograms of dead processes stay: totals must not go down.
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def collect(self) -> Iterable[Metric]:
        for name in os.listdir(self.path):
            found = _LIVE_GAUGE.match(name)
            if found and not _alive(int(found.group(1))):
                mark_process_dead(int(found.group(1)), self.path)
        files = glob.glob(os.path.join(self.path, "*.db"))
        return MultiProcessCollector.merge(files, accumulate=True)


class _ThisProcess(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def registry() -> CollectorRegistry:
    """What a scrape sees: every process on the host (multiprocess mode) or this one, plus
    the health numbers read from the database and Redis."""
    scrape = CollectorRegistry(auto_describe=False)
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    scrape.register(HostCollector(path) if path else _ThisProcess())
    scrape.register(HealthCollector())
    return scrape


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    return bool(token) and hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format, for a scraper that sends ``Authorization: Bearer
    <METRICS_TOKEN>``. Without the token set, or with a wrong one: 404 (nothing to find)."""
    if not _authorized(request):
        raise Http404("No such page.")
    response = HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
