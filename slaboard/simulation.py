"""Ticket traffic for demos: new tickets, replies, pauses and resolutions at a realistic pace.

``Simulator`` decides what happens next; ``manage.py simulate`` calls it in a loop with the
current time. Everything here takes ``now`` from the caller and draws from one seeded
``random.Random``, so a run is reproducible and tests drive it through simulated time without
sleeping. Every write goes through ``tickets.actions`` (``open_ticket``, ``record_event``), so
simulated tickets have the same events, projections and SLA clocks as real ones.

Time: ``speed`` is how many simulated seconds pass per real second. Delays come from the
profile in simulated minutes and happen after ``minutes / speed`` real minutes; the hour of the
week that shapes arrivals is read on the simulated clock. Arrivals default to
``TICKETS_PER_DAY`` per simulated day (so ``speed`` scales them too); ``rate`` sets them in
tickets per real minute instead. See ``docs/simulator.md``.
"""

from __future__ import annotations

import bisect
import json
import math
import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import DatabaseError

from slaboard.demo import (
    CUSTOMERS,
    DEMO_SOURCE,
    DEMO_USERS,
    LEAD_FIRST_RESPONSE,
    PARTNERS,
    PRIORITY_TARGETS,
    SUBJECTS,
    TEAMS,
)
from tickets.actions import (
    ClaimConflict,
    TicketActionError,
    claim_ticket,
    open_ticket,
    record_event,
)
from tickets.models import (
    ActorKind,
    Customer,
    EventKind,
    Partner,
    Priority,
    Ticket,
    TicketKind,
    TicketStatus,
    User,
)

SIM_SOURCE = "sim"
SOURCES = (DEMO_SOURCE, SIM_SOURCE)  # the only tickets the simulator ever touches
PROFILE_PATH = Path(__file__).parent / "data" / "servicenow-profile.json"

DEFAULT_SPEED = 240.0  # a simulated day passes in 6 real minutes
TICKETS_PER_DAY = 9.0  # arrivals per simulated day: 1.5 a minute at the default speed
QUIET_SHARE = 0.5  # share of arrivals spread evenly over the week (the rest follow the log)
AUTO_ACK_SHARE = 0.5  # not in the log: the demo seed's share
PLAN_SHARE = 0.5  # not in the log (it has no plan event): the demo seed's share
ADOPT_AT_START = 10  # existing open tickets given a plan when the simulator starts
MIN_TARGET_OPEN = 20
MAX_TARGET_OPEN = 300  # the steady state the simulator grows towards is capped here
MAX_CATCH_UP = timedelta(seconds=30)  # arrivals missed by more than this are dropped
KIND_WEIGHTS = {  # the demo seed's mix (the log holds incidents only)
    TicketKind.INCIDENT: 55,
    TicketKind.SERVICE_REQUEST: 25,
    TicketKind.LEAD: 8,
    TicketKind.INQUIRY: 12,
}
PRIORITY_WEIGHTS = {  # the demo seed's mix; see docs/simulator.md for why not the log's
    Priority.CRITICAL: 8,
    Priority.HIGH: 22,
    Priority.MEDIUM: 45,
    Priority.LOW: 25,
}
PRIORITY_LADDER = [Priority.LOW, Priority.MEDIUM, Priority.HIGH, Priority.CRITICAL]
# The team's pace is set by the SLA targets, in real time (the targets are real time): most
# first replies and resolutions come well within the target, some late; long targets are
# capped so a demo session sees tickets through. What happens to the clocks is then what a
# manager would see on a good day: mostly met, a few at risk, the odd breach.
ON_TIME_SHARE = 0.88
MAX_REPLY_MINUTES = 45.0  # real minutes
MAX_RESOLVE_MINUTES = 120.0  # real minutes


