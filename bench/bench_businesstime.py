"""Benchmark policies.businesstime against the businesstimedelta package.

Run from the repository root:

    python bench/bench_businesstime.py [--n 20000] [--budget 8]

Workload (the same for both libraries): a Monday-Friday 09:00-17:00 calendar in
Europe/Paris with the French public holidays of 2026-2028 (11 a year); N random starts
over 2026-2027; ``add`` with business durations of 15 min, 1 h, 4 h, 8 h, 24 h and 72 h;
``between`` from each start to a random instant 0-14 days later. Ours runs ``--rounds``
times, each on a fresh calendar (its per-date cache fills during the run), and the median
round is shown. businesstimedelta is much slower: it runs once, and each of its
measurements stops after ``--budget`` seconds and is reported over the calls it completed.
"""

from __future__ import annotations

import argparse
import importlib
import random
import statistics
import sys
import time as clock
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.businesstime import Calendar  # noqa: E402

TZ = "Europe/Paris"
HOURS = (0.25, 1.0, 4.0, 8.0, 24.0, 72.0)
HOLIDAYS = frozenset(
    date(y, m, d)
    for y, m, d in [
        (2026, 1, 1),
        (2026, 4, 6),
        (2026, 5, 1),
        (2026, 5, 8),
        (2026, 5, 14),
        (2026, 5, 25),
        (2026, 7, 14),
        (2026, 8, 15),
        (2026, 11, 1),
        (2026, 11, 11),
        (2026, 12, 25),
        (2027, 1, 1),
        (2027, 3, 29),
        (2027, 5, 1),
        (2027, 5, 6),
        (2027, 5, 8),
        (2027, 5, 17),
        (2027, 7, 14),
        (2027, 8, 15),
        (2027, 11, 1),
        (2027, 11, 11),
        (2027, 12, 25),
        # 2028 too: the workload runs into January 2028, and businesstimedelta's
        # HolidayRule fails when it finds no holiday at all after a date.
        (2028, 1, 1),
        (2028, 4, 17),
        (2028, 5, 1),
        (2028, 5, 8),
        (2028, 5, 25),
        (2028, 6, 5),
        (2028, 7, 14),
        (2028, 8, 15),
        (2028, 11, 1),
        (2028, 11, 11),
        (2028, 12, 25),
    ]
)


def workload(
    n: int, seed: int = 2026
) -> tuple[list[tuple[datetime, float]], list[tuple[datetime, datetime]]]:
    rng = random.Random(seed)
    origin = datetime(2026, 1, 1, tzinfo=UTC)
    span_s = int((datetime(2028, 1, 1, tzinfo=UTC) - origin).total_seconds())
    adds = []
    pairs = []
    for _ in range(n):
        start = origin + timedelta(seconds=rng.randrange(span_s))
        adds.append((start, rng.choice(HOURS)))
        pairs.append((start, start + timedelta(seconds=rng.randrange(14 * 86400))))
    return adds, pairs


def measure(
    fn: Callable[[Any], Any], items: Sequence[Any], budget_s: float
) -> tuple[int, float, float, list[Any]]:
    """Call fn on items one by one until done or out of budget.

    Returns (calls, ops/s, p50 µs, results)."""
    timings: list[int] = []
    results: list[Any] = []
    perf = clock.perf_counter_ns
    deadline = perf() + int(budget_s * 1e9)
    for item in items:
        t0 = perf()
        results.append(fn(item))
        t1 = perf()
        timings.append(t1 - t0)
        if t1 > deadline:
            break
    total_s = sum(timings) / 1e9
    return len(timings), len(timings) / total_s, statistics.median(timings) / 1000, results


