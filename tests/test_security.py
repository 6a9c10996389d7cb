"""Hardening users expect: login throttling, a clean `check --deploy` for the documented
production settings, a refused empty SECRET_KEY, a Content-Security-Policy the pages satisfy."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from dashboard.models import Board
from tests.factories import make_partner, make_ticket, make_user
from tests.test_settings import _django_process

PASSWORD = "correct horse battery staple"


def login(client: Client, username: str, password: str) -> Any:
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


@pytest.mark.django_db
def test_wrong_passwords_lock_the_login_even_for_the_right_one(settings: Any) -> None:
    make_user(username="root", is_staff=True, is_superuser=True, password=PASSWORD)
    make_user(username="alice", is_staff=True, password=PASSWORD)
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "root", "guess").status_code == 200  # the form, with an error
    assert login(client, "root", "guess").status_code == 429  # the last one allowed
    assert login(client, "root", PASSWORD).status_code == 429  # even the right password
    assert client.get("/admin/").status_code == 302  # not logged in
    # Locked by username and address together: another user from here still logs in.
    assert login(Client(), "alice", PASSWORD).status_code == 302


@pytest.mark.django_db
def test_a_success_before_the_limit_starts_the_count_again(settings: Any) -> None:
    make_user(username="root", is_staff=True, is_superuser=True, password=PASSWORD)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(Client(), "root", "guess")
    assert login(Client(), "root", PASSWORD).status_code == 302
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(Client(), "root", "guess")
    assert login(Client(), "root", PASSWORD).status_code == 302


PRODUCTION = {  # README "Production"
    "DEBUG": "0",
    "SECRET_KEY": "q7Zp0-vJ3mXw9Lr2sT8yB4nK6cD1fH5gU0eA3iO7uY2tR9wE4qS6zX8vC1bN5mQ",
    "ALLOWED_HOSTS": "sla.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://sla.example.com",
    "DATABASE_URL": "postgres://slaboard:secret@db.internal:5432/slaboard",
}


@pytest.mark.subprocess
def test_check_deploy_is_clean_for_the_documented_production_settings() -> None:
    result = _django_process(
        PRODUCTION,
        "from django.core.management import call_command; "
        "call_command('check', deploy=True, fail_level='WARNING')",
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.subprocess
def test_check_deploy_is_clean_behind_a_proxy_too() -> None:
    env = {**PRODUCTION, "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"}
    result = _django_process(
        env,
        "from django.conf import settings; print(settings.SECURE_PROXY_SSL_HEADER); "
        "from django.core.management import call_command; "
        "call_command('check', deploy=True, fail_level='WARNING')",
    )
    assert result.returncode == 0, result.stderr
    assert "('HTTP_X_FORWARDED_PROTO', 'https')" in result.stdout


@pytest.mark.parametrize("debug", ["0", "1"])
@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_secret_key_is_refused_at_start(debug: str, key: str) -> None:
    result = _django_process({"DEBUG": debug, "SECRET_KEY": key}, "print('started')")
    assert result.returncode != 0
    assert "SECRET_KEY is empty" in result.stderr


class InlineCode(HTMLParser):
    """Everything a strict CSP (no 'unsafe-inline') would block in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if tag == "script" and "src" not in names and names.get("type") != "application/json":
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.found.append(f"{tag} {name}=")
            if name in ("href", "src", "action") and (value or "").lower().startswith(
                "javascript:"
            ):
                self.found.append(f"{tag} {name}=javascript:")


@pytest.mark.django_db
def test_every_page_has_a_strict_csp_and_satisfies_it() -> None:
    partner = make_partner(name="North")
    ticket = make_ticket(partner=partner, subject="Printer")
    Board.objects.create(name="All", slug="all")
    root = make_user(username="root", is_staff=True, is_superuser=True)
    client = Client()
    pages = ["/admin/login/"]
    client.force_login(root)
    pages += [
        "/",
        "/boards/",
        "/boards/all/",
        "/queue/",
        "/admin/",
        "/admin/tickets/ticket/",
        f"/admin/tickets/ticket/{ticket.pk}/change/",
        "/admin/tickets/ticket/add/",
        "/admin/policies/calendar/add/",
        "/admin/dashboard/board/add/",
        "/api/v1/docs",
    ]
    agent = make_user(username="nina", partner=partner)
    agent.user_permissions.add(Permission.objects.get(codename="claim_ticket"))
    for path in pages:
        response = (Client() if path == "/admin/login/" else client).get(path)
        assert response.status_code == 200, path
        policy = response["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "style-src 'self'" in policy, path
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy, path
        parser = InlineCode()
        parser.feed(response.content.decode())
        assert parser.found == [], (path, parser.found)
    assert re.search(r"connect-src 'self'", policy)
