"""Demo data: a believable organisation with a few hundred open tickets and their histories.

Everything is keyed by a natural name (partner name, calendar name, ticket source "demo" plus
external id), so running it again adds nothing that is already there. Tickets are written
through the same actions as every other entry point, so their events and projections agree.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

import holidays as holiday_data
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from dashboard.models import Board
from dashboard.roles import ensure_roles
from policies.models import (
    Calendar,
    Holiday,
    Metric,
    NotificationRule,
    Policy,
    Target,
    Trigger,
    WorkingInterval,
)
from tickets.actions import open_ticket, record_event
from tickets.models import (
    ActorKind,
    Customer,
    CustomerTier,
    EventKind,
    Partner,
    PartnerTier,
    Priority,
    Ticket,
    TicketKind,
    TicketStatus,
    User,
)

DEMO_SOURCE = "demo"
DEMO_PASSWORD = "slaboard-demo"  # printed by the run command; local demo only
DEMO_USERS = [
    # username, partner name or None, role (a group from the roles migration)
    ("admin", None, "Admins"),
    ("alice", None, "Managers"),  # the support manager
    ("bob", None, "Agents"),
    ("chen", None, "Agents"),
    ("nina", "Nordlicht IT", "Agents"),  # a partner's agent: sees only Nordlicht IT
    ("diego", "Andes Soporte", "Managers"),  # a partner's team lead
]


@dataclass
class SeedReport:
    partners: int = 0
    customers: int = 0
    calendars: int = 0
    policies: int = 0
    users: int = 0
    tickets: int = 0
    live: int = 0  # tickets placed at this very moment (``_live_scenes``)
    events: int = 0

    def __str__(self) -> str:
        return (
            f"created {self.partners} partners, {self.customers} customers, "
            f"{self.calendars} calendars, {self.policies} policies, {self.users} users, "
            f"{self.tickets} tickets (and {self.live} live ones) with {self.events} events"
        )


CALENDARS = [
    # name, tz, weekly spec, holiday country (subdivision)
    ("24×7", "UTC", "always", None),
    ("Paris business hours", "Europe/Paris", "office_lunch", ("FR", None)),
    ("New York business hours", "America/New_York", "office", ("US", "NY")),
    ("Berlin business hours", "Europe/Berlin", "office", ("DE", "BE")),
    ("Sydney business hours", "Australia/Sydney", "office", ("AU", "NSW")),
    ("São Paulo extended hours", "America/Sao_Paulo", "extended", ("BR", "SP")),
]

PARTNERS = [
    # name, tier, tz, calendar
    ("Acme Managed Services", PartnerTier.PLATINUM, "Europe/Paris", "Paris business hours"),
    ("Northwind Support", PartnerTier.GOLD, "America/New_York", "New York business hours"),
    ("Nordlicht IT", PartnerTier.GOLD, "Europe/Berlin", "Berlin business hours"),
    ("Southern Cross Systems", PartnerTier.SILVER, "Australia/Sydney", "Sydney business hours"),
    ("Andes Soporte", PartnerTier.SILVER, "America/Sao_Paulo", "São Paulo extended hours"),
    ("Internal NOC", PartnerTier.PLATINUM, "UTC", "24×7"),
]

CUSTOMERS = [
    ("Globex Corporation", CustomerTier.ENTERPRISE),
    ("Initech", CustomerTier.ENTERPRISE),
    ("Umbrella Health", CustomerTier.ENTERPRISE),
    ("Stark Logistics", CustomerTier.BUSINESS),
    ("Wayne Retail", CustomerTier.BUSINESS),
    ("Hooli Cloud", CustomerTier.BUSINESS),
    ("Pied Piper", CustomerTier.SMB),
    ("Vandelay Imports", CustomerTier.SMB),
    ("Bluth Bakery", CustomerTier.SMB),
    ("Dunder Paper", CustomerTier.SMB),
    ("Krusty Foods", CustomerTier.FREE),
    ("Oceanic Air", CustomerTier.FREE),
]

# The multilevel policy from the seeds: first response / plan / resolution per priority.
PRIORITY_TARGETS = {
    Priority.CRITICAL: ("15 min", timedelta(minutes=15), timedelta(hours=1), timedelta(hours=4)),
    Priority.HIGH: ("1 h", timedelta(hours=1), timedelta(hours=4), timedelta(hours=8)),
    Priority.MEDIUM: ("4 h", timedelta(hours=4), timedelta(hours=8), timedelta(hours=24)),
    Priority.LOW: ("24 h", timedelta(hours=24), timedelta(hours=48), timedelta(hours=72)),
}

SUBJECTS = {
    TicketKind.INCIDENT: [
        "Checkout returns 502 for EU customers",
        "VPN tunnel to branch office down",
        "Email delivery delayed by 30 minutes",
        "Database replica lagging behind primary",
        "Login page times out on mobile",
        "Printer fleet offline on floor 3",
        "SSL certificate expired on api endpoint",
        "Backups failed overnight",
        "Payment webhook signatures rejected",
        "Wi-Fi drops every few minutes in warehouse",
    ],
    TicketKind.SERVICE_REQUEST: [
        "New starter laptop and accounts",
        "Increase mailbox quota",
        "Add user to finance share",
        "Install licensed CAD software",
        "Rotate API keys for integration",
        "Open firewall port for partner SFTP",
    ],
    TicketKind.LEAD: [
        "Inbound lead: 200-seat managed desktop",
        "Inbound lead: cloud migration assessment",
        "Inbound lead: 24×7 monitoring contract",
        "Inbound lead: security audit request",
    ],
    TicketKind.INQUIRY: [
        "Question about invoice line items",
        "How do I export last month's report?",
        "Is the maintenance window still on Sunday?",
        "Which plan includes phone support?",
    ],
}
TEAMS = ["Service desk", "Network", "Platform", "Applications", "Sales"]


def _weekly(spec: str) -> list[tuple[int, time, time]]:
    if spec == "always":
        return [(day, time(0), time(0)) for day in range(7)]
    if spec == "office_lunch":
        return [
            (day, start, end)
            for day in range(5)
            for start, end in ((time(9), time(12, 30)), (time(13, 30), time(18)))
        ]
    if spec == "extended":
        return [(day, time(7), time(22)) for day in range(6)]
    return [(day, time(9), time(17)) for day in range(5)]


def _ensure_calendars(today: date, report: SeedReport) -> dict[str, Calendar]:
    calendars = {}
    for name, tz, spec, country in CALENDARS:
        calendar, created = Calendar.objects.get_or_create(name=name, defaults={"timezone": tz})
        calendars[name] = calendar
        if not created:
            continue
        report.calendars += 1
        WorkingInterval.objects.bulk_create(
            WorkingInterval(calendar=calendar, weekday=day, start=start, end=end)
            for day, start, end in _weekly(spec)
        )
        if country is not None:
            code, subdivision = country
            dates = holiday_data.country_holidays(
                code, subdiv=subdivision, years=[today.year - 1, today.year, today.year + 1]
            )
            Holiday.objects.bulk_create(
                Holiday(calendar=calendar, date=day, name=str(label)[:200])
                for day, label in sorted(dates.items())
            )
    return calendars


def _ensure_policies(calendars: dict[str, Calendar], report: SeedReport) -> None:
    lead, created = Policy.objects.get_or_create(
        name="Lead response",
        defaults={
            "order": 10,
            "kinds": [TicketKind.LEAD.value],
            "description": "A partner acknowledges a new lead within 5 minutes, around the clock.",
        },
    )
    if created:
        report.policies += 1
        Target.objects.create(
            policy=lead,
            metric=Metric.FIRST_RESPONSE,
            duration=timedelta(minutes=5),
            calendar=calendars["24×7"],
            yellow_pct=40,
            orange_pct=70,
        )
    for order, (priority, (label, first, plan, resolve)) in enumerate(
        PRIORITY_TARGETS.items(), start=1
    ):
        policy, created = Policy.objects.get_or_create(
            name=f"Standard support — {priority.label.lower()}",
            defaults={
                "order": 20 + order,
                "priorities": [priority.value],
                "description": f"{priority.label} tickets: first human reply within {label}, "
                + (
                    "around the clock."
                    if priority == Priority.CRITICAL
                    else "in the partner's business hours."
                ),
            },
        )
        if not created:
            continue
        report.policies += 1
        # Critical tickets run around the clock; the others follow the partner's calendar.
        calendar = calendars["24×7"] if priority == Priority.CRITICAL else None
        for metric, duration in (
            (Metric.FIRST_RESPONSE, first),
            (Metric.RESOLUTION_PLAN, plan),
            (Metric.RESOLUTION, resolve),
        ):
            Target.objects.create(
                policy=policy,
                metric=metric,
                duration=duration,
                calendar=calendar,
                pause_statuses=[TicketStatus.WAITING_ON_CUSTOMER.value],
                orange_minutes_left=5 if priority == Priority.CRITICAL else None,
            )


def _ensure_users(partners: dict[str, Partner], report: SeedReport) -> dict[str, User]:
    """The demo's people, each in a role. Only the admin has staff status (the Django admin);
    everyone else signs in on the product's own pages."""
    ensure_roles(Group, Permission)  # the roles migration's groups (again, if flushed)
    users = {}
    for username, partner_name, role in DEMO_USERS:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(
                username=username,
                email=f"{username}@example.com",
                first_name=username.capitalize(),
                is_staff=role == "Admins",
                is_superuser=role == "Admins",
                partner=partners[partner_name] if partner_name else None,
            )
            user.set_password(DEMO_PASSWORD)
            user.save()
            report.users += 1
        group = Group.objects.filter(name=role).first()
        if group is not None:
            user.groups.add(group)
        users[username] = user
    return users


