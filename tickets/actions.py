"""Writes about tickets. Every entry point (admin, API, agent screens, imports, demo) calls these.

A ticket is a projection of its events: ``record_event`` appends a fact and updates the
projection; an event older than the ticket's last one is applied in its place by replaying the
log (``project_ticket``), so out-of-order delivery gives the same ticket as in-order delivery.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction

from policies.clocks import bucket_at
from policies.engine import sync_many, sync_ticket_clocks
from policies.models import ACTIVE_CLOCK_STATUSES, ClockStatus, SLAClock
from tickets.models import (
    ActorKind,
    EventKind,
    Priority,
    Ticket,
    TicketEvent,
    TicketStatus,
    User,
)
from tickets.projection import ATTRIBUTE_FIELDS, PROJECTED_FIELDS, apply_event, project_ticket
from tickets.signals import tickets_changed_on_commit


class TicketActionError(ValueError):
    """A request that cannot be applied, with a message for the person who made it.

    ``index`` is the position of the offending event when several were given at once.
    """

    def __init__(self, message: str, *, field: str | None = None, index: int | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.index = index


@dataclass(frozen=True)
class NewEvent:
    """One fact to append to a ticket's log (see ``record_events``)."""

    kind: str
    at: datetime
    actor_kind: str = ActorKind.HUMAN
    user: User | None = None
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)
    external_id: str = ""