# --- The profile -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Distribution:
    """An empirical distribution of delays in minutes, given by quantile points.

    Sampling draws a uniform probability between the first and last point and interpolates
    linearly, so the distribution is truncated at its last point (the 99th percentile in the
    ServiceNow profile: a demo needs no tickets that stay open for months).
    """

    probabilities: tuple[float, ...]
    minutes: tuple[float, ...]

    def __post_init__(self) -> None:
        ps, ms = self.probabilities, self.minutes
        if len(ps) < 2 or len(ps) != len(ms):
            raise ValueError("a distribution needs two or more (probability, minutes) points")
        if not all(math.isfinite(x) for x in (*ps, *ms)):
            raise ValueError("a distribution holds a number that is not finite")
        if not (ps[0] >= 0 and ps[-1] <= 1 and all(a < b for a, b in pairwise(ps))):
            raise ValueError("probabilities must increase within 0..1")
        if ms[0] < 0 or any(a > b for a, b in pairwise(ms)):
            raise ValueError("quantiles must be 0 or more and never decrease")

    @classmethod
    def of(cls, probabilities: Iterable[float], minutes: Iterable[float]) -> Distribution:
        return cls(tuple(float(p) for p in probabilities), tuple(float(m) for m in minutes))

    def quantile(self, probability: float) -> float:
        ps, ms = self.probabilities, self.minutes
        p = min(max(probability, ps[0]), ps[-1])
        i = min(bisect.bisect_right(ps, p) - 1, len(ps) - 2)
        fraction = (p - ps[i]) / (ps[i + 1] - ps[i])
        return ms[i] + fraction * (ms[i + 1] - ms[i])

    def sample(self, rng: random.Random, *, upper: float = 1.0) -> float:
        """Minutes; ``upper`` < 1 keeps to the lower part (0.5: at most the median)."""
        low, high = self.probabilities[0], self.probabilities[-1]
        return self.quantile(rng.uniform(low, low + (high - low) * upper))

    def mean(self) -> float:
        ps, ms = self.probabilities, self.minutes
        points = pairwise(zip(ps, ms, strict=True))
        area = sum((p1 - p0) * (m0 + m1) / 2 for (p0, m0), (p1, m1) in points)
        return area / (ps[-1] - ps[0])


@dataclass(frozen=True)
class Profile:
    """What the simulator draws from: arrivals by hour of week, delays, shares."""

    name: str
    attribution: str
    hour_of_week: tuple[float, ...]  # 168 shares of arrivals summing to 1, Monday 00:00 first
    priorities: Mapping[str, float]  # the source's mix, for reference (see PRIORITY_WEIGHTS)
    first_response: Distribution  # opened -> first human response
    response_to_resolution: Distribution  # first response -> resolved
    resolution: Distribution  # opened -> resolved (for reference and docs)
    waiting_on_customer: Distribution  # one stay in "waiting on customer"
    reopen_after: Distribution  # resolved -> reopened
    share_waiting: float
    share_priority_changed: float
    share_priority_raised: float  # of the changes, how many raise the priority
    share_reopened: float
    problem: str = ""  # why the built-in defaults are used instead of the file, if they are

    def __post_init__(self) -> None:
        if len(self.hour_of_week) != 168 or any(s < 0 for s in self.hour_of_week):
            raise ValueError("arrivals_by_hour_of_week needs 168 shares of 0 or more")
        if not math.isclose(sum(self.hour_of_week), 1, abs_tol=0.01):
            raise ValueError("arrivals_by_hour_of_week shares must sum to 1")
        if not math.isclose(sum(self.priorities.values()), 1, abs_tol=0.01):
            raise ValueError("priority shares must sum to 1")
        shares = (
            self.share_waiting,
            self.share_priority_changed,
            self.share_priority_raised,
            self.share_reopened,
        )
        if not all(0 <= s <= 1 for s in shares):
            raise ValueError("shares must be between 0 and 1")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Profile:
        probabilities = data["probabilities"]
        delays = data["delays"]
        shares = data["shares"]
        source = data["source"]

        def dist(name: str) -> Distribution:
            return Distribution.of(probabilities, delays[name]["minutes"])

        return cls(
            name=str(source["name"]),
            attribution=f"{source['authors']}, {source['name']}, {source['publisher']}, "
            f"{source['license']}, doi:{source['doi']}",
            hour_of_week=tuple(float(s) for s in data["arrivals_by_hour_of_week"]["shares"]),
            priorities={str(k): float(v) for k, v in data["priorities"]["shares"].items()},
            first_response=dist("first_response"),
            response_to_resolution=dist("response_to_resolution"),
            resolution=dist("resolution"),
            waiting_on_customer=dist("waiting_on_customer"),
            reopen_after=dist("reopen_after"),
            share_waiting=float(shares["waiting_on_customer"]),
            share_priority_changed=float(shares["priority_changed"]),
            share_priority_raised=float(shares["priority_raised_of_changed"]),
            share_reopened=float(shares["reopened"]),
        )

    def arrival_weight(self, moment: datetime) -> float:
        """Arrival intensity at this (simulated, UTC) instant relative to the weekly mean."""
        moment = moment.astimezone(UTC)
        share = self.hour_of_week[moment.weekday() * 24 + moment.hour]
        return QUIET_SHARE + (1 - QUIET_SHARE) * share * 168