def _ensure_boards(partners: dict[str, Partner]) -> None:
    Board.objects.get_or_create(slug="all", defaults={"name": "All partners"})
    critical, created = Board.objects.get_or_create(
        slug="critical", defaults={"name": "Critical and high", "priorities": ["critical", "high"]}
    )
    europe, created = Board.objects.get_or_create(
        slug="europe", defaults={"name": "Europe", "display_timezone": "Europe/Paris"}
    )
    if created:
        europe.partners.add(partners["Acme Managed Services"], partners["Nordlicht IT"])


def seed_demo(*, now: datetime, tickets: int = 300, seed: int = 7) -> SeedReport:
    """Create the demo organisation and ``tickets`` demo tickets opened over recent days."""
    report = SeedReport()
    rng = random.Random(seed)
    with transaction.atomic():
        calendars = _ensure_calendars(now.date(), report)
        partners = {}
        for name, tier, tz, calendar_name in PARTNERS:
            partner, created = Partner.objects.get_or_create(
                name=name,
                defaults={
                    "tier": tier,
                    "timezone": tz,
                    "default_calendar": calendars[calendar_name],
                    "contact_emails": f"support@{name.split()[0].lower()}.example.com",
                },
            )
            report.partners += int(created)
            partners[name] = partner
        customers = []
        for name, customer_tier in CUSTOMERS:
            customer, created = Customer.objects.get_or_create(
                name=name, defaults={"tier": customer_tier}
            )
            report.customers += int(created)
            customers.append(customer)
        _ensure_policies(calendars, report)
        users = _ensure_users(partners, report)
        _ensure_boards(partners)
    existing = set(Ticket.objects.filter(source=DEMO_SOURCE).values_list("external_id", flat=True))
    agents = [user for name, user in users.items() if name != "admin"]
    partner_list = list(partners.values())
    for number in range(1, tickets + 1):
        plan = _plan_ticket(rng, now, partner_list, customers, agents)
        external_id = f"DEMO-{number:04d}"
        if external_id in existing:
            continue
        with transaction.atomic():
            report.events += _create_demo_ticket(external_id, plan, now)
            report.tickets += 1
    if tickets:
        for number, plan in enumerate(_live_scenes(now, partners, customers, users), start=1):
            external_id = f"DEMO-L{number:02d}"
            if external_id in existing:
                continue
            with transaction.atomic():
                report.events += _create_demo_ticket(external_id, plan, now)
                report.live += 1
    # After the tickets: rules notify transitions from now on, not the demo's past breaches.
    _ensure_notification_rules(users)
    return report