def _require_aware(value: datetime, field: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise TicketActionError(f"{field} must include a time zone (got {value!r}).", field=field)


def _validate_payload(kind: str, payload: dict[str, Any]) -> None:
    if kind not in EventKind.values:
        raise TicketActionError(f"Unknown event kind {kind!r}.", field="kind")
    if kind == EventKind.STATUS_CHANGED and payload.get("status") not in TicketStatus.values:
        raise TicketActionError(
            f"status must be one of {', '.join(TicketStatus.values)}.", field="status"
        )
    if kind == EventKind.PRIORITY_CHANGED and payload.get("priority") not in Priority.values:
        raise TicketActionError(
            f"priority must be one of {', '.join(Priority.values)}.", field="priority"
        )


#: Events after which the ticket's assignee must be checked against its partner.
SCOPE_EVENTS = frozenset(
    {EventKind.ASSIGNED, EventKind.CLAIMED, EventKind.ATTRIBUTES_CHANGED, EventKind.CREATED}
)


def check_assignee_scope(ticket: Ticket) -> None:
    """The model rule every write path obeys (the admin's ``Ticket.clean`` says the same): a
    ticket's assignee is one of your own staff (no partner) or a user of the ticket's partner.
    Otherwise a partner's ticket — and its notifications — would reach another partner."""
    if ticket.assignee_id is None:
        return
    partner_id = (
        User.objects.filter(pk=ticket.assignee_id).values_list("partner_id", flat=True).first()
    )
    if partner_id is not None and partner_id != ticket.partner_id:
        raise TicketActionError("The assignee belongs to another partner.", field="assignee")


def open_ticket(
    *,
    partner_id: int,
    subject: str,
    opened_at: datetime,
    now: datetime,
    source: str = "slaboard",
    external_id: str = "",
    kind: str = "incident",
    priority: str = "medium",
    customer_id: int | None = None,
    team: str = "",
    assignee_id: int | None = None,
    actor_kind: str = ActorKind.HUMAN,
    user: User | None = None,
) -> Ticket:
    """Create a ticket and its CREATED event. ``now`` is when slaboard learned of it."""
    ticket, _ = open_ticket_with_events(
        partner_id=partner_id,
        subject=subject,
        opened_at=opened_at,
        now=now,
        source=source,
        external_id=external_id,
        kind=kind,
        priority=priority,
        customer_id=customer_id,
        team=team,
        assignee_id=assignee_id,
        actor_kind=actor_kind,
        user=user,
    )
    return ticket


@transaction.atomic
def open_ticket_with_events(
    *,
    partner_id: int,
    subject: str,
    opened_at: datetime,
    now: datetime,
    source: str = "slaboard",
    external_id: str = "",
    kind: str = "incident",
    priority: str = "medium",
    customer_id: int | None = None,
    team: str = "",
    assignee_id: int | None = None,
    actor_kind: str = ActorKind.HUMAN,
    user: User | None = None,
    events: Sequence[NewEvent] = (),
) -> tuple[Ticket, list[tuple[TicketEvent, bool]]]:
    """Create a ticket with its CREATED event and its first ``events``, all or nothing.

    The same ticket as ``open_ticket`` followed by ``record_events``, written in one insert
    per table. Returns the ticket and each event with ``True`` for a repeated external id.
    """
    _require_aware(opened_at, "opened_at")
    if opened_at > now:
        raise TicketActionError("opened_at is in the future.", field="opened_at")
    if not subject.strip():
        raise TicketActionError("subject is empty.", field="subject")
    for index, new in enumerate(events):
        try:
            _check_event(new, now)
            if new.at < opened_at:
                raise TicketActionError(
                    "The event is older than the ticket's opening time.", field="at"
                )
        except TicketActionError as error:
            error.index = index
            raise
    ticket = Ticket(
        source=source,
        external_id=external_id or "pending",
        partner_id=partner_id,
        customer_id=customer_id,
        kind=kind,
        priority=priority,
        subject=subject.strip(),
        team=team,
        assignee_id=assignee_id,
        opened_at=opened_at,
    )
    created = TicketEvent(
        kind=EventKind.CREATED,
        at=opened_at,
        actor_kind=actor_kind,
        user=user,
        payload={
            "kind": kind,
            "priority": priority,
            "partner_id": partner_id,
            "customer_id": customer_id,
            "subject": ticket.subject,
            "team": team,
            "assignee_id": assignee_id,
        },
    )
    log = [created]
    results: list[tuple[TicketEvent, bool]] = []
    known: dict[str, TicketEvent] = {}
    for new in events:
        if new.external_id and new.external_id in known:
            results.append((known[new.external_id], True))
            continue
        recorded = TicketEvent(
            kind=new.kind,
            at=new.at,
            actor_kind=new.actor_kind,
            user=new.user,
            payload=new.payload,
            external_id=new.external_id,
        )
        if new.external_id:
            known[new.external_id] = recorded
        log.append(recorded)
        results.append((recorded, False))
    # Events in time order, ties in the order given: what replaying the stored log gives.
    for recorded in sorted(log, key=lambda e: e.at):
        apply_event(ticket, recorded)
    check_assignee_scope(ticket)
    try:
        with transaction.atomic():
            ticket.save()
    except IntegrityError as exc:
        raise TicketActionError(
            f"A ticket with source {source!r} and external id {external_id!r} already exists.",
            field="external_id",
        ) from exc
    if not external_id:
        ticket.external_id = f"SLA-{ticket.pk}"
        ticket.save(update_fields=["external_id"])
    for recorded in log:
        recorded.ticket = ticket
    TicketEvent.objects.bulk_create(log)
    _sync_clocks(ticket, now=now)
    return ticket, results


@transaction.atomic
def record_event(
    *,
    ticket: Ticket,
    kind: str,
    at: datetime,
    now: datetime,
    actor_kind: str = ActorKind.HUMAN,
    user: User | None = None,
    payload: dict[str, Any] | None = None,
    external_id: str = "",
) -> TicketEvent:
    """Append one fact to a ticket's log and update its projection (see ``record_events``)."""
    event = NewEvent(
        kind=kind,
        at=at,
        actor_kind=actor_kind,
        user=user,
        payload=dict(payload or {}),
        external_id=external_id,
    )
    try:
        [(recorded, _)] = record_events(ticket=ticket, events=[event], now=now)
    except TicketActionError as error:
        error.index = None
        raise
    return recorded


def _check_event(event: NewEvent, now: datetime) -> None:
    _require_aware(event.at, "at")
    _validate_payload(event.kind, event.payload)
    if event.actor_kind not in ActorKind.values:
        raise TicketActionError(f"Unknown actor kind {event.actor_kind!r}.", field="actor_kind")
    if event.at > now:
        raise TicketActionError("The event's time is in the future.", field="at")


@transaction.atomic
def record_events(
    *, ticket: Ticket, events: Sequence[NewEvent], now: datetime
) -> list[tuple[TicketEvent, bool]]:
    """Append facts to a ticket's log and update its projection: all of them or none.

    Returns each event with ``True`` when it was a retry: an event whose ``external_id`` the
    ticket already has (or that came earlier in ``events``) returns the recorded one and
    changes nothing. Events older than the ticket's last one are placed where they belong in
    time: the projection is replayed from the whole log. One lock, one insert and one clock
    re-sync however many events there are.
    """
    for index, event in enumerate(events):
        try:
            _check_event(event, now)
        except TicketActionError as error:
            error.index = index
            raise
    locked = Ticket.objects.select_for_update().get(pk=ticket.pk)
    for index, event in enumerate(events):
        if event.at < locked.opened_at:
            raise TicketActionError(
                "The event is older than the ticket's opening time.", field="at", index=index
            )
    wanted = {e.external_id for e in events if e.external_id}
    known: dict[str, TicketEvent] = (
        {
            e.external_id: e
            for e in TicketEvent.objects.filter(ticket=locked, external_id__in=wanted)
        }
        if wanted
        else {}
    )
    results: list[tuple[TicketEvent, bool]] = []
    new: list[TicketEvent] = []
    for event in events:
        if event.external_id and event.external_id in known:
            results.append((known[event.external_id], True))
            continue
        recorded = TicketEvent(
            ticket=locked,
            kind=event.kind,
            at=event.at,
            actor_kind=event.actor_kind,
            user=event.user,
            payload=event.payload,
            external_id=event.external_id,
        )
        if event.external_id:
            known[event.external_id] = recorded
        new.append(recorded)
        results.append((recorded, False))
    if not new:
        return results
    TicketEvent.objects.bulk_create(new)
    if locked.last_event_at is None or min(e.at for e in new) >= locked.last_event_at:
        for recorded in sorted(new, key=lambda e: (e.at, e.pk or 0)):
            apply_event(locked, recorded)
    else:
        project_ticket(locked, list(locked.events.all()))
    if any(recorded.kind in SCOPE_EVENTS for recorded in new):
        check_assignee_scope(locked)
    locked.save(update_fields=[*PROJECTED_FIELDS, "updated_at"])
    _refresh_from(ticket, locked)
    causes = []
    for recorded in new:
        if recorded.kind in (EventKind.PRIORITY_CHANGED, EventKind.ATTRIBUTES_CHANGED):
            details = ", ".join(
                f"{key.removesuffix('_id')} {value}" for key, value in recorded.payload.items()
            )
            causes.append(f"{recorded.get_kind_display()}: {details}")
    _sync_clocks(locked, now=now, cause="; ".join(causes))
    return results


# The ``DeferredSync`` collecting re-syncs in this thread, if any.
_deferred = threading.local()


class DeferredSync:
    """Tickets whose clock re-sync waits for the end of a ``one_sync_per_ticket`` block."""

    def __init__(self) -> None:
        self.pending: dict[int, tuple[datetime, list[str]]] = {}

    def add(self, ticket_id: int, now: datetime, cause: str) -> None:
        causes = self.pending[ticket_id][1] if ticket_id in self.pending else []
        self.pending[ticket_id] = (now, [*causes, cause] if cause else causes)

    @contextmanager
    def item(self) -> Iterator[None]:
        """A savepoint for one item of a batch: if it fails, its re-syncs are dropped too."""
        outer, self.pending = self.pending, {}
        try:
            with transaction.atomic():
                yield
        except BaseException:
            self.pending = outer
            raise
        inner, self.pending = self.pending, outer
        for ticket_id, (now, causes) in inner.items():
            for cause in causes or [""]:
                self.add(ticket_id, now, cause)


@contextmanager
def one_sync_per_ticket() -> Iterator[DeferredSync]:
    """Inside this block, each ticket touched is re-synced once, when the block ends.

    For callers that apply many actions in one transaction (the API): the same clocks as
    syncing after every action, with the events, clocks and rules of all the tickets read
    in a few queries. Use it inside the transaction; an exception skips the re-sync (the
    transaction rolls back). Wrap each independent item in ``.item()``.
    """
    current = getattr(_deferred, "sync", None)
    if current is not None:
        yield current  # nested: the outer block syncs
        return
    batch = DeferredSync()
    _deferred.sync = batch
    try:
        yield batch
    finally:
        _deferred.sync = None
    if batch.pending:
        sync_many({pk: (now, "; ".join(causes)) for pk, (now, causes) in batch.pending.items()})


def _sync_clocks(ticket: Ticket, *, now: datetime, cause: str = "") -> None:
    """Re-sync the ticket's clocks (or defer it to the end of ``one_sync_per_ticket``); the
    ticket itself changed, so screens hear of it after commit either way."""
    tickets_changed_on_commit([ticket.pk])
    deferred: DeferredSync | None = getattr(_deferred, "sync", None)
    if deferred is not None:
        deferred.add(ticket.pk, now, cause)
        return
    sync_ticket_clocks(ticket=ticket, now=now, cause=cause)


def _refresh_from(target: Ticket, source: Ticket) -> None:
    for field in [*PROJECTED_FIELDS, "opened_at", "updated_at"]:
        setattr(target, field, getattr(source, field))


@transaction.atomic
def change_ticket(
    *,
    ticket: Ticket,
    changes: dict[str, Any],
    at: datetime,
    now: datetime,
    actor_kind: str = ActorKind.HUMAN,
    user: User | None = None,
) -> list[TicketEvent]:
    """Record the events that turn the ticket's current fields into ``changes``.

    ``changes`` may hold priority, status, assignee_id and the attribute fields (kind,
    customer_id, partner_id, subject, team); fields equal to the current value are ignored.
    """
    current = Ticket.objects.get(pk=ticket.pk)
    unknown = set(changes) - {"priority", "status", "assignee_id", *ATTRIBUTE_FIELDS}
    if unknown:
        field = sorted(unknown)[0]
        raise TicketActionError(f"{field} cannot be changed this way.", field=field)
    attributes = {
        key: value
        for key, value in changes.items()
        if key in ATTRIBUTE_FIELDS and getattr(current, ATTRIBUTE_FIELDS[key]) != value
    }
    facts: list[tuple[str, dict[str, Any]]] = []
    if attributes:
        facts.append((EventKind.ATTRIBUTES_CHANGED, attributes))
    if "priority" in changes and changes["priority"] != current.priority:
        facts.append((EventKind.PRIORITY_CHANGED, {"priority": changes["priority"]}))
    if "assignee_id" in changes and changes["assignee_id"] != current.assignee_id:
        facts.append((EventKind.ASSIGNED, {"assignee_id": changes["assignee_id"]}))
    if "status" in changes and changes["status"] != current.status:
        facts.append((EventKind.STATUS_CHANGED, {"status": changes["status"]}))
    if not facts:
        return []
    new = [
        NewEvent(kind=kind, at=at, actor_kind=actor_kind, user=user, payload=payload)
        for kind, payload in facts
    ]
    try:
        return [event for event, _ in record_events(ticket=ticket, events=new, now=now)]
    except TicketActionError as error:
        error.index = None
        raise


class ClaimConflict(TicketActionError):
    """Someone else holds the ticket."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"Already claimed by {holder}.", field="assignee")
        self.holder = holder


def clock_buckets(ticket_id: int, now: datetime) -> dict[str, str]:
    """``{"metric:cycle": bucket}`` of the ticket's active clocks at ``now`` (the stored
    instants say it exactly, even between ticks). A claim records it: that is what makes a
    later met clock a rescue (``policies.engine``)."""
    buckets = {}
    for clock in SLAClock.objects.filter(ticket_id=ticket_id, status__in=ACTIVE_CLOCK_STATUSES):
        bucket = clock.bucket
        if clock.status == ClockStatus.RUNNING:
            bucket = bucket_at(
                now,
                yellow_at=clock.yellow_at,
                orange_at=clock.orange_at,
                due_at=clock.due_at,
                breached_at=clock.breached_at,
            )
        buckets[f"{clock.metric}:{clock.cycle}"] = bucket
    return buckets


def claim_ticket(*, ticket: Ticket, user: User, now: datetime) -> Ticket:
    """Give the ticket to ``user`` if nobody has it: of two simultaneous grabs, one wins.

    The winner is decided by a conditional UPDATE (assignee still empty), so the database
    settles the race; the loser gets ``ClaimConflict`` naming the holder.
    """
    with transaction.atomic():
        scoped = Ticket.objects.visible_to(user).open()
        won = scoped.filter(pk=ticket.pk, assignee__isnull=True).update(assignee=user)
        if not won:
            current = Ticket.objects.select_related("assignee").filter(pk=ticket.pk).first()
            if current is None or not scoped.filter(pk=ticket.pk).exists():
                raise TicketActionError("This ticket is not open or not yours to take.")
            if current.assignee_id == user.pk:
                return current  # a double click: already yours
            holder = current.assignee.get_username() if current.assignee else "someone"
            raise ClaimConflict(holder)
        _record_claim(ticket, user, now)
    ticket.refresh_from_db()
    return ticket


def _record_claim(ticket: Ticket, user: User, now: datetime) -> None:
    payload = {"buckets": clock_buckets(ticket.pk, now)}
    record_event(ticket=ticket, kind=EventKind.CLAIMED, at=now, now=now, user=user, payload=payload)


class NotAllowed(TicketActionError):
    """The user may not do this to this ticket; the message says why and what to do."""


def _may_take_over(user: User) -> bool:
    return user.has_perm("tickets.take_over_ticket")


def take_over_ticket(*, ticket: Ticket, user: User, now: datetime) -> Ticket:
    """A manager takes a ticket someone else claimed (or nobody did)."""
    if not _may_take_over(user):
        raise NotAllowed("Only a manager can take over another agent's ticket.")
    with transaction.atomic():
        current = (
            Ticket.objects.visible_to(user).open().select_for_update().filter(pk=ticket.pk).first()
        )
        if current is None:
            raise TicketActionError("This ticket is not open or not yours to take.")
        if current.assignee_id != user.pk:
            _record_claim(current, user, now)
    ticket.refresh_from_db()
    return ticket


def reassign_ticket(*, ticket: Ticket, user: User, to: User, now: datetime) -> Ticket:
    """A manager gives a ticket to another agent who may work on it."""
    if not _may_take_over(user):
        raise NotAllowed("Only a manager can reassign a ticket.")
    with transaction.atomic():
        current = (
            Ticket.objects.visible_to(user).open().select_for_update().filter(pk=ticket.pk).first()
        )
        if current is None:
            raise TicketActionError("This ticket is not open or not yours to reassign.")
        if not (to.is_active and to.has_perm("tickets.claim_ticket")):
            raise NotAllowed(f"{to.get_username()} cannot take tickets.", field="assignee")
        if to.partner_id is not None and to.partner_id != current.partner_id:
            raise NotAllowed(f"{to.get_username()} works for another partner.", field="assignee")
        if current.assignee_id != to.pk:
            record_event(
                ticket=current,
                kind=EventKind.ASSIGNED,
                at=now,
                now=now,
                user=user,
                payload={"assignee_id": to.pk},
            )
    ticket.refresh_from_db()
    return ticket


def release_ticket(*, ticket: Ticket, user: User, now: datetime) -> Ticket:
    """Give a claimed ticket back. Only its holder (or a manager) may."""
    with transaction.atomic():
        current = Ticket.objects.visible_to(user).select_for_update().filter(pk=ticket.pk).first()
        if current is None:
            raise TicketActionError("This ticket is not yours to release.")
        if current.assignee_id is None:
            return current
        if current.assignee_id != user.pk and not _may_take_over(user):
            holder = current.assignee.get_username() if current.assignee else "someone"
            raise ClaimConflict(holder)
        record_event(
            ticket=current, kind=EventKind.RELEASED, at=now, now=now, user=user, payload={}
        )
    ticket.refresh_from_db()
    return ticket


#: What an agent records on a ticket managed in slaboard, and whether it takes a text.
AGENT_ACTIONS: dict[str, str] = {
    "reply": EventKind.REPLIED,
    "plan": EventKind.PLAN_SENT,
    "resolve": EventKind.RESOLVED,
    "status": EventKind.STATUS_CHANGED,
    "note": EventKind.NOTE,
}
MAX_TEXT = 5000


def act_on_ticket(
    *,
    ticket: Ticket,
    user: User,
    action: str,
    now: datetime,
    text: str = "",
    status: str = "",
) -> TicketEvent:
    """An agent records a reply, plan, status, resolution or note on a ticket they hold.

    The rule, for every screen: only the agent who claimed the ticket acts on it (a manager
    takes it over first); replies and plans carry their text.
    """
    if action not in AGENT_ACTIONS:
        raise TicketActionError(f"Unknown action {action!r}.", field="action")
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise TicketActionError(f"The text is longer than {MAX_TEXT} characters.", field="text")
    if action in ("reply", "plan", "note") and not text:
        raise TicketActionError(f"Write the {action} first.", field="text")
    payload: dict[str, Any] = {"text": text} if text else {}
    if action == "status":
        if status not in TicketStatus.values or status in (
            TicketStatus.RESOLVED,
            TicketStatus.CLOSED,
        ):
            raise TicketActionError("Choose a status.", field="status")
        payload["status"] = status
    with transaction.atomic():
        current = (
            Ticket.objects.visible_to(user)
            .select_for_update(of=("self",))
            .select_related("assignee")
            .filter(pk=ticket.pk)
            .first()
        )
        if current is None:
            raise NotAllowed("This ticket is not one you may work on.")
        if current.assignee_id is None:
            raise NotAllowed(f"Grab {current.reference} first: nobody holds it.")
        if current.assignee_id != user.pk:
            holder = current.assignee.get_username() if current.assignee else "someone"
            hint = " Take it over first." if _may_take_over(user) else ""
            raise NotAllowed(f"{current.reference} is {holder}'s: only {holder} acts on it.{hint}")
        if action in ("plan", "resolve", "status") and not current.is_open:
            raise NotAllowed(f"{current.reference} is {current.get_status_display().lower()}.")
        kind = AGENT_ACTIONS[action]
        event = record_event(ticket=current, kind=kind, at=now, now=now, user=user, payload=payload)
    ticket.refresh_from_db()
    return event
