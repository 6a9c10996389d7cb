"""``manage.py import_events``: an event-log export becomes tickets, their events and clocks.

The main fixture, ``data/servicenow-slice.csv``, is 50 whole incidents cut from the real
ServiceNow log (UCI dataset 498, CC BY 4.0; see docs/import.md) plus two malformed rows added
by hand (line 18: a time that does not exist; line 272: a truncated row).
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count
from pytest_django import DjangoCaptureOnCommitCallbacks

from dashboard.publish import mark_dirty
from policies.actions import rebuild_clocks
from policies.models import Metric, Policy, SLAClock
from tests.factories import make_always_calendar, make_sla_policy
from tickets.actions import PROJECTED_FIELDS, project_ticket
from tickets.models import Customer, EventKind, Partner, Ticket, TicketEvent

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data"
SLICE = DATA / "servicenow-slice.csv"
REAL_LOG = Path(__file__).resolve().parents[3] / "shared/data/servicenow-incident-event-log.csv.gz"
SLICE_INCIDENTS = 50


def utc(text: str) -> datetime:
    return datetime.strptime(text, "%d/%m/%Y %H:%M").replace(tzinfo=UTC)


@pytest.fixture
def policies() -> dict[str, Policy]:
    """Targets per priority around the clock, as the demo's (pauses: waiting on customer)."""
    always = make_always_calendar()
    hours = {"critical": (0.25, 1, 4), "high": (1, 4, 8), "medium": (4, 8, 24), "low": (24, 48, 72)}
    return {
        priority: make_sla_policy(
            name=f"Support {priority}",
            priorities=[priority],
            calendar=always,
            targets={
                Metric.FIRST_RESPONSE: timedelta(hours=first),
                Metric.RESOLUTION_PLAN: timedelta(hours=plan),
                Metric.RESOLUTION: timedelta(hours=resolve),
            },
        )
        for priority, (first, plan, resolve) in hours.items()
    }