def _ensure_notification_rules(users: dict[str, User]) -> None:
    """An escalation chain for critical tickets (the demo prints emails on the worker's
    console; docs/notifications.md)."""
    NotificationRule.objects.get_or_create(
        name="Critical: partner contacts and assignee at orange",
        defaults={
            "trigger": Trigger.ORANGE,
            "priorities": [Priority.CRITICAL.value],
            "notify_partner_contacts": True,
            "notify_assignee": True,
        },
    )
    NotificationRule.objects.get_or_create(
        name="Critical and high: breaches to the service desk",
        defaults={
            "trigger": Trigger.RED,
            "priorities": [Priority.CRITICAL.value, Priority.HIGH.value],
            "emails": "service-desk@example.com",
        },
    )
    manager, created = NotificationRule.objects.get_or_create(
        name="Critical: the manager, 30 min after a breach nobody acknowledged",
        defaults={
            "trigger": Trigger.OVERDUE,
            "overdue_minutes": 30,
            "repeat_minutes": 30,
            "priorities": [Priority.CRITICAL.value],
        },
    )
    if created:
        manager.notify_users.add(users["admin"])


@dataclass
class _TicketPlan:
    partner: Partner
    customer: Customer
    kind: str
    priority: str
    subject: str
    team: str
    opened_at: datetime
    steps: list[tuple[timedelta, str, dict[str, object], str, User | None]]


