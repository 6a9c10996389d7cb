"""The Celery application: workers and the single beat process load it from here."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals
from celery.worker.consumer import Consumer as CeleryConsumer

from slaboard import worker_heartbeat
from slaboard.logs import request_id

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "slaboard.settings")

app = Celery("slaboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.setup_logging.connect
def use_django_logging(**kwargs: Any) -> None:
    """Workers and beat log like the web processes (settings.LOGGING: format, filters)."""
    from logging.config import dictConfig

    from django.conf import settings

    dictConfig(settings.LOGGING)


@signals.task_prerun.connect
def set_task_id(task_id: str | None = None, **kwargs: Any) -> None:
    """A task's log lines carry its id where a request's carry the request id."""
    request_id.set(task_id or "-")


@signals.task_postrun.connect
def clear_task_id(**kwargs: Any) -> None:
    request_id.set("-")


@signals.task_postrun.connect
def record_worker_heartbeat(sender: Any = None, **kwargs: Any) -> None:
    """A finished task says its queue has a live worker (``slaboard.worker_heartbeat``)."""
    request = getattr(sender, "request", None)
    if request is None or not request.hostname:
        return  # run eagerly (tests), not by a worker
    delivery = request.delivery_info or {}
    queue = delivery.get("routing_key") or app.conf.task_default_queue
    worker_heartbeat.record(str(queue), str(request.hostname))


class Consumer(CeleryConsumer):
    """Celery's consumer, surviving a broker connection loss while a task runs.

    Celery 5.7.0 (celery/celery#10242, "prevent graceful shutdown regression in connection
    recovery") made ``on_connection_error_after_connected`` call ``connection.close()`` right
    after ``connection.collect()``. With the Redis transport, ``collect()`` closes the default
    channel, but that close raises a connection error while draining the pending ``BRPOP`` on
    the dead socket (swallowed), so the channel stays half-open; ``collect()`` then detaches the
    transport (``transport.client = None``). The new ``close()`` closes that channel again, and
    now reaches ``restore_unacked_once()``: with a late-acked task running there is one
    unacknowledged message, restoring it builds a new Redis pool from ``transport.client``, and
    ``_connparams`` fails with ``AttributeError: 'NoneType' object has no attribute 'hostname'``
    — not a connection error, so ``ignore_errors`` lets it out and the worker exits with
    "Unrecoverable error". An idle worker has nothing to restore and reconnects, which is why
    only a busy worker died. Celery 5.6.3 (no ``close()`` after ``collect()``) survives.

    The fix: once ``collect()`` has run, forget the default channel, so the following
    ``close()`` has nothing left to close (as in 5.6.3). The channel keeps its pool, so the
    running task's late ack still reaches Redis when it comes back. Remove this class when a
    Celery release fixes the double close (``tests/test_worker_redis_restart.py`` tells).
    """

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        connection = self.connection
        if connection is not None and hasattr(connection, "_default_channel"):
            collect = connection.collect

            def collect_then_forget_channel(*args: Any, **kwargs: Any) -> Any:
                try:
                    return collect(*args, **kwargs)
                finally:
                    connection._default_channel = None

            connection.collect = collect_then_forget_channel
        super().on_connection_error_after_connected(exc)
