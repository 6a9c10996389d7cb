from __future__ import annotations

from django.conf import settings

from slaboard.celery import app


def test_every_beat_entry_expires_before_the_next_run() -> None:
    app.loader.import_default_modules()
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["options"]["expires"] < entry["schedule"], name
        assert entry["task"] in app.tasks, name


def test_the_tick_and_publishing_never_queue_behind_delivery() -> None:
    app.loader.import_default_modules()

    def queue_of(task: str) -> str:
        return str(app.amqp.router.route({}, task)["queue"].name)

    assert queue_of("policies.tick") == queue_of("dashboard.publish") == "realtime"
    assert queue_of("policies.deliver_notifications") == "background"
    assert queue_of("policies.resync_open_clocks") == "background"
    assert queue_of("some.new_task") == "background"  # unrouted work never slows the tick


def test_the_run_command_starts_a_worker_for_every_queue_tasks_go_to() -> None:
    from slaboard.run import worker_argv

    app.loader.import_default_modules()
    argvs = [worker_argv(queue, concurrency=1) for queue in ("realtime", "background")]
    served = {argv[argv.index("--queues") + 1] for argv in argvs}
    for name in app.tasks:
        if not name.startswith("celery."):
            assert app.amqp.router.route({}, name)["queue"].name in served, name
