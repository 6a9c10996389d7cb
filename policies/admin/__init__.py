"""The admin of calendars, policies and targets, notifications and the audit trail.

Importing the package registers every admin (Django's autodiscovery imports ``policies.admin``).
"""

from __future__ import annotations

from policies.admin import audit, calendars, notifications, rules

__all__ = ["audit", "calendars", "notifications", "rules"]