def ours(
    adds: Sequence[tuple[datetime, float]],
    pairs: Sequence[tuple[datetime, datetime]],
    budget: float,
    rounds: int,
) -> dict[str, tuple[int, float, float, list[Any]]]:
    """The median (by ops/s) of ``rounds`` runs, each on a fresh calendar (cold cache)."""
    weekly = {d: [(time(9), time(17))] for d in range(5)}

    def one_round(op: str) -> tuple[int, float, float, list[Any]]:
        cal = Calendar(TZ, weekly=weekly, holidays=HOLIDAYS)
        if op == "add":
            return measure(lambda item: cal.add(item[0], item[1] * 3600), adds, budget)
        return measure(lambda item: cal.between(item[0], item[1]), pairs, budget)

    out = {}
    for op in ("add", "between"):
        runs = sorted((one_round(op) for _ in range(rounds)), key=lambda run: run[1])
        out[op] = runs[len(runs) // 2]
    return out


def theirs(
    adds: Sequence[tuple[datetime, float]],
    pairs: Sequence[tuple[datetime, datetime]],
    budget: float,
) -> dict[str, tuple[int, float, float, list[Any]]] | None:
    try:
        btd: Any = importlib.import_module("businesstimedelta")
        pytz: Any = importlib.import_module("pytz")
    except ImportError as exc:
        print(f"businesstimedelta is not importable ({exc}); measuring ours only.")
        print("Install it with: pip install businesstimedelta pytz\n")
        return None
    zone = pytz.timezone(TZ)
    workday = btd.WorkDayRule(
        start_time=time(9), end_time=time(17), working_days=[0, 1, 2, 3, 4], tz=zone
    )
    holidays = btd.HolidayRule(set(HOLIDAYS), tz=zone)
    rules = btd.Rules([workday, holidays])

    def add(item: tuple[datetime, float]) -> datetime:
        result: datetime = item[0] + btd.BusinessTimeDelta(rules, hours=item[1])
        return result

    def between(item: tuple[datetime, datetime]) -> float:
        delta: timedelta = rules.difference(item[0], item[1]).timedelta
        return delta.total_seconds()

    return {"add": measure(add, adds, budget), "between": measure(between, pairs, budget)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="number of calls per measurement")
    parser.add_argument(
        "--budget", type=float, default=8.0, help="seconds per measurement at most (default 8)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of ours; the median is shown (default 3)"
    )
    args = parser.parse_args()

    adds, pairs = workload(args.n)
    print(
        f"Python {sys.version.split()[0]}, {TZ} Mon-Fri 09:00-17:00, {len(HOLIDAYS)} holidays "
        f"2026-2028, N={args.n}, durations {', '.join(f'{h:g} h' for h in HOURS)}\n"
    )
    mine = ours(adds, pairs, args.budget, max(1, args.rounds))
    other = theirs(adds, pairs, args.budget)

    header = f"{'op':<8} {'library':<18} {'calls':>7} {'ops/s':>10} {'p50 µs':>9} {'speed-up':>9}"
    print(header)
    print("-" * len(header))
    for op in ("add", "between"):
        calls, rate, p50, _ = mine[op]
        ratio = ""
        if other is not None:
            ratio = f"{rate / other[op][1]:8.1f}x"
        print(f"{op:<8} {'slaboard':<18} {calls:>7} {rate:>10,.0f} {p50:>9.1f} {ratio:>9}")
        if other is not None:
            calls, rate, p50, _ = other[op]
            print(f"{op:<8} {'businesstimedelta':<18} {calls:>7} {rate:>10,.0f} {p50:>9.1f}")

    if other is not None:
        # Sanity check on the calls both completed: the results should agree.
        n_add = other["add"][0]
        same_add = sum(
            a == b for a, b in zip(mine["add"][3][:n_add], other["add"][3], strict=False)
        )
        n_between = other["between"][0]
        same_between = sum(
            abs(a - b) < 1e-6
            for a, b in zip(mine["between"][3][:n_between], other["between"][3], strict=False)
        )
        print(
            f"\nagreement on the calls both made: add {same_add}/{n_add}, "
            f"between {same_between}/{n_between}"
        )


if __name__ == "__main__":
    main()
