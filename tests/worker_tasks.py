"""Tasks that only the real-process tests load into a worker (`worker -I tests.worker_tasks`)."""

from __future__ import annotations

import time
from pathlib import Path

from celery import shared_task


@shared_task(name="tests.hold", ignore_result=True, acks_late=True)
def hold_task(release_file: str, timeout: float = 120) -> str:
    """Keep a worker slot busy until ``release_file`` exists (or ``timeout`` passes)."""
    print(f"holding until {release_file} exists", flush=True)
    deadline = time.monotonic() + timeout
    release = Path(release_file)
    while not release.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{release_file} never appeared")
        time.sleep(0.05)
    return "released"
