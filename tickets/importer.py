"""Import a CSV event-log export (one row per update of a ticket) as tickets, events and clocks.

``manage.py import_events FILE --mapping NAME`` is the edge; everything else is here:

1. A :class:`ColumnMapping` says which column holds what (the ticket id, the row's time, the
   state, the priority…) and how source values map to slaboard's. ``servicenow`` is built in;
   any other export is described by a JSON file with the same keys (``docs/import.md``).
2. :func:`read_rows` reads the whole file (plain or gzipped CSV) once, skips malformed rows
   with a counted reason, and groups the rest by ticket, ordered by the mapping's sequence
   column.
3. :func:`build_ticket` turns one ticket's rows into the events the normal write path would
   have recorded (created, first human reply, status changes, resolutions, reopens, closings,
   priority and attribute changes), each with a stable external id so a re-run adds nothing.
4. :func:`import_events` writes chunks of tickets in one transaction each: bulk inserts of
   tickets, events and SLA clocks, with the projection (``tickets.projection.project_ticket``) and
   the clocks (``policies.engine.plan_clocks``, written by ``apply_plans`` like every sync) computed
   by the same code as the per-event path. A ticket already in the database only gets the
   events it lacks, then the normal replay and the same clock writer. Imports record history:
   they write no notifications (the tick announces what changes from then on).

Chunks are atomic and the import is resumable: re-running the same file skips what a finished
chunk wrote and continues with the rest.

A *replay* (``replay_as_of``, ``--replay-as-of``) shows an old log on the live board: every time
is shifted by ``now - replay_as_of`` as it is parsed, so that instant becomes ``now``; rows after
it have not "happened" yet and are counted, not imported. The rest of the pipeline is the same.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import IO, Any

from django.db import DatabaseError, transaction
from django.db.models import Count, Q

from policies.engine import (
    TargetResolver,
    apply_plans,
    clock_now,
    current_resolver,
    plan_clocks,
)
from policies.models import ClockStatus, Metric, SLAClock
from tickets.models import (
    ActorKind,
    Customer,
    EventKind,
    Partner,
    Priority,
    Ticket,
    TicketEvent,
    TicketKind,
    TicketStatus,
)
from tickets.projection import PROJECTED_FIELDS, project_ticket
from tickets.signals import tickets_changed_on_commit

CHUNK_SIZE = 1000  # tickets per transaction
INSERT_BATCH = 2000  # rows per INSERT (PostgreSQL allows 65,535 parameters per query)
EXAMPLE_LINES = 5  # line numbers shown per skip reason
MAX_TICKET_ID = 150  # leaves room for ":<sequence>:<kind>" in the events' external ids
FINISHED = frozenset({TicketStatus.RESOLVED.value, TicketStatus.CLOSED.value})


class MappingError(ValueError):
    """A mapping that cannot be used, with a message saying what to fix."""


class ImportFileError(ValueError):
    """The file cannot be read as the mapping describes it. Nothing was written."""


class ImportStopped(RuntimeError):
    """The database refused a chunk: earlier chunks are kept, this one was rolled back."""


# --------------------------------------------------------------------------------------------
# Mappings


@dataclass
class ColumnMapping:
    """Which column of an event-log export holds what, and how its values map to slaboard's.

    Every key can be given in a JSON mapping file (``docs/import.md``). Column keys name a
    header; an empty string means the export has no such column.
    """

    name: str
    ticket: str  # the ticket's id in the source; rows with the same id are one ticket
    at: str  # when the row's update happened
    opened_at: str  # when the ticket was opened (same on every row of a ticket)
    status: str  # the ticket's state after the update
    statuses: dict[str, str]  # source state -> slaboard status (TicketStatus value)
    source: str = ""  # Ticket.source of imported tickets (default: the mapping's name)
    partner: str = ""  # default partner name (default: "<name> import")
    order: str = ""  # whole-number sequence of a ticket's rows; empty: by time, then file order
    priority: str = ""
    priorities: dict[str, str] = field(default_factory=dict)  # source value -> Priority value
    default_priority: str = Priority.MEDIUM.value
    kind: str = TicketKind.INCIDENT.value
    team: str = ""
    customer: str = ""  # customer name; customers are found or created by name
    subject: list[str] = field(default_factory=list)  # columns joined with " / "
    actor: str = ""  # who made the update, kept in each event's payload as "by"
    # First human response: the first row in one of these source states.
    response_statuses: list[str] = field(default_factory=list)
    # An approximation a mapping file may ask for, off by default: when no row is in a
    # response state, credit the first row after the opening one where this column is not
    # empty (e.g. an assignee). An assignment is not a reply: on the ServiceNow log it mostly
    # credits the resolution itself or a second update of an already-assigned incident.
    response_column: str = ""
    time_format: str = "%Y-%m-%d %H:%M:%S"  # strptime format, or "iso" (ISO 8601)
    empty: list[str] = field(default_factory=lambda: [""])  # values that mean "no value"

    def __post_init__(self) -> None:
        self.source = self.source or self.name
        self.partner = self.partner or f"{self.name} import"

    def validate(self) -> None:
        problems: list[str] = []
        for key in ("name", "ticket", "at", "opened_at", "status"):
            if not getattr(self, key):
                problems.append(f"{key!r} is required")
        if not self.statuses:
            problems.append("'statuses' must map at least one source state to a status")
        for value, status in self.statuses.items():
            if status not in TicketStatus.values:
                problems.append(
                    f"statuses[{value!r}] is {status!r}; "
                    f"use one of {', '.join(TicketStatus.values)}"
                )
        for value, priority in self.priorities.items():
            if priority not in Priority.values:
                problems.append(
                    f"priorities[{value!r}] is {priority!r}; "
                    f"use one of {', '.join(Priority.values)}"
                )
        if self.default_priority not in Priority.values:
            problems.append(f"'default_priority' must be one of {', '.join(Priority.values)}")
        if self.kind not in TicketKind.values:
            problems.append(f"'kind' must be one of {', '.join(TicketKind.values)}")
        if self.priorities and not self.priority:
            problems.append("'priorities' is given but 'priority' names no column")
        for state in self.response_statuses:
            if state not in self.statuses:
                problems.append(f"response_statuses: {state!r} is not a key of 'statuses'")
        if self.time_format != "iso" and "%" not in self.time_format:
            problems.append(
                "'time_format' must be a strptime format such as %d/%m/%Y %H:%M or 'iso'"
            )
        if len(self.source) > 50:
            problems.append("'source' is longer than 50 characters")
        if problems:
            raise MappingError(f"Mapping {self.name!r}: " + "; ".join(problems) + ".")

    def columns(self) -> list[str]:
        """The header columns this mapping reads."""
        named = [
            self.ticket,
            self.order,
            self.at,
            self.opened_at,
            self.status,
            self.priority,
            self.team,
            self.customer,
            *self.subject,
            self.actor,
            self.response_column,
        ]
        return list(dict.fromkeys(c for c in named if c))


SERVICENOW = ColumnMapping(
    name="servicenow",
    source="servicenow",
    partner="ServiceNow import",
    ticket="number",
    order="sys_mod_count",
    at="sys_updated_at",
    opened_at="opened_at",
    status="incident_state",
    # Waiting on the caller, on evidence or on a vendor pauses the clocks (the data's own
    # reading), so those map to the status targets pause on by default. "Awaiting Problem" is
    # internal work (waiting on a problem record), not the customer: on hold, which targets do
    # not pause on unless told to. The source state stays in each event's payload.
    statuses={
        "New": TicketStatus.NEW.value,
        "Active": TicketStatus.OPEN.value,
        "Awaiting User Info": TicketStatus.WAITING_ON_CUSTOMER.value,
        "Awaiting Evidence": TicketStatus.WAITING_ON_CUSTOMER.value,
        "Awaiting Vendor": TicketStatus.WAITING_ON_CUSTOMER.value,
        "Awaiting Problem": TicketStatus.ON_HOLD.value,
        "Resolved": TicketStatus.RESOLVED.value,
        "Closed": TicketStatus.CLOSED.value,
    },
    priority="priority",
    priorities={
        "1 - Critical": Priority.CRITICAL.value,
        "2 - High": Priority.HIGH.value,
        "3 - Moderate": Priority.MEDIUM.value,
        "4 - Low": Priority.LOW.value,
    },
    kind=TicketKind.INCIDENT.value,
    team="assignment_group",
    customer="caller_id",
    subject=["category", "subcategory"],
    actor="sys_updated_by",
    # The first human response is the first Active row. No fallback to an assignment: an
    # incident without an Active row has no first response (docs/import.md).
    response_statuses=["Active"],
    time_format="%d/%m/%Y %H:%M",
    empty=["", "?"],
)
BUILTIN_MAPPINGS = {SERVICENOW.name: SERVICENOW}


def mapping_from_dict(data: dict[str, Any], *, default_name: str) -> ColumnMapping:
    """A mapping from JSON-like data: the keys of :class:`ColumnMapping`, plus ``extends``
    (a built-in mapping whose keys are the defaults)."""
    if not isinstance(data, dict):
        raise MappingError("A mapping file must hold a JSON object.")
    data = dict(data)
    base: dict[str, Any] = {}
    extends = data.pop("extends", None)
    if extends is not None:
        if extends not in BUILTIN_MAPPINGS:
            raise MappingError(
                f"'extends': no built-in mapping {extends!r} "
                f"(built in: {', '.join(BUILTIN_MAPPINGS)})."
            )
        base = dataclasses.asdict(BUILTIN_MAPPINGS[extends])
        base.pop("name")
    types = {f.name: f.type for f in dataclasses.fields(ColumnMapping)}
    unknown = sorted(set(data) - set(types))
    if unknown:
        raise MappingError(
            f"Unknown key(s) {', '.join(map(repr, unknown))}; known keys: "
            f"{', '.join(['extends', *types])}."
        )
    for key, value in data.items():
        expected = types[key]
        if expected == "dict[str, str]":
            ok = isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            )
            what = "an object of strings"
        elif expected == "list[str]":
            ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            what = "a list of strings"
        else:
            ok, what = isinstance(value, str), "a string"
        if not ok:
            raise MappingError(f"{key!r} must be {what}.")
    merged = {**base, **data}
    merged.setdefault("name", default_name)
    missing = [k for k in ("ticket", "at", "opened_at", "status", "statuses") if k not in merged]
    if missing:
        raise MappingError(f"Missing key(s): {', '.join(missing)}.")
    mapping = ColumnMapping(**merged)
    mapping.validate()
    return mapping


def load_mapping(spec: str) -> ColumnMapping:
    """A built-in mapping by name, or a JSON mapping file by path."""
    if spec in BUILTIN_MAPPINGS:
        return BUILTIN_MAPPINGS[spec]
    path = Path(spec)
    if path.suffix.lower() != ".json":
        raise MappingError(
            f"Unknown mapping {spec!r}: use a built-in one ({', '.join(BUILTIN_MAPPINGS)}) "
            "or the path of a JSON mapping file (see docs/import.md)."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"Cannot read mapping file {spec}: {exc.strerror or exc}.") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MappingError(f"Mapping file {spec} is not valid JSON: {exc}.") from exc
    try:
        return mapping_from_dict(data, default_name=path.stem)
    except MappingError as exc:
        raise MappingError(f"Mapping file {spec}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Reading


@dataclass(slots=True)
class Row:
    """One usable row of the export, already parsed."""

    line: int
    key: int  # position among the ticket's rows (the sequence column, or the row's rank)
    at: datetime
    opened_at: datetime
    state: str  # the source state, a key of the mapping's statuses
    priority: str  # a Priority value, or "" when the row has none
    team: str
    customer: str
    subject: str
    actor: str
    responder: str


@dataclass
class Skips:
    """Rows left out, counted by reason, with the first few line numbers of each."""

    counts: Counter[str] = field(default_factory=Counter)
    lines: dict[str, list[int]] = field(default_factory=dict)

    def add(self, reason: str, line: int) -> None:
        self.counts[reason] += 1
        examples = self.lines.setdefault(reason, [])
        if len(examples) < EXAMPLE_LINES:
            examples.append(line)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@dataclass
class ParsedFile:
    rows: int  # data rows read (not the header)
    tickets: dict[str, list[Row]]  # by ticket id, in file order of first appearance
    skips: Skips
    # A replay only: well-formed rows after the replayed instant, and the tickets that have
    # none before it (not opened yet, so not imported at all).
    rows_after: int = 0
    tickets_after: int = 0


def _open_text(path: Path) -> IO[str]:
    with path.open("rb") as raw:
        magic = raw.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return path.open(encoding="utf-8-sig", newline="")


def _time_parser(
    mapping: ColumnMapping, zone: tzinfo, shift: timedelta = timedelta(0)
) -> Callable[[str], datetime | None]:
    """Source text -> aware UTC datetime plus ``shift`` (None if unparseable). Naive times are
    in ``zone``."""
    cache: dict[str, datetime | None] = {}
    fmt = mapping.time_format

    def parse(text: str) -> datetime | None:
        if text in cache:
            return cache[text]
        try:
            if fmt == "iso":
                value = datetime.fromisoformat(text.strip())
                if value.tzinfo is None:
                    value = value.replace(tzinfo=zone)
            else:
                value = datetime.strptime(text.strip(), fmt).replace(tzinfo=zone)
            result: datetime | None = value.astimezone(UTC)
        except ValueError:
            result = None
        if result is not None and shift:
            try:
                result += shift
            except OverflowError:
                raise ImportFileError(
                    f"Shifted by the replay ({shift}), {text!r} falls out of the calendar: "
                    "give a --replay-as-of closer to the data's times."
                ) from None
        cache[text] = result
        return result

    return parse


def read_rows(
    path: Path,
    mapping: ColumnMapping,
    *,
    zone: tzinfo,
    now: datetime,
    shift: timedelta | None = None,
) -> ParsedFile:
    """Read and check every row; group the usable ones by ticket, in sequence order.

    ``shift`` (a replay): added to every time as it is parsed; a well-formed row that then
    falls after ``now`` is not "in the future" but not happened yet: counted, not a skip.
    """
    skips = Skips()
    grouped: dict[str, list[Row]] = {}
    later: dict[str, int] = {}  # a replay: rows after now, per ticket
    count = 0
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if not header:
                raise ImportFileError(f"{path.name} is empty: expected a CSV header line.")
            header = [h.strip() for h in header]
            missing = [c for c in mapping.columns() if c not in header]
            if missing:
                shown = ", ".join(header[:10]) + (", …" if len(header) > 10 else "")
                columns = "column" if len(missing) == 1 else "columns"
                raise ImportFileError(
                    f"{path.name} has no {columns} {', '.join(map(repr, missing))}, which "
                    f"mapping {mapping.name!r} needs. Its header is: {shown}"
                )
            count = _read_records(reader, header, mapping, grouped, skips, zone, now, shift, later)
    except OSError as exc:  # missing file, a directory, not readable, not really gzip
        raise ImportFileError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    except EOFError as exc:
        raise ImportFileError(f"{path.name} ends early: is the gzip file truncated?") from exc
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"{path.name} is not UTF-8 text (CSV or gzipped CSV expected): {exc.reason}."
        ) from exc
    except csv.Error as exc:
        raise ImportFileError(f"{path.name} is not a readable CSV file: {exc}.") from exc
    tickets: dict[str, list[Row]] = {}
    for number, rows in grouped.items():
        if mapping.order:
            rows.sort(key=lambda r: r.key)
            kept: list[Row] = []
            for row in rows:
                if kept and kept[-1].key == row.key:
                    skips.add(f"duplicate {mapping.order} for the same {mapping.ticket}", row.line)
                else:
                    kept.append(row)
            rows = kept
        else:
            rows.sort(key=lambda r: r.at)
            for rank, row in enumerate(rows):
                row.key = rank
        # The ticket opens at its first row's opened_at; nothing may happen before that.
        opened = rows[0].opened_at
        early = [r for r in rows if r.at < opened]
        for row in early:
            skips.add(f"{mapping.at} is before {mapping.opened_at}", row.line)
        tickets[number] = [r for r in rows if r.at >= opened] if early else rows
    return ParsedFile(
        rows=count,
        tickets=tickets,
        skips=skips,
        rows_after=sum(later.values()),
        tickets_after=len(later.keys() - tickets.keys()),
    )


def _read_records(
    reader: Any,
    header: list[str],
    mapping: ColumnMapping,
    grouped: dict[str, list[Row]],
    skips: Skips,
    zone: tzinfo,
    now: datetime,
    shift: timedelta | None,
    later: dict[str, int],
) -> int:
    width = len(header)
    index = {name: i for i, name in enumerate(header)}

    def col(name: str) -> int:
        return index[name] if name else -1

    i_ticket, i_order, i_at, i_opened = (
        col(mapping.ticket),
        col(mapping.order),
        col(mapping.at),
        col(mapping.opened_at),
    )
    i_status, i_priority, i_team, i_customer = (
        col(mapping.status),
        col(mapping.priority),
        col(mapping.team),
        col(mapping.customer),
    )
    i_subject = [col(c) for c in mapping.subject]
    i_actor, i_responder = col(mapping.actor), col(mapping.response_column)
    empty = frozenset(mapping.empty)
    statuses, priorities = mapping.statuses, mapping.priorities
    parse = _time_parser(mapping, zone, shift or timedelta(0))
    fmt = "ISO 8601" if mapping.time_format == "iso" else mapping.time_format
    count = 0
    for record in reader:
        count += 1
        line = reader.line_num
        if len(record) != width:
            if not any(v.strip() for v in record):
                count -= 1  # a blank line is not a row
                continue
            skips.add(f"wrong number of columns (expected {width})", line)
            continue

        def value(i: int, record: list[str] = record) -> str:
            if i < 0:
                return ""
            text = record[i].strip()
            return "" if text in empty else text

        number = value(i_ticket)
        if not number:
            skips.add(f"{mapping.ticket} is empty", line)
            continue
        if len(number) > MAX_TICKET_ID:
            skips.add(f"{mapping.ticket} is longer than {MAX_TICKET_ID} characters", line)
            continue
        key = 0
        if i_order >= 0:
            try:
                key = int(value(i_order))
            except ValueError:
                skips.add(f"{mapping.order} is not a whole number", line)
                continue
        times: list[datetime] = []
        for name, i in ((mapping.opened_at, i_opened), (mapping.at, i_at)):
            text = value(i)
            parsed = parse(text) if text else None
            if parsed is None:
                what = "is empty" if not text else f"is not a time like {fmt}"
                skips.add(f"{name} {what}", line)
                break
            times.append(parsed)
        if len(times) < 2:
            continue
        opened_at, at = times
        state = record[i_status].strip()
        if state not in statuses:
            skips.add(f"unknown {mapping.status} {state!r}", line)
            continue
        priority = ""
        if i_priority >= 0:
            raw = value(i_priority)
            if raw:
                if raw in priorities:
                    priority = priorities[raw]
                elif raw in Priority.values:
                    priority = raw
                else:
                    skips.add(f"unknown {mapping.priority} {raw!r}", line)
                    continue
        if at < opened_at:
            skips.add(f"{mapping.at} is before {mapping.opened_at}", line)
            continue
        if at > now or opened_at > now:
            if shift is None:
                skips.add("in the future", line)
            else:  # a replay: it has not happened yet
                later[number] = later.get(number, 0) + 1
            continue
        subject = " / ".join(filter(None, (value(i) for i in i_subject)))
        row = Row(
            line=line,
            key=key,
            at=at,
            opened_at=opened_at,
            state=state,
            priority=priority,
            team=value(i_team)[:100],
            customer=value(i_customer)[:200],
            subject=subject[:500],
            actor=value(i_actor)[:200],
            responder=value(i_responder),
        )
        rows = grouped.get(number)
        if rows is None:
            grouped[number] = [row]
        else:
            rows.append(row)
    return count


# --------------------------------------------------------------------------------------------
# Building events


def build_ticket(
    number: str,
    rows: list[Row],
    mapping: ColumnMapping,
    *,
    partner_id: int,
    customer_ids: dict[str, int],
) -> tuple[Ticket, list[TicketEvent]]:
    """The ticket (unsaved, projected) and its events (unsaved, ticket not set), in order.

    Each event's external id is ``<ticket id>:<sequence>:<event kind>`` (``<ticket id>:created``
    for the opening), so the same rows always give the same ids.
    """
    first = rows[0]
    priority = first.priority or mapping.default_priority
    subject = first.subject or number
    customer_id = customer_ids.get(first.customer) if first.customer else None
    ticket = Ticket(
        source=mapping.source,
        external_id=number,
        partner_id=partner_id,
        customer_id=customer_id,
        kind=mapping.kind,
        priority=priority,
        subject=subject,
        team=first.team,
        opened_at=first.opened_at,
    )
    created: dict[str, Any] = {
        "kind": mapping.kind,
        "priority": priority,
        "partner_id": partner_id,
        "customer_id": customer_id,
        "subject": subject,
        "team": first.team,
    }
    events = [
        TicketEvent(
            kind=EventKind.CREATED,
            at=first.opened_at,
            actor_kind=ActorKind.HUMAN,
            payload=created,
            external_id=f"{number}:created",
        )
    ]
    statuses = mapping.statuses
    response = next((i for i, r in enumerate(rows) if r.state in mapping.response_statuses), None)
    if response is None and mapping.response_column:
        response = next((i for i, r in enumerate(rows) if i > 0 and r.responder), None)
    status = TicketStatus.NEW.value
    customer = first.customer
    previous = first
    for i, row in enumerate(rows):
        base = f"{number}:{row.key}"
        by = {"by": row.actor} if row.actor else {}

        def add(kind: str, payload: dict[str, Any], row: Row = row, base: str = base) -> None:
            events.append(
                TicketEvent(
                    kind=kind,
                    at=row.at,
                    actor_kind=ActorKind.HUMAN,
                    payload=payload,
                    external_id=f"{base}:{kind}",
                )
            )

        row_priority = row.priority or priority
        if i > 0:
            changes: dict[str, Any] = {}
            if row.team != previous.team:
                changes["team"] = row.team
            if row.subject and row.subject != subject:
                subject = changes["subject"] = row.subject
            if row.customer and row.customer != customer:  # an empty caller is missing data
                customer = row.customer
                changes["customer_id"] = customer_ids.get(customer)
            if changes:
                add(EventKind.ATTRIBUTES_CHANGED, {**changes, **by})
            if row_priority != priority:
                add(EventKind.PRIORITY_CHANGED, {"priority": row_priority, **by})
        priority = row_priority
        if i == response:
            add(EventKind.REPLIED, {"source_status": row.state, **by})
        new_status = statuses[row.state]
        if new_status != status:
            payload = {"source_status": row.state, **by}
            if new_status == TicketStatus.RESOLVED:
                add(EventKind.RESOLVED, payload)
            elif new_status == TicketStatus.CLOSED:
                add(EventKind.CLOSED, payload)
            elif status in FINISHED and new_status == TicketStatus.OPEN:
                add(EventKind.REOPENED, payload)
            elif not (
                i == response and status == TicketStatus.NEW and new_status == TicketStatus.OPEN
            ):
                # (a first reply already opens a new ticket)
                add(EventKind.STATUS_CHANGED, {"status": new_status, **payload})
            status = new_status
        previous = row
    project_ticket(ticket, events)
    return ticket, events


# --------------------------------------------------------------------------------------------
# Writing


@dataclass
class ClockTally:
    metric: str
    total: int
    on_time: int
    breached: int
    stopped: int
    running: int


@dataclass
class ImportReport:
    file: str
    mapping: str
    source: str
    partner: str
    rows: int = 0
    tickets_created: int = 0
    tickets_updated: int = 0
    tickets_unchanged: int = 0
    events_created: int = 0
    clocks_written: int = 0
    skips: Skips = field(default_factory=Skips)
    clocks: list[ClockTally] = field(default_factory=list)
    seconds: float = 0.0
    replay_as_of: datetime | None = None  # a replay: the instant that became ``now``
    shift: timedelta = timedelta(0)  # a replay: added to every time of the file
    rows_after: int = 0  # a replay: well-formed rows after the instant, not imported
    tickets_after: int = 0  # a replay: tickets with no row before the instant, not created

    @property
    def rows_used(self) -> int:
        return self.rows - self.skips.total - self.rows_after

    def summary(self) -> str:
        rows = f"Rows: {self.rows:,} read, {self.rows_used:,} used, {self.skips.total:,} skipped"
        lines = [
            f"Imported {self.file} with mapping {self.mapping!r} "
            f"(source {self.source!r}, partner {self.partner!r}) in {self.seconds:.1f} s.",
        ]
        if self.replay_as_of is None:
            lines.append(rows + ".")
        else:
            lines += [
                f"Replayed as of {self.replay_as_of.isoformat(' ')}: every time shifted by "
                f"{_duration(self.shift)}, so that instant is now.",
                f"{rows}; after --replay-as-of: {self.rows_after:,} rows, not imported "
                f"({self.tickets_after:,} tickets had no row yet).",
            ]
            if not self.rows_used and self.rows_after:
                lines.append(
                    "Nothing in the file had happened by --replay-as-of: no ticket imported."
                )
        lines += [
            f"Tickets: {self.tickets_created:,} created, {self.tickets_updated:,} updated, "
            f"{self.tickets_unchanged:,} already imported (unchanged).",
            f"Events: {self.events_created:,} created. "
            f"SLA clocks: {self.clocks_written:,} written.",
        ]
        if self.clocks:
            total = sum(t.total for t in self.clocks)
            lines.append(f"SLA clocks of all {self.source!r} tickets of this partner ({total:,}):")
            labels = dict(Metric.choices)
            for t in self.clocks:
                lines.append(
                    f"  {labels.get(t.metric, t.metric)}: {t.total:,} — {t.on_time:,} met on "
                    f"time, {t.breached:,} breached, {t.stopped:,} stopped without a verdict, "
                    f"{t.running:,} running or paused"
                )
        if self.skips.total:
            lines.append(f"Skipped rows ({self.skips.total:,}):")
            for reason, n in self.skips.counts.most_common():
                examples = self.skips.lines[reason]
                shown = ", ".join(map(str, examples)) + (", …" if n > len(examples) else "")
                lines.append(f"  {reason}: {n:,} (line{'s' if n > 1 else ''} {shown})")
        else:
            lines.append("Skipped rows: none.")
        return "\n".join(lines)


def _duration(delta: timedelta) -> str:
    """``+3,702 days 4 h 07 min 12 s`` (whole seconds)."""
    sign = "-" if delta < timedelta(0) else "+"
    seconds = int(abs(delta).total_seconds())
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{sign}{days:,} days {hours} h {minutes:02} min {seconds:02} s"


Progress = Callable[[int, int], None]


def import_events(
    path: Path,
    *,
    mapping: ColumnMapping,
    now: datetime,
    zone: tzinfo = UTC,
    partner_name: str | None = None,
    chunk_size: int = CHUNK_SIZE,
    progress: Progress | None = None,
    replay_as_of: datetime | None = None,
) -> ImportReport:
    """Import ``path`` with ``mapping``; ``now`` (read once by the caller) bounds event times
    and is the instant clocks are computed at. Returns what was done, for the summary.

    ``replay_as_of`` (aware): replay the log as if that instant were ``now``. Every time is
    shifted by ``now - replay_as_of`` when it is parsed; rows after it are not imported (the
    report counts them). What was open then is open now, with running clocks."""
    started = time.perf_counter()
    shift = None if replay_as_of is None else now - replay_as_of
    parsed = read_rows(path, mapping, zone=zone, now=now, shift=shift)
    partner, _ = Partner.objects.get_or_create(name=partner_name or mapping.partner)
    report = ImportReport(
        file=path.name,
        mapping=mapping.name,
        source=mapping.source,
        partner=partner.name,
        rows=parsed.rows,
        skips=parsed.skips,
        replay_as_of=replay_as_of,
        shift=shift or timedelta(0),
        rows_after=parsed.rows_after,
        tickets_after=parsed.tickets_after,
    )
    resolver = current_resolver()
    numbers = list(parsed.tickets)
    done = 0
    if progress is not None:
        progress(0, len(numbers))
    for start in range(0, len(numbers), chunk_size):
        chunk = numbers[start : start + chunk_size]
        try:
            with transaction.atomic():
                _import_chunk(chunk, parsed.tickets, mapping, partner, resolver, now, report)
        except DatabaseError as exc:
            raise ImportStopped(
                f"The database refused the chunk of tickets {chunk[0]} … {chunk[-1]}: {exc}. "
                f"The {done:,} tickets before it are imported; fix the cause and run the same "
                "command again to continue."
            ) from exc
        done += len(chunk)
        if progress is not None:
            progress(done, len(numbers))
    report.clocks = clock_tally(source=mapping.source, partner=partner)
    report.seconds = time.perf_counter() - started
    return report


def _ensure_customers(names: Iterable[str]) -> dict[str, int]:
    wanted = set(names) - {""}
    if not wanted:
        return {}
    found = dict(Customer.objects.filter(name__in=wanted).values_list("name", "pk"))
    missing = wanted - set(found)
    if missing:
        Customer.objects.bulk_create(
            [Customer(name=name) for name in sorted(missing)],
            batch_size=INSERT_BATCH,
            ignore_conflicts=True,  # another import may create the same customer meanwhile
        )
        found.update(Customer.objects.filter(name__in=missing).values_list("name", "pk"))
    return found


def _import_chunk(
    numbers: list[str],
    tickets: dict[str, list[Row]],
    mapping: ColumnMapping,
    partner: Partner,
    resolver: TargetResolver,
    now: datetime,
    report: ImportReport,
) -> None:
    at = clock_now(now)  # clocks as of the last tick at least (see clock_now)
    existing = {
        t.external_id: t
        for t in Ticket.objects.select_for_update().filter(
            source=mapping.source, external_id__in=numbers
        )
    }
    customer_ids = _ensure_customers(r.customer for n in numbers for r in tickets[n])
    built: list[tuple[Ticket, list[TicketEvent]]] = []
    merges: list[tuple[Ticket, list[TicketEvent]]] = []
    for number in numbers:
        ticket, events = build_ticket(
            number, tickets[number], mapping, partner_id=partner.pk, customer_ids=customer_ids
        )
        if number in existing:
            merges.append((existing[number], events[1:]))  # it was created already
        else:
            built.append((ticket, events))

    # New tickets: bulk inserts, projection and clocks computed in memory.
    if built:
        Ticket.objects.bulk_create([t for t, _ in built], batch_size=INSERT_BATCH)
        new_events: list[TicketEvent] = []
        for ticket, events in built:
            for event in events:
                event.ticket_id = ticket.pk
            new_events.extend(events)
        TicketEvent.objects.bulk_create(new_events, batch_size=INSERT_BATCH)
        resolver.prime(t for t, _ in built)
        plans = [
            plan_clocks(ticket=ticket, events=events, existing=[], resolver=resolver, now=at)
            for ticket, events in built
        ]
        written = apply_plans(plans, notify=False)  # history is recorded, not announced
        tickets_changed_on_commit(t.pk for t, _ in built)
        report.tickets_created += len(built)
        report.events_created += len(new_events)
        report.clocks_written += written.created

    # Tickets already there: add only the events they lack, then the normal replay and sync.
    if merges:
        known: defaultdict[int, set[str]] = defaultdict(set)
        for ticket_id, external_id in TicketEvent.objects.filter(
            ticket__in=[t for t, _ in merges]
        ).values_list("ticket_id", "external_id"):
            known[ticket_id].add(external_id)
        changed: list[Ticket] = []
        added: list[TicketEvent] = []
        for ticket, events in merges:
            fresh = [e for e in events if e.external_id not in known[ticket.pk]]
            if not fresh:
                report.tickets_unchanged += 1
                continue
            for event in fresh:
                event.ticket_id = ticket.pk
            added.extend(fresh)
            changed.append(ticket)
        if added:
            TicketEvent.objects.bulk_create(added, batch_size=INSERT_BATCH)
            resolver.prime(changed)
        plans = []
        for ticket in changed:
            log = list(ticket.events.all())
            project_ticket(ticket, log)
            ticket.save(update_fields=[*PROJECTED_FIELDS, "updated_at"])
            existing_clocks = SLAClock.objects.filter(ticket=ticket)
            plans.append(
                plan_clocks(
                    ticket=ticket, events=log, existing=existing_clocks, resolver=resolver, now=at
                )
            )
        if changed:
            synced = apply_plans(plans, notify=False)
            report.clocks_written += synced.created + synced.updated
            tickets_changed_on_commit(t.pk for t in changed)
        report.tickets_updated += len(changed)
        report.events_created += len(added)


def clock_tally(*, source: str, partner: Partner) -> list[ClockTally]:
    """Clocks of the partner's tickets from ``source``, per metric: how they stand now."""
    breached = Q(breached_at__isnull=False)
    rows = (
        SLAClock.objects.filter(ticket__source=source, ticket__partner=partner)
        .values("metric")
        .annotate(
            n_total=Count("pk"),
            n_breached=Count("pk", filter=breached),
            n_on_time=Count("pk", filter=Q(status=ClockStatus.MET) & ~breached),
            n_stopped=Count("pk", filter=Q(status=ClockStatus.STOPPED) & ~breached),
            n_running=Count(
                "pk", filter=Q(status__in=[ClockStatus.RUNNING, ClockStatus.PAUSED]) & ~breached
            ),
        )
    )
    order = {metric: i for i, metric in enumerate(Metric.values)}
    return sorted(
        (
            ClockTally(
                metric=r["metric"],
                total=r["n_total"],
                on_time=r["n_on_time"],
                breached=r["n_breached"],
                stopped=r["n_stopped"],
                running=r["n_running"],
            )
            for r in rows
        ),
        key=lambda t: order.get(t.metric, 99),
    )
