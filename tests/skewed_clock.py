"""Run ``python -m <module> <args…>`` on a host whose clock is off: ``python
tests/skewed_clock.py <seconds> <module> <args…>`` (only the real-process tests use it).

This is a stand-in for a machine whose clock drifted, confined to the process it starts (and
the children it forks): ``time.time`` (what Celery, logging and kombu read) and Django's
``timezone.now`` (what slaboard reads at its edges) run ``seconds`` ahead (negative: behind).
Nothing in slaboard knows about it; libfaketime would do the same from outside the process
but is not installed on every machine.
"""

from __future__ import annotations

import runpy
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project, as `-m` would

offset = float(sys.argv[1])
module = sys.argv[2]
_time, _time_ns = time.time, time.time_ns
time.time = lambda: _time() + offset
time.time_ns = lambda: _time_ns() + int(offset * 1e9)

from django.utils import timezone  # noqa: E402

_now = timezone.now


def skewed_now() -> datetime:
    return _now() + timedelta(seconds=offset)


timezone.now = skewed_now
sys.argv = [module, *sys.argv[3:]]
runpy.run_module(module, run_name="__main__", alter_sys=True)
