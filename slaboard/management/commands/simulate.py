"""``manage.py simulate``: keep the demo board moving with realistic ticket traffic."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import close_old_connections, connection
from django.utils import timezone

from slaboard.simulation import (
    DEFAULT_SPEED,
    TICKETS_PER_DAY,
    Action,
    NoOrganisation,
    Simulator,
    load_profile,
)

MAX_SLEEP_SECONDS = 1.0  # look again at least this often (Ctrl-C, --duration)


class Command(BaseCommand):
    help = (
        "Simulate ticket traffic on the demo organisation: new tickets, replies, pauses, "
        "priority changes and resolutions at a pace drawn from a real incident log "
        "(docs/simulator.md). Runs until Ctrl-C, --duration or --steps."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--speed",
            type=float,
            default=DEFAULT_SPEED,
            help=f"Simulated seconds per real second (default {DEFAULT_SPEED:g}: a simulated "
            "day in 6 minutes). Delays drawn from the log happen after delay / speed.",
        )
        parser.add_argument(
            "--rate",
            type=float,
            default=None,
            help=f"New tickets per real minute, averaged over the week (default "
            f"{TICKETS_PER_DAY:g} per simulated day, i.e. speed × {TICKETS_PER_DAY:g} / 1440: "
            f"{TICKETS_PER_DAY * DEFAULT_SPEED / 1440:g} at the default speed).",
        )
        parser.add_argument("--seed", type=int, default=None, help="Seed for a repeatable run.")
        parser.add_argument(
            "--steps",
            type=int,
            default=None,
            help="Do this many actions as fast as possible (planned ones early) and exit.",
        )
        parser.add_argument(
            "--duration", type=float, default=None, help="Stop after this many seconds."
        )

    def handle(
        self,
        *args: Any,
        speed: float,
        rate: float | None,
        seed: int | None,
        steps: int | None,
        duration: float | None,
        **options: Any,
    ) -> None:
        if speed <= 0:
            raise CommandError("--speed must be more than 0.")
        if rate is not None and rate <= 0:
            raise CommandError("--rate must be more than 0.")
        if steps is not None and steps < 1:
            raise CommandError("--steps must be 1 or more.")
        if duration is not None and duration <= 0:
            raise CommandError("--duration must be more than 0 seconds.")
        if seed is None:
            seed = random.SystemRandom().randrange(1_000_000)
        profile = load_profile()
        simulator = Simulator(rng=random.Random(seed), profile=profile, speed=speed, rate=rate)
        try:
            simulator.start(timezone.now())
        except NoOrganisation as exc:
            raise CommandError(str(exc)) from exc

        source = profile.name + (f" — {profile.problem}" if profile.problem else "")
        day = 24 * 60 / speed
        self.stdout.write(
            f"simulate: seed {seed}, speed {speed:g}× (a simulated day every "
            f"{day:.3g} real minutes), about {simulator.rate:.3g} new tickets a minute, "
            f"keeping about {simulator.target_open} demo/sim tickets open "
            f"({simulator.open_count()} now). Profile: {source}."
        )
        if steps is None:
            self.stdout.write("simulate: press Ctrl-C to stop.")
        self.stdout.flush()

        stopping = threading.Event()
        restore = _on_stop_signals(stopping)
        deadline = time.monotonic() + duration if duration is not None else None
        done = created = failed = 0
        try:
            while not stopping.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                if not connection.in_atomic_block:
                    close_old_connections()  # a long-running process: drop broken connections
                now = timezone.now()
                try:
                    if steps is not None:
                        action = simulator.run_next(now)
                        actions = [action] if action is not None else []
                    else:
                        actions = simulator.run_due(now)
                except Exception as exc:  # one bad iteration must not stop the demo
                    self.stderr.write(f"simulate: {type(exc).__name__}: {exc}; going on.")
                    actions = []
                    time.sleep(MAX_SLEEP_SECONDS)
                for action in actions:
                    self._write(action)
                    done += 1
                    created += action.kind == "created"
                    failed += not action.ok
                if steps is not None:
                    if done >= steps or not actions:
                        break
                    continue
                next_due = simulator.next_due()
                pause = MAX_SLEEP_SECONDS
                if next_due is not None:
                    pause = (next_due - timezone.now()).total_seconds()
                if deadline is not None:
                    pause = min(pause, deadline - time.monotonic())
                pause = min(pause, MAX_SLEEP_SECONDS)
                if pause > 0:
                    time.sleep(pause)  # runtime pacing: wait for the next planned instant
        finally:
            restore()
        self.stdout.write(
            f"simulate: stopped after {done} actions ({created} new tickets, {failed} failed); "
            f"{simulator.open_count()} demo/sim tickets open."
        )

    def _write(self, action: Action) -> None:
        line = f"{timezone.localtime(action.at):%H:%M:%S} {action.message}"
        if action.ok:
            self.stdout.write(line)
            self.stdout.flush()
        else:
            self.stderr.write(line)


def _on_stop_signals(stopping: threading.Event) -> Callable[[], None]:
    """Ctrl-C / SIGTERM finish the current action and stop; a second one stops at once."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    def handle(signum: int, frame: FrameType | None) -> None:
        stopping.set()
        restore()

    for sig in previous:
        signal.signal(sig, handle)
    return restore
