"""Pages keep partners apart beyond tickets: board names, the API's documentation."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from dashboard.models import Board
from tests.factories import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def private_boards(org: dict) -> dict[str, Board]:
    north = Board.objects.create(name="North private", slug="north-private")
    north.partners.add(org["north"])
    south = Board.objects.create(name="South private", slug="south-private")
    south.partners.add(org["south"])
    return {"north": north, "south": south}


def logged_in(**fields: Any) -> Client:
    client = Client()
    client.force_login(make_user(**fields))
    return client


def test_a_partner_user_never_sees_another_partners_board_name(
    org: dict, private_boards: dict
) -> None:
    nina = logged_in(username="nina", partner=org["north"])
    for path in ("/boards/", "/"):
        page = nina.get(path).content.decode()
        assert "Everything" in page and "North private" in page, path
        assert "South private" not in page and "south-private" not in page, path
    assert nina.get("/boards/south-private/").status_code == 404
    assert nina.get("/boards/north-private/").status_code == 200
    staff = logged_in(username="alice", is_staff=True).get("/boards/").content.decode()
    assert "South private" in staff and "North private" in staff


def test_the_api_documentation_is_for_your_own_staff(org: dict) -> None:
    for path in ("/api/v1/docs", "/api/v1/openapi.json"):
        assert Client().get(path).status_code == 302, path
        partner_user = logged_in(username=f"nina{len(path)}", partner=org["north"])
        assert partner_user.get(path).status_code == 403, path
        assert logged_in(username=f"alice{len(path)}", is_staff=True).get(path).status_code == 200