def run(*args: str | Path) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("import_events", *map(str, args), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def slice_rows(keep: set[str] | None = None) -> list[list[str]]:
    """The slice's header and rows (of the ``keep`` incidents only, when given)."""
    with SLICE.open(newline="") as handle:
        header, *rows = csv.reader(handle)
    return [header, *(r for r in rows if keep is None or r[0] in keep)]


def ticket(number: str) -> Ticket:
    return Ticket.objects.get(source="servicenow", external_id=number)


def clocks(number: str, metric: str) -> list[SLAClock]:
    return list(SLAClock.objects.filter(ticket=ticket(number), metric=metric).order_by("cycle"))


def test_it_imports_a_servicenow_slice_and_prints_its_summary(
    policies: dict[str, Policy], django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        out, err = run(SLICE, "--mapping", "servicenow")

    tickets = Ticket.objects.filter(source="servicenow")
    events = TicketEvent.objects.filter(ticket__source="servicenow")
    assert tickets.count() == SLICE_INCIDENTS
    assert set(tickets.values_list("partner__name", flat=True)) == {"ServiceNow import"}
    assert set(tickets.values_list("status", flat=True)) == {"closed"}
    assert Customer.objects.filter(name="Caller 2403").exists()

    lines = out.splitlines()
    assert lines[0].startswith(
        "Imported servicenow-slice.csv with mapping 'servicenow' "
        "(source 'servicenow', partner 'ServiceNow import') in "
    )
    assert lines[1] == "Rows: 330 read, 324 used, 6 skipped."
    assert lines[2] == "Tickets: 50 created, 0 updated, 0 already imported (unchanged)."
    clock_count = SLAClock.objects.filter(ticket__source="servicenow").count()
    assert lines[3] == f"Events: {events.count()} created. SLA clocks: {clock_count} written."
    # Every incident has a first-response and a plan clock, and one resolution clock per cycle.
    resolutions = SLAClock.objects.filter(ticket__source="servicenow", metric=Metric.RESOLUTION)
    assert clock_count == 2 * SLICE_INCIDENTS + resolutions.count()
    assert resolutions.count() > SLICE_INCIDENTS  # reopened incidents have several cycles
    # The per-metric lines say what the database holds.
    for metric, label in Metric.choices:
        rows = SLAClock.objects.filter(ticket__source="servicenow", metric=metric)
        breached = rows.filter(breached_at__isnull=False).count()
        on_time = rows.filter(status="met", breached_at__isnull=True).count()
        stopped = rows.filter(status="stopped", breached_at__isnull=True).count()
        assert (
            f"  {label}: {rows.count()} — {on_time} met on time, {breached} breached, "
            f"{stopped} stopped without a verdict, 0 running or paused"
        ) in lines
    skipped = out[out.index("Skipped rows (6):") :].splitlines()
    assert sorted(skipped[1:]) == sorted(
        [
            "  unknown incident_state '-100': 2 (lines 327, 328)",
            "  duplicate sys_mod_count for the same number: 1 (line 268)",
            "  sys_updated_at is not a time like %d/%m/%Y %H:%M: 1 (line 18)",
            "  wrong number of columns (expected 36): 1 (line 272)",
            "  sys_updated_at is before opened_at: 1 (line 261)",
        ]
    )
    assert "50/50 tickets 100%" in err.splitlines()[-1]
    assert mark_dirty in callbacks


def test_an_incident_becomes_a_timeline_with_a_human_first_reply(
    policies: dict[str, Policy],
) -> None:
    run(SLICE, "--mapping", "servicenow")

    incident = ticket("INC0000047")
    assert incident.subject == "Category 40 / Subcategory 215"
    assert incident.team == "Group 24"  # reassigned from Group 70 on the first update
    assert incident.customer is not None and incident.customer.name == "Caller 2403"
    assert incident.opened_at == utc("29/2/2016 04:40")
    # First human response: the first row in state Active.
    assert incident.first_human_reply_at == utc("29/2/2016 05:30")
    assert (incident.resolved_at, incident.closed_at) == (
        utc("1/3/2016 09:52"),
        utc("6/3/2016 10:00"),
    )
    timeline = [
        (e.kind, e.at, e.payload.get("status"), e.payload.get("source_status"))
        for e in incident.events.all()
    ]
    assert timeline == [
        ("created", utc("29/2/2016 04:40"), None, None),
        ("attributes_changed", utc("29/2/2016 05:30"), None, None),
        ("replied", utc("29/2/2016 05:30"), None, "Active"),
        ("status_changed", utc("1/3/2016 09:14"), "waiting_on_customer", "Awaiting User Info"),
        ("resolved", utc("1/3/2016 09:52"), None, "Resolved"),
        ("closed", utc("6/3/2016 10:00"), None, "Closed"),
    ]
    assert incident.events.get(kind="attributes_changed").payload == {
        "team": "Group 24",
        "by": "Updated by 21",
    }
    assert set(incident.events.values_list("external_id", flat=True)) == {
        "INC0000047:created",
        "INC0000047:1:attributes_changed",
        "INC0000047:1:replied",
        "INC0000047:6:status_changed",
        "INC0000047:7:resolved",
        "INC0000047:8:closed",
    }


def test_awaiting_user_info_pauses_the_resolution_clock(policies: dict[str, Policy]) -> None:
    run(SLICE, "--mapping", "servicenow")

    waiting = ticket("INC0000070")
    pause = (utc("29/2/2016 13:26"), utc("8/3/2016 09:55"))
    (resolution,) = clocks("INC0000070", Metric.RESOLUTION)
    assert resolution.pauses == [[t.isoformat() for t in pause]]
    # Medium allows 24 h: the week spent waiting on the caller moves the due time by as much.
    assert resolution.due_at == waiting.opened_at + timedelta(hours=24) + (pause[1] - pause[0])
    assert (resolution.status, resolution.met_at, resolution.breached_at) == ("met", pause[1], None)
    assert resolution.bucket == "green"  # 5 h 15 min of 24 h had run
    (first,) = clocks("INC0000047", Metric.FIRST_RESPONSE)
    assert (first.status, first.bucket, first.met_at) == ("met", "green", utc("29/2/2016 05:30"))
    # Awaiting Vendor, Evidence and Problem pause too (the built-in mapping's choice).
    vendor = ticket("INC0001287")
    assert vendor.events.filter(payload__source_status="Awaiting Vendor").exists()
    assert all(c.pauses for c in SLAClock.objects.filter(ticket=vendor, metric="resolution"))


def test_a_priority_change_retargets_the_clocks(policies: dict[str, Policy]) -> None:
    run(SLICE, "--mapping", "servicenow")

    incident = ticket("INC0000062")
    assert incident.priority == "high"
    change = incident.events.get(kind=EventKind.PRIORITY_CHANGED)
    assert (change.at, change.payload["priority"]) == (utc("29/2/2016 07:29"), "high")
    (resolution,) = clocks("INC0000062", Metric.RESOLUTION)
    # High allows 8 h from the original opening; resolved at 15:51, so breached.
    assert resolution.policy == policies["high"]
    assert resolution.due_at == incident.opened_at + timedelta(hours=8)
    assert resolution.breached_at is not None
    # No Active row and nobody assigned: no first response, stopped by the resolution.
    (first,) = clocks("INC0000062", Metric.FIRST_RESPONSE)
    assert incident.first_human_reply_at is None
    assert (first.status, first.stopped_at) == ("stopped", utc("29/2/2016 15:51"))


def test_a_reopened_incident_gets_a_resolution_clock_per_cycle(
    policies: dict[str, Policy],
) -> None:
    run(SLICE, "--mapping", "servicenow")

    incident = ticket("INC0000715")
    assert incident.events.filter(kind=EventKind.REOPENED).count() == 2
    cycles = [(c.cycle, c.started_at, c.met_at) for c in clocks("INC0000715", Metric.RESOLUTION)]
    assert cycles == [
        (0, utc("1/3/2016 13:03"), utc("3/3/2016 08:36")),
        (1, utc("4/3/2016 12:42"), utc("10/3/2016 12:16")),
        (2, utc("10/3/2016 12:47"), utc("10/3/2016 15:36")),
    ]


def test_imported_tickets_and_clocks_equal_the_normal_replay(
    policies: dict[str, Policy], now: datetime
) -> None:
    run(SLICE, "--mapping", "servicenow")

    report = rebuild_clocks(now=now)
    assert (report.created, report.updated, report.deleted) == (0, 0, 0)
    for imported in Ticket.objects.filter(source="servicenow").prefetch_related("events"):
        stored = {f: getattr(imported, f) for f in PROJECTED_FIELDS}
        project_ticket(imported, list(imported.events.all()))
        assert {f: getattr(imported, f) for f in PROJECTED_FIELDS} == stored


def test_running_the_same_file_again_adds_nothing(
    policies: dict[str, Policy], django_capture_on_commit_callbacks: DjangoCaptureOnCommitCallbacks
) -> None:
    run(SLICE, "--mapping", "servicenow")
    before = (Ticket.objects.count(), TicketEvent.objects.count(), SLAClock.objects.count())

    with django_capture_on_commit_callbacks() as callbacks:
        out, _ = run(SLICE, "--mapping", "servicenow")

    assert (Ticket.objects.count(), TicketEvent.objects.count(), SLAClock.objects.count()) == before
    lines = out.splitlines()
    assert lines[2] == "Tickets: 0 created, 0 updated, 50 already imported (unchanged)."
    assert lines[3] == "Events: 0 created. SLA clocks: 0 written."
    assert "Skipped rows (6):" in lines  # the same bad rows are reported again
    assert mark_dirty not in callbacks


def test_an_interrupted_import_continues_where_it_stopped(
    policies: dict[str, Policy], tmp_path: Path
) -> None:
    header, *rows = slice_rows()
    first_twenty = list(dict.fromkeys(r[0] for r in rows))[:20]
    # What a stopped run had committed: the first 20 incidents (chunks of 7 tickets).
    run(write_csv(tmp_path / "part.csv", slice_rows(set(first_twenty))), "--mapping",
        "servicenow", "--chunk-size", "7")  # fmt: skip

    out, _ = run(SLICE, "--mapping", "servicenow", "--chunk-size", "7")

    assert out.splitlines()[2] == "Tickets: 30 created, 0 updated, 20 already imported (unchanged)."
    assert Ticket.objects.filter(source="servicenow").count() == SLICE_INCIDENTS
    duplicates = (
        TicketEvent.objects.values("ticket_id", "external_id")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
    )
    assert not duplicates.exists()


def test_a_later_export_of_an_incident_adds_only_its_new_updates(
    policies: dict[str, Policy], tmp_path: Path
) -> None:
    header, *rows = slice_rows({"INC0000047"})
    # An earlier export, taken while the incident waited on the caller (rows 0-6).
    run(write_csv(tmp_path / "early.csv", [header, *rows[:7]]), "--mapping", "servicenow")
    assert ticket("INC0000047").status == "waiting_on_customer"
    (waiting,) = clocks("INC0000047", Metric.RESOLUTION)
    assert waiting.status == "paused"

    out, _ = run(write_csv(tmp_path / "later.csv", [header, *rows]), "--mapping", "servicenow")

    assert out.splitlines()[2] == "Tickets: 0 created, 1 updated, 0 already imported (unchanged)."
    assert out.splitlines()[3] == "Events: 2 created. SLA clocks: 2 written."
    # The same as importing the whole history at once (into another source).
    mapping = write_json(tmp_path / "fresh.json", {"extends": "servicenow", "source": "fresh"})
    run(tmp_path / "later.csv", "--mapping", mapping)
    fresh = Ticket.objects.get(source="fresh", external_id="INC0000047")
    merged = ticket("INC0000047")
    assert [(e.kind, e.at, e.external_id) for e in merged.events.all()] == [
        (e.kind, e.at, e.external_id) for e in fresh.events.all()
    ]
    assert {f: getattr(merged, f) for f in PROJECTED_FIELDS} == {
        f: getattr(fresh, f) for f in PROJECTED_FIELDS
    }
    fields = ["metric", "cycle", "status", "bucket", "pauses", "due_at", "met_at", "breached_at"]
    assert list(merged.clocks.order_by("metric", "cycle").values(*fields)) == list(
        fresh.clocks.order_by("metric", "cycle").values(*fields)
    )


def test_a_gzipped_export_imports_the_same(policies: dict[str, Policy], tmp_path: Path) -> None:
    packed = tmp_path / "slice.csv.gz"
    packed.write_bytes(gzip.compress(SLICE.read_bytes()))

    out, _ = run(packed, "--mapping", "servicenow", "--partner", "Acme ITSM")

    assert out.splitlines()[1:3] == [
        "Rows: 330 read, 324 used, 6 skipped.",
        "Tickets: 50 created, 0 updated, 0 already imported (unchanged).",
    ]
    assert Partner.objects.get(name="Acme ITSM").tickets.count() == SLICE_INCIDENTS


def test_times_without_a_zone_are_read_in_the_given_timezone(
    policies: dict[str, Policy],
) -> None:
    run(SLICE, "--mapping", "servicenow", "--timezone", "Europe/Paris")

    # 29 February 2016 was winter time in Paris (UTC+1).
    assert ticket("INC0000047").opened_at == utc("29/2/2016 03:40")


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_a_json_mapping_describes_another_exports_columns(
    policies: dict[str, Policy], tmp_path: Path
) -> None:
    export = write_csv(
        tmp_path / "helpdesk.csv",
        [
            ["id", "seq", "updated", "created", "state", "urgency", "queue", "title", "agent"],
            ["T-1", "1", "2024-05-06T09:00:00", "2024-05-06T09:00:00", "new", "P2", "", "VPN", ""],
            [
                "T-1",
                "2",
                "2024-05-06T09:20:00",
                "2024-05-06T09:00:00",
                "working",
                "P2",
                "Net",
                "VPN",
                "ann",
            ],  # fmt: skip
            [
                "T-1",
                "3",
                "2024-05-06T10:00:00",
                "2024-05-06T09:00:00",
                "customer",
                "P1",
                "Net",
                "VPN",
                "ann",
            ],  # fmt: skip
            [
                "T-1",
                "4",
                "2024-05-06T12:00:00",
                "2024-05-06T09:00:00",
                "solved",
                "P1",
                "Net",
                "VPN",
                "ann",
            ],  # fmt: skip
            [
                "T-2",
                "1",
                "2024-05-07 08:00:00+02:00",
                "2024-05-07 08:00:00+02:00",
                "new",
                "P9",
                "",
                "Mail",
                "",
            ],  # fmt: skip
            ["T-3", "1", "yesterday", "2024-05-07T08:00:00", "new", "P3", "", "Disk", ""],
        ],
    )
    mapping = write_json(
        tmp_path / "helpdesk.json",
        {
            "source": "helpdesk",
            "partner": "Helpdesk import",
            "ticket": "id",
            "order": "seq",
            "at": "updated",
            "opened_at": "created",
            "time_format": "iso",
            "status": "state",
            "statuses": {
                "new": "new",
                "working": "open",
                "customer": "waiting_on_customer",
                "solved": "resolved",
            },
            "priority": "urgency",
            "priorities": {"P1": "critical", "P2": "high", "P3": "medium"},
            "team": "queue",
            "subject": ["title"],
            "response_statuses": ["working"],
        },
    )

    out, _ = run(export, "--mapping", mapping, "--timezone", "Europe/Paris")

    lines = out.splitlines()
    assert lines[0].startswith(
        "Imported helpdesk.csv with mapping 'helpdesk' (source 'helpdesk', partner "
        "'Helpdesk import')"
    )
    assert lines[1:3] == [
        "Rows: 6 read, 4 used, 2 skipped.",
        "Tickets: 1 created, 0 updated, 0 already imported (unchanged).",
    ]
    assert "  unknown urgency 'P9': 1 (line 6)" in lines
    assert "  updated is not a time like ISO 8601: 1 (line 7)" in lines
    imported = Ticket.objects.get(source="helpdesk", external_id="T-1")
    assert (imported.subject, imported.team, imported.priority, imported.status) == (
        "VPN",
        "Net",
        "critical",
        "resolved",
    )
    paris = timedelta(hours=2)  # summer time
    assert imported.first_human_reply_at == datetime(2024, 5, 6, 9, 20, tzinfo=UTC) - paris
    assert imported.resolved_at == datetime(2024, 5, 6, 12, tzinfo=UTC) - paris


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mapping", "zendesk"], "Unknown mapping 'zendesk': use a built-in one (servicenow)"),
        (["--mapping", "servicenow", "--timezone", "Mars/Olympus"], "Unknown time zone"),
        (["--mapping", "servicenow", "--chunk-size", "0"], "--chunk-size must be 1 or more"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=re.escape(message)):
        run(SLICE, *args)
    assert not Ticket.objects.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty: expected a CSV header line"),
        (
            SLICE.read_bytes().replace(b"incident_state", b"state", 1),
            "has no column 'incident_state', which mapping 'servicenow' needs. Its header is: "
            "number, state, active,",
        ),
        (b"id,state\nINC1,New\n", "has no columns 'number', 'sys_mod_count', 'sys_updated_at'"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00", "is not UTF-8 text"),
        (gzip.compress(SLICE.read_bytes())[:5000], "ends early: is the gzip file truncated?"),
    ],
)
def test_a_file_that_is_not_an_export_is_refused_without_a_traceback(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(content)
    with pytest.raises(CommandError, match=re.escape(message)):
        run(path, "--mapping", "servicenow")
    assert not Ticket.objects.exists()


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="No such file: .*nowhere.csv"):
        run(tmp_path / "nowhere.csv", "--mapping", "servicenow")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"extends": "servicenow", "colour": "blue"}', "Unknown key\\(s\\) 'colour'"),
        ('{"extends": "jira"}', "no built-in mapping 'jira'"),
        ('{"ticket": "id", "at": "t", "opened_at": "o"}', "Missing key\\(s\\): status, statuses"),
        (
            '{"extends": "servicenow", "statuses": {"New": "fresh"}}',
            "statuses\\['New'\\] is 'fresh'; use one of new, open",
        ),
        ('{"extends": "servicenow", "subject": "title"}', "'subject' must be a list of strings"),
    ],
)
def test_a_bad_mapping_file_is_refused_saying_what_to_fix(
    tmp_path: Path, mapping: str, message: str
) -> None:
    path = tmp_path / "mine.json"
    path.write_text(mapping)
    with pytest.raises(CommandError, match=f"Mapping file .*mine.json.*{message}"):
        run(SLICE, "--mapping", path)


def test_the_real_log_imports_with_its_summary(policies: dict[str, Policy], tmp_path: Path) -> None:
    """The first 2,000 rows of the full log in ../shared/data (not needed at run time)."""
    if not REAL_LOG.is_file():
        pytest.skip(f"The ServiceNow log is not here ({REAL_LOG}); the committed slice covers it.")
    with gzip.open(REAL_LOG, "rt", newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [row for _, row in zip(range(2000), reader, strict=False)]
    last = rows[-1][0]
    rows = [r for r in rows if r[0] != last]  # whole incidents only
    incidents = len({r[0] for r in rows})

    out, _ = run(write_csv(tmp_path / "head.csv", [header, *rows]), "--mapping", "servicenow")

    lines = out.splitlines()
    assert lines[1].startswith(f"Rows: {len(rows):,} read, ")
    assert lines[2] == f"Tickets: {incidents} created, 0 updated, 0 already imported (unchanged)."
    assert Ticket.objects.filter(source="servicenow", status="closed").count() == incidents
    assert SLAClock.objects.filter(ticket__source="servicenow").count() >= 3 * incidents