#: The demo team meets most targets: on time this often, late otherwise.
ON_TIME = 0.9
LEAD_FIRST_RESPONSE = timedelta(minutes=5)


def _when(rng: random.Random, target: timedelta) -> float:
    """Minutes after the clock starts that the team does it: mostly well within ``target``
    (its business time is never more than the wall time, so within is on time), sometimes
    late."""
    share = rng.uniform(0.15, 0.85) if rng.random() < ON_TIME else rng.uniform(1.05, 1.8)
    return target.total_seconds() / 60 * share


def _bucket_seen(minutes: float, target: timedelta) -> str:
    """Roughly what an agent claiming at ``minutes`` saw (the seed writes claims directly)."""
    share = minutes * 60 / target.total_seconds()
    return (
        "red"
        if share >= 1
        else "orange"
        if share >= 0.75
        else "yellow"
        if share >= 0.5
        else "green"
    )


def _plan_ticket(
    rng: random.Random,
    now: datetime,
    partners: list[Partner],
    customers: list[Customer],
    agents: list[User],
) -> _TicketPlan:
    """Draw one ticket and its history: a team that mostly meets its targets, so a few tickets
    are at risk and a few breached at any moment. Drawn for every number so reruns stay in
    step."""
    kind = rng.choices(
        [TicketKind.INCIDENT, TicketKind.SERVICE_REQUEST, TicketKind.LEAD, TicketKind.INQUIRY],
        weights=[55, 25, 8, 12],
    )[0]
    priority = rng.choices(
        [Priority.CRITICAL, Priority.HIGH, Priority.MEDIUM, Priority.LOW], weights=[8, 22, 45, 25]
    )[0]
    partner = rng.choice(partners)
    agent_pool = [a for a in agents if a.partner_id in (None, partner.pk)]
    agent = rng.choice(agent_pool)
    _, first, plan, resolve = PRIORITY_TARGETS[priority]
    if kind == TicketKind.LEAD:
        first = LEAD_FIRST_RESPONSE
    # Most tickets are recent; a tail reaches back a few days.
    if rng.random() < 0.75:
        age = timedelta(minutes=min(rng.expovariate(1 / 600), 5 * 24 * 60) + 1)
    else:
        age = timedelta(minutes=rng.uniform(24 * 60, 5 * 24 * 60))
    opened_at = (now - age).replace(microsecond=0)
    age_minutes = age.total_seconds() / 60
    steps: list[tuple[timedelta, str, dict[str, object], str, User | None]] = []

    def at(minutes: float, kind_: str, payload: dict[str, object], actor: str) -> bool:
        if minutes >= age_minutes:
            return False  # not happened yet
        user = agent if actor == ActorKind.HUMAN else None
        steps.append((timedelta(minutes=minutes), kind_, payload, actor, user))
        return True

    if rng.random() < 0.5:
        at(0.2, EventKind.REPLIED, {"text": "We received your request."}, ActorKind.AUTO_ACK)
    reply = _when(rng, first)
    if rng.random() < 0.06:  # fell through the cracks: nobody has answered it yet
        reply = max(age_minutes + rng.uniform(10, 240), first.total_seconds() / 60 * 2.5)
    roll = rng.random()
    if roll < 0.1:  # someone grabs it early
        claim = reply * rng.uniform(0.05, 0.3)
    elif roll < 0.6:
        claim = reply * rng.uniform(0.6, 0.97)
    else:  # grabbed and answered at once
        claim = reply * 0.99
    buckets = {"first_response:0": _bucket_seen(claim, first)}
    at(claim, EventKind.CLAIMED, {"buckets": buckets}, ActorKind.HUMAN)
    if at(reply, EventKind.REPLIED, {"text": "Looking into it now."}, ActorKind.HUMAN):
        finish = _when(rng, resolve)
        if rng.random() < 0.6:
            at(min(_when(rng, plan), finish), EventKind.PLAN_SENT, {"text": "Plan: …"}, "human")
        if rng.random() < 0.2:
            wait = reply + (finish - reply) * rng.uniform(0.1, 0.6)
            waiting: dict[str, object] = {"status": TicketStatus.WAITING_ON_CUSTOMER.value}
            at(wait, EventKind.STATUS_CHANGED, waiting, ActorKind.HUMAN)
            back = wait + rng.expovariate(1 / 90)
            finish += back - wait  # paused time does not count
            at(back, EventKind.STATUS_CHANGED, {"status": TicketStatus.OPEN.value}, "automation")
        if rng.random() < 0.05:
            bumped = Priority.HIGH if priority != Priority.HIGH else Priority.CRITICAL
            change = reply + (finish - reply) * rng.random()
            at(change, EventKind.PRIORITY_CHANGED, {"priority": bumped.value}, ActorKind.HUMAN)
        if at(max(finish, reply + 1), EventKind.RESOLVED, {}, ActorKind.HUMAN):
            at(finish + rng.uniform(60, 600), EventKind.CLOSED, {}, ActorKind.AUTOMATION)
    steps.sort(key=lambda step: step[0])
    return _TicketPlan(
        partner=partner,
        customer=rng.choice(customers),
        kind=kind,
        priority=priority,
        subject=rng.choice(SUBJECTS[kind]),
        team="Sales" if kind == TicketKind.LEAD else rng.choice(TEAMS[:-1]),
        opened_at=opened_at,
        steps=steps,
    )


