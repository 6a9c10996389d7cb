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
    # username, partner name or None, is_superuser
    ("admin", None, True),
    ("alice", None, False),
    ("bob", None, False),
    ("nina", "Nordlicht IT", False),
    ("diego", "Andes Soporte", False),
]


@dataclass
class SeedReport:
    partners: int = 0
    customers: int = 0
    calendars: int = 0
    policies: int = 0
    users: int = 0
    tickets: int = 0
    events: int = 0

    def __str__(self) -> str:
        return (
            f"created {self.partners} partners, {self.customers} customers, "
            f"{self.calendars} calendars, {self.policies} policies, {self.users} users, "
            f"{self.tickets} tickets with {self.events} events"
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

    agents, _ = Group.objects.get_or_create(name="Agents")
    agents.permissions.add(Permission.objects.get(codename="claim_ticket"))
    users = {}
    for username, partner_name, superuser in DEMO_USERS:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(
                username=username,
                email=f"{username}@example.com",
                first_name=username.capitalize(),
                is_staff=True,
                is_superuser=superuser,
                partner=partners[partner_name] if partner_name else None,
            )
            user.set_password(DEMO_PASSWORD)
            user.save()
            user.groups.add(agents)
            report.users += 1
        users[username] = user
    return users


def _ensure_boards(partners: dict[str, Partner]) -> None:
    Board.objects.get_or_create(slug="all", defaults={"name": "All partners"})
    critical, created = Board.objects.get_or_create(
        slug="critical", defaults={"name": "Critical and high", "priorities": ["critical", "high"]}
    )
    europe, created = Board.objects.get_or_create(slug="europe", defaults={"name": "Europe"})
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
    agents = list(users.values())
    partner_list = list(partners.values())
    for number in range(1, tickets + 1):
        plan = _plan_ticket(rng, now, partner_list, customers, agents)
        external_id = f"DEMO-{number:04d}"
        if external_id in existing:
            continue
        with transaction.atomic():
            report.events += _create_demo_ticket(external_id, plan, now)
            report.tickets += 1
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


def _plan_ticket(
    rng: random.Random,
    now: datetime,
    partners: list[Partner],
    customers: list[Customer],
    agents: list[User],
) -> _TicketPlan:
    """Draw one ticket and its history. Drawn for every number so reruns stay in step."""
    kind = rng.choices(
        [TicketKind.INCIDENT, TicketKind.SERVICE_REQUEST, TicketKind.LEAD, TicketKind.INQUIRY],
        weights=[55, 25, 8, 12],
    )[0]
    priority = rng.choices(
        [Priority.CRITICAL, Priority.HIGH, Priority.MEDIUM, Priority.LOW], weights=[8, 22, 45, 25]
    )[0]
    partner = rng.choice(partners)
    agent_pool = [a for a in agents if a.partner_id in (None, partner.pk)]
    # Most tickets are recent; a tail reaches back a few days.
    age = timedelta(minutes=min(rng.expovariate(1 / 600), 5 * 24 * 60) + 1)
    opened_at = (now - age).replace(microsecond=0)
    steps: list[tuple[timedelta, str, dict[str, object], str, User | None]] = []
    elapsed = timedelta(0)

    def step(after_minutes: float, kind_: str, payload: dict[str, object], actor: str) -> bool:
        nonlocal elapsed
        elapsed += timedelta(minutes=after_minutes)
        if elapsed >= age:
            return False
        user = rng.choice(agent_pool) if actor == ActorKind.HUMAN else None
        steps.append((elapsed, kind_, payload, actor, user))
        return True

    if rng.random() < 0.5:
        step(0.2, EventKind.REPLIED, {"text": "We received your request."}, ActorKind.AUTO_ACK)
    if rng.random() < 0.7 and step(rng.expovariate(1 / 45), EventKind.REPLIED, {}, "human"):
        if rng.random() < 0.5:
            step(rng.expovariate(1 / 90), EventKind.PLAN_SENT, {}, ActorKind.HUMAN)
        if rng.random() < 0.25:
            step(
                rng.expovariate(1 / 60),
                EventKind.STATUS_CHANGED,
                {"status": TicketStatus.WAITING_ON_CUSTOMER.value},
                ActorKind.HUMAN,
            )
            if rng.random() < 0.5:
                step(
                    rng.expovariate(1 / 120),
                    EventKind.STATUS_CHANGED,
                    {"status": TicketStatus.OPEN.value},
                    ActorKind.HUMAN,
                )
        if rng.random() < 0.08:
            bumped = Priority.HIGH if priority != Priority.HIGH else Priority.CRITICAL
            step(
                rng.expovariate(1 / 60),
                EventKind.PRIORITY_CHANGED,
                {"priority": bumped.value},
                ActorKind.HUMAN,
            )
        if rng.random() < 0.12:
            step(rng.expovariate(1 / 240), EventKind.RESOLVED, {}, ActorKind.HUMAN)
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
