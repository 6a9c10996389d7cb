"""The product's roles: groups and their permissions (docs/roles.md).

Created by a migration (``dashboard/migrations/0003_roles.py``); assign users in the admin. A
user with a partner sees only that partner's tickets, whatever the role; only admins need staff
status (the Django admin).
"""

from __future__ import annotations

from typing import Any

ADMIN_MODELS: dict[str, list[str]] = {
    "tickets": ["partner", "customer", "user", "ticket", "apitoken"],
    "policies": [
        "calendar",
        "workinginterval",
        "holiday",
        "dateoverride",
        "closure",
        "policy",
        "target",
        "notificationrule",
    ],
    "dashboard": ["board"],
}

ROLES: dict[str, list[tuple[str, str]]] = {
    # Take tickets, act on the ones they hold, acknowledge escalations.
    "Agents": [
        ("tickets", "claim_ticket"),
        ("policies", "add_acknowledgement"),
    ],
    # Agents who also take over and reassign claims and read the reports.
    "Managers": [
        ("tickets", "claim_ticket"),
        ("tickets", "take_over_ticket"),
        ("policies", "add_acknowledgement"),
        ("dashboard", "view_reports"),
    ],
    # Policies, calendars, partners, boards, tokens: the Django admin (with staff status).
    "Admins": [
        (app, f"{action}_{model}")
        for app, models in ADMIN_MODELS.items()
        for model in models
        for action in ("add", "change", "delete", "view")
    ]
    + [
        ("policies", "view_auditentry"),
        ("policies", "view_notification"),
        ("policies", "view_acknowledgement"),
        ("policies", "view_slaclock"),
        ("dashboard", "view_reports"),
    ],
}


def ensure_roles(group_model: Any, permission_model: Any) -> None:
    """Create the role groups and give them their permissions (idempotent). Takes the models
    so that a migration can pass its historical ones."""
    for name, wanted in ROLES.items():
        group, _ = group_model.objects.get_or_create(name=name)
        for app_label, codename in wanted:
            permission = permission_model.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if permission is not None:
                group.permissions.add(permission)