def _live_scenes(
    now: datetime,
    partners: dict[str, Partner],
    customers: list[Customer],
    users: dict[str, User],
) -> list[_TicketPlan]:
    """A few around-the-clock tickets placed at the seed's ``now`` so that the board opens on
    a live moment whatever the day and hour: each clock colour in each metric, some claimed,
    some not (critical tickets and leads run 24×7, so their colours do not depend on office
    hours)."""
    noc, acme = partners["Internal NOC"], partners["Acme Managed Services"]
    bob, chen = users["bob"], users["chen"]
    human, minute = ActorKind.HUMAN, timedelta(minutes=1)
    Step = tuple[timedelta, str, dict[str, object], str, User | None]
    replied: Step = (5 * minute, EventKind.REPLIED, {"text": "On it."}, human, bob)
    planned: Step = (40 * minute, EventKind.PLAN_SENT, {"text": "Plan: fail over."}, human, bob)
    scenes: list[tuple[int, str, str, Partner, str, list[Step]]] = [
        # minutes ago, kind, priority, partner, subject, steps
        (
            11,
            TicketKind.INCIDENT,
            Priority.CRITICAL,
            acme,
            "Checkout returns 502 for EU customers",
            [],
        ),
        (
            8,
            TicketKind.INCIDENT,
            Priority.CRITICAL,
            noc,
            "Database replica lagging behind primary",
            [
                (
                    2 * minute,
                    EventKind.CLAIMED,
                    {"buckets": {"first_response:0": "green"}},
                    human,
                    chen,
                )
            ],
        ),
        (3, TicketKind.LEAD, Priority.MEDIUM, acme, "Inbound lead: 24×7 monitoring contract", []),
        (40, TicketKind.INCIDENT, Priority.CRITICAL, noc, "VPN tunnel to branch office down", []),
        (
            52,
            TicketKind.INCIDENT,
            Priority.CRITICAL,
            acme,
            "Payment webhook signatures rejected",
            [(2 * minute, EventKind.CLAIMED, {"buckets": {}}, human, bob), replied],
        ),
        (
            35,
            TicketKind.INCIDENT,
            Priority.CRITICAL,
            noc,
            "SSL certificate expired on api endpoint",
            [(2 * minute, EventKind.CLAIMED, {"buckets": {}}, human, bob), replied],
        ),
        (
            200,
            TicketKind.INCIDENT,
            Priority.CRITICAL,
            noc,
            "Backups failed overnight",
            [(2 * minute, EventKind.CLAIMED, {"buckets": {}}, human, bob), replied, planned],
        ),
        (
            130,
            TicketKind.INCIDENT,
            Priority.CRITICAL,
            acme,
            "Email delivery delayed by 30 minutes",
            [(2 * minute, EventKind.CLAIMED, {"buckets": {}}, human, chen), replied, planned],
        ),
        (
            290,
            TicketKind.INCIDENT,
            Priority.CRITICAL,
            noc,
            "Login page times out on mobile",
            [replied, planned],
        ),
    ]
    return [
        _TicketPlan(
            partner=partner,
            customer=customers[number % len(customers)],
            kind=kind,
            priority=priority,
            subject=subject,
            team="Sales" if kind == TicketKind.LEAD else TEAMS[number % 4],
            opened_at=(now - timedelta(minutes=ago)).replace(microsecond=0),
            steps=steps,
        )
        for number, (ago, kind, priority, partner, subject, steps) in enumerate(scenes)
    ]


def _create_demo_ticket(external_id: str, plan: _TicketPlan, now: datetime) -> int:
    ticket = open_ticket(
        source=DEMO_SOURCE,
        external_id=external_id,
        partner_id=plan.partner.pk,
        customer_id=plan.customer.pk,
        kind=plan.kind,
        priority=plan.priority,
        subject=plan.subject,
        team=plan.team,
        opened_at=plan.opened_at,
        actor_kind=ActorKind.AUTOMATION,
        now=now,
    )
    for offset, kind, payload, actor, user in plan.steps:
        record_event(
            ticket=ticket,
            kind=kind,
            at=plan.opened_at + offset,
            now=now,
            actor_kind=actor,
            user=user,
            payload=payload,
        )
    return 1 + len(plan.steps)