# Used when the profile file is missing or unreadable: the ServiceNow profile rounded to a few
# points (minutes at the 0/25/50/75/90/95/99th percentiles), with arrivals even over the week.
_DEFAULT_POINTS = (0.0, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
DEFAULT_PROFILE = Profile(
    name="built-in defaults",
    attribution="Rounded from the ServiceNow incident log (UCI dataset 498, Amaral et al., "
    "CC BY 4.0, doi:10.24432/C57S4H)",
    hour_of_week=tuple([1 / 168] * 168),
    priorities={"critical": 0.01, "high": 0.01, "medium": 0.95, "low": 0.03},
    first_response=Distribution.of(_DEFAULT_POINTS, (0, 4, 27, 1320, 7260, 12700, 36000)),
    response_to_resolution=Distribution.of(
        _DEFAULT_POINTS, (0, 2, 143, 5700, 18700, 36100, 146700)
    ),
    resolution=Distribution.of(_DEFAULT_POINTS, (0, 25, 1330, 8900, 22900, 42600, 170600)),
    waiting_on_customer=Distribution.of(
        _DEFAULT_POINTS, (0, 1250, 5300, 11500, 25900, 48800, 131500)
    ),
    reopen_after=Distribution.of(_DEFAULT_POINTS, (0, 31, 380, 1620, 5400, 7180, 34000)),
    share_waiting=0.22,
    share_priority_changed=0.015,
    share_priority_raised=0.7,
    share_reopened=0.011,
)


def load_profile(path: Path | None = None) -> Profile:
    """The committed profile, or the built-in defaults (with ``problem`` saying why)."""
    path = PROFILE_PATH if path is None else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Profile.from_json(data)
    except FileNotFoundError:
        problem = f"{path.name} not found"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        problem = f"{path.name} is not a valid profile ({type(exc).__name__}: {exc})"
    return replace(DEFAULT_PROFILE, problem=problem)


# --- The simulator ---------------------------------------------------------------------------


class NoOrganisation(Exception):
    """There is nobody to simulate tickets for."""


@dataclass(frozen=True)
class Action:
    """One thing the simulator did (or failed to do), for the log."""

    at: datetime
    kind: str
    ticket: str
    message: str
    ok: bool = True

    def __str__(self) -> str:
        return self.message


@dataclass
class _Step:
    at: datetime
    kind: str
    actor_kind: str
    payload: dict[str, Any]


@dataclass
class _Tracked:
    ticket_id: int
    name: str
    opened_at: datetime
    agent: User | None
    steps: deque[_Step]
    wrap_up: bool = False
    adopted: bool = False  # opened before this run: no simulated age to show


@dataclass
class _Org:
    partners: list[Partner] = field(default_factory=list)
    customers: list[Customer] = field(default_factory=list)
    agents: list[User] = field(default_factory=list)


class Simulator:
    """Decides what happens next and makes it happen through ``tickets.actions``.

    Call ``start(now)`` once, then ``run_due(now)`` with the current time whenever you like
    (``next_due()`` says when something is next planned), or ``run_next(now)`` to do the next
    planned thing at once. Pending plans live in memory only.
    """

    def __init__(
        self,
        *,
        rng: random.Random,
        profile: Profile | None = None,
        speed: float = DEFAULT_SPEED,
        rate: float | None = None,
        target_open: int | None = None,
    ) -> None:
        if not speed > 0:
            raise ValueError("speed must be more than 0.")
        if rate is not None and not rate > 0:
            raise ValueError("rate must be more than 0 tickets a minute.")
        self.rng = rng
        self.profile = profile if profile is not None else load_profile()
        self.speed = float(speed)
        self.rate = float(rate) if rate is not None else TICKETS_PER_DAY * self.speed / 1440
        self.target_open = target_open
        self._org = _Org()
        self._tracked: dict[int, _Tracked] = {}
        self._next_arrival: datetime | None = None
        self._epoch: datetime | None = None
        self._number = 0

    # Planning helpers.

    def expected_open(self) -> float:
        """Little's law: arrivals per real minute times a ticket's mean life in real minutes."""
        weights = sum(PRIORITY_WEIGHTS.values())
        life = sum(
            weight / weights * min(PRIORITY_TARGETS[p][3].total_seconds() / 60 * 0.5, 60.0)
            for p, weight in PRIORITY_WEIGHTS.items()
        )
        return self.rate * life

    def simulated_time(self, now: datetime) -> datetime:
        assert self._epoch is not None, "call start() first"
        return self._epoch + (now - self._epoch) * self.speed

    def _real(self, minutes: float) -> timedelta:
        return timedelta(minutes=minutes / self.speed)

    def _draw_next_arrival(self, after: datetime) -> datetime:
        weight = self.profile.arrival_weight(self.simulated_time(after))
        per_second = self.rate / 60 * weight
        return after + timedelta(seconds=max(self.rng.expovariate(per_second), 0.001))

    def _pick_agent(self, partner_id: int) -> User | None:
        pool = [
            a
            for a in self._org.agents
            if a.partner_id in (None, partner_id) and a.username != "admin"
        ]
        return self.rng.choice(pool) if pool else None

    # Lifecycle.

    def start(self, now: datetime) -> None:
        """Load the organisation, plan the first arrival, pick up a few open tickets."""
        demo_partners = [name for name, *_ in PARTNERS]
        partners = list(Partner.objects.filter(name__in=demo_partners).order_by("name"))
        if not partners:
            partners = list(Partner.objects.order_by("name"))
        if not partners:
            raise NoOrganisation(
                "There are no partners to simulate tickets for. Load the demo organisation "
                "first: python manage.py seed_demo"
            )
        demo_customers = [name for name, _ in CUSTOMERS]
        customers = list(Customer.objects.filter(name__in=demo_customers).order_by("name"))
        if not customers:
            customers = list(Customer.objects.order_by("name"))
        agents = list(
            User.objects.filter(username__in=[u for u, *_ in DEMO_USERS], is_active=True)
            .select_related("partner")
            .order_by("username")
        )
        self._org = _Org(partners=partners, customers=customers, agents=agents)
        self._epoch = now
        self._number = _max_sim_number()
        open_now = self.open_count()
        if self.target_open is None:
            steady = min(round(self.expected_open()), MAX_TARGET_OPEN)
            self.target_open = max(open_now, steady, MIN_TARGET_OPEN)
        self._next_arrival = self._draw_next_arrival(now)
        candidates = list(
            Ticket.objects.open()
            .filter(source__in=SOURCES)
            .order_by("opened_at", "pk")
            .values_list("pk", flat=True)[:1000]
        )
        chosen = self.rng.sample(candidates, min(ADOPT_AT_START, len(candidates)))
        for ticket in Ticket.objects.filter(pk__in=chosen).order_by("opened_at", "pk"):
            self._adopt(ticket, now, wrap_up=False)

    def open_count(self) -> int:
        return Ticket.objects.open().filter(source__in=SOURCES).count()

    @property
    def pending(self) -> int:
        """Tickets with planned events."""
        return len(self._tracked)

    def next_due(self) -> datetime | None:
        item = self._next_item()
        return item[0] if item else None

    def _next_item(self) -> tuple[datetime, _Tracked | None] | None:
        best: tuple[datetime, _Tracked | None] | None = None
        if self._next_arrival is not None:
            best = (self._next_arrival, None)
        for tracked in self._tracked.values():
            at = tracked.steps[0].at
            if best is None or at < best[0]:
                best = (at, tracked)
        return best

    def run_due(self, now: datetime, *, limit: int | None = None) -> list[Action]:
        """Do everything planned up to ``now``, in time order."""
        if self._next_arrival is not None and now - self._next_arrival > MAX_CATCH_UP:
            # Far behind (the process was paused): drop the missed arrivals, not flood the board.
            self._next_arrival = self._draw_next_arrival(now)
        actions: list[Action] = []
        while limit is None or len(actions) < limit:
            item = self._next_item()
            if item is None or item[0] > now:
                break
            actions.append(self._perform(item[1], item[0], now))
        return actions

    def run_next(self, now: datetime) -> Action | None:
        """Do the next planned thing now, even if it was planned for later (``--steps``)."""
        item = self._next_item()
        if item is None:
            return None
        return self._perform(item[1], min(item[0], now), now)

    def _perform(self, tracked: _Tracked | None, at: datetime, now: datetime) -> Action:
        if tracked is None:
            return self._arrive(at, now)
        return self._apply_step(tracked, at, now)

    # New tickets.

    def _arrive(self, at: datetime, now: datetime) -> Action:
        self._next_arrival = self._draw_next_arrival(at)
        try:
            self._keep_open_count(now)
        except DatabaseError as exc:
            return Action(at, "error", "", f"could not count open tickets: {exc}; skipped", False)
        rng = self.rng
        kind = rng.choices(list(KIND_WEIGHTS), weights=list(KIND_WEIGHTS.values()))[0]
        priority = rng.choices(list(PRIORITY_WEIGHTS), weights=list(PRIORITY_WEIGHTS.values()))[0]
        partner = rng.choice(self._org.partners)
        customer = rng.choice(self._org.customers) if self._org.customers else None
        subject = rng.choice(SUBJECTS[kind])
        team = "Sales" if kind == TicketKind.LEAD else rng.choice(TEAMS[:-1])
        agent = self._pick_agent(partner.pk)
        steps = self._plan_new(at, priority, lead=kind == TicketKind.LEAD)
        self._number += 1
        name = f"SIM-{self._number}"
        try:
            ticket = open_ticket(
                source=SIM_SOURCE,
                external_id=name,
                partner_id=partner.pk,
                customer_id=customer.pk if customer else None,
                kind=kind,
                priority=priority,
                subject=subject,
                team=team,
                opened_at=at,
                now=now,
                actor_kind=ActorKind.AUTOMATION,
            )
        except (DatabaseError, TicketActionError, ValidationError) as exc:
            self._number = max(self._number, _safe_max_sim_number())
            return Action(at, "error", name, f"could not open {name}: {exc}; skipped", ok=False)
        self._tracked[ticket.pk] = _Tracked(ticket.pk, name, at, agent, deque(steps))
        who = f"{customer.name} via {partner.name}" if customer else partner.name
        return Action(
            at,
            EventKind.CREATED,
            name,
            f"new {priority} {TicketKind(kind).label.lower()} {name} for {who}: {subject}",
        )

    def _paced(self, target: timedelta, cap: float) -> float:
        """Real minutes until the team does something with this target: mostly well within
        it, sometimes late; at most ``cap`` (unless the target itself is shorter)."""
        share = (
            self.rng.uniform(0.1, 0.85)
            if self.rng.random() < ON_TIME_SHARE
            else self.rng.uniform(1.05, 1.6)
        )
        minutes = target.total_seconds() / 60 * share
        return min(minutes, max(cap, target.total_seconds() / 60 * 1.6))

    def _plan_new(self, opened_at: datetime, priority: str, *, lead: bool = False) -> list[_Step]:
        """A new ticket's future, in simulated minutes after opening: the first reply and the
        resolution paced by its SLA targets (real time), the rest drawn from the profile."""
        rng, p = self.rng, self.profile
        _, first, _, resolve_target = PRIORITY_TARGETS[Priority(priority)]
        if lead:
            first = LEAD_FIRST_RESPONSE
        # In simulated minutes, like every step here (``_real`` divides by the speed).
        reply = self._paced(first, MAX_REPLY_MINUTES) * self.speed
        resolve = max(
            reply + self.speed, self._paced(resolve_target, MAX_RESOLVE_MINUTES) * self.speed
        )
        work = resolve - reply
        plan: list[tuple[float, str, str, dict[str, Any]]] = []
        if rng.random() < AUTO_ACK_SHARE and reply >= 2:
            text = {"text": "We received your request."}
            plan.append((rng.uniform(0.1, 1), EventKind.REPLIED, ActorKind.AUTO_ACK, text))
        # The agent grabs it first, often a little before answering.
        plan.append((reply * rng.uniform(0.5, 0.97), EventKind.CLAIMED, ActorKind.HUMAN, {}))
        plan.append((reply, EventKind.REPLIED, ActorKind.HUMAN, {"text": "Looking into it."}))
        if rng.random() < PLAN_SHARE:
            at = reply + rng.uniform(0.1, 0.6) * work
            plan.append((at, EventKind.PLAN_SENT, ActorKind.HUMAN, {}))
        if rng.random() < p.share_waiting:
            start = reply + rng.uniform(0, 0.8) * work
            back = start + min(p.waiting_on_customer.sample(rng), 30 * self.speed)
            waiting = {"status": TicketStatus.WAITING_ON_CUSTOMER.value}
            plan.append((start, EventKind.STATUS_CHANGED, ActorKind.HUMAN, waiting))
            reopened = {"status": TicketStatus.OPEN.value}
            plan.append((back, EventKind.STATUS_CHANGED, ActorKind.AUTOMATION, reopened))
            resolve = max(resolve, back + rng.uniform(1, 10) * self.speed)
        if rng.random() < p.share_priority_changed:
            at = reply + rng.random() * (resolve - reply)
            new = _shifted(priority, raise_=rng.random() < p.share_priority_raised)
            plan.append((at, EventKind.PRIORITY_CHANGED, ActorKind.HUMAN, {"priority": new}))
        plan.append((resolve, EventKind.RESOLVED, ActorKind.HUMAN, {}))
        if rng.random() < p.share_reopened:
            reopen = resolve + p.reopen_after.sample(rng)
            again = reopen + p.response_to_resolution.sample(rng)
            plan.append((reopen, EventKind.REOPENED, ActorKind.AUTOMATION, {}))
            plan.append((again, EventKind.RESOLVED, ActorKind.HUMAN, {}))
        plan.sort(key=lambda step: step[0])  # stable: ties keep the order above
        return [
            _Step(opened_at + self._real(minutes), kind, actor, payload)
            for minutes, kind, actor, payload in plan
        ]

    # Existing tickets.

    def _adopt(self, ticket: Ticket, now: datetime, *, wrap_up: bool) -> None:
        """Plan the rest of an open ticket's life from ``now``.

        ``wrap_up`` (used to keep the open count down) draws short delays: at most the
        median first response for each remaining step.
        """
        rng, p = self.rng, self.profile
        upper = 0.5 if wrap_up else 1.0
        minutes = 0.0
        plan: list[tuple[float, str, str, dict[str, Any]]] = []
        # Whoever holds it carries on; nobody: an agent grabs it first.
        agent = ticket.assignee if ticket.assignee_id else self._pick_agent(ticket.partner_id)
        if ticket.assignee_id is None:
            plan.append((0.0, EventKind.CLAIMED, ActorKind.HUMAN, {}))
        if ticket.first_human_reply_at is None:
            minutes += p.first_response.sample(rng, upper=upper)
            plan.append((minutes, EventKind.REPLIED, ActorKind.HUMAN, {}))
        if ticket.status not in (TicketStatus.NEW, TicketStatus.OPEN):
            customer = ticket.status == TicketStatus.WAITING_ON_CUSTOMER
            stay = p.waiting_on_customer if customer and not wrap_up else p.first_response
            minutes += stay.sample(rng, upper=0.5)
            actor = ActorKind.AUTOMATION if customer else ActorKind.HUMAN
            reopened = {"status": TicketStatus.OPEN.value}
            plan.append((minutes, EventKind.STATUS_CHANGED, actor, reopened))
        if wrap_up:
            minutes += p.first_response.sample(rng, upper=upper)
        else:
            minutes += p.response_to_resolution.sample(rng)
        plan.append((minutes, EventKind.RESOLVED, ActorKind.HUMAN, {}))
        steps = deque(_Step(now + self._real(m), k, a, pl) for m, k, a, pl in plan)
        self._tracked[ticket.pk] = _Tracked(
            ticket.pk,
            ticket.external_id,
            ticket.opened_at,
            agent,
            steps,
            wrap_up=wrap_up,
            adopted=True,
        )

    def _keep_open_count(self, now: datetime) -> None:
        """Above the target, bring resolutions forward: up to three for every arrival, so the
        count comes down even when tickets live long (their pace follows their targets)."""
        for _ in range(3):
            if not self._wrap_up_one(now):
                return

    def _wrap_up_one(self, now: datetime) -> bool:
        """Bring one resolution forward if the open count is above the target.

        First an open demo/sim ticket nobody plans for (the oldest), else the planned ticket
        whose resolution is furthest away. Tickets already being wrapped up count as closed.
        """
        assert self.target_open is not None
        wrapping = sum(1 for t in self._tracked.values() if t.wrap_up)
        if self.open_count() - wrapping <= self.target_open:
            return False
        ticket = (
            Ticket.objects.open()
            .filter(source__in=SOURCES)
            .exclude(pk__in=list(self._tracked))
            .order_by("opened_at", "pk")
            .first()
        )
        if ticket is None:
            candidates = [t for t in self._tracked.values() if not t.wrap_up]
            if not candidates:
                return False
            furthest = max(candidates, key=lambda t: t.steps[-1].at)
            ticket = Ticket.objects.filter(pk=furthest.ticket_id).first()
            if ticket is None or not ticket.is_open:
                return False
        self._adopt(ticket, now, wrap_up=True)
        return True

    # Applying a planned step.

    def _apply_step(self, tracked: _Tracked, at: datetime, now: datetime) -> Action:
        step = tracked.steps.popleft()
        if not tracked.steps:
            del self._tracked[tracked.ticket_id]
        name = tracked.name
        try:
            ticket = Ticket.objects.filter(pk=tracked.ticket_id).first()
            if ticket is None:
                self._tracked.pop(tracked.ticket_id, None)
                return Action(at, "skipped", name, f"{name} no longer exists; plan dropped")
            if not ticket.is_open and step.kind != EventKind.REOPENED:
                self._tracked.pop(tracked.ticket_id, None)
                return Action(
                    at, "skipped", name, f"{name} was {ticket.status} elsewhere; plan dropped"
                )
            at = max(at, ticket.opened_at)
            user = tracked.agent if step.actor_kind == ActorKind.HUMAN else None
            agent_id = user.pk if user is not None else None
            if ticket.assignee_id is not None and ticket.assignee_id != agent_id:
                # Someone took it (a person in the queue, say): theirs now; the plan stops.
                self._tracked.pop(tracked.ticket_id, None)
                return Action(at, "skipped", name, f"{name} was taken over; plan dropped")
            if step.kind == EventKind.CLAIMED:
                if user is None or ticket.assignee_id == agent_id:
                    return Action(at, "skipped", name, f"{name} needs no claim")
                # Through the action, so the claim records what it saw (rescues).
                claim_ticket(ticket=ticket, user=user, now=at)
            else:
                record_event(
                    ticket=ticket,
                    kind=step.kind,
                    at=at,
                    now=now,
                    actor_kind=step.actor_kind,
                    user=user,
                    payload=step.payload,
                )
        except ClaimConflict as conflict:
            self._tracked.pop(tracked.ticket_id, None)
            return Action(at, "skipped", name, f"{name} is {conflict.holder}'s; plan dropped")
        except (DatabaseError, TicketActionError, ValidationError) as exc:
            return Action(
                at, "error", name, f"could not record {step.kind} on {name}: {exc}; skipped", False
            )
        return Action(at, step.kind, name, self._describe(step, tracked, ticket, at, user))

    def _describe(
        self, step: _Step, tracked: _Tracked, ticket: Ticket, at: datetime, user: User | None
    ) -> str:
        name = tracked.name
        age = at - tracked.opened_at
        after = _span(age)
        if self.speed != 1 and not tracked.adopted:
            after += f" ({_span(age * self.speed)} simulated)"
        if step.kind == EventKind.REPLIED and step.actor_kind == ActorKind.AUTO_ACK:
            return f"auto-acknowledgement on {name}"
        if step.kind == EventKind.REPLIED:
            who = user.username if user else "an agent"
            first = "first " if ticket.first_human_reply_at == at else ""
            return f"{first}human reply on {name} ({ticket.priority}) by {who} after {after}"
        if step.kind == EventKind.CLAIMED:
            who = user.username if user else "an agent"
            return f"{who} grabbed {name} ({ticket.priority})"
        if step.kind == EventKind.PLAN_SENT:
            return f"resolution plan sent on {name} ({ticket.priority}) after {after}"
        if step.kind == EventKind.STATUS_CHANGED:
            if step.payload["status"] == TicketStatus.WAITING_ON_CUSTOMER:
                return f"{name} is waiting on the customer"
            return f"{name} is open again" + (
                " (the customer answered)" if step.actor_kind == ActorKind.AUTOMATION else ""
            )
        if step.kind == EventKind.PRIORITY_CHANGED:
            return f"{name} priority changed to {step.payload['priority']}"
        if step.kind == EventKind.RESOLVED:
            return f"{name} ({ticket.priority}) resolved after {after}"
        if step.kind == EventKind.REOPENED:
            return f"{name} reopened by the customer"
        return f"{step.kind} on {name}"


def _shifted(priority: str, *, raise_: bool) -> str:
    index = PRIORITY_LADDER.index(Priority(priority))
    if (raise_ and index < len(PRIORITY_LADDER) - 1) or index == 0:
        return PRIORITY_LADDER[index + 1].value
    return PRIORITY_LADDER[index - 1].value


def _max_sim_number() -> int:
    """The highest n of the existing SIM-<n> tickets (numbering continues after it)."""
    highest = 0
    ids: Sequence[str] = list(
        Ticket.objects.filter(source=SIM_SOURCE, external_id__startswith="SIM-").values_list(
            "external_id", flat=True
        )
    )
    for external_id in ids:
        digits = external_id.removeprefix("SIM-")
        if digits.isdigit():
            highest = max(highest, int(digits))
    return highest


def _safe_max_sim_number() -> int:
    try:
        return _max_sim_number()
    except DatabaseError:
        return 0


def _span(delta: timedelta) -> str:
    seconds = max(0, round(delta.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 10:
        return f"{minutes} min {seconds:02d} s"
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"
