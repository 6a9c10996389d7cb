"""Derive the traffic simulator's profile from the ServiceNow incident event log.

Run once from the repository root when the log (or this derivation) changes, and commit the
result; the product never reads the log itself:

    python bench/make_servicenow_profile.py [--log PATH] [--out PATH]

Reads ``../shared/data/servicenow-incident-event-log.csv.gz`` (UCI dataset 498, "Incident
management process enriched event log", Amaral, Fantinato, Reijers, Peres; CC BY 4.0,
DOI 10.24432/C57S4H) and writes ``slaboard/data/servicenow-profile.json``: a few KB of summary
numbers (arrivals by hour of week, priority mix, delay quantiles, shares). See
``docs/simulator.md`` for what each number means and how the simulator uses it.

Mapping (the data's README): one incident = one ticket (``number``); its rows are ordered by
``sys_mod_count``; created = ``opened_at``; first response = the first row in state Active, or
failing that the first row after the opening one with a non-empty ``assigned_to``, at that row's
``sys_updated_at``; waiting on the customer = rows in "Awaiting User Info" until the next row in
another state; resolved = the last row's ``resolved_at``. Timestamps are ``d/m/yyyy HH:MM``
without a zone; ``?`` means empty.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import re
import sys
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LOG = ROOT.parent / "shared" / "data" / "servicenow-incident-event-log.csv.gz"
DEFAULT_OUT = ROOT / "slaboard" / "data" / "servicenow-profile.json"

# Quantile points stored for each delay: every 5 % from the minimum to the 95th percentile,
# then the 99th. The top 1 % (incidents open for months) is left out on purpose.
PROBABILITIES = [round(i * 0.05, 2) for i in range(20)] + [0.99]
PRIORITIES = {
    "1 - Critical": "critical",
    "2 - High": "high",
    "3 - Moderate": "medium",
    "4 - Low": "low",
}
WAITING = "Awaiting User Info"
KNOWN_STATES = {
    "New",
    "Active",
    "Awaiting User Info",
    "Awaiting Vendor",
    "Awaiting Problem",
    "Awaiting Evidence",
    "Resolved",
    "Closed",
}
SOURCE = {
    "name": "Incident management process enriched event log (ServiceNow)",
    "publisher": "UCI Machine Learning Repository, dataset 498",
    "authors": "Claudio Amaral, Marcelo Fantinato, Hajo Reijers, Sarajane Peres",
    "doi": "10.24432/C57S4H",
    "url": "https://archive.ics.uci.edu/dataset/498",
    "license": "CC BY 4.0",
    "note": "Summary statistics derived by bench/make_servicenow_profile.py; "
    "no row of the log is included.",
}


def parse_time(value: str) -> datetime | None:
    """``d/m/yyyy HH:MM`` (no zero padding, no zone) or ``?`` for empty."""
    value = value.strip()
    if not value or value == "?":
        return None
    day_part, _, clock = value.partition(" ")
    day, month, year = (int(x) for x in day_part.split("/"))
    hour, minute = (int(x) for x in clock.split(":"))
    return datetime(year, month, day, hour, minute)  # noqa: DTZ001 - the log has no zone


def minutes(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds() / 60)


def quantiles(values: list[float]) -> list[float]:
    """Empirical quantiles at PROBABILITIES (linear interpolation), in minutes, 1 decimal."""
    ordered = sorted(values)
    n = len(ordered)
    points = []
    for p in PROBABILITIES:
        position = p * (n - 1)
        low = int(position)
        high = min(low + 1, n - 1)
        value = ordered[low] + (ordered[high] - ordered[low]) * (position - low)
        points.append(round(value, 1))
    return points


def delay(values: list[float], description: str) -> dict[str, object]:
    return {
        "description": description,
        "count": len(values),
        "minutes": quantiles(values),
    }


def read_incidents(path: Path) -> dict[str, list[dict[str, str]]]:
    incidents: dict[str, list[dict[str, str]]] = defaultdict(list)
    with gzip.open(path, "rt", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            incidents[row["number"]].append(row)
    for rows in incidents.values():
        rows.sort(key=lambda r: int(r["sys_mod_count"]))
    return incidents


def summarise(incidents: dict[str, list[dict[str, str]]]) -> dict[str, object]:
    hour_of_week = [0] * 168
    priorities: Counter[str] = Counter()
    first_response: list[float] = []
    resolution: list[float] = []
    response_to_resolution: list[float] = []
    waits: list[float] = []
    reopen_after: list[float] = []
    waited = changed_priority = raised_priority = reopened = without_response = 0
    opened_min: datetime | None = None
    opened_max: datetime | None = None
    for rows in incidents.values():
        first = rows[0]
        opened = parse_time(first["opened_at"])
        if opened is None:
            continue
        opened_min = opened if opened_min is None else min(opened_min, opened)
        opened_max = opened if opened_max is None else max(opened_max, opened)
        hour_of_week[opened.weekday() * 24 + opened.hour] += 1
        priorities[PRIORITIES.get(first["priority"], "medium")] += 1
        rows = [r for r in rows if r["incident_state"] in KNOWN_STATES]
        if not rows:
            continue

        # First response: the first Active row, else the first later row with an assignee.
        responded = next(
            (parse_time(r["sys_updated_at"]) for r in rows if r["incident_state"] == "Active"),
            None,
        )
        if responded is None:
            responded = next(
                (parse_time(r["sys_updated_at"]) for r in rows[1:] if r["assigned_to"] != "?"),
                None,
            )
        resolved = parse_time(rows[-1]["resolved_at"])
        if responded is not None and resolved is not None and responded > resolved:
            responded = None  # an update after the resolution is not a first response
        if responded is None:
            without_response += 1
        else:
            first_response.append(minutes(opened, responded))
        if resolved is not None:
            resolution.append(minutes(opened, resolved))
            if responded is not None:
                response_to_resolution.append(minutes(responded, resolved))

        # Waiting on the customer: from entering "Awaiting User Info" to the next other state.
        wait_start: datetime | None = None
        for row in rows:
            at = parse_time(row["sys_updated_at"])
            if at is None:
                continue
            if row["incident_state"] == WAITING:
                if wait_start is None:
                    wait_start = at
            elif wait_start is not None:
                waits.append(minutes(wait_start, at))
                wait_start = None
        if any(r["incident_state"] == WAITING for r in rows):
            waited += 1

        levels = [r["priority"] for r in rows]
        if len(set(levels)) > 1:
            changed_priority += 1
            # "1 - Critical" sorts before "4 - Low": a smaller final label is a raise.
            if levels[-1] < levels[0]:
                raised_priority += 1

        # Reopened: a Resolved row followed by a row back in an open state.
        if any(int(r["reopen_count"] or 0) > 0 for r in rows):
            reopened += 1
        resolved_row_at: datetime | None = None
        for row in rows:
            at = parse_time(row["sys_updated_at"])
            state = row["incident_state"]
            if state == "Resolved":
                if resolved_row_at is None:
                    resolved_row_at = at
            elif state != "Closed" and resolved_row_at is not None and at is not None:
                reopen_after.append(minutes(resolved_row_at, at))
                resolved_row_at = None

    total = sum(priorities.values())
    weekly_total = sum(hour_of_week)
    days = (opened_max - opened_min).total_seconds() / 86400 if opened_min and opened_max else 0
    return {
        "version": 1,
        "source": SOURCE,
        "incidents": total,
        "opened_between": [
            opened_min.date().isoformat() if opened_min else None,
            opened_max.date().isoformat() if opened_max else None,
        ],
        "busiest_90_days_per_day": round(_busiest_window(incidents, 90), 1),
        "span_days": round(days, 1),
        "arrivals_by_hour_of_week": {
            "description": "Share of incidents opened in each hour of the week (index = "
            "weekday * 24 + hour, Monday 00:00 = 0), opened_at taken as local time.",
            "shares": [round(count / weekly_total, 5) for count in hour_of_week],
        },
        "priorities": {
            "description": "Priority at opening (1 - Critical .. 4 - Low).",
            "shares": {key: round(priorities[key] / total, 4) for key in PRIORITIES.values()},
        },
        "probabilities": PROBABILITIES,
        "delays": {
            "first_response": delay(
                first_response,
                "Opened to the first Active row (else the first later row with an assignee).",
            ),
            "resolution": delay(resolution, "Opened to resolved_at."),
            "response_to_resolution": delay(
                response_to_resolution, "First response to resolved_at."
            ),
            "waiting_on_customer": delay(
                waits, "One stay in Awaiting User Info, until the next other state."
            ),
            "reopen_after": delay(
                reopen_after, "Resolved to back in an open state, for reopened incidents."
            ),
        },
        "shares": {
            "without_first_response": round(without_response / total, 4),
            "waiting_on_customer": round(waited / total, 4),
            "priority_changed": round(changed_priority / total, 4),
            "priority_raised_of_changed": round(raised_priority / max(changed_priority, 1), 4),
            "reopened": round(reopened / total, 4),
        },
    }


def _busiest_window(incidents: dict[str, list[dict[str, str]]], days: int) -> float:
    """Mean incidents opened per day over the busiest ``days``-day window."""
    per_day: Counter[datetime] = Counter()
    for rows in incidents.values():
        opened = parse_time(rows[0]["opened_at"])
        if opened is not None:
            per_day[opened.replace(hour=0, minute=0)] += 1
    if not per_day:
        return 0.0
    ordered = sorted(per_day)
    best = 0
    for start in ordered:
        end = start.toordinal() + days
        best = max(
            best, sum(n for day, n in per_day.items() if start <= day and day.toordinal() < end)
        )
    return best / days


def to_json(profile: dict[str, object]) -> str:
    """Indented JSON with each list of numbers on one line (a readable, diffable file)."""
    text = json.dumps(profile, indent=1, ensure_ascii=False)
    text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + " ".join(m[1].split()) + "]", text)
    return text + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, default=DEFAULT_LOG, help="the .csv.gz event log")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON to write")
    args = parser.parse_args(argv)
    if not args.log.is_file():
        print(
            f"The ServiceNow incident log is not at {args.log}.\n"
            "Get servicenow-incident-event-log.csv.gz (UCI dataset 498, CC BY 4.0) into "
            "../shared/data/ or pass --log PATH. The committed profile stays as it is.",
            file=sys.stderr,
        )
        return 1
    profile = summarise(read_incidents(args.log))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(to_json(profile), encoding="utf-8")
    delays = profile["delays"]
    assert isinstance(delays, dict)
    median = PROBABILITIES.index(0.5)
    print(
        f"Wrote {args.out} ({args.out.stat().st_size} bytes) from {profile['incidents']} incidents."
    )
    for name, spec in delays.items():
        print(f"  {name}: median {spec['minutes'][median]} min, p95 {spec['minutes'][-2]} min")
    print(f"  shares: {profile['shares']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
