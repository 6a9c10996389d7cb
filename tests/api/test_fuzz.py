"""Schemathesis fuzzes every operation of the OpenAPI document: no 5xx, responses and status
codes as documented, bad input rejected."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from slaboard.api import api
from tests.factories import make_always_calendar, make_partner, make_sla_policy
from tickets.models import ApiToken

schema = schemathesis.openapi.from_dict(api.get_openapi_schema())
schema.app = get_wsgi_application()


@pytest.fixture
def wsgi_in_test_transaction() -> Any:
    """Like Django's test client: keep the test's DB connection open across requests."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def bearer(db: Any, redis_client: Any, wsgi_in_test_transaction: Any) -> dict[str, str]:
    make_sla_policy(calendar=make_always_calendar())
    make_partner(name="Acme")
    secret = ApiToken.issue(name="fuzzer", requests_per_minute=100_000)[1]
    return {"Authorization": f"Bearer {secret}"}


@pytest.mark.slow
@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,  # the same cases on every CI run
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_the_api_never_fails_and_keeps_its_schema(case: Any, bearer: dict[str, str]) -> None:
    # A schema-valid body may still break a business rule ("partner is required to create a
    # ticket"): that is a 422 naming the field, so the positive-data-acceptance check is off.
    case.call_and_validate(headers=bearer, excluded_checks=[positive_data_acceptance])
